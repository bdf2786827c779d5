"""geometry.py against dense references and cases with known answers (CPU, a few seconds)."""
import math
import os

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import geometry as geo
from runs import Trajectory
from config import UsageError, lr_at, make_config
from model import GPT, flatten, make_optimizer, optimizer_step, trunk_keys

TINY = dict(n_layer=2, d_model=8, n_head=2, d_ff=16, ctx=8)


def write_snapshot(run, step, tensors):
    os.makedirs(os.path.join(run, "snapshots"), exist_ok=True)
    save_file({k: v.detach().float().contiguous() for k, v in tensors.items()},
              os.path.join(run, "snapshots", f"step_{step:06d}.safetensors"))


def fake_run(tmp_path, steps=range(0, 260, 20), seed=0):
    """Snapshots of a tiny GPT following a drift along one random direction plus a random walk."""
    torch.manual_seed(seed)
    sd = {k: v.clone() for k, v in GPT(50, **TINY).state_dict().items()}
    drift = {k: torch.randn_like(v) for k, v in sd.items()}
    run = str(tmp_path / "run")
    for i, s in enumerate(steps):
        if i:
            sd = {k: v + 0.01 * drift[k] * (1 + i % 3) + 0.01 * torch.randn_like(v) for k, v in sd.items()}
        write_snapshot(run, s, sd)
    return run


def dense_rows(run, steps, keys, anchor=0):
    load = lambda s: flatten(_load(run, s), keys).double()
    return torch.stack([load(s) - load(anchor) for s in steps])


def _load(run, step):
    from safetensors.torch import load_file
    return load_file(os.path.join(run, "snapshots", f"step_{step:06d}.safetensors"))


def assert_same_up_to_sign(a, b, tol=1e-6):
    a, b = a.double(), b.double()
    assert min((a - b).abs().max(), (a + b).abs().max()) < tol


@pytest.mark.parametrize("variant", ["raw", "normalized", "centered"])
def test_gram_pca_equals_dense_svd(tmp_path, variant):
    run = fake_run(tmp_path)
    traj = Trajectory(run, device="cpu")
    grams = traj.grams()
    for name, keys in traj.groups.items():
        G = geo.group_grams(grams, traj.groups)[name]
        X = dense_rows(run, traj.row_steps, keys)
        Y = {"raw": X, "normalized": X / X.norm(dim=1, keepdim=True), "centered": X - X.mean(0)}[variant]
        _, S, Vt = torch.linalg.svd(Y, full_matrices=False)
        p = geo.pca(G, geo.rows(G, variant))
        k = min(len(S), 5)
        assert torch.allclose(p.rho[:k], (S**2 / (S**2).sum())[:k], atol=1e-10)
        assert torch.allclose(p.sigma[:k], S[:k], rtol=1e-8)
        cum = (S**2).cumsum(0) / (S**2).sum()
        assert p.k95 == int((cum >= 0.95).nonzero()[0]) + 1 and p.k99 == int((cum >= 0.99).nonzero()[0]) + 1
        dirs = traj.directions(keys, p.coef(3))
        for j in range(3):
            assert_same_up_to_sign(flatten(dirs[j], keys), Vt[j], tol=1e-5)
        if variant == "raw":  # sign convention: a(T) > 0, and a(t) from the Gram equals X v_b
            a = geo.project(G, p.coef(1)[:, 0])
            assert a[-1] > 0
            assert torch.allclose(a, X @ flatten(dirs[0], keys).double(), rtol=1e-5, atol=1e-6)


def test_one_pass_gives_blocks_and_trunk(tmp_path, monkeypatch):
    run = fake_run(tmp_path, steps=range(0, 100, 20))
    traj = Trajectory(run, device="cpu")
    reads = []
    orig = traj.load
    monkeypatch.setattr(traj, "load", lambda s, keys, **kw: reads.extend((s, k) for k in keys) or orig(s, keys, **kw))
    grams = traj.grams()
    rows_read = [r for r in reads if r[0] != 0]
    assert len(rows_read) == len(set(rows_read)) == len(traj.row_steps) * len(traj.groups["trunk"])
    gg = geo.group_grams(grams, traj.groups)
    assert torch.allclose(gg["trunk"], gg["block0"] + gg["block1"])
    X = dense_rows(run, traj.row_steps, traj.groups["trunk"])
    assert torch.allclose(gg["trunk"], X @ X.T, rtol=1e-10)


