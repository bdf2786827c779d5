"""backbone_gradient_analysis.py and backbone_fisher_analysis.py on a tiny real run, against direct computations (CPU)."""
import json
import math
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import backbone_fisher_analysis as bfa
import backbone_gradient_analysis as bga
import geometry as geo
import runs
import train
from config import lr_at
from dataset import get_batch
from model import losses, trunk_keys


CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory, micro_cfg):
    """A real 40-step run: snapshots 0, 1 (for the first AdamW update), 10, 20, 30, 40; lambda changes at step 20."""
    cfg = micro_cfg(tmp_path_factory.mktemp("analysis_grad"), steps=40, eval_every=10, snapshot_every=10,
                    snapshot_extra="0:1:1", lambda_step=20, n_train_stories=300, n_val_stories=60, n_layer=2,
                    batch_size=8, grad_accum=2)
    assert train.train(cfg)["status"] == "complete"
    return cfg


def snap(cfg, step):
    return load_file(runs.snapshot_path(cfg.run_dir, step))


def dense_pcs(cfg, keys, k=2, anchor=0):
    """First k right singular vectors of the drift rows by a dense SVD (sign: last row's coordinate > 0)."""
    steps = sorted(int(f[5:11]) for f in os.listdir(os.path.join(cfg.run_dir, "snapshots")))
    flat = lambda s: torch.cat([snap(cfg, s)[key].reshape(-1) for key in keys]).double()
    X = torch.stack([flat(s) - flat(anchor) for s in steps if s > anchor])
    _, _, Vh = torch.linalg.svd(X, full_matrices=False)
    V = Vh[:k] * torch.sign(X[-1] @ Vh[:k].T)[:, None]
    return list(V)


def direct_gradients(model, batches, lam, which=0):
    """One row per batch: gradient of losses(...)[which], trunk tensors in model.trunk_keys order."""
    params = dict(model.named_parameters())
    keys = trunk_keys(model.n_layer)
    rows = []
    for x, y, pos in batches:
        loss = losses(model, x, y, pos, lam)[which]
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, [params[k] for k in keys])]).double())
    return torch.stack(rows)


def one_line_exit2(fn, argv, capsys, text=None):
    with pytest.raises(SystemExit) as e:
        fn(argv)
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert e.value.code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert text is None or text in lines[0], lines[0]


def test_gradients_are_those_of_the_runs_own_batches(run):
    cfg = run
    traj, cfg2, corpus = runs.load_run(cfg.run_dir, device="cpu")[:3]
    assert cfg2 == cfg
    # the replayed stream is the run's micro-batches in order, whatever the mini-batch size
    batches, used = runs.replay_batches(corpus, cfg, 0, 2, cfg.batch_size)
    assert used == [(0, 0), (0, 1)]
    for b, m in zip(batches, range(2)):
        assert all(torch.equal(u, v) for u, v in zip(b, get_batch(corpus, cfg, 0, m)))
    small, used = runs.replay_batches(corpus, cfg, 5, 5, 4)
    assert used == [(5, 0), (5, 1), (6, 0)] and runs.batch_record(cfg, used)["trained_on"]
    assert not runs.batch_record(cfg, runs.replay_batches(corpus, cfg, 40, 2, 8)[1])["trained_on"]  # beyond the run
    stream = [torch.cat([get_batch(corpus, cfg, s, m)[i] for s, m in used])[:20] for i in range(3)]
    assert all(torch.equal(torch.cat([b[i] for b in small]), stream[i]) for i in range(3))

    # the script's mean combined gradient at step 0 on those batches = the gradient step 0 took
    model = runs.load_model(traj, cfg, corpus, 0)
    keys, lam = traj.groups["trunk"], cfg.lambda_at(0)
    G_lm = geo.batch_gradients(model, batches, runs.loss_fn(1, lam, CPU, True), keys)
    G_pr = geo.batch_gradients(model, batches, runs.loss_fn(2, lam, CPU, True), keys)
    g_script = (G_lm + lam * G_pr).double().mean(0)
    model.zero_grad()
    for m in range(cfg.grad_accum):  # exactly as train.py accumulates
        (losses(model, *get_batch(corpus, cfg, 0, m), lam)[0] / cfg.grad_accum).backward()
    params = dict(model.named_parameters())
    g_direct = torch.cat([params[k].grad.reshape(-1) for k in keys]).double()
    assert (g_script - g_direct).norm() < 1e-5 * g_direct.norm()  # float32 rounding only

    # and it is the gradient the run followed: AdamW's first update is -lr0 g/(|g| + eps) after decay,
    # so (theta0 (1 - lr0 wd) - theta1) / lr0 = sign(g) wherever |g| >> eps (clipping rescales, keeps signs)
    th0, th1 = (torch.cat([snap(cfg, s)[k].reshape(-1) for k in keys]).double() for s in (0, 1))
    lr0 = lr_at(cfg, 0)
    r = (th0 * (1 - lr0 * cfg.weight_decay) - th1) / lr0
    big = g_script.abs() > 1e-5
    assert big.float().mean() > 0.5
    assert (r[big] - g_script[big].sign()).abs().max() < 0.02


