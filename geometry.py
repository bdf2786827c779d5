"""Geometry of the parameter trajectory: streaming Gram-matrix PCA, backbone, nulls, Rayleigh
quotients.

Drift rows x(t) = theta(t) - theta(anchor), t in the row steps (anchor < t <= end), form X (T x D).
Nothing here holds X for a whole group: the T x T Gram G = X X^T is accumulated tensor by tensor
(float64, TF32 off), and every other quantity comes from G plus, for directions, a second
streamed pass. The one mechanism: rows Y = R X (R a T' x T matrix: identity, row normalization,
centering, increments, windows, re-anchoring) have Gram R G R^T; if R G R^T = U S^2 U^T, the right
singular vectors are v_k = X^T c_k with coefficients c_k = R^T u_k / s_k, and for any v = X^T c,
<x(t), v> = (G c)_t and <v, v'> = c^T G c'. All flattening goes through `model.flatten` over keys
put in the canonical order of `model.trunk_keys` (`canonical`), whatever order a caller passes.

    traj = Trajectory("runs/seed42", anchor=0)            # validates the snapshots
    grams = traj.grams()                                    # one pass: T x T Gram per trunk tensor
    G = group_grams(grams, traj.groups)["block0"]            # a group's Gram = sum of its tensors'
    p = pca(G)                                               # also pca(G, rows(G, "centered"))
    p.summary(); v_b = traj.directions(traj.groups["block0"], p.coef(1))[0]
    decompose(G, p.coef(1)[:, 0]); windows(G, 10, traj.row_steps, p.coef(1)[:, 0])
    shuffle_null(G); direction_null(G, traj.numel(keys)); random_walk_theory(T)

runs.Trajectory(run_dir, anchor=0, end=None, device="auto")  lazy, validated snapshots; .grams,
                                                        .directions (devices: common.pick_device(name,
                                                        float64=True): MPS becomes the CPU, TF32 off)
canonical(keys)                   the keys in canonical trunk order (UsageError for a non-trunk key)
group_grams(grams, groups)        {group: sum of its tensors' Grams}
rows(G, variant)                  R for "raw", "normalized" (unit rows), "centered", "increments"
pca(G, R=None) -> PCA             eigen-decomposition of R G R^T: .rho .sigma .U .pc1 .k95 .k99
                                  .coef(k);
                                  signs fixed so the last analysed row has coordinate >= 0 (raw:
                                  a(T) > 0)
project(G, c), decompose(G, c)    <x(t), v>; a(t), ||r(t)||, f_b(t) for v = X^T c
gram_cos(G, c1, c2)               cosine of X^T c1 and X^T c2
windows(G, W, steps, c_global, stride=1, reanchor=False)  per-window PC1, |cos| with global and
                                                          previous
update_cos(G, c, E=None)          C(t) = <u(t), v>/||u(t)|| of updates u = E X (default: consecutive
                                  rows)
rows_summary(G, D, null_draws)    PC1, k95/k99 (raw, normalized), drift, update alignment, nulls of
                                  one group
backbone(traj, groups, k)         {group: PCA}, {group: [v_1..v_k]} from one Gram pass and one
                                  direction pass
random_walk_theory(T=None)        8/((2k-1)^2 pi^2), centered 6/(k^2 pi^2), and their exact large-D
                                  values for T steps
shuffle_null(G, n, seed), direction_null(G, D, n, seed)  increments reshuffled / given random
                                                         directions
increment_norms_sq(G), matched_walk(n2)   ||d(t)||^2; Gram L diag(n2) L^T of the matched walk (D
                                          -> inf)
matched_null_pc1(n2), matched_null(G)     the reference null: top eigenvalue / trace of L
                                          diag(||d||^2) L^T
matched_null_draws(n2, D, n, seed)        the same walk at finite D (draws)
coherence(G)                      ||x(t)||^2 / sum_{s<=t} ||d(s)||^2, final and running
split_anchor(Ga), decay_removed_rows(Ga)  Grams with the anchor row
                                          (Trajectory.grams(anchor_row=True))
decay_factors(cfg, T), run_decay_factors  s(t): theta(t) = s(t) theta(0) under weight decay alone
weight_decay_split(Ga, c_b, factors)      e0 = theta(anchor)/||.||: cos_vb_theta0, share along e0,
                                          pure-decay
                                  displacement, PCA of the drift with its e0 component removed
update_pairs, update_rows, midpoint       u(t) = theta(t) - theta(t_prev) as rows E, its label (the
                                          midpoint)
update_cos(G, c, E), matched_walk_alignment(G, E)   C(t) = <u, v>/||u||; the same in the matched
                                                    random walk
find_extrema, pair_switches, switching_pair, switch_interval, replays_switch   the one v_sw and its
                                                                               batches
pearson, corr_levels_and_differences      correlations on levels and first differences
dot(a, b), cos(a, b), save_directions(path, dirs, meta), load_directions(path)   dict-directions
random_directions(like, K, against, seed)   K Gaussian directions orthonormal to `against` and each
                                            other
batch_gradients(model, batches, loss_fn, keys)  (M x D) float32 gradients, canonical order
projections(G, dirs, keys)        <g_i, v_j> (M x n)
rayleigh(G, dirs, keys)           q(v) = ||G v||^2 / M per direction
fisher_top(G, keys, shapes)       top eigenvector of G^T G / M through G G^T, lambda_1, trace,
                                  ||g_i||
fisher_summary(G, keys, dirs, K, seed)  q (mean) and q_median of named directions and K random ones,
                                        alpha,
                                  u1 overlaps, lambda_1 / trace and the rank-1 flag
rows_summary(G, D, ...), window_geometry(grams_a, numel, ...)  the window geometry of
                                                               the experiments
gaussian_draws(shapes, K, seed)   the raw Gaussian draws of random_directions
row_gram(G, keys, shapes), fisher_stats(GG, P, names)   fisher_summary from G G^T and projections
Record, record_backbone(rec, anchor, k)   trajectory record; v_1..v_k as coefficients on its rows
GradientRecord, gradient_products, loss_rows, span_orthonormal   gradient record: the gradients'
                                  Grams and inner products with the record's rows and the draws;
                                  directions in their span, random ones orthonormalized there
backbone(traj, groups, k)         v_b (and PCs 2..k) per group as unit dicts (two streamed passes)
"""
from __future__ import annotations

import json
import math
import re

import numpy as np
import torch
from safetensors.torch import load_file, save
from tqdm import tqdm

from common import exact_fp32, write_bytes
from config import UsageError, config_from_dict, lr_at
from model import flatten, trunk_keys

def canonical(keys) -> list[str]:
    """`keys` sorted into the canonical order of `model.trunk_keys`."""
    keys = list(keys)
    if not keys:
        return []
    m = [
        re.fullmatch(r"blocks\.(\d+)\.(attn\.qkv|attn\.proj|mlp\.fc|mlp\.proj)\.weight", k)
        for k in keys
    ]
    if not all(m):
        raise UsageError(f"not a trunk key: {keys[[x is None for x in m].index(True)]!r}")
    # every Gram, direction and flattening uses this one order, whatever order a checkpoint or
    # state dict listed its keys in, so that coordinates of different files line up
    order = {k: i for i, k in enumerate(trunk_keys(1 + max(int(x.group(1)) for x in m)))}
    if len(set(keys)) != len(keys):
        raise UsageError("duplicate keys")
    return sorted(keys, key=order.__getitem__)


def group_slices(traj) -> dict[str, slice]:
    """Columns of each group (block<l>, trunk) in the canonical flattening of the whole trunk."""
    ends = np.cumsum([0] + [traj.numel(traj.groups[f"block{l}"]) for l in range(traj.n_layer)])
    out = {f"block{l}": slice(int(ends[l]), int(ends[l + 1])) for l in range(traj.n_layer)}
    out["trunk"] = slice(0, int(ends[-1]))
    return out


def group_grams(grams: dict, groups: dict) -> dict[str, torch.Tensor]:
    return {g: sum(grams[k] for k in keys) for g, keys in groups.items()}