def test_random_walk_matches_theory():
    """Gaussian increments in D = 20000: increments are nearly orthogonal with nearly equal norms, so
    PC1 concentrates (sd about 0.003 per draw) at the T = 50 value 0.8107 (continuum 8/pi^2 = 0.8106);
    centered: 0.6084 (continuum 6/pi^2 = 0.6079). Mean of 4 draws, tolerance about 4 sd of the mean."""
    gen = torch.Generator().manual_seed(1)
    theory = geo.random_walk_theory(50)
    assert theory["uncentered"][0] == pytest.approx(0.8106, abs=1e-4) and theory["centered"][0] == pytest.approx(0.6079, abs=1e-4)
    assert theory["uncentered_T"][0] == pytest.approx(theory["uncentered"][0], abs=1e-3)
    raw, cen = [], []
    for _ in range(4):
        X = torch.randn(50, 20000, generator=gen, dtype=torch.float64).cumsum(0)
        G = X @ X.T
        raw.append(geo.pca(G).pc1)
        cen.append(geo.pca(G, geo.rows(G, "centered")).pc1)
    assert sum(raw) / 4 == pytest.approx(8 / math.pi**2, abs=0.006)
    assert sum(cen) / 4 == pytest.approx(6 / math.pi**2, abs=0.006)


def test_planted_direction_and_decomposition():
    gen = torch.Generator().manual_seed(2)
    D, T = 5000, 30
    v = torch.randn(D, generator=gen, dtype=torch.float64)
    v /= v.norm()
    a_true = 5 * torch.arange(1, T + 1, dtype=torch.float64).sqrt()
    noise = 0.005 * torch.randn(T, D, generator=gen, dtype=torch.float64)  # |noise row| ~ 0.35
    X = a_true[:, None] * v + noise
    G = X @ X.T
    c = geo.pca(G).coef(1)[:, 0]
    v_b = X.T @ c
    assert abs(float(v_b @ v)) > 0.99 and float(v_b.norm()) == pytest.approx(1, abs=1e-10)
    dec = geo.decompose(G, c)
    a = torch.tensor(dec["a"], dtype=torch.float64) * torch.sign(torch.tensor(float(v_b @ v)))
    assert torch.allclose(a, a_true, rtol=0.01)
    r = (X - (X @ v_b)[:, None] * v_b).norm(dim=1)
    assert torch.allclose(torch.tensor(dec["r"], dtype=torch.float64), r, rtol=1e-6)
    assert torch.allclose(torch.tensor(dec["f_b"], dtype=torch.float64), (X @ v_b) ** 2 / X.norm(dim=1) ** 2)


