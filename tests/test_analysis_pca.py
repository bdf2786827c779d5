"""trajectory_pca_uncentered.py and backbone_update_analysis.py on a run with a planted backbone (CPU, ~30 s).

The synthetic run has the tiny preset's shapes and schedule (snapshots and evals every 20 steps to 400).
In block l the drift rows are x_l(t) = w_l a(t) v_l + sum_k s_k f_k(t) g_{l,k}: v_l and the g_{l,k} are
orthonormal in the block, and the time profiles f_k are orthonormal and orthogonal to a (sum_t a f_k = 0),
so that X^T X = w^2 |a|^2 v v^T + sum_k s_k^2 g_k g_k^T exactly. Hence the known answers: v_b = v, PC1 =
w^2 |a|^2 / (w^2 |a|^2 + sum s^2), PC_{k+1} = g_k, a(t) = w a(t), ||r(t)||^2 = sum_k s_k^2 f_k(t)^2, and for any
difference of rows (an update u(t), a switch theta_peak - theta_trough) the backbone cosine da / sqrt(da^2 +
sum_k s_k^2 df_k^2). a(t) rises by 1 a snapshot up to step 240 and falls by 0.25 after: C(t) flips sign at
step 260. The trunk is both blocks side by side (same a, f, s). Embeddings and LayerNorms get a large random
drift that the trunk analyses must ignore.
"""
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import backbone_update_analysis as bua
import geometry as geo
import trajectory_pca_uncentered as tpu
from config import lr_at, make_config
from model import GPT, flatten, trunk_keys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STEPS = list(range(0, 401, 20))                  # snapshots and evals of the tiny preset
T = len(STEPS) - 1                               # drift rows (anchor 0)
W = [1.0, 0.5]                                   # backbone weight per block
FLIP = 260                                       # first step whose update goes back along v_b
K = 8                                            # transverse modes
S = [3.0 - 0.25 * k for k in range(K)]           # their singular values (distinct, below w |a|)
# p_ood with peaks at 100 and 260 and troughs at 160 and 340 (prominence >= 0.06)
P_OOD = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.35, 0.25, 0.15, 0.2, 0.3, 0.4, 0.45, 0.6, 0.5, 0.4, 0.35, 0.3, 0.32, 0.34, 0.36]
PAIRS = [(100, 160), (260, 340)]
GROUPS = (("block0", [0]), ("block1", [1]), ("trunk", [0, 1]))