def rows(G: torch.Tensor, variant: str = "raw") -> torch.Tensor:
    """R such that the analysed rows are R X."""
    T = G.shape[0]
    eye = torch.eye(T, dtype=torch.float64)
    if variant == "raw":
        return eye
    if variant == "normalized":
        n = G.diagonal().clamp(min=0).sqrt()
        # a zero row (a snapshot equal to the anchor) stays zero rather than dividing by 0
        return torch.diag(torch.where(n > 0, 1 / n, torch.zeros_like(n)))
    if variant == "centered":
        # I - 11^T / T subtracts the mean row: the centred PCA, reported only beside the raw one
        return eye - 1.0 / T
    if variant == "increments":  # d_t = x_t - x_{t-1}, x at the anchor = 0
        return eye - torch.diag(torch.ones(T - 1, dtype=torch.float64), -1)
    raise ValueError(f"unknown variant {variant!r}")


class PCA:
    """SVD of the rows R X from their Gram: sigma (descending), U (columns, sign: last row's
    coordinate >= 0)."""

    def __init__(self, G: torch.Tensor, R: torch.Tensor | None = None):
        G = G.double().cpu()
        self.R = torch.eye(G.shape[0], dtype=torch.float64) if R is None else R.double().cpu()
        # the eigen-decomposition of the T x T Gram R G R^T gives the SVD of R X without forming
        # the D-wide rows: eigenvalues are sigma^2, eigenvectors the left singular vectors
        Y = self.R @ G @ self.R.T
        # symmetrize: R G R^T is symmetric only up to rounding and eigh reads one triangle
        lam, U = torch.linalg.eigh((Y + Y.T) / 2)
        # eigh sorts ascending; the negative eigenvalues of a PSD matrix are rounding (~1e-16)
        lam, U = lam.flip(0).clamp(min=0), U.flip(1)
        # eigenvectors have no sign; fix it so the last row has coordinate >= 0, which makes
        # a(T) = <x(T), v_b> > 0 for the raw rows (the paper's orientation of the backbone)
        U = U * torch.where(U[-1] < 0, -1.0, 1.0)
        self.lam, self.U, self.sigma = lam, U, lam.sqrt()
        if not lam.sum() > 0:
            raise UsageError("all drift rows are zero: nothing moved since the anchor")
        self.rho = lam / lam.sum()
        cum = self.rho.cumsum(0)
        self.pc1 = float(self.rho[0])
        # the tolerance keeps a cumulative share equal to 0.95 up to rounding from needing one
        # more component
        self.k95, self.k99 = (int((cum >= q - 1e-12).nonzero()[0]) + 1 for q in (0.95, 0.99))

    def coef(self, k: int) -> torch.Tensor:
        """(T x k) coefficients c_j = R^T u_j / s_j: the j-th right singular vector is X^T c_j."""
        # v_j = X^T R^T u_j / s_j: a direction is carried as its coefficients on the drift rows
        # and formed in R^D only when it is saved; a zero singular value has no direction
        if k > len(self.sigma) or not (self.sigma[:k] > 1e-12 * self.sigma[0]).all():
            raise ValueError("asked for a component with zero singular value")
        return self.R.T @ self.U[:, :k] / self.sigma[:k]

    def summary(self, n: int = 10) -> dict:
        return dict(pc1=self.pc1, k95=self.k95, k99=self.k99, rho=self.rho[:n].tolist(),
                    sigma=self.sigma[:n].tolist())


def pca(G, R=None) -> PCA:
    return PCA(G, R)


