"""Geometry of the parameter trajectory: streaming Gram-matrix PCA, backbone, nulls, Rayleigh quotients.

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

Trajectory(run_dir, anchor=0, end=None, device="auto")  lazy, validated snapshots; .grams, .directions
pick_device(name)                 torch.device ("auto": CUDA when present); turns TF32 off
canonical(keys)                   the keys in canonical trunk order (UsageError for a non-trunk key)
group_grams(grams, groups)        {group: sum of its tensors' Grams}
rows(G, variant)                  R for "raw", "normalized" (unit rows), "centered", "increments"
pca(G, R=None) -> PCA             eigen-decomposition of R G R^T: .rho .sigma .U .pc1 .k95 .k99 .coef(k);
                                  signs fixed so the last analysed row has coordinate >= 0 (raw: a(T) > 0)
project(G, c), decompose(G, c)    <x(t), v>; a(t), ||r(t)||, f_b(t) for v = X^T c
gram_cos(G, c1, c2)               cosine of X^T c1 and X^T c2
windows(G, W, steps, c_global, stride=1, reanchor=False)  per-window PC1, |cos| with global and previous
random_walk_theory(T=None)        8/((2k-1)^2 pi^2), centered 6/(k^2 pi^2), and their exact large-D values for T steps
shuffle_null(G, n, seed), direction_null(G, D, n, seed)  increments reshuffled / given random directions
dot(a, b), cos(a, b), save_directions(path, dirs, meta), load_directions(path)   dict-directions
random_directions(like, K, against, seed)   K Gaussian directions orthonormal to `against` and each other
batch_gradients(model, batches, loss_fn, keys)  (M x D) float32 gradients, canonical order
rayleigh(G, dirs, keys)           q(v) = ||G v||^2 / M per direction
fisher_top(G, keys, shapes)       top eigenvector of G^T G / M through G G^T, lambda_1, trace
fisher_summary(G, keys, dirs, K, seed)  q of named directions and K random ones, alpha, u1 overlaps
"""
from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import torch

from common import exact_fp32, pick_device as common_pick_device
from config import UsageError
from model import flatten, trunk_keys
from runs import list_snapshots, read_metrics, read_record

def pick_device(name: str = "auto") -> torch.device:
    """The analysis device (common.pick_device for float64 math: MPS becomes the CPU); TF32 off."""
    exact_fp32()
    return common_pick_device(name, float64=True)


def canonical(keys) -> list[str]:
    """`keys` sorted into the canonical order of `model.trunk_keys`."""
    keys = list(keys)
    if not keys:
        return []
    m = [re.fullmatch(r"blocks\.(\d+)\.(attn\.qkv|attn\.proj|mlp\.fc|mlp\.proj)\.weight", k) for k in keys]
    if not all(m):
        raise UsageError(f"not a trunk key: {keys[[x is None for x in m].index(True)]!r}")
    order = {k: i for i, k in enumerate(trunk_keys(1 + max(int(x.group(1)) for x in m)))}
    if len(set(keys)) != len(keys):
        raise UsageError("duplicate keys")
    return sorted(keys, key=order.__getitem__)