def a_of(step):
    return float(step // 20) if step <= 240 else 12 - 0.25 * (step - 240) / 20


def profiles():
    """a (T,) and the time profiles F (K x T): orthonormal rows, orthogonal to a. Row t - 1 is step 20 t;
    a column of zeros is prepended for the anchor (x = 0 there)."""
    a = torch.tensor([a_of(s) for s in STEPS[1:]], dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.cat([a[:, None], torch.randn(T, K, generator=torch.Generator().manual_seed(2), dtype=torch.float64)], 1))
    z = torch.zeros(1, dtype=torch.float64)
    return torch.cat([z, a]), torch.cat([torch.zeros(K, 1, dtype=torch.float64), Q[:, 1:].T], 1)


A, F = profiles()  # indexed by snapshot: A[i], F[:, i] at STEPS[i]


def w_of(blocks):
    return math.sqrt(sum(W[l] ** 2 for l in blocks))


def coords(i, j, blocks) -> torch.Tensor:
    """theta(STEPS[i]) - theta(STEPS[j]) of a group in its orthonormal basis (v_b, PC2, PC3, ...)."""
    trans = math.sqrt(len(blocks)) * torch.tensor(S, dtype=torch.float64) * (F[:, i] - F[:, j])
    return torch.cat([(w_of(blocks) * (A[i] - A[j])).reshape(1), trans])


def cos_backbone(i, j, blocks) -> float:
    c = coords(i, j, blocks)
    return float(c[0] / c.norm())


def write_run(run, snapshots):
    """Snapshots with the planted drift; returns {block: (v, Gk)} (unit backbone, K x D transverse directions)."""
    cfg = make_config(preset="tiny", progress=False, out_dir=os.path.dirname(run), name=os.path.basename(run))
    torch.manual_seed(0)
    sd0 = {k: v.double() for k, v in GPT.from_config(cfg, 100).state_dict().items()}
    gen = torch.Generator().manual_seed(1)
    planted = {}
    for l in range(cfg.n_layer):
        D = sum(sd0[k].numel() for k in trunk_keys(cfg.n_layer, l))
        Q, _ = torch.linalg.qr(torch.randn(D, K + 1, generator=gen, dtype=torch.float64))
        planted[l] = (Q[:, 0], Q[:, 1:].T)
    for i, s in enumerate(STEPS):
        sd = {key: t + 0.5 * i * torch.randn(t.shape, generator=gen, dtype=torch.float64)  # non-trunk tensors move a
              for key, t in sd0.items() if key not in trunk_keys(cfg.n_layer)}                # lot: they must not count
        for l, (v, Gk) in planted.items():
            x = W[l] * A[i] * v + (torch.tensor(S, dtype=torch.float64) * F[:, i]) @ Gk
            j = 0
            for key in trunk_keys(cfg.n_layer, l):
                n = sd0[key].numel()
                sd[key] = sd0[key] + x[j:j + n].reshape(sd0[key].shape)
                j += n
        snapshots.write(run, s, sd)
    snapshots.finish(run, cfg)
    with open(os.path.join(run, "metrics.jsonl"), "w") as f:
        for s, p in zip(STEPS, P_OOD):
            f.write(json.dumps(dict(step=s, val_loss=5.0 - s / 200, p_in=0.9, p_ood=p)) + "\n")
    return planted


@pytest.fixture(scope="module")
def done(tmp_path_factory, snapshots):
    """The planted run after both scripts ran on it as subprocesses."""
    run = str(tmp_path_factory.mktemp("runs") / "planted")
    planted = write_run(run, snapshots)
    for cmd in (["trajectory_pca_uncentered.py", "--run", run, "--null-draws", "200"],
                ["backbone_update_analysis.py", "--run", run]):
        r = subprocess.run([sys.executable, os.path.join(ROOT, cmd[0]), *cmd[1:]], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    load = lambda n: json.load(open(os.path.join(run, "analysis", n)))
    return run, planted, load("trajectory_pca_uncentered.json"), load("backbone_update_analysis.json")


def test_find_extrema_hand_made():
    p = [0.2, 0.3, 0.6, 0.3, 0.1, 0.1, 0.1, 0.12, 0.1, 0.1, 0.1, 0.4, 0.4, 0.2, 0.1, 0.15, 0.3, 0.9]
    # peaks: 0.6 at 2; the flat top 0.4 at 11-12 once; not the 0.12 bump (prominence 0.02) nor the last eval.
    # Troughs: 0.1 at 14; not the flat stretches of 0.1 at 4-6 and 8-10 (prominence 0.02, the 0.12 bump between).
    assert geo.find_extrema(p) == ([2, 11], [14])
    assert geo.find_extrema([0.5, 0.52, 0.5]) == ([], [])              # prominence 0.02 < 0.03
    assert geo.find_extrema([0.5, 0.53, 0.5]) == ([1], [])             # exactly 0.03
    assert geo.find_extrema([0.3, 0.2, 0.25, 0.2, 0.6]) == ([2], [1, 3])  # a 0.05 bump between equal troughs
    assert geo.find_extrema([0.1, 0.5, 0.2, 0.6, 0.1]) == ([1, 3], [2])   # a lower peak by a higher counts
    assert geo.find_extrema([0.0] * 10) == ([], [])
    sw = geo.pair_switches(STEPS, P_OOD, set(STEPS) - {340}, anchor=0)
    assert sw["peaks"] == [100, 260] and sw["troughs"] == [160, 340]
    assert [(q["peak"], q["trough"]) for q in sw["pairs"]] == [(100, 160)] and sw["skipped"][0]["trough"] == 340


def test_backbone_recovered(done):
    run, planted, res, _ = done
    assert res["snapshot_steps"] == STEPS[1:] and res["anchor"] == 0
    for g, blocks in GROUPS:
        r, w2, m = res["results"][g], w_of(blocks) ** 2, len(blocks)  # one backbone, K transverse modes per group
        sig, trans = w2 * float(A @ A), [m * x**2 for x in S]
        assert r["raw"]["pc1"] == pytest.approx(sig / (sig + sum(trans)), abs=1e-6)
        assert r["raw"]["rho"][1:K + 1] == pytest.approx([x / (sig + sum(trans)) for x in trans], abs=1e-6)
        assert r["raw"]["k99"] == 1 + next(k for k in range(K + 1) if (sig + sum(trans[:k])) / (sig + sum(trans)) >= 0.99)
        dec = r["decomposition"]
        assert dec["a"] == pytest.approx((w_of(blocks) * A[1:]).tolist(), abs=1e-4)
        r_true = (m * (torch.tensor(S, dtype=torch.float64)[:, None] ** 2 * F[:, 1:] ** 2).sum(0)).sqrt()
        assert dec["r"] == pytest.approx(r_true.tolist(), abs=1e-4)
        assert dec["corr_r_p_ood"] == pytest.approx(float(np.corrcoef(r_true, P_OOD[1:])[0, 1]), abs=1e-4)
        assert r["stability"]["cos_global_mean"] > 0.99 and len(r["stability"]["windows"]) == T - 10 + 1
        assert r["null_shuffle"]["n"] == 200 and 0 <= r["null_random_directions"]["percentile"] <= 100
    dirs = geo.load_directions(os.path.join(run, "analysis", "backbone_directions.safetensors"))
    for l, (v, Gk) in planted.items():
        vb = flatten(dirs[f"v_b.block{l}"], trunk_keys(2, l)).double()
        assert float(vb @ v) > 0.9999                      # the planted direction, with a(T) > 0
        assert abs(float(flatten(dirs[f"pc2.block{l}"], trunk_keys(2, l)).double() @ Gk[0])) > 0.9999
    vt = flatten(dirs["v_b.trunk"], trunk_keys(2)).double()
    assert float(vt @ torch.cat([W[0] * planted[0][0], W[1] * planted[1][0]])) / math.hypot(*W) > 0.9999
    assert {"definitions", "snapshot_steps", "anchor", "provenance", "summary"} <= set(res)
    assert res["provenance"]["peak_host_memory_mib"] > 0
    for f in res["files"]:
        assert os.path.exists(os.path.join(run, "analysis", f))


def test_matched_null_coherence_and_weight_decay(done, snapshots):
    """The new yardsticks against dense computations on the planted run's snapshots."""
    run, _, res, _ = done
    snap = lambda s: snapshots.read(run, s)  # noqa: E731
    cfg = make_config(preset="tiny")
    shrink = np.cumprod([1 - lr_at(cfg, t) * cfg.weight_decay for t in range(STEPS[-1])])
    dirs = geo.load_directions(os.path.join(run, "analysis", "backbone_directions.safetensors"))
    for g, blocks in GROUPS:
        keys = trunk_keys(2) if g == "trunk" else trunk_keys(2, blocks[0])
        th = {s: flatten(snap(s), keys).double() for s in STEPS}
        X = torch.stack([th[s] - th[0] for s in STEPS[1:]])
        d2 = torch.diff(torch.cat([torch.zeros(1, X.shape[1], dtype=torch.float64), X]), dim=0).pow(2).sum(1)
        r = res["results"][g]
        assert r["null_matched_pc1"] == pytest.approx(geo.matched_null_pc1(d2), abs=1e-9)
        assert r["null_matched"]["observed"] == r["raw"]["pc1"]
        assert res["summary"][g]["null_matched_pc1"] == r["null_matched_pc1"]
        assert r["coherence"] == pytest.approx(float(X[-1] @ X[-1] / d2.sum()), rel=1e-6)
        assert r["coherence_running"] == pytest.approx((X.pow(2).sum(1) / d2.cumsum(0)).tolist(), rel=1e-6)
        e0 = th[0] / th[0].norm()
        vb = flatten(dirs[f"v_b.{g}"], keys).double()
        wd = r["weight_decay"]
        assert r["cos_vb_theta0"] == pytest.approx(float(-vb @ e0), abs=1e-6)
        assert wd["share_e0"] == pytest.approx(((X @ e0) ** 2 / X.pow(2).sum(1)).tolist(), rel=1e-5, abs=1e-9)
        want = [(1 - shrink[s - 1]) * float(th[0].norm()) for s in STEPS[1:]]
        assert wd["decay_displacement"] == pytest.approx(want, rel=1e-9)
        Xr = X - (X @ e0)[:, None] * e0
        sv = torch.linalg.svdvals(Xr) ** 2
        assert r["pc1_decay_removed"] == pytest.approx(float(sv[0] / sv.sum()), abs=1e-6)
        corr = geo.corr_levels_and_differences(r["decomposition"]["r"], P_OOD[1:])["differences"]
        assert r["decomposition"]["corr_r_p_ood_diff"] == pytest.approx(corr, abs=1e-9)
    assert os.path.exists(os.path.join(run, "analysis", "trajectory_pca_decay_share.png"))


def test_switching_at_planted_steps(done, snapshots):
    run, _, res, _ = done
    sw = res["switching"]
    assert sw["peaks"] == [100, 260] and sw["troughs"] == [160, 340]
    assert [(q["peak"], q["trough"]) for q in sw["pairs"]] == PAIRS
    assert sw["v_sw_pair"] == 0 and sw["pairs"][0]["prominence"] > sw["pairs"][1]["prominence"]  # 0.35 > 0.25
    for g, blocks in GROUPS:
        c = [coords(STEPS.index(sp), STEPS.index(st), blocks) for sp, st in PAIRS]
        for q, ci in zip(sw["groups"][g]["pairs"], c):
            assert q["backbone_overlap"] == pytest.approx(abs(float(ci[0] / ci.norm())), abs=1e-5)
            assert q["E_2_6"] == pytest.approx(float(ci[1:6].norm() ** 2 / ci[1:].norm() ** 2), abs=1e-5)  # PCs 2-6
        assert sw["groups"][g]["pairwise_cos"][0][1] == pytest.approx(abs(float(c[0] @ c[1] / (c[0].norm() * c[1].norm()))), abs=1e-5)
    d = geo.load_directions(os.path.join(run, "analysis", "switch_directions.safetensors"))
    diff = {k: snapshots.read(run, 260)[k].double() - snapshots.read(run, 340)[k].double() for k in trunk_keys(2)}
    assert geo.cos(d["v_sw1.trunk"], diff) > 0.9999


def test_update_alignment_flip(done, tmp_path, snapshots):
    run, _, _, res = done
    assert res["u_steps"] == STEPS[1:] and res["u_prev_steps"] == STEPS[:-1]
    assert res["phases"]["early"] == "t < 80" and res["phases"]["late"] == "t > 240"
    for g, blocks in GROUPS:
        exp = [cos_backbone(i, i - 1, blocks) for i in range(1, len(STEPS))]
        r = res["groups"][g]
        assert np.allclose(r["C"], exp, atol=1e-5) and np.allclose(r["abs_C"], np.abs(exp), atol=1e-5)
        # each update is labelled by its midpoint, 10 steps before its later snapshot
        assert r["t_star"] == r["t_star_persistent"] == FLIP - 10 and r["early_sign"] == 1
        assert r["by_end_step"]["t_star"] == FLIP and res["summary"][g]["t_star_end"] == FLIP
        mids = [s - 10 for s in STEPS[1:]]
        for labels, pm in ((STEPS[1:], r["by_end_step"]["phase_means"]), (mids, r["phase_means"])):
            early = [c for c, t in zip(exp, labels) if t < 80]
            assert pm["early"]["C"] == pytest.approx(np.mean(early), abs=1e-6)
    assert res["update_mid_steps"] == [s - 10 for s in STEPS[1:]]
    # the matched random walk: with consecutive updates its C(t) are the components of the top right singular
    # vector of L diag(||d||) (the walk's rows in the basis of its increments)
    for g, blocks in GROUPS:
        r = res["groups"][g]
        n = torch.tensor(r["u_norm"], dtype=torch.float64)
        v = torch.linalg.svd(torch.ones(T, T, dtype=torch.float64).tril() * n)[2][0]
        assert r["matched_walk_update_C"] == pytest.approx(v.abs().tolist(), abs=1e-9)
        assert r["matched_walk"]["t_star"] is None and min(r["matched_walk_update_C"]) > 0
    # the same v_b as the PCA script: C(t) from the saved direction and the snapshots themselves
    vb = geo.load_directions(os.path.join(run, "analysis", "backbone_directions.safetensors"))["v_b.block0"]
    u = {k: snapshots.read(run, 300)[k].double() - snapshots.read(run, 280)[k].double() for k in vb}
    assert geo.cos(u, vb) == pytest.approx(res["groups"]["block0"]["C"][STEPS.index(300) - 1], abs=1e-5)
    # --lag 40: u(t) = theta(t) - theta(t - 40), from step 40 on
    out = str(tmp_path / "lag.json")
    bua.main(["--run", run, "--lag", "40", "--out", out])
    lag = json.load(open(out))
    assert lag["u_steps"] == STEPS[2:] and lag["u_prev_steps"] == STEPS[:-2]
    assert lag["groups"]["trunk"]["C"] == pytest.approx([cos_backbone(i, i - 2, [0, 1]) for i in range(2, len(STEPS))], abs=1e-5)


def test_no_switches_is_reported_not_fatal(tmp_path, done):
    run = str(tmp_path / "flat")
    for f in ("snapshots", "config.json", "status.json"):
        (shutil.copytree if f == "snapshots" else shutil.copy)(os.path.join(done[0], f), os.path.join(run, f))
    with open(os.path.join(run, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(dict(step=s, p_ood=0.0)) + "\n" for s in STEPS)
    tpu.main(["--run", run, "--null-draws", "20"])
    res = json.load(open(os.path.join(run, "analysis", "trajectory_pca_uncentered.json")))
    assert res["switching"]["pairs"] == [] and "no peaks/troughs" in res["switching"]["reason"]
    assert res["results"]["block0"]["decomposition"]["corr_r_p_ood"] is None
    assert not os.path.exists(os.path.join(run, "analysis", "switch_directions.safetensors"))
    assert set(geo.load_directions(os.path.join(run, "analysis", "backbone_directions.safetensors"))) == \
        {f"{n}.{g}" for n in ("v_b", "pc2") for g in ("block0", "block1", "trunk")}