def project(G: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """<x(t), v> for every row t, v = X^T c."""
    return G.double() @ c.double()


def decompose(G: torch.Tensor, c: torch.Tensor) -> dict:
    """a(t) = <x(t), v>, ||r(t)|| = sqrt(|x|^2 - a^2), f_b = a^2 / |x|^2 for v = X^T c (unit)."""
    a, x2 = project(G, c), G.double().diagonal()
    # clamp: a^2 can exceed |x|^2 by rounding when x(t) lies along v; 1e-300 guards a zero row
    # without changing any nonzero one
    return dict(a=a.tolist(), r=(x2 - a**2).clamp(min=0).sqrt().tolist(), norm=x2.sqrt().tolist(),
                f_b=(a**2 / x2.clamp(min=1e-300)).tolist())


def gram_cos(G, c1, c2) -> float:
    G = G.double()
    # <X^T c1, X^T c2> = c1^T G c2: the cosine without the D-dimensional vectors
    return float(c1 @ G @ c2 / (c1 @ G @ c1 * (c2 @ G @ c2)).sqrt())


def windows(G, W: int, steps, c_global=None, stride: int = 1, reanchor: bool = False) -> list[dict]:
    """PC1 of each window of W consecutive rows of G (row steps `steps`).

    Rows: the drift from the global anchor restricted to the window, or with `reanchor` the drift
    from the window's first snapshot (W - 1 rows). cos_global = |cos(window PC1, X^T c_global)|,
    cos_prev = |cos(window PC1, previous window's PC1)| (None for the first)."""
    T, out, prev = G.shape[0], [], None
    if not 2 <= W <= T:
        raise UsageError(f"window of {W} snapshots does not fit {T} rows")
    for w0 in range(0, T - W + 1, stride):
        R = torch.zeros(W, T, dtype=torch.float64)
        R[torch.arange(W), torch.arange(w0, w0 + W)] = 1  # selects the window's rows
        if reanchor:
            # subtract the window's first row and drop it (it would be zero)
            R = (R - R[0])[1:]
        p = PCA(G, R)
        c = p.coef(1)[:, 0]
        out.append(
            dict(steps=list(steps[w0:w0 + W]), pc1=p.pc1,
                 rows="theta(t) - theta(window start)" if reanchor else "theta(t) - theta(anchor)",
                 cos_global=None if c_global is None else abs(gram_cos(G, c, c_global)),
                 cos_prev=None if prev is None else abs(gram_cos(G, c, prev))))
        prev = c
    return out


def random_walk_theory(T: int | None = None, k: int = 5) -> dict:
    """PC_k of a random walk from its start: continuum 8/((2k-1)^2 pi^2) (centered PC1: 6/pi^2) and,
    for T steps, the exact value for orthogonal equal-norm increments (iid isotropic, D -> inf)."""
    out = dict(uncentered=[8 / ((2 * j - 1) ** 2 * math.pi**2) for j in range(1, k + 1)],
               centered=[6 / (j**2 * math.pi**2) for j in range(1, k + 1)])
    if T:
        # L L^T is the Gram of a walk with orthonormal increments (L: the cumulative-sum matrix)
        L = torch.ones(T, T, dtype=torch.float64).tril()
        for name in ("raw", "centered") if T > 1 else ("raw",):  # one centered row is zero
            rho = PCA(L @ L.T, rows(L, name)).rho[:k].tolist()
            out["uncentered_T" if name == "raw" else "centered_T"] = rho
    return out


def _null(pc1s: torch.Tensor, observed: float) -> dict:
    pc1s = pc1s.double()
    # ties count half, so a null identical to the observed value sits at 50, not at 0 or 100
    pct = 100 * (float((pc1s < observed).double().mean()) + 0.5 * float(
        (pc1s == observed).double().mean()))
    return dict(observed=observed, mean=float(pc1s.mean()), sd=float(pc1s.std()), percentile=pct,
                n=len(pc1s))


def _walk_pc1(K: torch.Tensor) -> torch.Tensor:
    """PC1 of the paths whose increments have Grams K (batch, T, T)."""
    # positions are cumulative sums of the increments, so the path's Gram is L K L^T
    L = torch.ones(K.shape[-1], K.shape[-1], dtype=torch.float64).tril()
    X = L @ K @ L.T
    return torch.linalg.eigvalsh(X)[:, -1] / X.diagonal(dim1=1, dim2=2).sum(1)


def shuffle_null(G, n: int = 1000, seed: int = 0) -> dict:
    """Uncentered PC1 of the path rebuilt from the increments in a random order, against
    the observed."""
    A = rows(G, "increments")
    K = A @ G.double() @ A.T
    rng = np.random.default_rng(seed)
    p = torch.from_numpy(np.stack([rng.permutation(K.shape[0]) for _ in range(n)]))
    # reordering the increments permutes the rows and the columns of their Gram alike
    return _null(_walk_pc1(K[p[:, :, None], p[:, None, :]]), PCA(G).pc1)


def _unit_gram(rng, n: int, T: int, D: int) -> torch.Tensor:
    """(n, T, T) Grams of T independent uniform unit vectors in R^D: Gaussian Gram for D < T,
    else exactly through Bartlett's decomposition of Wishart(D, I_T) = L L^T, then normalized."""
    if D < T:
        Z = torch.from_numpy(rng.standard_normal((n, T, D)))
        S = Z @ Z.transpose(1, 2)
    else:
        # Bartlett: the Cholesky factor of Wishart(D, I_T) has chi_{D-i} on the diagonal and
        # N(0, 1) below it, so the Gram of T Gaussian vectors in R^D costs O(T^2), not O(T D)
        L = np.tril(rng.standard_normal((n, T, T)), -1)
        L[:, np.arange(T), np.arange(T)] = np.sqrt(rng.chisquare(D - np.arange(T), size=(n, T)))
        L = torch.from_numpy(L)
        S = L @ L.transpose(1, 2)
    # normalizing Gaussian vectors makes them uniform on the sphere
    d = S.diagonal(dim1=1, dim2=2).rsqrt()
    return S * d[:, :, None] * d[:, None, :]


def direction_null(G, D: int, n: int = 1000, seed: int = 0) -> dict:
    """Uncentered PC1 when each increment keeps its norm but points in a random direction of R^D. At
    the paper's D the draws concentrate on `matched_null_pc1` (sd ~1e-4): the percentile is then 0
    or 100 and says only on which side of the matched null the observed PC1 lies."""
    return _null(matched_null_draws(increment_norms_sq(G), D, n, seed), PCA(G).pc1)


# ----------------------------------------------------------------------- matched null and coherence
def increment_norms_sq(G) -> torch.Tensor:
    """||d(t)||^2 of the increments d(t) = x(t) - x(t_prev) of the rows (x(anchor) = 0), from their
    Gram."""
    A = rows(G, "increments")
    return (A @ G.double().cpu() @ A.T).diagonal().clamp(min=0)


def matched_walk(norms_sq) -> torch.Tensor:
    """T x T Gram L diag(norms_sq) L^T (L: lower-triangular ones) of the path whose increments have
    the norms sqrt(norms_sq) and mutually orthogonal directions: the limit, as D -> inf, of a walk
    with those norms and independent uniformly random directions in R^D (their cosines are O(1
    / sqrt(D)))."""
    n = torch.as_tensor(norms_sq, dtype=torch.float64).cpu().reshape(-1)
    L = torch.ones(len(n), len(n), dtype=torch.float64).tril()
    return (L * n) @ L.T  # L diag(n) L^T without forming diag(n)


def matched_null_pc1(norms_sq) -> float:
    """The matched null: uncentered PC1 = top eigenvalue / trace of L diag(||d||^2) L^T (exact at
    large D). Equal norms give the random-walk value (8/pi^2 as T -> inf); a single nonzero
    increment gives 1."""
    K = matched_walk(norms_sq)
    if not K.trace() > 0:
        raise UsageError("all increments are zero: the matched null is undefined")
    return float(torch.linalg.eigvalsh(K)[-1] / K.trace())


def matched_null(G, k: int = 5) -> dict:
    """The matched null of the rows with Gram G: PC1 (exact, D -> inf), its first k rho,
    the observed PC1."""
    P = PCA(matched_walk(increment_norms_sq(G)))
    obs = PCA(G).pc1
    return dict(pc1=P.pc1, rho=P.rho[:k].tolist(), k95=P.k95, observed=obs, excess=obs - P.pc1)


def matched_null_draws(norms_sq, D: int, n: int = 1000, seed: int = 0) -> torch.Tensor:
    """PC1 of n walks whose increments have the norms sqrt(norms_sq) and independent uniform
    directions in R^D (the finite-D version of `matched_null_pc1`, which it approaches as D
    grows)."""
    norms = torch.as_tensor(norms_sq, dtype=torch.float64).cpu().clamp(min=0).sqrt()
    K = _unit_gram(np.random.default_rng(seed), n, len(norms), D) * norms[:, None] * norms[None, :]
    return _walk_pc1(K)


def coherence(G) -> dict:
    """||x(t)||^2 / sum_{s <= t} ||d(s)||^2 for every row t (`running`) and at the last row
    (`coherence`): 1 for mutually orthogonal increments, > 1 persistent (increments add up), < 1
    mean-reverting."""
    cum = increment_norms_sq(G).cumsum(0)
    x2 = G.double().cpu().diagonal()
    run = torch.where(cum > 0, x2 / cum.clamp(min=1e-300), torch.full_like(cum, float("nan")))
    return dict(coherence=_finite(run[-1]), running=[_finite(r) for r in run])


def _finite(x):
    x = float(x)
    return x if math.isfinite(x) else None


# ----------------------------------------------------------------------- weight-decay decomposition
def split_anchor(Ga) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(G, h, a2) of a Gram with the anchor row (Trajectory.grams(anchor_row=True)): the T x T Gram
    of the drift rows, h(t) = <x(t), theta(anchor)>, a2 = ||theta(anchor)||^2."""
    Ga = Ga.double().cpu()
    return Ga[:-1, :-1], Ga[:-1, -1], float(Ga[-1, -1])


def decay_removed_rows(Ga) -> torch.Tensor:
    """R (T x (T+1)) such that R [X; theta(anchor)] are the rows without their e0 component,
    x(t) - <x(t), e0> e0, e0 = theta(anchor) / ||theta(anchor)||."""
    G, h, a2 = split_anchor(Ga)
    if not a2 > 0:
        raise UsageError("theta(anchor) is zero: no weight-decay direction e0")
    return torch.cat([torch.eye(G.shape[0], dtype=torch.float64), (-h / a2)[:, None]], 1)


def decay_factors(cfg: dict, upto: int) -> list[float] | None:
    """s(t) for t = 0..upto: theta(t) = s(t) theta(0) when the loss gradient is zero, i.e. weight
    decay alone under the run's optimizer and learning-rate schedule (a momentum buffer filled from
    step 0 on). Decoupled decay: s(t) = prod_{s' < t} (1 - lr_s' wd). None where decay alone is not
    a scalar map (Adam with L2 decay normalizes it per coordinate)."""
    c = config_from_dict(cfg)
    s, buf, out = 1.0, None, [1.0]
    for t in range(upto):
        lr = lr_at(c, t)
        if c.weight_decay == 0:
            pass
        elif c.wd_mode == "decoupled":
            s *= 1 - lr * c.weight_decay
        # torch.optim.SGD: d = wd theta; buf = m buf + d; step buf (or d + m buf)
        elif c.optimizer == "sgd":
            d = c.weight_decay * s
            if c.momentum:
                buf = d if buf is None else c.momentum * buf + d
                d = d + c.momentum * buf if c.nesterov else buf
            s -= lr * d
        else:
            # Adam with L2 decay divides the decay term by the second moment, coordinate by
            # coordinate: no single s(t) describes it
            return None
        out.append(s)
    return out


def weight_decay_split(Ga, c_b, factors=None) -> dict:
    """The drift's component along e0 = theta(anchor) / ||theta(anchor)||, from the Gram with
    the anchor row.

    along(t) = <x(t), -e0> (> 0: the weights shrink); share_e0(t) = along^2 / ||x(t)||^2;
    cos_vb_theta0 = <v_b, -e0> for v_b = X^T c_b; the drift with its e0 component removed: PC1, k95,
    k99 and its matched null; with `factors` (s(t) / s(anchor) per row, see decay_factors) the
    pure-decay displacement (1 - s(t)/s(anchor)) ||theta(anchor)|| and its share of ||x(t)||^2."""
    G, h, a2 = split_anchor(Ga)
    R = decay_removed_rows(Ga)
    na, x2 = math.sqrt(a2), G.diagonal().clamp(min=1e-300)
    # minus: weight decay pulls toward the origin, so shrinking weights give along > 0
    along = -h / na
    cb = torch.as_tensor(c_b, dtype=torch.float64).cpu()
    cos_vb = float(-(cb @ h) / na)
    out = dict(theta_anchor_norm=na, along=along.tolist(), along_final=float(along[-1]),
               share_e0=(along**2 / x2).tolist(), share_e0_final=float(along[-1] ** 2 / x2[-1]),
               cos_vb_theta0=cos_vb, vb_share_e0=cos_vb**2)
    Gr = R @ Ga.double().cpu() @ R.T
    # float64 rounding leaves ~1e-16 of the trace when nothing is left
    if Gr.trace() > 1e-12 * G.trace():
        P = PCA(Ga, R)
        out.update(pc1_decay_removed=P.pc1, k95_decay_removed=P.k95, k99_decay_removed=P.k99,
                   rho_decay_removed=P.rho[:10].tolist(),
                   null_matched_pc1_decay_removed=matched_null_pc1(increment_norms_sq(Gr)))
    else:
        out.update(pc1_decay_removed=None, k95_decay_removed=None, k99_decay_removed=None,
                   rho_decay_removed=None, null_matched_pc1_decay_removed=None,
                   decay_removed_note="the drift lies along e0: nothing is left")
    if factors is not None:
        disp = (1 - torch.as_tensor(factors, dtype=torch.float64)) * na
        out.update(decay_displacement=disp.tolist(), decay_displacement_final=float(disp[-1]),
                   decay_share=(disp ** 2 / x2).tolist(),
                   decay_share_final=float(disp[-1] ** 2 / x2[-1]))
    return out


def run_decay_factors(config: dict, anchor: int, steps) -> list[float] | None:
    """s(t) / s(anchor) for the row steps of a run with Config fields `config` (None when not
    computable)."""
    if not config:
        return None
    s = decay_factors(config, max(steps))
    return None if s is None else [s[t] / s[anchor] for t in steps]


# ----------------------------------------------------------------------------- updates
def update_pairs(row_steps, anchor: int, lag: int = 0, grid: bool = False) -> list[tuple[int, int]]:
    """(t, t_prev) for every update u(t) = theta(t) - theta(t_prev): consecutive snapshots (lag 0),
    or t_prev = t - lag where that step has a snapshot (the anchor counts); `grid`: only t = anchor
    + k lag, so the updates do not overlap."""
    have = [anchor] + list(row_steps)
    if lag == 0:
        return list(zip(have[1:], have[:-1]))
    hs = set(have)
    return [(t, t - lag) for t in row_steps
            if t - lag in hs and (not grid or (t - anchor) % lag == 0)]


def update_rows(pairs, row_steps) -> torch.Tensor:
    """E (n_u x T) with u = E X: u(t) = x(t) - x(t_prev), x(anchor) = 0."""
    idx = {s: i for i, s in enumerate(row_steps)}
    E = torch.zeros(len(pairs), len(row_steps), dtype=torch.float64)
    for j, (t, tp) in enumerate(pairs):
        E[j, idx[t]] += 1
        # t_prev not among the rows is the anchor, whose drift row is zero
        if tp in idx:
            E[j, idx[tp]] -= 1
    return E


def midpoint(t: int, t_prev: int):
    """The label of u(t) = theta(t) - theta(t_prev): its midpoint (t - 100 for a 200-step
    update)."""
    return (t + t_prev) // 2 if (t + t_prev) % 2 == 0 else (t + t_prev) / 2


def matched_walk_alignment(G: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """C(t) of the same updates in the matched random walk (the rows' increment norms, orthogonal
    directions), against that walk's own backbone: positive at every update, it never flips sign."""
    K = matched_walk(increment_norms_sq(G))
    return update_cos(K, pca(K).coef(1)[:, 0], E)["C"]