class Trajectory:
    """Snapshots of one run, read lazily; drift rows x(t) = theta(t) - theta(anchor) for t in row_steps = steps in (anchor, end]."""

    def __init__(self, run_dir: str, anchor: int = 0, end: int | None = None, device="auto"):
        from safetensors import safe_open
        self.run_dir, self.anchor, self.device = run_dir, anchor, pick_device(str(device))
        snap_dir = os.path.join(run_dir, "snapshots")
        if not os.path.isdir(snap_dir):
            raise UsageError(f"no snapshots folder in {run_dir} (train the run first)")
        self.paths = list_snapshots(run_dir)
        if not self.paths:
            raise UsageError(f"no step_XXXXXX.safetensors files in {snap_dir}")
        self.steps = sorted(self.paths)
        self.shapes = None
        for s in self.steps:  # headers only: every snapshot must hold the same tensors with the same shapes
            try:
                with safe_open(self.paths[s], framework="pt") as f:
                    shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            except Exception as e:
                raise UsageError(f"cannot read snapshot {self.paths[s]}: {e}")
            if self.shapes is None:
                self.shapes, first = shapes, s
            elif shapes != self.shapes:
                bad = sorted(set(shapes) ^ set(self.shapes)) or [k for k in shapes if shapes[k] != self.shapes[k]]
                raise UsageError(f"snapshot step {s} does not match step {first}: {bad[0]} "
                                 f"{shapes.get(bad[0])} vs {self.shapes.get(bad[0])}")
        self.n_layer = len({k.split(".")[1] for k in self.shapes if k.startswith("blocks.")})
        if not self.n_layer:
            raise UsageError(f"snapshots in {snap_dir} hold no transformer blocks")
        self.groups = {f"block{l}": trunk_keys(self.n_layer, l) for l in range(self.n_layer)}
        self.groups["trunk"] = trunk_keys(self.n_layer)
        self.check_steps([anchor], "anchor")
        self.row_steps = [s for s in self.steps if anchor < s <= (self.steps[-1] if end is None else end)]
        if not self.row_steps:
            raise UsageError(f"no snapshot after anchor step {anchor}" + (f" up to step {end}" if end is not None else ""))
        self.config = (read_record(run_dir) or {}).get("config", {})

    def check_steps(self, steps, what="step"):
        missing = [s for s in steps if s not in self.paths]
        if missing:
            have = ", ".join(map(str, self.steps[:6])) + (f", ... {self.steps[-1]}" if len(self.steps) > 6 else "")
            raise UsageError(f"{what} {missing[0]} has no snapshot in {self.run_dir} (have {have})")

    def numel(self, keys) -> int:
        return sum(math.prod(self.shapes[k]) for k in keys)

    def load(self, step: int, keys, check: bool = True) -> dict[str, torch.Tensor]:
        """fp32 tensors `keys` of the snapshot at `step`, on the device; NaN/inf is an error (`check`)."""
        from safetensors import safe_open
        self.check_steps([step])
        out = {}
        with safe_open(self.paths[step], framework="pt") as f:
            for k in keys:
                if k not in self.shapes:
                    raise UsageError(f"snapshot step {step} has no tensor {k!r}")
                t = f.get_tensor(k).to(self.device, torch.float32)
                if check and not torch.isfinite(t).all():
                    raise UsageError(f"snapshot step {step}: {k} contains NaN/inf ({self.paths[step]})")
                out[k] = t
        return out

    def drift(self, key: str) -> torch.Tensor:
        """Rows x(t) of one tensor, (T x n) float64 on the device."""
        a = self.load(self.anchor, [key], check=False)[key].reshape(-1).double()
        x = torch.empty(len(self.row_steps), a.numel(), dtype=torch.float64, device=self.device)
        for i, s in enumerate(self.row_steps):
            x[i].copy_(self.load(s, [key], check=False)[key].reshape(-1)).sub_(a)
        bad = ~torch.isfinite(x).all(1)  # one check per tensor, not per (step, tensor)
        if bad.any():
            step = self.anchor if bad.all() else self.row_steps[int(bad.nonzero()[0])]
            raise UsageError(f"snapshot step {step}: {key} contains NaN/inf ({self.paths[step]})")
        return x

    def grams(self, keys=None, progress=False) -> dict[str, torch.Tensor]:
        """One pass over the snapshots: {key: T x T float64 Gram (CPU)} for `keys` (default: trunk)."""
        from tqdm import tqdm
        out = {}
        for k in tqdm(canonical(keys or self.groups["trunk"]), desc="gram", disable=not progress):
            x = self.drift(k)
            out[k] = (x @ x.T).cpu()
        return out

    def directions(self, keys, C: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """v_j = X^T C[:, j] over `keys` (second streamed pass), as fp32 dicts on the device."""
        C = C.to(self.device, torch.float64)
        out = [{} for _ in range(C.shape[1])]
        for k in canonical(keys):
            V = self.drift(k).T @ C
            for j in range(C.shape[1]):
                out[j][k] = V[:, j].reshape(self.shapes[k]).float()
        return out

    def metrics(self) -> list[dict]:
        return read_metrics(self.run_dir)


def group_slices(traj: "Trajectory") -> dict[str, slice]:
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
        return torch.diag(torch.where(n > 0, 1 / n, torch.zeros_like(n)))
    if variant == "centered":
        return eye - 1.0 / T
    if variant == "increments":  # d_t = x_t - x_{t-1}, x at the anchor = 0
        return eye - torch.diag(torch.ones(T - 1, dtype=torch.float64), -1)
    raise ValueError(f"unknown variant {variant!r}")


class PCA:
    """SVD of the rows R X from their Gram: sigma (descending), U (columns, sign: last row's coordinate >= 0)."""

    def __init__(self, G: torch.Tensor, R: torch.Tensor | None = None):
        G = G.double().cpu()
        self.R = torch.eye(G.shape[0], dtype=torch.float64) if R is None else R.double().cpu()
        Y = self.R @ G @ self.R.T
        lam, U = torch.linalg.eigh((Y + Y.T) / 2)
        lam, U = lam.flip(0).clamp(min=0), U.flip(1)
        U = U * torch.where(U[-1] < 0, -1.0, 1.0)
        self.lam, self.U, self.sigma = lam, U, lam.sqrt()
        if not lam.sum() > 0:
            raise UsageError("all drift rows are zero: nothing moved since the anchor")
        self.rho = lam / lam.sum()
        cum = self.rho.cumsum(0)
        self.pc1 = float(self.rho[0])
        self.k95, self.k99 = (int((cum >= q - 1e-12).nonzero()[0]) + 1 for q in (0.95, 0.99))

    def coef(self, k: int) -> torch.Tensor:
        """(T x k) coefficients c_j = R^T u_j / s_j: the j-th right singular vector is X^T c_j."""
        if k > len(self.sigma) or not (self.sigma[:k] > 1e-12 * self.sigma[0]).all():
            raise ValueError("asked for a component with zero singular value")
        return self.R.T @ self.U[:, :k] / self.sigma[:k]

    def summary(self, n: int = 10) -> dict:
        return dict(pc1=self.pc1, k95=self.k95, k99=self.k99, rho=self.rho[:n].tolist(), sigma=self.sigma[:n].tolist())


def pca(G, R=None) -> PCA:
    return PCA(G, R)


def project(G: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """<x(t), v> for every row t, v = X^T c."""
    return G.double() @ c.double()


def decompose(G: torch.Tensor, c: torch.Tensor) -> dict:
    """a(t) = <x(t), v>, ||r(t)|| = sqrt(|x|^2 - a^2), f_b = a^2 / |x|^2 for v = X^T c (unit)."""
    a, x2 = project(G, c), G.double().diagonal()
    return dict(a=a.tolist(), r=(x2 - a**2).clamp(min=0).sqrt().tolist(), norm=x2.sqrt().tolist(),
                f_b=(a**2 / x2.clamp(min=1e-300)).tolist())


def gram_cos(G, c1, c2) -> float:
    G = G.double()
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
        R[torch.arange(W), torch.arange(w0, w0 + W)] = 1
        if reanchor:
            R = (R - R[0])[1:]
        p = PCA(G, R)
        c = p.coef(1)[:, 0]
        out.append(dict(steps=list(steps[w0:w0 + W]), pc1=p.pc1,
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
        L = torch.ones(T, T, dtype=torch.float64).tril()
        for name in ("raw", "centered") if T > 1 else ("raw",):  # one centered row is zero
            rho = PCA(L @ L.T, rows(L, name)).rho[:k].tolist()
            out["uncentered_T" if name == "raw" else "centered_T"] = rho
    return out


def _null(pc1s: torch.Tensor, observed: float) -> dict:
    pc1s = pc1s.double()
    pct = 100 * (float((pc1s < observed).double().mean()) + 0.5 * float((pc1s == observed).double().mean()))
    return dict(observed=observed, mean=float(pc1s.mean()), sd=float(pc1s.std()), percentile=pct, n=len(pc1s))


def _walk_pc1(K: torch.Tensor) -> torch.Tensor:
    """PC1 of the paths whose increments have Grams K (batch, T, T)."""
    L = torch.ones(K.shape[-1], K.shape[-1], dtype=torch.float64).tril()
    X = L @ K @ L.T
    return torch.linalg.eigvalsh(X)[:, -1] / X.diagonal(dim1=1, dim2=2).sum(1)


def shuffle_null(G, n: int = 1000, seed: int = 0) -> dict:
    """Uncentered PC1 of the path rebuilt from the increments in a random order, against the observed."""
    A = rows(G, "increments")
    K = A @ G.double() @ A.T
    rng = np.random.default_rng(seed)
    p = torch.from_numpy(np.stack([rng.permutation(K.shape[0]) for _ in range(n)]))
    return _null(_walk_pc1(K[p[:, :, None], p[:, None, :]]), PCA(G).pc1)


def _unit_gram(rng, n: int, T: int, D: int) -> torch.Tensor:
    """(n, T, T) Grams of T independent uniform unit vectors in R^D: Gaussian Gram for D < T,
    else exactly through Bartlett's decomposition of Wishart(D, I_T) = L L^T, then normalized."""
    if D < T:
        Z = torch.from_numpy(rng.standard_normal((n, T, D)))
        S = Z @ Z.transpose(1, 2)
    else:
        L = np.tril(rng.standard_normal((n, T, T)), -1)
        L[:, np.arange(T), np.arange(T)] = np.sqrt(rng.chisquare(D - np.arange(T), size=(n, T)))
        L = torch.from_numpy(L)
        S = L @ L.transpose(1, 2)
    d = S.diagonal(dim1=1, dim2=2).rsqrt()
    return S * d[:, :, None] * d[:, None, :]


def direction_null(G, D: int, n: int = 1000, seed: int = 0) -> dict:
    """Uncentered PC1 when each increment keeps its norm but points in a random direction of R^D."""
    A = rows(G, "increments")
    norms = (A @ G.double() @ A.T).diagonal().clamp(min=0).sqrt()
    K = _unit_gram(np.random.default_rng(seed), n, G.shape[0], D) * norms[:, None] * norms[None, :]
    return _null(_walk_pc1(K), PCA(G).pc1)


def dot(a: dict, b: dict) -> float:
    """<a, b> over the keys of `a`, in float64."""
    return float(sum(torch.dot(a[k].reshape(-1).double(), b[k].reshape(-1).double().to(a[k].device)) for k in a))


def cos(a: dict, b: dict) -> float:
    return dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))


def save_directions(path: str, dirs: dict[str, dict], meta: dict | None = None):
    """Save {name: {key: tensor}} as one safetensors file (tensor names 'name/key')."""
    from safetensors.torch import save_file
    flat = {f"{n}/{k}": t.detach().float().cpu().contiguous() for n, d in dirs.items() for k, t in d.items()}
    save_file(flat, path, metadata={k: json.dumps(v) for k, v in (meta or {}).items()})


def copy_results(paths: list[str], dest: str | None) -> list[str]:
    """Copy the small output files `paths` into the results folder `dest` (nothing when dest is None)."""
    import shutil
    if not dest:
        return []
    os.makedirs(dest, exist_ok=True)
    return [shutil.copy2(p, os.path.join(dest, os.path.basename(p))) for p in paths]


def load_directions(path: str, device="cpu") -> dict[str, dict]:
    from safetensors.torch import load_file
    out = {}
    for nk, t in load_file(path, device=str(device)).items():
        n, k = nk.split("/", 1)
        out.setdefault(n, {})[k] = t
    return out


def random_directions(like: dict, K: int, against=(), seed: int = 0) -> list[dict]:
    """K Gaussian directions shaped like `like` (seeded, CPU-generated per tensor in canonical order),
    Gram-Schmidt orthonormalized (twice) against the unit directions `against` and each other."""
    gen = torch.Generator().manual_seed(seed)
    keys, basis, out = canonical(like), list(against), []
    for _ in range(K):
        w = {k: torch.randn(like[k].shape, generator=gen, dtype=torch.float64).to(like[k].device) for k in keys}
        for _ in range(2):
            for u in basis:
                c = dot(w, u)
                w = {k: w[k] - c * u[k].double() for k in keys}
        norm = math.sqrt(dot(w, w))
        w = {k: (w[k] / norm).float() for k in keys}
        basis.append(w)
        out.append(w)
    return out


def batch_gradients(model, batches, loss_fn, keys) -> torch.Tensor:
    """(M x D) float32 gradients of loss_fn(model, batch) for each batch, w.r.t. `keys`, canonical order."""
    keys, params = canonical(keys), dict(model.named_parameters())
    rows_ = []
    for batch in batches:
        loss = loss_fn(model, batch)
        if not torch.isfinite(loss):
            raise UsageError(f"non-finite loss {float(loss)} while computing gradients")
        grads = torch.autograd.grad(loss, [params[k] for k in keys])
        rows_.append(flatten(dict(zip(keys, grads)), keys).float())
    return torch.stack(rows_)


def _columns(G: torch.Tensor, keys, shapes):
    """(key, G[:, slice of key]) in canonical order; the widths must add up to G's."""
    keys, i = canonical(keys), 0
    for k in keys:
        n = math.prod(shapes[k])
        yield k, G[:, i:i + n]
        i += n
    if i != G.shape[1]:
        raise UsageError(f"gradients have {G.shape[1]} columns, keys need {i}")


def rayleigh(G: torch.Tensor, dirs: list[dict], keys) -> torch.Tensor:
    """q(v) = ||G v||^2 / M for each direction (float64, CPU)."""
    shapes = {k: dirs[0][k].shape for k in keys}
    Gv = sum(g.double() @ torch.stack([d[k].reshape(-1).double().to(G.device) for d in dirs], 1)
             for k, g in _columns(G, keys, shapes))
    return (Gv**2).sum(0).cpu() / G.shape[0]


def fisher_top(G: torch.Tensor, keys, shapes) -> dict:
    """Top eigenvector u1 (dict) of F = G^T G / M via G G^T a = s^2 a, u1 = G^T a1 / |G^T a1|; lambda_1, trace."""
    cols = list(_columns(G, keys, shapes))
    GG = sum(g.double() @ g.double().T for _, g in cols).cpu()
    lam, A = torch.linalg.eigh(GG)
    a1 = A[:, -1].to(G.device)
    u = {k: (a1 @ g.double()) / lam[-1].clamp(min=1e-300).sqrt().item() for k, g in cols}
    u1 = {k: u[k].reshape(shapes[k]).float() for k in u}
    return dict(u1=u1, lambda1=float(lam[-1]) / G.shape[0], trace=float(GG.trace()) / G.shape[0])


def fisher_summary(G: torch.Tensor, keys, dirs: dict[str, dict], backbone: str = "v_b", K: int = 10, seed: int = 0,
                   rand: list[dict] | None = None) -> dict:
    """q of each named direction and of K random unit directions orthogonal to dirs[backbone] (made
    here, or `rand` made once by the caller for many steps); alpha = q(backbone) / mean q(random);
    top Fisher eigenvector's |overlap| with each named direction."""
    if rand is None:
        rand = random_directions(dirs[backbone], K, [dirs[backbone]], seed)
    K = len(rand)
    q = rayleigh(G, list(dirs.values()) + rand, keys).tolist()
    qn, qr = dict(zip(dirs, q)), q[len(dirs):]
    top = fisher_top(G, keys, {k: dirs[backbone][k].shape for k in keys})
    return dict(q=qn, q_random=qr, alpha=qn[backbone] / (sum(qr) / K), lambda1=top["lambda1"], trace=top["trace"],
                u1_overlap={n: abs(dot(top["u1"], d)) for n, d in dirs.items()})


def update_cos(G: torch.Tensor, c: torch.Tensor, E: torch.Tensor | None = None) -> dict:
    """C(t) = <u(t), v>/||u(t)|| for the updates u = E X (default E: consecutive rows, x(anchor) = 0) and
    v = X^T c (unit); NaN where an update is zero. Also <u, v> and ||u||."""
    G = G.double()
    E = rows(G, "increments") if E is None else E.double()
    dot = E @ G @ c.double()
    norm = (E @ G @ E.T).diagonal().clamp(min=0).sqrt()
    C = torch.where(norm > 0, dot / norm.clamp(min=1e-300), torch.full_like(dot, float("nan")))
    return dict(C=C, u_dot_vb=dot, u_norm=norm)


def rows_summary(G: torch.Tensor, D: int, null_draws: int = 1000) -> dict:
    """Uncentered PC1, k95/k99 (raw and row-normalized), drift of the last row, update alignment C(t) of
    consecutive rows against v_b, and PC1 against the three null models (none for a single row)."""
    p, pn = pca(G), pca(G, rows(G, "normalized"))
    C = update_cos(G, p.coef(1)[:, 0])["C"]
    out = dict(pc1=p.pc1, k95=p.k95, k99=p.k99, rho=p.rho[:10].tolist(), pc1_normalized=pn.pc1, k95_normalized=pn.k95,
               k99_normalized=pn.k99, drift=float(G[-1, -1].sqrt()), update_C=C.tolist(),
               update_abs_C_mean=float(C.abs().nanmean()), update_C_mean=float(C.nanmean()),
               null_theory_pc1=None, null_shuffle=None, null_direction=None)
    if G.shape[0] >= 2:  # one row has PC1 = 1 and no null to speak of
        out.update(null_theory_pc1=random_walk_theory(G.shape[0], k=1)["uncentered_T"][0],
                   null_shuffle=shuffle_null(G, null_draws), null_direction=direction_null(G, D, null_draws))
    return out


def backbone(traj: Trajectory, groups, k: int = 1, progress: bool = True):
    """Uncentered PCA of the drift rows per group from one Gram pass, then the first k right
    singular vectors as unit fp32 dicts on the device (one more streamed pass, block by block).
    Returns ({group: geometry.PCA}, {group: [v_1, ..., v_k]})."""
    G = group_grams(traj.grams(progress=progress), traj.groups)
    pcas = {g: pca(G[g]) for g in groups}
    try:
        coefs = {g: pcas[g].coef(k) for g in groups}
    except ValueError:
        raise UsageError(f"the trajectory has fewer than {k} nonzero components after anchor {traj.anchor} "
                         f"({len(traj.row_steps)} snapshots)")
    dirs = {g: [{} for _ in range(k)] for g in groups}
    for l in range(traj.n_layer):  # each block's tensors are read once, for every group that holds them
        keys = traj.groups[f"block{l}"]
        users = [g for g in groups if set(keys) <= set(traj.groups[g])]
        if not users:
            continue
        V = traj.directions(keys, torch.cat([coefs[g] for g in users], 1))
        for i, g in enumerate(users):
            for j in range(k):
                dirs[g][j].update(V[i * k + j])
    return pcas, dirs


def window_summary(run_dir: str, start: int, end: int | None = None, groups=("trunk",), device="auto",
                   null_draws: int = 1000, progress: bool = False) -> dict:
    """Uncentered PCA of the drift rows theta(t) - theta(start), t the snapshots in (start, end], per group:
    PC1 and k95/k99 of raw and row-normalized rows, drift ||theta(last) - theta(start)||, update alignment
    C(t) = <u(t), v_b>/||u(t)|| of consecutive-snapshot updates, and PC1 against the three null models."""
    traj = Trajectory(run_dir, anchor=start, end=end, device=device)
    grams = traj.grams({k for g in groups for k in traj.groups[g]}, progress=progress)
    out = {name: rows_summary(G, traj.numel(traj.groups[name]), null_draws)
           for name, G in group_grams(grams, {g: traj.groups[g] for g in groups}).items()}
    return dict(anchor=start, end=traj.row_steps[-1], row_steps=traj.row_steps, groups=out,
                definitions=dict(rows="x(t) = theta(t) - theta(anchor), t in snapshot steps (anchor, end], uncentered",
                                 drift="||theta(end) - theta(anchor)||", update_C="u(t) = theta(t) - theta(previous snapshot); C = <u, v_b>/||u||",
                                 v_b="first right singular vector of the raw rows, sign with a(end) > 0"))
