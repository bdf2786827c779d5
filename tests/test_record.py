"""The trajectory record: every number of the trajectory analyses is a function of it.

Known answers: (1) on a run whose snapshots shrink like weight decay and drift by small late increments,
trajectory_pca_uncentered's and backbone_update_analysis's numbers from the record equal those from the
snapshots' own Grams (relative 1e-9), for anchor 0 and a later anchor, and `--record` gives the JSON that
`--run` gives; (2) a record of checkpoints (safetensors, state dicts, a tiny transformers GPT2 saved with
save_pretrained) gives the PC1, C(t) and matched null of a dense numpy SVD of the same flattened weights.
"""
import json
import math
import os

import numpy as np
import pytest
import torch

import backbone_update_analysis as bua
import geometry as geo
import trajectory_pca_uncentered as tpu
import trajectory_record as tr
from model import trunk_keys
from runs import Trajectory, load_record, record_path, run_record

STEPS = list(range(0, 401, 20))


def decaying_run(tmp_path, snapshots, micro_cfg, seed=0):
    """A finished 2-block run: theta(t) = s(t) theta0 + a drift whose increments shrink with the schedule,
    at the scale of real training (||theta|| >> late increments); p_ood with two peaks for the switching."""
    cfg = micro_cfg(tmp_path, n_layer=2, d_model=16, n_head=2, d_ff=32, steps=400, name="rec")
    run = cfg.run_dir
    gen = torch.Generator().manual_seed(seed)
    from model import GPT
    torch.manual_seed(seed)
    base = GPT(50, n_layer=2, d_model=16, n_head=2, d_ff=32, ctx=8).state_dict()
    keys = trunk_keys(2)
    theta0 = {k: base[k].clone() for k in keys}
    walk = {k: torch.zeros_like(v) for k, v in theta0.items()}
    drift_dir = {k: torch.randn(v.shape, generator=gen) for k, v in theta0.items()}
    for t in STEPS:
        if t:
            lr = 1e-3 * (1 - t / 500)
            for k in keys:
                walk[k] += lr * (torch.randn(walk[k].shape, generator=gen) + 0.5 * drift_dir[k])
        s = (1 - 1e-3 * 0.5) ** t
        snapshots.write(run, t, {**base, **{k: s * theta0[k] + walk[k] for k in keys}})
    snapshots.finish(run, cfg)
    p = [0.0, 0.1, 0.3, 0.5, 0.3, 0.1, 0.2, 0.4, 0.6, 0.7, 0.5, 0.3, 0.2, 0.3, 0.5, 0.6, 0.5, 0.4, 0.3, 0.3, 0.3]
    with open(os.path.join(run, "metrics.jsonl"), "w") as f:
        for t, q in zip(STEPS, p):
            f.write(json.dumps(dict(step=t, val_loss=3.0, p_in=0.5, p_ood=q)) + "\n")
    return run


def close(a, b, path="", rel=1e-9, scale=0.0):
    """Every number of a and b agrees to `rel`, relative to the larger of the two or, inside a list, to the
    largest number of that list (a singular value that is zero up to rounding is zero relative to sigma_1;
    singular values are compared as their squares, the eigenvalues of the Gram)."""
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            close(a[k], b[k], f"{path}.{k}", rel)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        if path.endswith("sigma"):  # sqrt turns a zero eigenvalue's rounding (eps lambda_1) into sqrt(eps) sigma_1
            a, b = [x * x for x in a], [y * y for y in b]
        nums = [abs(x) for x in list(a) + list(b) if isinstance(x, float) and math.isfinite(x)]
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{path}[{i}]", rel, max(nums, default=0.0))
    elif isinstance(a, torch.Tensor):
        close(a.tolist(), b.tolist(), path, rel)
    elif isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), path
        else:
            assert abs(a - b) <= rel * max(abs(a), abs(b), scale) + 1e-15, (path, a, b)
    elif isinstance(a, geo.PCA):
        close(a.rho, b.rho, path, rel)
    else:
        assert a == b, (path, a, b)


@pytest.mark.parametrize("anchor", [0, 200])
def test_record_reproduces_the_snapshot_analyses(tmp_path, snapshots, micro_cfg, anchor):
    run = decaying_run(tmp_path, snapshots, micro_cfg)
    rec = run_record(run, "cpu")
    traj = Trajectory(run, anchor=anchor, device="cpu")
    direct = geo.group_grams(traj.grams(anchor_row=True), traj.groups)
    recorded = rec.group_grams(anchor)
    for g in direct:  # the Grams themselves
        scale = float(direct[g].abs().max())
        assert float((direct[g] - recorded[g]).abs().max()) <= 1e-12 * scale
    numel = {g: rec.numel(k) for g, k in rec.groups.items()}
    args = (rec.steps, anchor, rec.config, rec.metrics, 10, 50)
    a, b = tpu.analyse(direct, numel, *args), tpu.analyse(recorded, numel, *args)
    assert b["switching"]["pairs"], "the planted p_ood must give switch pairs"
    close(a["groups"], b["groups"])
    close({k: v for k, v in a["switching"].items()}, {k: v for k, v in b["switching"].items()})
    rows = traj.row_steps
    split = lambda G: {g: geo.split_anchor(x)[0] for g, x in G.items()}  # noqa: E731
    close(bua.analyse(split(direct), rows, anchor, 0, 400), bua.analyse(split(recorded), rows, anchor, 0, 400))