def drift_with_transverse(oscillating: bool, T=50, D=3000, seed=3):
    """Drift along v (unit steps) plus transverse increments of norm ~10: +e_k, -e_k pairs along orthogonal
    e_k (oscillating), or iid Gaussian (a transverse random walk)."""
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, T + 1, generator=gen, dtype=torch.float64))
    v, E = Q[:, 0], Q[:, 1:].T
    if oscillating:  # e_k then -e_k: the transverse part returns to zero every second step
        trans = torch.stack([E[t // 2] * (1 if t % 2 == 0 else -1) for t in range(T)])
    else:
        trans = torch.randn(T, D, generator=gen, dtype=torch.float64) / math.sqrt(D)
    d = v + 10 * trans
    X = d.cumsum(0)
    return X @ X.T


def test_shuffle_null():
    """Shuffling keeps the multiset of increments and only destroys their order. A pure drift with a
    mean-reverting transverse oscillation (+e_k, -e_k on consecutive steps) is almost a line
    (observed PC1 0.95): the transverse excursions never accumulate. Reshuffled, each +e_k and -e_k
    land far apart and each excursion lasts ~T/3 steps: the transverse energy grows from 2,500 to
    ~40,000 (against 43,000 along v), and the null PC1 falls to 0.73 +- 0.02: the shuffle null of this
    pure-drift path is far below its PC1, by design.
    With iid transverse increments (a drift plus a random walk) the order carries no information, and
    the observed PC1 sits inside the shuffle distribution; likewise for a pure random walk."""
    G = drift_with_transverse(oscillating=True)
    null = geo.shuffle_null(G, n=1000, seed=0)
    assert null["observed"] > 0.9 and null["mean"] < 0.8 and null["percentile"] == 100.0
    assert null["observed"] - null["mean"] > 10 * null["sd"]
    for G in (drift_with_transverse(oscillating=False),
              (lambda X: X @ X.T)(torch.randn(50, 20000, generator=torch.Generator().manual_seed(4), dtype=torch.float64).cumsum(0))):
        null = geo.shuffle_null(G, n=1000, seed=0)
        assert 2.5 < null["percentile"] < 97.5 and abs(null["observed"] - null["mean"]) < 3 * null["sd"]


def test_direction_null():
    """Equal-norm increments in random directions of R^D form a random walk: mean PC1 = the exact
    large-D value for T. Both samplers of unit-vector Grams (Bartlett for D >= T, explicit Gaussian
    vectors for D < T) give unit diagonals and E cos^2 = 1/D."""
    T = 40
    x = (1 + 0.01 * torch.arange(T, dtype=torch.float64).sin()).cumsum(0)  # a straight path, steps of norm ~1
    G = torch.outer(x, x)
    null = geo.direction_null(G, D=3_000_000, n=1000, seed=0)
    assert null["mean"] == pytest.approx(geo.random_walk_theory(T)["uncentered_T"][0], abs=2e-3)
    assert null["observed"] == pytest.approx(1, abs=1e-3) and null["percentile"] == 100.0
    import numpy as np
    W = geo._unit_gram(np.random.default_rng(0), 400, 6, 10)        # Bartlett
    Z = geo._unit_gram(np.random.default_rng(0), 400, 6, 5)         # Gaussian vectors (D < T)
    assert torch.allclose(W.diagonal(dim1=1, dim2=2), torch.ones(400, 6, dtype=torch.float64))
    off = ~torch.eye(6, dtype=torch.bool)
    assert (W[:, off] ** 2).mean() == pytest.approx(1 / 10, rel=0.1)  # E cos^2 = 1/D
    assert (Z[:, off] ** 2).mean() == pytest.approx(1 / 5, rel=0.1)


def test_windows_match_dense_svd():
    gen = torch.Generator().manual_seed(5)
    T, D, W = 16, 400, 5
    X = (torch.randn(T, D, generator=gen, dtype=torch.float64) + 0.3 * torch.randn(D, generator=gen, dtype=torch.float64)).cumsum(0)
    G = X @ X.T
    c = geo.pca(G).coef(1)[:, 0]
    v_b = X.T @ c
    steps = list(range(200, 200 * (T + 1), 200))
    for reanchor in (False, True):
        out = geo.windows(G, W, steps, c, reanchor=reanchor)
        assert len(out) == T - W + 1
        prev = None
        for w0, rec in enumerate(out):
            Y = X[w0:w0 + W]
            Y = (Y - Y[0])[1:] if reanchor else Y
            _, S, Vt = torch.linalg.svd(Y, full_matrices=False)
            assert rec["steps"] == steps[w0:w0 + W] and ("window start" in rec["rows"]) == reanchor
            assert rec["pc1"] == pytest.approx(float(S[0] ** 2 / (S**2).sum()), abs=1e-10)
            assert rec["cos_global"] == pytest.approx(abs(float(Vt[0] @ v_b)), abs=1e-8)
            assert rec["cos_prev"] == (None if prev is None else pytest.approx(abs(float(Vt[0] @ prev)), abs=1e-8))
            prev = Vt[0]


def lm_loss(model, batch):
    logits = model(batch[:, :-1])
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))


def test_rayleigh_fisher_and_canonical_order():
    """q(v) equals v^T F v with F = G^T G / M formed explicitly (D = 2304). Gradients are requested with
    the keys in reverse order and directions have a distinct structure per tensor, so a flattening of
    gradients and directions in two different orders would break the agreement with the
    order-independent dict-wise products computed from .grad below."""
    torch.manual_seed(6)
    model = GPT(50, n_layer=2, d_model=12, n_head=2, d_ff=24, ctx=8)
    keys = trunk_keys(2)
    batches = [torch.randint(0, 50, (2, 9)) for _ in range(5)]
    G = geo.batch_gradients(model, batches, lm_loss, keys[::-1])
    params = dict(model.named_parameters())
    grads = []
    for b in batches:
        model.zero_grad()
        lm_loss(model, b).backward()
        grads.append({k: params[k].grad.clone() for k in keys})
    assert G.shape == (5, 2304) and torch.equal(G[0], flatten(grads[0], keys))
    dirs = []
    for i in range(3):
        d = {k: torch.randn(params[k].shape) * (j + 1) ** (i + 1) for j, k in enumerate(keys)}
        n = math.sqrt(geo.dot(d, d))
        dirs.append({k: t / n for k, t in d.items()})
    q = geo.rayleigh(G, dirs, keys[::-1])
    F = G.double().T @ G.double() / 5
    for i, d in enumerate(dirs):
        v = flatten(d, keys).double()
        assert float(q[i]) == pytest.approx(float(v @ F @ v), rel=1e-6)
        assert float(q[i]) == pytest.approx(sum(geo.dot(g, d) ** 2 for g in grads) / 5, rel=1e-5)
    lam, V = torch.linalg.eigh(F)
    top = geo.fisher_top(G, keys, {k: params[k].shape for k in keys})
    assert top["lambda1"] == pytest.approx(float(lam[-1]), rel=1e-8) and top["trace"] == pytest.approx(float(F.trace()), rel=1e-8)
    assert_same_up_to_sign(flatten(top["u1"], keys), V[:, -1], tol=1e-5)
    rand = geo.random_directions(dirs[0], 4, [dirs[0]], seed=0)
    M = torch.tensor([[geo.dot(a, b) for b in [dirs[0]] + rand] for a in [dirs[0]] + rand])
    assert torch.allclose(M, torch.eye(5), atol=1e-6)
    s = geo.fisher_summary(G, keys, {"v_b": dirs[0], "pc2": dirs[1]}, K=4, seed=0)
    assert s["alpha"] == pytest.approx(float(q[0]) / (sum(geo.rayleigh(G, rand, keys).tolist()) / 4), rel=1e-6)
    assert s["u1_overlap"]["v_b"] == pytest.approx(abs(float(flatten(dirs[0], keys).double() @ V[:, -1])), abs=1e-5)


def test_save_load_directions(tmp_path):
    d = {"v_b": {"blocks.0.mlp.fc.weight": torch.randn(4, 3)}, "pc2": {"blocks.0.attn.qkv.weight": torch.randn(6, 2)}}
    geo.save_directions(str(tmp_path / "d.safetensors"), d, {"anchor": 0})
    back = geo.load_directions(str(tmp_path / "d.safetensors"))
    assert back.keys() == d.keys() and all(torch.equal(back[n][k], d[n][k]) for n in d for k in d[n])
    assert geo.cos(d["v_b"], d["v_b"]) == pytest.approx(1)


def test_bad_input(tmp_path):
    with pytest.raises(UsageError, match="no snapshots folder"):
        Trajectory(str(tmp_path / "nothing"))
    os.makedirs(tmp_path / "empty" / "snapshots")
    with pytest.raises(UsageError, match="no step_XXXXXX.safetensors"):
        Trajectory(str(tmp_path / "empty"))
    run = fake_run(tmp_path, steps=range(0, 80, 20))
    with pytest.raises(UsageError, match="step 999 has no snapshot"):
        Trajectory(run).load(999, trunk_keys(2))
    with pytest.raises(UsageError, match="no snapshot after anchor step 60"):
        Trajectory(run, anchor=60)
    with pytest.raises(UsageError, match="anchor 7 has no snapshot"):
        Trajectory(run, anchor=7)
    sd = _load(run, 40)
    sd["blocks.0.attn.proj.weight"] = torch.zeros(4, 4)
    write_snapshot(run, 40, sd)
    with pytest.raises(UsageError, match="step 40 does not match step 0: blocks.0.attn.proj.weight"):
        Trajectory(run)
    sd = _load(run, 20)
    write_snapshot(run, 40, sd)
    sd["blocks.1.mlp.fc.weight"][3, 2] = float("nan")
    write_snapshot(run, 60, sd)
    traj = Trajectory(run)
    with pytest.raises(UsageError, match="step 60: blocks.1.mlp.fc.weight contains NaN"):
        traj.grams()
    with pytest.raises(UsageError, match="not a trunk key"):
        geo.canonical(["wte.weight"])


# ----------------------------------------------------------------------------- matched null, coherence
def test_matched_null_closed_forms():
    """Equal norms: the exact T-step random-walk value (8/pi^2 as T grows); one nonzero increment: 1;
    two nonzero increments a, b at rows t1 < t2 of T: the rows are (a, 0) for n1 = t2 - t1 rows and
    (a, b) for n2 = T - t2 rows (in the basis of the two increments), whose 2 x 2 second-moment matrix
    [[a^2 (n1 + n2), a b n2], [a b n2, b^2 n2]] has a closed-form top eigenvalue."""
    walk = geo.random_walk_theory(50)["uncentered_T"][0]
    assert geo.matched_null_pc1(torch.ones(50)) == pytest.approx(walk, abs=1e-12)
    assert geo.matched_null_pc1(torch.ones(2000)) == pytest.approx(8 / math.pi**2, abs=1e-5)
    for i in (0, 7, 19):
        one = torch.zeros(20).index_fill(0, torch.tensor([i]), 3.0)
        assert geo.matched_null_pc1(one) == pytest.approx(1, abs=1e-12)
    T, t1, t2, a, b = 30, 4, 17, 2.0, 5.0
    n = torch.zeros(T)
    n[t1], n[t2] = a**2, b**2
    n1, n2 = t2 - t1, T - t2
    tr, det = a**2 * (n1 + n2) + b**2 * n2, a**2 * b**2 * n1 * n2
    assert geo.matched_null_pc1(n) == pytest.approx((tr + math.sqrt(tr**2 - 4 * det)) / 2 / tr, abs=1e-12)
    assert geo.matched_null_pc1(7 * n) == pytest.approx(geo.matched_null_pc1(n), abs=1e-12)
    # warmup and decay (small steps at both ends) make the walk more colinear than equal steps
    t = torch.arange(50, dtype=torch.float64)
    bump = torch.sin(math.pi * (t + 0.5) / 50) ** 2
    assert geo.matched_null_pc1(bump) > geo.matched_null_pc1(torch.ones(50)) + 0.01
    with pytest.raises(UsageError):
        geo.matched_null_pc1(torch.zeros(5))


def test_matched_null_against_draws():
    """Monte-Carlo walks with the planted norms in random directions of R^D: at small D their PC1 scatters
    (sd ~ 1/sqrt(D)) around a mean below the exact formula, and mean and sd close in on it as D grows
    (at the paper's D ~ 3e6 per block the null is a number, not a distribution). An independent sampler
    (explicit Gaussian vectors, dense SVD) agrees with the Gram sampler at D = 8."""
    norms = torch.tensor([0.2, 1.0, 3.0, 2.0, 1.5, 1.0, 0.5, 0.3, 0.2, 0.1], dtype=torch.float64) ** 2
    exact = geo.matched_null_pc1(norms)
    draws = {D: geo.matched_null_draws(norms, D, n=2000, seed=1) for D in (8, 100, 10_000, 1_000_000)}
    gaps = [abs(float(d.mean()) - exact) for d in draws.values()]
    sds = [float(d.std()) for d in draws.values()]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 2e-5
    assert sds[-1] < 2e-4 and sds[0] > 100 * sds[-1]
    means = {D: float(d.mean()) for D, d in draws.items()}
    gen = torch.Generator().manual_seed(2)
    Z = torch.randn(2000, 10, 8, generator=gen, dtype=torch.float64)
    X = (Z / Z.norm(dim=2, keepdim=True) * norms.sqrt()[:, None]).cumsum(1)
    s = torch.linalg.svdvals(X) ** 2
    direct = s[:, 0] / s.sum(1)
    se = float(direct.std()) / math.sqrt(2000) * math.sqrt(2)
    assert float(direct.mean()) == pytest.approx(means[8], abs=4 * se)
    # the matched null of rows whose increments are orthogonal is their own PC1
    G = geo.matched_walk(norms)
    m = geo.matched_null(G)
    assert m["pc1"] == pytest.approx(m["observed"], abs=1e-12) and m["excess"] == pytest.approx(0, abs=1e-12)
    assert geo.direction_null(G, D=10_000_000, n=200)["mean"] == pytest.approx(exact, abs=1e-4)


def test_coherence_known_answers():
    """Orthogonal increments: 1 at every row; the same increment repeated: ||t d||^2 / (t ||d||^2) = t;
    +d, -d, +d, ...: 1, 0, 1, 0."""
    c = geo.coherence(geo.matched_walk(torch.rand(12, dtype=torch.float64) + 0.1))
    assert c["coherence"] == pytest.approx(1) and c["running"] == pytest.approx([1.0] * 12)
    t = torch.arange(1, 9, dtype=torch.float64)
    assert geo.coherence(torch.outer(t, t))["running"] == pytest.approx(t.tolist())
    x = torch.tensor([1.0, 0, 1, 0, 1, 0], dtype=torch.float64)
    c = geo.coherence(torch.outer(x, x))
    assert c["running"] == pytest.approx([1, 0, 1 / 3, 0, 1 / 5, 0]) and c["coherence"] == pytest.approx(0)


# ----------------------------------------------------------------------------- weight-decay decomposition
def decay_trajectory(learned: float, T=40, D=3000, seed=7):
    """theta(t) = s(t) theta0 + learned * w(t), w a random walk orthogonal to theta0 (planted learned part);
    returns (Ga, X, theta0, W, s) with Ga the Gram of [x(1..T); theta0]."""
    gen = torch.Generator().manual_seed(seed)
    theta0 = torch.randn(D, generator=gen, dtype=torch.float64)
    s = torch.cumprod(torch.full((T + 1,), 1 - 4e-3, dtype=torch.float64), 0) / (1 - 4e-3)  # s(0) = 1
    W = torch.randn(T, D, generator=gen, dtype=torch.float64).cumsum(0) * 0.02
    W -= (W @ theta0)[:, None] * theta0 / (theta0 @ theta0)
    X = (s[1:, None] - 1) * theta0 + learned * W
    Z = torch.cat([X, theta0[None]])
    return Z @ Z.T, X, theta0, learned * W, s


def test_decay_only_trajectory_is_all_backbone():
    Ga, X, theta0, _, s = decay_trajectory(learned=0.0)
    G = geo.split_anchor(Ga)[0]
    c = geo.pca(G).coef(1)[:, 0]
    wd = geo.weight_decay_split(Ga, c, s[1:].tolist())
    assert wd["cos_vb_theta0"] == pytest.approx(1, abs=1e-9) and wd["share_e0"] == pytest.approx([1.0] * 40)
    assert wd["along"] == pytest.approx(X.norm(dim=1).tolist(), rel=1e-9)             # x(t) = -(1 - s) theta0
    assert wd["decay_displacement"] == pytest.approx(wd["along"], rel=1e-9)
    assert wd["decay_share_final"] == pytest.approx(1)
    assert wd["pc1_decay_removed"] is None and "nothing is left" in wd["decay_removed_note"]


def test_decay_removed_drift_is_the_planted_learned_part():
    Ga, X, theta0, L, s = decay_trajectory(learned=1.0)
    G = geo.split_anchor(Ga)[0]
    p = geo.pca(G)
    wd = geo.weight_decay_split(Ga, p.coef(1)[:, 0], s[1:].tolist())
    R = geo.decay_removed_rows(Ga)
    assert torch.allclose(R @ Ga @ R.T, L @ L.T, rtol=1e-9, atol=1e-9)
    pl = geo.pca(L @ L.T)
    assert wd["pc1_decay_removed"] == pytest.approx(pl.pc1, abs=1e-9) and wd["k95_decay_removed"] == pl.k95
    null = geo.matched_null_pc1(geo.increment_norms_sq(L @ L.T))
    assert wd["null_matched_pc1_decay_removed"] == pytest.approx(null, abs=1e-9)
    v_b = X.T @ p.coef(1)[:, 0]
    e0 = theta0 / theta0.norm()
    assert wd["cos_vb_theta0"] == pytest.approx(float(-v_b @ e0), abs=1e-9)
    assert wd["share_e0"] == pytest.approx(((X @ e0) ** 2 / (X**2).sum(1)).tolist(), rel=1e-9)
    assert wd["decay_displacement"] == pytest.approx(((1 - s[1:]) * theta0.norm()).tolist(), rel=1e-9)
    assert 0 < wd["share_e0_final"] < 1 and abs(wd["cos_vb_theta0"]) < 1


def test_grams_with_anchor_row(tmp_path):
    run = fake_run(tmp_path, steps=range(0, 100, 20))
    traj = Trajectory(run, anchor=20, device="cpu")
    Ga = geo.group_grams(traj.grams(anchor_row=True), traj.groups)["block1"]
    keys = traj.groups["block1"]
    Z = torch.cat([dense_rows(run, traj.row_steps, keys, anchor=20),
                   flatten(_load(run, 20), keys).double()[None]])
    assert torch.allclose(Ga, Z @ Z.T, rtol=1e-10)
    G = geo.group_grams(traj.grams(), traj.groups)["block1"]
    assert torch.allclose(geo.split_anchor(Ga)[0], G, rtol=1e-12)


DECAY_CASES = dict(
    adamw={}, sgd_l2=dict(optimizer="sgd", weight_decay=0.5, wd_mode="l2"), no_decay=dict(weight_decay=0.0),
    sgd_l2_momentum=dict(optimizer="sgd", momentum=0.9, weight_decay=0.05, wd_mode="l2", lr=0.3),
    sgd_l2_nesterov=dict(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=0.05, wd_mode="l2",
                         lr=0.3),
    sgdw_nesterov=dict(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=0.5, lr=0.3))


@pytest.mark.parametrize("opt", list(DECAY_CASES))
def test_decay_factors_follow_the_real_optimizer(opt):
    """With zero loss gradients, optimizer_step takes each trunk weight to s(t) theta(0)."""
    cfg = make_config(preset="tiny", steps=30, warmup=5, **DECAY_CASES[opt])
    model = GPT(50, **TINY)
    w0 = model.blocks[1].mlp.fc.weight.detach().clone()
    opt_ = make_optimizer(model, cfg, torch.device("cpu"))
    s = geo.decay_factors(cfg.to_dict(), 30)
    for t in range(30):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer_step(opt_, cfg, lr_at(cfg, t))
        assert torch.allclose(model.blocks[1].mlp.fc.weight, s[t + 1] * w0, rtol=1e-5, atol=1e-7), t
    assert (s[-1] == 1.0) == (opt == "no_decay") and len(s) == 31
    adam_l2 = dict(cfg.to_dict(), optimizer="adamw", wd_mode="l2", weight_decay=0.1)
    assert geo.decay_factors(adam_l2, 5) is None


# ----------------------------------------------------------------------------- updates
def test_update_labels_and_matched_walk_alignment():
    steps = list(range(200, 2001, 200))
    pairs = geo.update_pairs(steps, 0, 200)
    assert pairs[0] == (200, 0) and [geo.midpoint(*p) for p in pairs] == [t - 100 for t in steps]
    fine = [600 + 50 * i for i in range(1, 29)]  # snapshots every 50 in (600, 2000]
    grid = geo.update_pairs(fine, 600, 200, grid=True)
    assert grid == [(t, t - 200) for t in range(800, 2001, 200)]
    assert len(geo.update_pairs(fine, 600, 200)) == 25  # overlapping: every snapshot with one 200 before
    # a walk with orthogonal increments: its C(t) is the matched walk's, all positive
    n = torch.rand(len(steps), dtype=torch.float64) + 0.2
    G = geo.matched_walk(n)
    E = geo.update_rows(pairs, steps)
    Cw = geo.matched_walk_alignment(G, E)
    assert torch.allclose(geo.update_cos(G, geo.pca(G).coef(1)[:, 0], E)["C"], Cw) and (Cw > 0).all()
    # C of the update equals the dense cosine
    gen = torch.Generator().manual_seed(8)
    X = torch.randn(len(steps), 300, generator=gen, dtype=torch.float64).cumsum(0)
    G = X @ X.T
    c = geo.pca(G).coef(1)[:, 0]
    al = geo.update_cos(G, c, geo.update_rows(geo.update_pairs(steps, 0, 400), steps))
    U = torch.stack([X[i] - X[i - 2] for i in range(1, len(steps)) if i >= 2] )
    v = X.T @ c
    assert torch.allclose(al["C"][1:], U @ v / U.norm(dim=1))
    assert al["C"][0] == pytest.approx(float(X[1] @ v / X[1].norm()))


# ----------------------------------------------------------------------------- Fisher owned by one batch
def test_fisher_with_one_planted_batch():
    """M = 32 mini-batch gradients; one of them planted 10^4 times larger: lambda_1 / trace -> 1 and every
    mean q(v) follows that batch, while the median over batches stays between the clean order statistics
    around the middle (it moves by one rank at most)."""
    gen = torch.Generator().manual_seed(9)
    sd = GPT(50, 1, 8, 2, 16, 8).state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items() if k in trunk_keys(1)}
    keys = trunk_keys(1)
    D = sum(math.prod(shapes[k]) for k in keys)
    G = torch.randn(32, D, generator=gen)
    unit = lambda d: {k: t / math.sqrt(geo.dot(d, d)) for k, t in d.items()}
    dirs = {"v_b": unit({k: torch.randn(shapes[k], generator=gen) for k in keys})}
    clean = geo.fisher_summary(G, keys, dirs, K=5, seed=0)
    Gp = G.clone()
    Gp[11] *= 1e4
    big = geo.fisher_summary(Gp, keys, dirs, K=5, seed=0)
    assert not clean["rank1"] and clean["lambda1_frac"] < 0.3
    assert big["rank1"] and big["lambda1_frac"] > 0.999 and big["q"]["v_b"] > 1e5 * clean["q"]["v_b"]
    p2 = sorted(float(x) ** 2 for x in geo.projections(G, [dirs["v_b"]], keys)[:, 0])
    assert p2[14] <= big["q_median"]["v_b"] <= p2[17]
    assert clean["q_median"]["v_b"] == pytest.approx((p2[15] + p2[16]) / 2, rel=1e-6)
    assert 0.3 < big["alpha_median"] / clean["alpha_median"] < 3
    assert big["grad_norms"][11] == pytest.approx(1e4 * clean["grad_norms"][11], rel=1e-4)