def test_gradient_analysis_json(run):
    cfg = run
    bga.main(["--run", cfg.run_dir, "--device", "cpu", "--batches", "4", "--every", "2"])
    out = json.load(open(os.path.join(cfg.run_dir, "analysis", "backbone_gradient_analysis.json")))
    assert out["steps"] == [0, 10, 30]  # every 2nd of the snapshots 0, 1, 10, 20, 30, 40
    assert out["lambda"] == [cfg.lambda_at(t) for t in out["steps"]] and out["lambda"][1] != out["lambda"][2]
    b = out["batches"]
    assert b["batch_size"] == cfg.batch_size and b["per_step"]["10"]["from"] == [10, 0] and b["per_step"]["10"]["to"] == [11, 1]
    assert b["per_step"]["30"]["trained_on"]
    D = sum(math.prod(snap(cfg, 0)[k].shape) for k in trunk_keys(cfg.n_layer))
    assert out["D"]["trunk"] == D and out["noise_floor"]["trunk"] == pytest.approx(math.sqrt(2 / (math.pi * D)), rel=1e-12)
    for g in ("block0", "block1"):
        Dg = sum(math.prod(snap(cfg, 0)[k].shape) for k in trunk_keys(cfg.n_layer, int(g[-1])))
        assert out["noise_floor"][g] == pytest.approx(math.sqrt(2 / (math.pi * Dg)), rel=1e-12)
    for loss in ("combined", "lm", "probe"):
        for g, col in out["results"][loss].items():
            vals = col["cos_mean"] + col["cos_sd"]
            assert all(c is None or 0 <= c <= 1 for c in vals), (loss, g)
            assert loss == "probe" or None not in vals  # only a probe-free mini-batch has a zero gradient
            assert np.allclose(col["B"], np.cumsum(col["b"]), rtol=1e-12, atol=0)
    for f in ("backbone_gradient_alignment_block0.png", "backbone_gradient_projection.png"):
        assert os.path.getsize(os.path.join(cfg.run_dir, "analysis", f)) > 1000
    assert out["provenance"]["git_commit"] and out["provenance"]["device"] == "cpu"

    # known answer at step 10: b_l and |cos| from direct gradients on the run's batches and a dense SVD backbone
    traj, _, corpus = runs.load_run(cfg.run_dir, device="cpu")[:3]
    model = runs.load_model(traj, cfg, corpus, 10)
    batches = [get_batch(corpus, cfg, s, m) for s in (10, 11) for m in (0, 1)]
    G = direct_gradients(model, batches, cfg.lambda_at(10))
    i = out["steps"].index(10)
    n0 = sum(math.prod(snap(cfg, 0)[k].shape) for k in trunk_keys(cfg.n_layer, 0))
    for g, cols in (("block0", slice(0, n0)), ("trunk", slice(0, D))):
        v = dense_pcs(cfg, trunk_keys(cfg.n_layer, 0) if g == "block0" else trunk_keys(cfg.n_layer), k=1)[0]
        proj = G[:, cols] @ v
        res = out["results"]["combined"][g]
        assert res["b"][i] == pytest.approx(float(proj.mean()), rel=1e-3, abs=1e-9)
        cos = proj.abs() / G[:, cols].norm(dim=1)
        assert res["cos_mean"][i] == pytest.approx(float(cos.mean()), rel=1e-3, abs=1e-9)
        assert res["cos_sd"][i] == pytest.approx(float(cos.std()), rel=1e-3, abs=1e-9)
        signed = proj / G[:, cols].norm(dim=1)
        assert res["b_normalized"][i] == pytest.approx(float(signed.mean()), rel=1e-3, abs=1e-9)
        med = float(np.median(signed.numpy()))
        assert res["b_normalized_median"][i] == pytest.approx(med, rel=1e-3, abs=1e-9)
        assert res["b_median"][i] == pytest.approx(float(np.median(proj.numpy())), rel=1e-3, abs=1e-9)
        assert res["cos_median"][i] == pytest.approx(float(np.median(cos.numpy())), rel=1e-3, abs=1e-9)
        assert res["b_pos_frac"][i] == float((signed > 0).double().mean())
        assert np.allclose(res["B_normalized"], np.cumsum(res["b_normalized"]), rtol=1e-12, atol=0)