def test_record_flag_gives_the_run_folders_numbers(tmp_path, snapshots, micro_cfg):
    run = decaying_run(tmp_path, snapshots, micro_cfg)
    for mod, name in ((tpu, "trajectory_pca_uncentered"), (bua, "backbone_update_analysis")):
        mod.main(["--run", run] + (["--null-draws", "50"] if mod is tpu else []))
        out = str(tmp_path / "alone" / f"{name}.json")
        mod.main(["--record", record_path(run), "--out", out] + (["--null-draws", "50"] if mod is tpu else []))
        a, b = (json.load(open(p)) for p in (os.path.join(run, "analysis", f"{name}.json"), out))
        close(a["results"], b["results"])
        close(a["summary"], b["summary"])


def test_record_is_remade_when_a_snapshot_changes(tmp_path, snapshots, micro_cfg):
    run = decaying_run(tmp_path, snapshots, micro_cfg)
    first = run_record(run, "cpu")
    assert run_record(run, "cpu").grams["blocks.0.mlp.fc.weight"].equal(first.grams["blocks.0.mlp.fc.weight"])
    os.remove(snapshots.path(run, 400))  # a stale record must not survive a changed trajectory
    again = run_record(run, "cpu")
    assert again.steps == STEPS[:-1]


def dense_reference(flat: np.ndarray):
    """PC1, C(t) of consecutive updates against v_b, and the matched null, from a dense SVD (anchor row 0)."""
    X = flat[1:] - flat[0]
    _, s, Vt = np.linalg.svd(X, full_matrices=False)
    v = Vt[0] * np.sign(X[-1] @ Vt[0])
    U = np.diff(np.vstack([np.zeros_like(X[:1]), X]), axis=0)
    C = (U @ v) / np.linalg.norm(U, axis=1)
    n2 = (U**2).sum(1)
    L = np.tril(np.ones((len(n2), len(n2))))
    K = (L * n2) @ L.T
    return s[0] ** 2 / (s**2).sum(), C, np.linalg.eigvalsh(K)[-1] / np.trace(K)


def check_against_dense(rec, flats):
    G = geo.split_anchor(rec.group_grams(rec.steps[0])["trunk"])[0]
    P = geo.pca(G)
    C = geo.update_cos(G, P.coef(1)[:, 0])["C"].numpy()
    pc1, C_ref, null = dense_reference(flats)
    assert P.pc1 == pytest.approx(pc1, rel=1e-9)
    assert C == pytest.approx(C_ref, rel=1e-7, abs=1e-9)
    assert geo.matched_null_pc1(geo.increment_norms_sq(G)) == pytest.approx(null, rel=1e-9)


def test_checkpoints_of_a_transformers_gpt2(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    conf = transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    model = transformers.GPT2LMHeadModel(conf)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    paths, sds, flats = [], [], []
    ids = torch.randint(0, 64, (4, 16))
    for step in range(0, 6):
        if step:
            model(ids, labels=ids).loss.backward()
            opt.step(), opt.zero_grad()
        folder = tmp_path / f"checkpoint-{step * 10}"
        model.save_pretrained(folder)  # model.safetensors, names transformer.h.L.attn.c_attn.weight, ...
        paths.append(str(folder))
        sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save(sd, tmp_path / f"sd_{step * 10}.pt")
        sds.append(str(tmp_path / f"sd_{step * 10}.pt"))
        keys = sorted(k for k in sd if tr.re.search(tr.DEFAULT_PATTERN, k))
        flats.append(np.concatenate([sd[k].double().numpy().ravel() for k in keys]))
    assert len(keys) == 8  # 2 blocks x (c_attn, attn.c_proj, c_fc, mlp.c_proj)
    flats = np.stack(flats)
    for src, out in ((paths, "hf.safetensors"), (sds, "sd.safetensors")):
        tr.main(["--checkpoints", *src, "--out", str(tmp_path / out), "--device", "cpu"])
        rec = load_record(str(tmp_path / out))
        assert rec.steps == [0, 10, 20, 30, 40, 50] and set(rec.groups) == {"block0", "block1", "trunk"}
        check_against_dense(rec, flats)
    tpu.main(["--record", str(tmp_path / "hf.safetensors"), "--null-draws", "20"])  # the analyses run on it
    bua.main(["--record", str(tmp_path / "hf.safetensors")])


def test_bad_checkpoint_input_is_one_line(tmp_path, usage_error):
    torch.save({"w": torch.zeros(2)}, tmp_path / "a_1.pt")
    torch.save({"w": torch.zeros(2)}, tmp_path / "a_2.pt")
    pair = [str(tmp_path / "a_1.pt"), str(tmp_path / "a_2.pt")]
    usage_error(tr.main, ["--checkpoints", *pair, "--out", str(tmp_path / "r.st")], match="matches --pattern")
    usage_error(tr.main, ["--checkpoints", *pair[::-1], "--out", str(tmp_path / "r.st")], match="increasing")
    usage_error(tr.main, ["--checkpoints", *pair, "--steps", "1", "--out", str(tmp_path / "r.st")],
                match="2 checkpoints")
    usage_error(tr.main, ["--checkpoints", str(tmp_path / "none"), "--out", str(tmp_path / "r.st")],
                match="not found")
    usage_error(tpu.main, ["--record", str(tmp_path / "a_1.pt")], match="not a trajectory record")