# ----------------------------------------------------------------------------- switching
PROMINENCE, RADIUS = 0.03, 3  # extrema of p_ood: prominence >= 0.03 within +-3 evals (SPEC 6)


def _extrema(values, prominence: float = PROMINENCE, radius: int = RADIUS):
    v = np.asarray(values, dtype=float)
    # 1e-9: a drop of exactly 0.03 counts
    kw = dict(prominence=prominence - 1e-9, wlen=2 * radius + 1)
    from scipy.signal import find_peaks  # 0.9 s to import: paid only by the analyses that need it
    (pk, ppk), (tr, ptr) = find_peaks(v, **kw), find_peaks(-v, **kw)
    return pk.tolist(), tr.tolist(), ppk["prominences"].tolist(), ptr["prominences"].tolist()


def find_extrema(values, prominence: float = PROMINENCE,
                 radius: int = RADIUS) -> tuple[list[int], list[int]]:
    """Indices of the peaks and troughs of `values`: local extrema (a flat top counts once, at its
    middle; never the first or last value) whose prominence within +-radius values is >= prominence
    (scipy.signal.find_peaks with wlen = 2 radius + 1, on the values and on their negatives)."""
    return _extrema(values, prominence, radius)[:2]


def pair_switches(steps, p, snap_steps, anchor) -> dict:
    """Peaks and troughs of p_ood at `steps`, and the (peak, trough) pairs whose steps both have
    snapshots at or after the anchor. Each peak is paired with the next extremum when it is
    a trough, else with the previous one when it is a trough not paired yet. Each pair records
    the peak's prominence and the drop."""
    pk, tr, prom, _ = _extrema(p)
    prom = dict(zip(pk, prom))
    ext = sorted([(steps[i], "peak", i) for i in pk] + [(steps[i], "trough", i) for i in tr])
    pairs, used, skipped = [], set(), []
    for j, (s, kind, i) in enumerate(ext):
        if kind != "peak":
            continue
        nxt, prv = ext[j + 1] if j + 1 < len(ext) else None, ext[j - 1] if j > 0 else None
        # the trough after the peak first (a switch away from the OOD answers), the one before
        # only when no other peak has taken it
        if nxt and nxt[1] == "trough":
            t = nxt[0]
        elif prv and prv[1] == "trough" and prv[0] not in used:
            t = prv[0]
        else:
            skipped.append(dict(peak=s, reason="no adjacent trough"))
            continue
        missing = [x for x in (s, t) if x not in snap_steps or x < anchor]
        if missing:
            why = f"no snapshot at or after the anchor for step {missing[0]}"
            skipped.append(dict(peak=s, trough=t, reason=why))
            continue
        used.add(t)
        pp, pt = float(p[i]), float(p[steps.index(t)])
        pairs.append(
            dict(peak=s, trough=t, p_ood_peak=pp, p_ood_trough=pt, prominence=float(prom[i]),
                 drop=pp - pt))
    return dict(peaks=[steps[i] for i in pk], troughs=[steps[i] for i in tr], pairs=pairs,
                skipped=skipped)


def switching_pair(metrics: list[dict], snapshots, anchor: int):
    """The one switching pair of the repository: (peak_step, trough_step, info) for the pair of
    `pair_switches` whose peak has the largest p_ood prominence (then the largest drop, then the
    earliest), or (None, None, reason). v_sw = unit theta(peak) - theta(trough)."""
    # the last row wins
    rows_ = {r["step"]: float(r["p_ood"]) for r in metrics if r.get("p_ood") is not None}
    steps = sorted(rows_)
    if len(steps) < 3:
        return None, None, "fewer than 3 evals with p_ood in metrics.jsonl"
    sw = pair_switches(steps, [rows_[s] for s in steps], set(snapshots), anchor)
    if not sw["pairs"]:
        return (
            None,
            None,
            (
                f"no p_ood peak/trough pair with snapshots (prominence >= {PROMINENCE} within "
                f"+-{RADIUS} evals; {len(sw['peaks'])} peaks, {len(sw['troughs'])} troughs)"
            ),
        )
    best = max(sw["pairs"], key=lambda q: (q["prominence"], q["drop"], -q["peak"]))
    info = dict(
        p_peak=best["p_ood_peak"],
        p_trough=best["p_ood_trough"],
        prominence=best["prominence"],
        drop=best["drop"],
        n_pairs=len(sw["pairs"]),
        peaks=sw["peaks"],
        troughs=sw["troughs"],
        interval=list(switch_interval(best["peak"], best["trough"])),
    )
    return best["peak"], best["trough"], info


def switch_interval(peak: int, trough: int) -> tuple[int, int]:
    """[lo, hi): the training steps whose updates carry theta from one end of the pair to
    the other."""
    return min(peak, trough), max(peak, trough)


def replays_switch(train_steps, peak: int, trough: int) -> bool:
    """Whether any of the training steps replayed at a snapshot lies inside the pair's interval:
    a Fisher or gradient quantity of v_sw there would be measured on the batches that made v_sw."""
    lo, hi = switch_interval(peak, trough)
    return any(lo <= s < hi for s in train_steps)


