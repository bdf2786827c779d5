"""geometry.py against dense references and cases with known answers (CPU, a few seconds)."""
import math
import os

import pytest
import torch
from safetensors.torch import save_file

import geometry as geo
from config import UsageError
from model import GPT, flatten, trunk_keys

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
    traj = geo.Trajectory(run, device="cpu")
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
    traj = geo.Trajectory(run, device="cpu")
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
        geo.Trajectory(str(tmp_path / "nothing"))
    os.makedirs(tmp_path / "empty" / "snapshots")
    with pytest.raises(UsageError, match="no step_XXXXXX.safetensors"):
        geo.Trajectory(str(tmp_path / "empty"))
    run = fake_run(tmp_path, steps=range(0, 80, 20))
    with pytest.raises(UsageError, match="step 999 has no snapshot"):
        geo.Trajectory(run).load(999, trunk_keys(2))
    with pytest.raises(UsageError, match="no snapshot after anchor step 60"):
        geo.Trajectory(run, anchor=60)
    with pytest.raises(UsageError, match="anchor 7 has no snapshot"):
        geo.Trajectory(run, anchor=7)
    sd = _load(run, 40)
    sd["blocks.0.attn.proj.weight"] = torch.zeros(4, 4)
    write_snapshot(run, 40, sd)
    with pytest.raises(UsageError, match="step 40 does not match step 0: blocks.0.attn.proj.weight"):
        geo.Trajectory(run)
    sd = _load(run, 20)
    write_snapshot(run, 40, sd)
    sd["blocks.1.mlp.fc.weight"][3, 2] = float("nan")
    write_snapshot(run, 60, sd)
    traj = geo.Trajectory(run)
    with pytest.raises(UsageError, match="step 60: blocks.1.mlp.fc.weight contains NaN"):
        traj.grams()
    with pytest.raises(UsageError, match="not a trunk key"):
        geo.canonical(["wte.weight"])