@pytest.fixture
def switched(run, tmp_path):
    """A copy of the run whose p_ood has one switch: peak at step 20, trough at step 30."""
    rd = str(tmp_path / "sw")
    shutil.copytree(run.run_dir, rd)
    rows = [json.loads(l) for l in open(os.path.join(rd, "metrics.jsonl"))]
    with open(os.path.join(rd, "metrics.jsonl"), "w") as f:
        for r, p in zip(rows, [0.0, 0.05, 0.5, 0.1, 0.2]):
            f.write(json.dumps(dict(r, p_ood=p)) + "\n")
    return rd


def test_fisher_analysis_json(run, switched):
    cfg, rd = run, switched
    bfa.main(["--run", rd, "--device", "cpu", "--steps", "30,10", "--batches", "4", "--K", "3", "--group", "all"])
    out = json.load(open(os.path.join(rd, "analysis", "backbone_fisher_analysis.json")))
    assert out["steps"] == [10, 30] and out["groups"] == ["trunk", "block0", "block1"]
    assert [r["v_sw_excluded"] for r in out["table"]] == [False, False]  # replays steps 10-11 and 30-31
    assert out["switching"]["peak_step"] == 20 and out["switching"]["trough_step"] == 30
    assert os.path.getsize(os.path.join(rd, "analysis", "backbone_fisher_analysis.png")) > 1000
    traj, _, corpus = runs.load_run(rd, device="cpu")[:3]
    model = runs.load_model(traj, cfg, corpus, 30)
    batches = [get_batch(corpus, cfg, s, m) for s in (30, 31) for m in (0, 1)]
    G = direct_gradients(model, batches, cfg.lambda_at(30))  # combined loss with the late lambda
    row = out["table"][1]
    assert row["step"] == 30 and row["lambda"] == cfg.lambda_at(30) != cfg.lambda_at(10)
    for g in ("trunk", "block0"):
        keys = traj.groups[g]
        n = sum(math.prod(snap(cfg, 0)[k].shape) for k in keys)
        Gg = G[:, :n]  # block 0 comes first in the canonical order
        v_b, v_pc2 = dense_pcs(cfg, keys, k=2)
        v_sw = torch.cat([(snap(cfg, 20)[k] - snap(cfg, 30)[k]).reshape(-1) for k in keys]).double()
        v_sw /= v_sw.norm()
        s = row["groups"][g]
        q = lambda v: float((Gg @ v).pow(2).sum() / len(G))  # ||G v||^2 / M
        assert s["q"]["v_b"] == pytest.approx(q(v_b), rel=1e-3)
        assert s["q"]["v_PC2"] == pytest.approx(q(v_pc2), rel=1e-3)
        assert s["q"]["v_sw"] == pytest.approx(q(v_sw), rel=1e-3)
        assert out["switching"]["cos_vb"][g] == pytest.approx(float(v_sw @ v_b), rel=1e-3, abs=1e-6)
        assert s["alpha"] == pytest.approx(s["q"]["v_b"] / np.mean(s["q_random"]), rel=1e-12)
        assert len(s["q_random"]) == 3 and s["lambda1"] <= s["trace"] * (1 + 1e-9)
        assert s["trace"] == pytest.approx(float(Gg.pow(2).sum() / len(G)), rel=1e-3)
        assert all(0 <= o <= 1 + 1e-6 for o in s["u1_overlap"].values())
    # the LM and probe Fishers apart, and the per-batch records, from direct gradients
    lam = cfg.lambda_at(30)
    G_lm, G_pr = (direct_gradients(model, batches, lam, which=w) for w in (1, 2))
    s = row["groups"]["trunk"]
    v_b = dense_pcs(cfg, trunk_keys(cfg.n_layer), k=1)[0]
    for name, Gx in (("lm", G_lm), ("probe", G_pr)):
        p2 = (Gx @ v_b) ** 2
        assert s[f"q_{name}"]["v_b"] == pytest.approx(float(p2.mean()), rel=1e-3, abs=1e-12)
        assert s[name]["q_median"]["v_b"] == pytest.approx(float(np.median(p2.numpy())), rel=1e-3, abs=1e-12)
        assert s[name]["grad_norms"] == pytest.approx(Gx.norm(dim=1).tolist(), rel=1e-3, abs=1e-9)
        top = torch.linalg.eigvalsh(Gx @ Gx.T)[-1]
        assert s[name]["lambda1_frac"] == pytest.approx(float(top / Gx.pow(2).sum()), rel=1e-3)
    assert s["q"]["v_b"] == pytest.approx(float(((G_lm + lam * G_pr) @ v_b).pow(2).mean()), rel=1e-3)
    n_probe = [int((pos >= 0).sum()) for _, _, pos in batches]
    n_wrong = []
    with torch.no_grad():
        for x, y, pos in batches:
            has = pos >= 0
            rows = torch.arange(int(has.sum()))
            n_wrong.append(int((model(x[has])[rows, pos[has]].argmax(-1) != y[has][rows, pos[has]]).sum()))
    assert row["per_batch"] == dict(n_probe=n_probe, n_wrong=n_wrong) and sum(n_probe) > 0
    assert [g == 0 for g in s["probe"]["grad_norms"]] == [n == 0 for n in n_probe]  # no probe: no gradient