# ----------------------------------------------------------------------------- correlations
def pearson(x, y) -> float | None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def corr_levels_and_differences(x, y) -> dict:
    """Pearson correlation of two series on their levels and on their first differences (two trends
    that merely both rise correlate on levels; a shared oscillation survives differencing)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return dict(levels=pearson(x, y), differences=pearson(np.diff(x), np.diff(y)), n=len(x))


def dot(a: dict, b: dict) -> float:
    """<a, b> over the keys of `a`, in float64."""
    return float(
        sum(
            torch.dot(a[k].reshape(-1).double(), b[k].reshape(-1).double().to(a[k].device))
            for k in a))


def cos(a: dict, b: dict) -> float:
    return dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))


def save_directions(path: str, dirs: dict[str, dict], meta: dict | None = None):
    """Save {name: {key: tensor}} as one safetensors file (tensor names 'name/key')."""
    flat = {f"{n}/{k}": t.detach().float().cpu().contiguous()
            for n, d in dirs.items() for k, t in d.items()}
    # serialised in memory, then written atomically (a full disk is one line, never a cut file)
    write_bytes(path, save(flat, metadata={k: json.dumps(v) for k, v in (meta or {}).items()}))


def load_directions(path: str, device="cpu") -> dict[str, dict]:
    out = {}
    for nk, t in load_file(path, device=str(device)).items():
        n, k = nk.split("/", 1)
        out.setdefault(n, {})[k] = t
    return out


def gaussian_draws(shapes: dict, K: int, seed: int = 0):
    """K raw Gaussian directions {key: float64 CPU tensor}, drawn by one seeded CPU generator per
    tensor in canonical key order (the draws of random_directions, before Gram-Schmidt)."""
    # a CPU generator, drawn in canonical key order: the same seed gives the same directions on
    # every device and whatever order the caller's dict has
    gen = torch.Generator().manual_seed(seed)
    keys = canonical(shapes)
    for _ in range(K):
        yield {k: torch.randn(shapes[k], generator=gen, dtype=torch.float64) for k in keys}


def random_directions(like: dict, K: int, against=(), seed: int = 0) -> list[dict]:
    """K Gaussian directions shaped like `like` (seeded, CPU-generated per tensor in canonical
    order), Gram-Schmidt orthonormalized (twice) against the unit directions `against` and each
    other."""
    basis, out = list(against), []
    for z in gaussian_draws({k: v.shape for k, v in like.items()}, K, seed):
        keys = list(z)
        w = {k: z[k].to(like[k].device) for k in keys}
        # classical Gram-Schmidt loses orthogonality in floating point; a second pass restores
        # it to rounding ("twice is enough")
        for _ in range(2):
            for u in basis:
                c = dot(w, u)
                w = {k: w[k] - c * u[k].double() for k in keys}
        norm = math.sqrt(dot(w, w))
        w = {k: (w[k] / norm).float() for k in keys}
        basis.append(w)
        out.append(w)
    return out


def batch_gradients(model, batches, loss_fn, keys):
    """(M x D) float32 gradients of loss_fn(model, batch) for each batch, w.r.t. `keys`, canonical
    order. A loss_fn that returns a tuple of losses (of one forward) gives a tuple of such matrices,
    one per loss."""
    keys, params = canonical(keys), dict(model.named_parameters())
    wrt = [params[k] for k in keys]
    rows_ = None
    for batch in batches:
        out = loss_fn(model, batch)
        many = isinstance(out, tuple)
        out = out if many else (out,)
        rows_ = rows_ or [[] for _ in out]
        for i, loss in enumerate(out):
            if not torch.isfinite(loss):
                raise UsageError(f"non-finite loss {float(loss)} while computing gradients")
            # the losses share one forward: keep its graph until the last of them
            grads = torch.autograd.grad(loss, wrt, retain_graph=i < len(out) - 1)
            rows_[i].append(flatten(dict(zip(keys, grads)), keys).float())
    G = tuple(torch.stack(r) for r in rows_)
    return G if many else G[0]


def _columns(G: torch.Tensor, keys, shapes):
    """(key, G[:, slice of key]) in canonical order; the widths must add up to G's."""
    keys, i = canonical(keys), 0
    for k in keys:
        n = math.prod(shapes[k])
        yield k, G[:, i:i + n]
        i += n
    if i != G.shape[1]:
        raise UsageError(f"gradients have {G.shape[1]} columns, keys need {i}")


def projections(G: torch.Tensor, dirs: list[dict], keys) -> torch.Tensor:
    """(M x n) float64 (CPU): <g_i, v_j> for each row g_i of G and each direction v_j."""
    shapes = {k: dirs[0][k].shape for k in keys}
    Gv = sum(g.double() @ torch.stack([d[k].reshape(-1).double().to(G.device) for d in dirs], 1)
             for k, g in _columns(G, keys, shapes))
    return Gv.cpu()


def rayleigh(G: torch.Tensor, dirs: list[dict], keys) -> torch.Tensor:
    """q(v) = ||G v||^2 / M for each direction (float64, CPU)."""
    return (projections(G, dirs, keys) ** 2).sum(0) / G.shape[0]


def row_gram(G: torch.Tensor, keys, shapes) -> torch.Tensor:
    """The M x M Gram G G^T (float64, CPU), accumulated per tensor so that a float32 gradient matrix
    is never multiplied whole."""
    return sum(g.double() @ g.double().T for _, g in _columns(G, keys, shapes)).cpu()


def fisher_top(G: torch.Tensor, keys, shapes) -> dict:
    """Top eigenvector u1 (dict) of F = G^T G / M via G G^T a = s^2 a, u1 = G^T a1 / |G^T a1|;
    lambda_1, trace, and the row norms ||g_i|| (the diagonal of G G^T)."""
    cols = list(_columns(G, keys, shapes))
    # the M x M Gram G G^T has the nonzero spectrum of the D x D matrix G^T G
    GG = row_gram(G, keys, shapes)
    lam, A = torch.linalg.eigh(GG)
    a1 = A[:, -1].to(G.device)
    # ||G^T a1|| = s1 = sqrt(lambda), so dividing by it makes u1 a unit vector
    u = {k: (a1 @ g.double()) / lam[-1].clamp(min=1e-300).sqrt().item() for k, g in cols}
    u1 = {k: u[k].reshape(shapes[k]).float() for k in u}
    return dict(u1=u1, lambda1=float(lam[-1]) / G.shape[0], trace=float(GG.trace()) / G.shape[0],
                grad_norms=GG.diagonal().clamp(min=0).sqrt().tolist())


# lambda_1 / trace above this: the Fisher of M batches is one direction (in practice, one batch)
RANK1 = 0.9


def fisher_stats(GG: torch.Tensor, P: torch.Tensor, names, backbone: str = "v_b") -> dict:
    """The numbers of fisher_summary from inner products alone: GG = G G^T (M x M) and P (M x n),
    P[i, j] = <g_i, v_j> for the named unit directions `names` (first columns) and then the K
    random ones. u1 = G^T a1 / s1 (a1 the top eigenvector of GG, s1^2 its eigenvalue), so
    <u1, v> = a1^T G v / s1 needs only the projections."""
    names = list(names)
    GG, P = GG.double().cpu(), P.double().cpu()
    M, n = GG.shape[0], len(names)
    K = P.shape[1] - n
    P2 = P.numpy() ** 2
    q, med = P2.mean(0).tolist(), np.median(P2, 0).tolist()
    qn, qr = dict(zip(names, q)), q[n:]
    mn, mr = dict(zip(names, med)), med[n:]
    lam, A = torch.linalg.eigh(GG)
    overlap = (A[:, -1] @ P[:, :n]).abs() / lam[-1].clamp(min=1e-300).sqrt()
    lambda1, trace = float(lam[-1]) / M, float(GG.trace()) / M
    frac = lambda1 / trace if trace > 0 else None
    return dict(
        q=qn,
        q_random=qr,
        alpha=qn[backbone] / (sum(qr) / K) if sum(qr) > 0 else None,
        lambda1=lambda1,
        trace=trace,
        u1_overlap=dict(zip(names, overlap.tolist())),
        q_median=mn,
        q_random_median=mr,
        alpha_median=mn[backbone] / (sum(mr) / K) if sum(mr) > 0 else None,
        lambda1_frac=frac,
        rank1=frac is not None and frac > RANK1,
        grad_norms=GG.diagonal().clamp(min=0).sqrt().tolist(),
    )