# ----------------------------------------------------------------------------- switching, correlations
def test_switching_pair_is_the_most_prominent():
    """The highest peak (0.8 at step 20, prominence 0.1) is not the most prominent one (0.5 at step 90,
    prominence 0.3): v_sw is the pair 90 -> 110."""
    p = [0.6, 0.7, 0.8, 0.74, 0.7, 0.7, 0.7, 0.2, 0.3, 0.5, 0.3, 0.1, 0.3, 0.3]
    metrics = [dict(step=10 * i, p_ood=v) for i, v in enumerate(p)]
    sw = geo.pair_switches([m["step"] for m in metrics], p, set(range(0, 140, 10)), 0)
    assert [(q["peak"], q["trough"]) for q in sw["pairs"]] == [(20, 70), (90, 110)]
    assert [q["prominence"] for q in sw["pairs"]] == pytest.approx([0.1, 0.3])
    peak, trough, info = geo.switching_pair(metrics, range(0, 140, 10), 0)
    assert (peak, trough, info["interval"]) == (90, 110, [90, 110]) and info["drop"] == pytest.approx(0.4)
    assert geo.replays_switch(range(80, 96), 90, 110) and geo.replays_switch([109], 110, 90)
    assert not geo.replays_switch(range(110, 126), 90, 110) and not geo.replays_switch(range(70, 90), 90, 110)


def test_correlation_on_levels_and_differences():
    gen = np.random.default_rng(0)
    t = np.arange(200.0)
    trend = geo.corr_levels_and_differences(t + gen.normal(0, 3, 200), t + gen.normal(0, 3, 200))
    assert trend["levels"] > 0.99 and abs(trend["differences"]) < 0.2 and trend["n"] == 200
    osc = geo.corr_levels_and_differences(np.sin(t) + t / 50, np.sin(t))
    assert osc["differences"] > 0.95
    assert geo.corr_levels_and_differences([1, 2], [2, 3])["levels"] is None