def test_v_sw_is_never_measured_on_its_own_batches(switched):
    """Switching pair 20 -> 30: the snapshots whose replayed batches reach into steps 20..29 made v_sw and do
    not measure it (step 20 with 2 replayed steps; step 10 once 11 steps are replayed); the others do."""
    rd = switched
    path = os.path.join(rd, "analysis", "backbone_fisher_analysis.json")
    for batches, want in (("4", {10: False, 20: True, 30: False}), ("22", {10: True})):
        bfa.main(["--run", rd, "--device", "cpu", "--steps", ",".join(map(str, want)), "--batches", batches,
                  "--K", "2"])
        out = json.load(open(path))
        assert out["switching"]["interval"] == [20, 30]
        for r in out["table"]:
            s = r["groups"]["trunk"]
            assert r["v_sw_excluded"] == want[r["step"]], (batches, r["step"])
            measured = [s[k]["v_sw"] for k in ("q", "q_lm", "q_probe", "q_median", "u1_overlap")]
            assert all((x is None) == want[r["step"]] for x in measured), (batches, r["step"], measured)
            assert s["q"]["v_b"] is not None


def test_fisher_summary_with_directions_made_once(run):
    cfg = run
    traj, _, corpus = runs.load_run(cfg.run_dir, device="cpu")[:3]
    model = runs.load_model(traj, cfg, corpus, 20)
    keys = traj.groups["trunk"]
    G = geo.batch_gradients(model, runs.replay_batches(corpus, cfg, 20, 3, 8)[0], runs.loss_fn(0, 1.5, CPU, True), keys)
    pcas, dirs = geo.backbone(traj, ["trunk"], k=2, progress=False)
    named = {"v_b": dirs["trunk"][0], "v_PC2": dirs["trunk"][1]}
    a = geo.fisher_summary(G, keys, named, rand=geo.random_directions(named["v_b"], 4, [named["v_b"]], 7))
    b = geo.fisher_summary(G, keys, named, K=4, seed=7)
    assert a == b and len(a["q_random"]) == 4


def test_switching_pair_picks_the_most_prominent_peak_and_its_lower_neighbour():
    p = [0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.05, 0.3, 0.6, 0.4, 0.2, 0.1, 0.15, 0.2, 0.3, 0.3]
    metrics = [dict(step=200 * i, p_ood=v) for i, v in enumerate(p)]
    peak, trough, info = geo.switching_pair(metrics, [200 * i for i in range(len(p))], 0)
    assert (peak, trough) == (1600, 2200) and info["p_peak"] == 0.6 and info["p_trough"] == 0.1
    assert info["prominence"] == pytest.approx(0.5)
    flat = [dict(step=s, p_ood=0.0) for s in range(0, 400, 20)]
    peak, trough, info = geo.switching_pair(flat, range(0, 400, 20), 0)
    assert peak is None and "no p_ood peak" in info