def fisher_summary(G: torch.Tensor, keys, dirs: dict[str, dict], backbone: str = "v_b", K: int = 10,
                   seed: int = 0, rand: list[dict] | None = None) -> dict:
    """q of each named direction and of K random unit directions orthogonal to dirs[backbone] (made
    here, or `rand` made once by the caller for many steps); alpha = q(backbone) / mean q(random);
    top Fisher eigenvector's |overlap| with each named direction. Beside each mean over the batches
    (q = mean_i <g_i, v>^2) the median over the batches (q_median, alpha_median): one batch with a
    gradient 10^4 times the others owns every mean but moves the median by one rank at most."""
    # the random directions are orthogonal to the backbone, so alpha compares v_b with directions
    # that share none of it
    if rand is None:
        rand = random_directions(dirs[backbone], K, [dirs[backbone]], seed)
    GG = row_gram(G, keys, {k: dirs[backbone][k].shape for k in keys})
    return fisher_stats(GG, projections(G, list(dirs.values()) + rand, keys), dirs, backbone)


def update_cos(G: torch.Tensor, c: torch.Tensor, E: torch.Tensor | None = None) -> dict:
    """C(t) = <u(t), v>/||u(t)|| for the updates u = E X (default E: consecutive rows, x(anchor)
    = 0) and v = X^T c (unit); NaN where an update is zero. Also <u, v> and ||u||."""
    G = G.double()
    E = rows(G, "increments") if E is None else E.double()
    # <u, v> = e^T G c and ||u||^2 = e^T G e: updates never leave the row space of X
    dot = E @ G @ c.double()
    norm = (E @ G @ E.T).diagonal().clamp(min=0).sqrt()
    C = torch.where(norm > 0, dot / norm.clamp(min=1e-300), torch.full_like(dot, float("nan")))
    return dict(C=C, u_dot_vb=dot, u_norm=norm)


def rows_summary(G: torch.Tensor, D: int, null_draws: int = 1000, E: torch.Tensor | None = None,
                 Ga=None, factors=None) -> dict:
    """Uncentered PC1, k95/k99 (raw and row-normalized), drift of the last row, PC1 against the null
    models (theory, shuffle and random directions: none for a single row; the matched null,
    the reference), the coherence ratio, and the update alignment C(t) against v_b of the updates u
    = E X (default: consecutive rows), beside the matched random walk's C(t) of the same updates and
    C(t) of consecutive rows. With the Gram `Ga` that has the anchor row (and the decay factors)
    also the weight-decay decomposition."""
    p, pn = pca(G), pca(G, rows(G, "normalized"))
    cb = p.coef(1)[:, 0]
    C1 = update_cos(G, cb)["C"]
    E = rows(G, "increments") if E is None else E
    C = update_cos(G, cb, E)["C"] if len(E) else torch.zeros(0, dtype=torch.float64)
    Cw = matched_walk_alignment(G, E) if len(E) else torch.zeros(0, dtype=torch.float64)
    coh = coherence(G)
    out = dict(
        pc1=p.pc1,
        k95=p.k95,
        k99=p.k99,
        rho=p.rho[:10].tolist(),
        pc1_normalized=pn.pc1,
        k95_normalized=pn.k95,
        k99_normalized=pn.k99,
        drift=float(G[-1, -1].sqrt()),
        update_C=_floats(C),
        update_abs_C_mean=_mean(C.abs()),
        update_C_mean=_mean(C),
        matched_walk_update_C=_floats(Cw),
        matched_walk_update_abs_C_mean=_mean(Cw.abs()),
        update_C_consecutive=_floats(C1),
        update_abs_C_mean_consecutive=_mean(C1.abs()),
        null_theory_pc1=None,
        null_shuffle=None,
        null_direction=None,
        null_matched_pc1=matched_null_pc1(increment_norms_sq(G)),
        coherence=coh["coherence"],
        coherence_running=coh["running"],
    )
    if G.shape[0] >= 2:  # one row has PC1 = 1 and no null to speak of
        out.update(null_theory_pc1=random_walk_theory(G.shape[0], k=1)["uncentered_T"][0],
                   null_shuffle=shuffle_null(G, null_draws),
                   null_direction=direction_null(G, D, null_draws))
    if Ga is not None:
        wd = weight_decay_split(Ga, cb, factors)
        out.update(cos_vb_theta0=wd["cos_vb_theta0"], pc1_decay_removed=wd["pc1_decay_removed"],
                   k95_decay_removed=wd["k95_decay_removed"], weight_decay=wd)
    return out


def backbone(traj, groups, k: int = 1, progress: bool = False):
    """Uncentered PCA of the drift rows per group from one Gram pass, then the first k right
    singular vectors as unit fp32 dicts on the device (one more streamed pass, block by block).
    Returns ({group: geometry.PCA}, {group: [v_1, ..., v_k]})."""
    G = group_grams(traj.grams(progress=progress), traj.groups)
    pcas = {g: pca(G[g]) for g in groups}
    try:
        coefs = {g: pcas[g].coef(k) for g in groups}
    except ValueError:
        raise UsageError(
            f"the trajectory has fewer than {k} nonzero components after anchor {traj.anchor} "
            f"({len(traj.row_steps)} snapshots)"
        )
    dirs = {g: [{} for _ in range(k)] for g in groups}
    # each block's tensors are read once, for every group that holds them
    for l in range(traj.n_layer):
        keys = traj.groups[f"block{l}"]
        users = [g for g in groups if set(keys) <= set(traj.groups[g])]
        if not users:
            continue
        V = traj.directions(keys, torch.cat([coefs[g] for g in users], 1))
        for i, g in enumerate(users):
            for j in range(k):
                dirs[g][j].update(V[i * k + j])
    return pcas, dirs


WINDOW_DEFINITIONS = dict(
    rows="x(t) = theta(t) - theta(anchor), t in snapshot steps (anchor, end], uncentered",
    drift="||theta(end) - theta(anchor)||",
    update_C=(
        "u(t) = theta(t) - theta(t - update_lag) for t = anchor + k update_lag (non-overlapping), "
        "labelled by its midpoint (update_mid_steps); C = <u, v_b>/||u||; *_consecutive: u between "
        "consecutive snapshots"
    ),
    matched_walk_update_C=(
        "C(t) of the same updates in the matched random walk, against its own v_b"
    ),
    null_matched_pc1=(
        "top eigenvalue / trace of L diag(||d||^2) L^T: the PC1 of a walk with the observed "
        "increment norms in independent directions, D -> inf (the reference)"
    ),
    coherence=(
        "||x(T)||^2 / sum_t ||d(t)||^2 (1 orthogonal increments, > 1 persistent, < 1"
        " mean-reverting); coherence_running: the same up to each row"
    ),
    weight_decay=(
        "e0 = theta(anchor) / ||theta(anchor)||; cos_vb_theta0 = <v_b, -e0>; share_e0 = <x, e0>^2 /"
        " ||x||^2; decay_displacement = (1 - s(t)/s(anchor)) ||theta(anchor)||, s the factor of"
        " weight decay alone (geometry.decay_factors); *_decay_removed: PCA of x(t) - <x(t), e0> e0"
    ),
    v_b="first right singular vector of the raw rows, sign with a(end) > 0",
)


def window_geometry(grams_a: dict, numel: dict, anchor: int, row_steps, config: dict,
                    update_lag: int, null_draws: int = 1000) -> dict:
    """The window geometry of the experiments from Grams with the anchor row ({group: Ga}, e.g.
    Record.group_grams(anchor, end)): per group PC1 and k95/k99 of raw and row-normalized rows,
    drift ||theta(last) - theta(anchor)||, PC1 against the null models (theory, shuffled increments,
    random directions, the matched null), the coherence ratio, the weight-decay decomposition, and
    the update alignment C(t) of non-overlapping updates of `update_lag` steps (0: consecutive
    snapshots), beside the matched random walk's C(t) and the consecutive-snapshot C(t). `numel`:
    {group: D}."""
    factors = run_decay_factors(config, anchor, row_steps)
    pairs = update_pairs(row_steps, anchor, update_lag, grid=True)
    E = update_rows(pairs, row_steps)
    out = {g: rows_summary(split_anchor(Ga)[0], numel[g], null_draws, E=E, Ga=Ga, factors=factors)
           for g, Ga in grams_a.items()}
    return dict(anchor=anchor, end=row_steps[-1], row_steps=list(row_steps), update_lag=update_lag,
                update_steps=[t for t, _ in pairs],
                update_mid_steps=[midpoint(t, tp) for t, tp in pairs], groups=out,
                definitions=dict(WINDOW_DEFINITIONS))


def record_grams(load, steps, keys, device, progress: bool = False) -> dict[str, torch.Tensor]:
    """One streamed pass: {key: the record's Gram} (Record) from `load(step, key)` -> tensor. Per
    tensor, its N+1 rows theta(t_i) - theta(t_0) (i >= 1) and theta(t_0) are built in float64 (the
    differences of float32 values are exact there) and multiplied in float64 with TF32 off; one
    tensor's rows are in memory at a time."""
    exact_fp32()
    out = {}
    with tqdm(list(keys), desc="record", disable=not progress, leave=False) as bar:
        for k in bar:
            # rows relative to theta(t_0), not raw theta: a Gram of raw weights would carry the
            # drift as a small difference of large ||theta||^2 terms and lose it to cancellation
            a = load(steps[0], k).reshape(-1).to(device, torch.float64)
            x = torch.empty(len(steps), a.numel(), dtype=torch.float64, device=device)
            for i, s in enumerate(steps[1:]):
                x[i].copy_(load(s, k).reshape(-1)).sub_(a)
            x[-1].copy_(a)  # theta(t_0) last: any anchor and e0 derive from this row
            bad = ~torch.isfinite(x).all(1)
            if bad.any():
                i = int(bad.nonzero()[0])
                raise UsageError(
                    f"step {steps[0] if i == len(steps) - 1 else steps[i + 1]}: {k} contains"
                    " NaN/inf"
                )
            out[k] = (x @ x.T).cpu()
    return out


def _floats(C: torch.Tensor) -> list:
    return [_finite(c) for c in C]


def _mean(C: torch.Tensor):
    C = C[torch.isfinite(C)]
    return float(C.mean()) if len(C) else None


# ----------------------------------------------------------------------------- trajectory records
class Record:
    """A trajectory record: every trajectory statistic of a run is a function of it (no snapshots
    needed).

    For each tensor k, `grams[k]` is the (N+1) x (N+1) float64 Gram of the rows
    [theta(t_1) - theta(t_0), ..., theta(t_N) - theta(t_0), theta(t_0)] over the snapshot steps
    t_0 < ... < t_N (`steps`). It is an invertible linear map of the raw inner products
    <theta(t_i), theta(t_j)> (`inner`), stored in this basis because drift rows and increments come
    out of it without subtracting large norms (the increments of late training are ~1e-4 of
    ||theta||^2). Any row that is a combination of snapshots, R theta (R over the N+1 steps), has
    Gram (R B) S (R B)^T with B = `basis` below; drift rows from any anchor, windows, increments and
    the decay direction theta(anchor) are such rows. Pure data: runs.py reads and writes
    the file."""

    def __init__(self, steps, shapes: dict, grams: dict, groups: dict, config: dict | None = None,
                 metrics: list | None = None, meta: dict | None = None):
        self.steps = [int(s) for s in steps]
        if sorted(set(self.steps)) != self.steps or len(self.steps) < 2:
            raise UsageError(
                f"a record needs at least 2 distinct increasing steps, got {self.steps[:5]}"
            )
        self.shapes = {k: tuple(v) for k, v in shapes.items()}
        n = len(self.steps)
        self.grams = {k: torch.as_tensor(g, dtype=torch.float64).cpu() for k, g in grams.items()}
        bad = [k for k, g in self.grams.items() if tuple(g.shape) != (n, n)]
        if bad or set(self.grams) != set(self.shapes):
            raise UsageError(
                f"record: tensor {(bad or sorted(set(self.grams) ^ set(self.shapes)))[0]!r} has "
                f"no {n} x {n} Gram"
            )
        self.groups = {g: list(keys) for g, keys in groups.items()}
        missing = [k for keys in self.groups.values() for k in keys if k not in self.grams]
        if missing:
            raise UsageError(f"record: group tensor {missing[0]!r} has no Gram")
        self.config, self.metrics, self.meta = dict(config or {}), list(metrics or []), dict(meta or
                                                                                             {})
        self.index = {s: i for i, s in enumerate(self.steps)}

    def numel(self, keys) -> int:
        return sum(math.prod(self.shapes[k]) for k in keys)

    def basis(self) -> torch.Tensor:
        """B ((N+1) x (N+1)): theta(t_i) = sum_j B[i, j] b_j over the stored rows b (row i of B)."""
        N = len(self.steps) - 1
        B = torch.zeros(N + 1, N + 1, dtype=torch.float64)
        B[1:, :N] = torch.eye(N, dtype=torch.float64)
        B[:, N] = 1
        return B

    def check_steps(self, steps, what="step"):
        missing = [s for s in steps if s not in self.index]
        if missing:
            have = ", ".join(map(
                str, self.steps[:6])) + (f", ... {self.steps[-1]}" if len(self.steps) > 6 else "")
            raise UsageError(f"{what} {missing[0]} is not a step of the record (have {have})")

    def row_steps(self, anchor: int, end: int | None = None) -> list[int]:
        """Steps of the drift rows from `anchor`: every recorded step in (anchor, end]."""
        self.check_steps([anchor], "anchor")
        rows = [s for s in self.steps if anchor < s <= (self.steps[-1] if end is None else end)]
        if not rows:
            raise UsageError(f"no recorded step after anchor step {anchor}"
                             + (f" up to step {end}" if end is not None else ""))
        return rows

    def combination(self, anchor: int, row_steps) -> torch.Tensor:
        """R ((T+1) x (N+1)) over the snapshots: rows x(t) = theta(t) - theta(anchor), t in
        row_steps, then theta(anchor) itself (the layout of Trajectory.grams(anchor_row=True))."""
        self.check_steps([anchor, *row_steps])
        R = torch.zeros(len(row_steps) + 1, len(self.steps), dtype=torch.float64)
        for i, s in enumerate(row_steps):
            R[i, self.index[s]] += 1
            R[i, self.index[anchor]] -= 1
        R[-1, self.index[anchor]] = 1
        return R

    def gram(self, keys, R: torch.Tensor) -> torch.Tensor:
        """Gram of the rows R theta over the tensors `keys` (R over the N+1 snapshot steps)."""
        C = R.double() @ self.basis()
        S = sum(self.grams[k] for k in keys)
        return C @ S @ C.T

    def group_grams(self, anchor: int, end: int | None = None,
                    groups=None) -> dict[str, torch.Tensor]:
        """{group: (T+1) x (T+1) Gram of the drift rows from `anchor` and theta(anchor)} (see
        split_anchor)."""
        R = self.combination(anchor, self.row_steps(anchor, end))
        return {g: self.gram(self.groups[g], R) for g in (groups or self.groups)}

    def inner(self, keys) -> torch.Tensor:
        """The raw inner products <theta(t_i), theta(t_j)> over the tensors `keys`."""
        return self.gram(keys, torch.eye(len(self.steps), dtype=torch.float64))


# ----------------------------------------------------------------------------- gradient records
def record_backbone(rec, anchor: int, k: int):
    """The backbone from a trajectory record: ({group: PCA of the drift from `anchor`}, {group:
    (k x (N+1)) coefficients of v_1..v_k on the record's rows b}). v = X^T c with X = R theta
    = (R B) b (Record.combination, Record.basis), so its coefficients on the rows b are
    (R B)^T c."""
    rows = rec.row_steps(anchor)
    RB = rec.combination(anchor, rows)[:-1] @ rec.basis()
    pcas = {g: pca(split_anchor(Ga)[0]) for g, Ga in rec.group_grams(anchor).items()}
    try:
        return pcas, {g: (RB.T @ p.coef(k)).T for g, p in pcas.items()}
    except ValueError:
        raise UsageError(f"the trajectory has fewer than {k} nonzero components after anchor "
                         f"{anchor} ({len(rows)} snapshots)")


def gradient_products(A: torch.Tensor, slices: dict, B: torch.Tensor, Z: dict) -> dict:
    """{group: (A_g A_g^T, A_g B_g^T, A_g Z_g^T)}, float64 on the CPU, for gradient rows A (R x D
    of the trunk, canonical order), the record's rows B ((N+1) x D, float64) and each group's raw
    random draws Z[g] (K x D_g). Block by block: one float64 copy of a block's columns at a time;
    the trunk's products are the sums of its blocks' (its draws are its own)."""
    out, trunk = {}, None
    for g, sl in slices.items():
        if g == "trunk":
            continue
        cols = A[:, sl].double()  # float32 gradients, products accumulated in float64
        on = lambda X: X.to(cols.device, non_blocking=True)  # noqa: E731 (rows held on the host)
        out[g] = (cols @ cols.T, cols @ on(B[:, sl]).T, cols @ on(Z[g]).T)
        part = (out[g][0], out[g][1], cols @ on(Z["trunk"][:, sl]).T)
        trunk = part if trunk is None else tuple(a + b for a, b in zip(trunk, part))
    out["trunk"] = trunk
    return {g: tuple(x.cpu() for x in v) for g, v in out.items()}


def span_orthonormal(H: torch.Tensor, against: list, first: int, K: int) -> list[torch.Tensor]:
    """random_directions in coefficients: vectors are combinations c of the spanning rows whose
    Gram is H, and the K directions are the rows first, ..., first + K - 1 (the raw draws)
    Gram-Schmidt orthonormalized twice against the unit combinations `against` and each other,
    in the same order of operations."""
    H = H.double()
    basis, out = [c.double() for c in against], []
    for k in range(K):
        w = torch.zeros(H.shape[0], dtype=torch.float64)
        w[first + k] = 1
        for _ in range(2):  # "twice is enough", as in random_directions
            for u in basis:
                w = w - float(w @ H @ u) * u
        w = w / math.sqrt(float(w @ H @ w))
        basis.append(w)
        out.append(w)
    return out


def loss_rows(loss: str, lam: float, m: int, M: int) -> torch.Tensor:
    """(m x 2M): the gradients of `loss` on the first m mini-batches as combinations of a gradient
    record's rows (LM gradients 0..M-1, probe gradients M..2M-1); combined = LM + lambda probe
    (the gradient is linear in the loss)."""
    E, i = torch.zeros(m, 2 * M, dtype=torch.float64), torch.arange(m)
    if loss in ("combined", "lm"):
        E[i, i] = 1
    if loss in ("combined", "probe"):
        E[i, M + i] = lam if loss == "combined" else 1
    if loss not in ("combined", "lm", "probe"):
        raise ValueError(f"unknown loss {loss!r}")
    return E


class GradientRecord:
    """A gradient record: the replayed mini-batch gradients of a run at its snapshots, kept as inner
    products, so that the gradient and Fisher numbers of any direction in the span of the
    trajectory record's rows and the fixed random draws need no replay. Pure data: runs.py reads,
    writes and makes it.

    At each gradient step s (`grad_steps`), rows 0..M-1 are the LM-loss gradients of M mini-batches
    and rows M..2M-1 their probe-loss gradients; for each group g (its columns of the trunk):
        gram/g    (S, 2M, 2M)   <g_i, g_j>
        basis/g   (S, 2M, N+1)  <g_i, b_j>, b the trajectory record's rows over `steps`
                                (theta(t_1) - theta(t_0), ..., theta(t_N) - theta(t_0), theta(t_0))
        random/g  (S, 2M, K)    <g_i, z_k>, z_k the raw draws of gaussian_draws(seed) over g's keys
        zz/g (K, K), zb/g (K, N+1)   the draws' Gram and their inner products with the rows b
    float64, accumulated from float32 gradients. `meta`: lambda, micro-batches, probe answers per
    step; batch size, seed, precision, config and source."""
    NAMES = ("gram", "basis", "random", "zz", "zb")

    def __init__(self, steps, grad_steps, groups: dict, M: int, K: int, tensors: dict,
                 meta: dict | None = None):
        self.steps, self.grad_steps = [int(s) for s in steps], [int(s) for s in grad_steps]
        self.groups = {g: list(keys) for g, keys in groups.items()}
        self.M, self.K, self.meta = int(M), int(K), dict(meta or {})
        S, R, N1 = len(self.grad_steps), 2 * self.M, len(self.steps)
        want = dict(gram=(S, R, R), basis=(S, R, N1), random=(S, R, self.K), zz=(self.K, self.K),
                    zb=(self.K, N1))
        self.t = {}
        for g in self.groups:
            for name, shape in want.items():
                x = tensors.get(f"{name}/{g}")
                if x is None or tuple(x.shape) != shape:
                    raise UsageError(f"gradient record: {name}/{g} is "
                                     f"{None if x is None else tuple(x.shape)}, not {shape}")
                self.t[f"{name}/{g}"] = torch.as_tensor(x, dtype=torch.float64).cpu()
        self.index = {s: i for i, s in enumerate(self.grad_steps)}

    def products(self, g: str, step: int, loss: str, lam: float, m: int):
        """(GG, P) of `loss` on the first m mini-batches at `step`, group g: the m x m Gram and
        the inner products with the rows b and then the K draws (m x (N+1+K))."""
        i, E = self.index[step], loss_rows(loss, lam, m, self.M)
        P = torch.cat([self.t[f"basis/{g}"][i], self.t[f"random/{g}"][i]], 1)
        return E @ self.t[f"gram/{g}"][i] @ E.T, E @ P

    def span_gram(self, g: str, S: torch.Tensor) -> torch.Tensor:
        """Gram of the spanning rows [b; z] of group g, S the rows b's Gram (the trajectory
        record's, summed over the group's tensors)."""
        zb, zz = self.t[f"zb/{g}"], self.t[f"zz/{g}"]
        return torch.cat([torch.cat([S.double(), zb.T], 1), torch.cat([zb, zz], 1)])


# ----------------------------------------------------------------------- decay split and shape test
def decay_split(Ga, c_b, factors) -> dict:
    """Each interval's change of a(t) = <x(t), v_b> (v_b = X^T c_b) split into what decoupled weight
    decay alone does and the rest, from the Gram with the anchor row (split_anchor) and `factors`
    s(t)/s(anchor) per row (run_decay_factors).

    Over the interval (t_prev, t] decay alone maps theta(t_prev) to f theta(t_prev), f
    = s(t)/s(t_prev), so its part of the update u(t) = theta(t) - theta(t_prev) is (f - 1)
    theta(t_prev) and <(f - 1) theta(t_prev), v_b> = (f - 1) (a(t_prev) + <theta(anchor), v_b>). The
    rest is the update of the loss gradient (and of decay acting on the motion inside the interval:
    the discretisation error, zero when every step is a row). The same split of C(t) = <u,
    v_b>/||u||: C_decay + C_rest."""
    G, h, _ = split_anchor(Ga)
    c = torch.as_tensor(c_b, dtype=torch.float64).cpu()
    s = torch.as_tensor(factors, dtype=torch.float64).cpu()
    a = G @ c
    a0 = float(h @ c)                        # <theta(anchor), v_b>
    a_prev = torch.cat([torch.zeros(1, dtype=torch.float64), a[:-1]])
    s_prev = torch.cat([torch.ones(1, dtype=torch.float64), s[:-1]])
    da = a - a_prev
    da_decay = (s / s_prev - 1) * (a_prev + a0)
    E = rows(G, "increments")
    un = (E @ G @ E.T).diagonal().clamp(min=0).sqrt()
    nz = un > 0
    C_dec = torch.where(nz, da_decay / un.clamp(min=1e-300), torch.full_like(un, float("nan")))
    C_all = torch.where(nz, da / un.clamp(min=1e-300), torch.full_like(un, float("nan")))
    return dict(delta_a=da.tolist(), delta_a_decay=da_decay.tolist(),
                delta_a_rest=(da - da_decay).tolist(), C=_floats(C_all), C_decay=_floats(C_dec),
                C_rest=_floats(C_all - C_dec), a_decay_total=float(da_decay.sum()),
                a_rest_total=float((da - da_decay).sum()), theta_anchor_dot_vb=a0)


def cosine_shape(G, steps, anchor: int, k: int = 3) -> list:
    """The random-walk shape test of Antognini & Sohl-Dickstein (2018): the projection of
    the centered rows on their PC j (j = 1..k) against cos(j pi tau), tau = (t - anchor) / (t_end
    - anchor) over the row steps t; for a random walk it is that cosine (|Pearson r| -> 1 as T
      grows). |r| per PC (None where the
    rows have fewer components)."""
    T = G.shape[0]
    if T < 3:
        return [None] * k
    P = PCA(G, rows(G, "centered"))
    st = np.asarray(steps, float)
    tau = (st - anchor) / (st[-1] - anchor)
    out = []
    for j in range(1, k + 1):
        if j > T - 1 or not P.rho[j - 1] > 1e-12:  # a zero component up to rounding
            out.append(None)
            continue
        proj = (P.U[:, j - 1] * P.sigma[j - 1]).numpy()
        r = pearson(proj, np.cos(j * math.pi * tau))
        out.append(None if r is None else abs(r))
    return out
