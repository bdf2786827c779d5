"""The optimizer's own null: the run's optimizer replayed from its theta(0) on pure noise (SPEC 6).

    python optimizer_null.py --run runs/seed42  # GPU: full trunk, 5 noise seeds
    # CPU: a coordinate sample
    python optimizer_null.py --run runs/tiny_seed42 --sample 512 --seeds 3
    python optimizer_null.py --preset tiny --out /tmp/null  # a run that does not exist
    python optimizer_null.py --mechanics --preset paper --sample 256 \\
        --metrics results/v2/seed42/metrics.jsonl --out results/v2/nulls   # the mechanics table

The replay: the trunk matrices start at the run's theta(0) (the step-0 snapshot; without a run, N(0,
0.02^2) drawn with the config's seed, the model's initialization distribution) and take the run's
steps with its optimizer exactly as configured (adamw or sgd; the learning-rate schedule
config.lr_at; betas, eps; momentum and Nesterov; weight decay, decoupled or L2; the trunk matrices
decay, as in model.param_groups), but every gradient is i.i.d. Gaussian noise with no signal.
Snapshots are taken at the run's snapshot steps and the Grams of each noise seed's snapshots make
a trajectory record (geometry.Record), from which every statistic is computed by the run's own code
(trajectory_pca_uncentered.analyse, backbone_update_analysis.analyse).

Gradient scale and clipping: the gradient of update t (0-based) is N(0, s_t^2) per coordinate with
s_t = min(n_t, grad_clip) / sqrt(P): the run's pre-clip global gradient norm n_t after
the global-norm clip, spread evenly over the model's P parameters (P counted from the step-0
snapshot; without a run, the trunk alone). n_t is the metrics' grad_norm (each eval row at step s
holds the norm of update s - 1), linearly interpolated between evals and held constant before
the first and after the last; without metrics, --grad-norm (default 1.0). The norm of i.i.d.
noise over P coordinates concentrates at s_t sqrt(P), so the clip factor is this deterministic
number and the coordinates are independent: a replay tensor by tensor,
chunk by chunk, or of a sample of coordinates is exact in distribution. AdamW is nearly scale-free
(only eps and the change of s_t over time matter); SGD's steps scale with s_t.

On a CPU, --sample N replays a fixed sample of N coordinates of each trunk tensor (torch.randperm
with a generator seeded 0, the first N, sorted); its Gram is scaled by numel / N (an unbiased
estimate of the full tensor's Gram). Noise: one generator seeded --noise-seed draws an (n_seeds x n)
matrix per step and chunk; seed k of the null is row k.

Writes (--out FOLDER, default <run>/analysis/): optimizer_null.json (results.summary[group][stat] =
{mean, sd, min, max, n} over the noise seeds, results.draws per seed, results.run: the run's own
numbers from its record when it has one) and optimizer_null_s<k>.safetensors (trajectory records).
--mechanics writes mechanics.json instead: the same replay with one ingredient changed at a time.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from safetensors import safe_open

import backbone_update_analysis as bua
import geometry as geo
import trajectory_pca_uncentered as tpu
from common import cli, pick_device, write_result
from config import (
    Config,
    Parser,
    UsageError,
    add_config_args,
    config_from_dict,
    given_overrides,
    lr_at,
)
from config import make_config
from experiments import TABLE8
from model import GPT, trunk_keys
from runs import (list_snapshots, load_record, read_metrics, read_record, record_path, run_record,
                  save_record, snapshot_path)

STATS = ("pc1", "coherence", "cos_vb_theta0", "early_abs_C", "mid_abs_C", "late_abs_C", "t_star",
         "a_peak_step", "a_retreat", "f_b_final", "null_matched_pc1", "cos_shape_1",
         "window_cos_prev", "window_cos_global")
INIT_STD = 0.02           # model.GPT's initialization of every matrix (used only without a run)
# coordinates per seed replayed at once (per-tensor Grams need whole tensors)
CHUNK = 1 << 22

DEFINITIONS = dict(
    replay=(
        "the run's optimizer exactly as configured, from theta(0), on i.i.d. Gaussian gradients of"
        " the trunk matrices (see the module docstring of optimizer_null.py); snapshots at the"
        " run's snapshot steps; one trajectory record per noise seed"
    ),
    gradient_scale=(
        "s_t = min(n_t, grad_clip) / sqrt(P) per coordinate; n_t the run's pre-clip gradient "
        "norm (metrics grad_norm of the eval at step t + 1, linear between evals, constant "
        "outside them; --grad-norm without metrics); P the model's parameter count"
    ),
    clipping=(
        "global-norm clip folded into s_t: the norm of the noise concentrates at s_t sqrt(P), so"
        " the clip factor min(1, clip / n_t) is deterministic and coordinates are independent"
    ),
    sample=(
        "--sample N: the first N of torch.randperm(numel) (generator seed 0), sorted, per tensor;"
        " Gram scaled by numel / N"
    ),
    pc1="uncentered PC1 of the drift rows from step 0 (trajectory_pca_uncentered.analyse)",
    coherence="||x(T)||^2 / sum_t ||d(t)||^2 (geometry.coherence)",
    cos_vb_theta0="<v_b, -theta(0)/||theta(0)||> (geometry.weight_decay_split)",
    phase_abs_C=(
        "early/mid/late mean |C(t)| of consecutive-snapshot updates labelled by midpoint "
        "(backbone_update_analysis.analyse)"
    ),
    t_star=(
        "first update midpoint whose C(t) has the sign opposite to the early phase's (None: no"
        " flip)"
    ),
    a_peak_step="the row step where a(t) = <x(t), v_b> is largest",
    a_retreat="1 - a(T) / max_t a(t)",
    f_b_final="a(T)^2 / ||x(T)||^2",
    null_matched_pc1=(
        "the matched walk's PC1 of the null's own increments (geometry.matched_null_pc1)"
    ),
    cos_shape_1=(
        "|Pearson r| of the projection of the centered rows on their PC1 with cos(pi tau), "
        "tau = t / T (Antognini & Sohl-Dickstein 2018; geometry.cosine_shape); cos_shape: PCs 1-3"
    ),
    summary=(
        "per group and statistic: mean, sd (n - 1), min, max and n over the noise seeds (None"
        " values left out; n counts the rest)"
    ),
)

# The mechanics table: one ingredient changed at a time from the configured optimizer.
MECHANICS = [
    ("as configured", "the run's optimizer", {}),
    ("no weight decay", "weight decay 0", dict(weight_decay=0.0)),
    ("beta1 = 0", "no first-moment average (RMSprop with bias correction)", dict(beta1=0.0)),
    *[
        (f"beta2 = {b:g}", f"second-moment average beta2 {b:g}", dict(beta2=b))
        for b in (0.99, 0.95, 0.9, 0.8)
    ],
    (
        "SGD + momentum",
        "Table 8 run C's optimizer: SGD, lr 1e-2, momentum 0.9, L2 weight decay 0.05",
        {
            k: TABLE8["C"][k]
            for k in ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "wd_mode")
        },
    ),
    (
        "SGDW",
        (
            "Table 8 run C''s optimizer: SGD, lr 1e-2, Nesterov momentum 0.9, decoupled weight"
            " decay 0.5"
        ),
        {
            k: TABLE8["C'"][k]
            for k in ("optimizer", "lr", "momentum", "nesterov", "weight_decay", "wd_mode")
        },
    ),
]


# ----------------------------------------------------------------------------- the optimizer
class Replay:
    """The run's optimizer on a (n_seeds x n) float32 parameter matrix; `step(g, lr)` is one update
    of model.optimizer_step with the gradient g (the formulas of torch.optim.AdamW / Adam / SGD, and
    SGDW's decay by hand after the step)."""

    def __init__(self, cfg: Config, theta: torch.Tensor):
        self.cfg, self.theta, self.t = cfg, theta, 0
        self.m = torch.zeros_like(theta) if cfg.optimizer == "adamw" else None
        self.v = torch.zeros_like(theta) if cfg.optimizer == "adamw" else None
        self.buf = None

    def step(self, g: torch.Tensor, lr: float):
        c, th = self.cfg, self.theta
        wd, l2 = c.weight_decay, c.wd_mode == "l2" and c.weight_decay > 0
        self.t += 1
        if l2:
            g = g.add(th, alpha=wd)
        if c.optimizer == "adamw":
            if c.wd_mode == "decoupled" and wd:
                th.mul_(1 - lr * wd)
            self.m.lerp_(g, 1 - c.beta1)
            self.v.mul_(c.beta2).addcmul_(g, g, value=1 - c.beta2)
            bc1, bc2 = 1 - c.beta1**self.t, 1 - c.beta2**self.t
            denom = (self.v.sqrt() / math.sqrt(bc2)).add_(c.eps)
            th.addcdiv_(self.m, denom, value=-lr / bc1)
            return
        d = g
        if c.momentum:
            self.buf = g.clone() if self.buf is None else self.buf.mul_(c.momentum).add_(g)
            d = g.add(self.buf, alpha=c.momentum) if c.nesterov else self.buf
        th.add_(d, alpha=-lr)
        if c.wd_mode == "decoupled" and wd:
            th.mul_(1 - lr * wd)


def grad_scales(cfg: Config, metrics: list[dict], P: int, grad_norm: float = 1.0) -> np.ndarray:
    """s_t for the updates t = 0..steps-1 (see the docstring): min(n_t, clip) / sqrt(P)."""
    rows = [
        (r["step"] - 1, float(r["grad_norm"]))
        for r in metrics or []
        if isinstance(r.get("grad_norm"), (int, float))
        and math.isfinite(r["grad_norm"])
        and r["step"] > 0
    ]
    t = np.arange(cfg.steps, dtype=float)
    if rows:
        rows.sort()
        n = np.interp(t, [a for a, _ in rows], [b for _, b in rows])
    else:
        n = np.full(cfg.steps, float(grad_norm))
    if cfg.grad_clip > 0:
        n = np.minimum(n, cfg.grad_clip)
    return n / math.sqrt(P)


def replay(cfg: Config, theta0: torch.Tensor, scales, n_seeds: int, gen: torch.Generator,
           snap_steps) -> torch.Tensor:
    """(len(snap_steps), n_seeds, n) float32: the replayed parameters at the snapshot steps, every
    noise seed starting from the same theta0 (n,)."""
    snap = set(snap_steps)
    theta = theta0.float()[None].repeat(n_seeds, 1)
    opt = Replay(cfg, theta)
    out = torch.empty(len(snap_steps), n_seeds, theta0.numel(), dtype=torch.float32,
                      device=theta0.device)
    i = 0
    if 0 in snap:
        out[0] = theta
        i = 1
    for t in range(cfg.steps):
        g = torch.randn(theta.shape, generator=gen, device=theta.device).mul_(float(scales[t]))
        opt.step(g, lr_at(cfg, t))
        if t + 1 in snap:
            out[i] = theta
            i += 1
    return out


def sample_index(numel: int, n: int) -> torch.Tensor:
    """The fixed coordinate sample of a tensor: the first n of randperm(numel) (generator seed 0),
    sorted."""
    return torch.randperm(numel, generator=torch.Generator().manual_seed(0))[:n].sort().values


def null_records(cfg: Config, theta0: dict, n_seeds: int, noise_seed: int, device, metrics=None,
                 P=None, sample: int = 0, grad_norm: float = 1.0, meta: dict | None = None) -> list:
    """One geometry.Record per noise seed of the replay from theta0 ({trunk key: tensor}, full
    shapes)."""
    keys = trunk_keys(cfg.n_layer)
    shapes = {k: tuple(theta0[k].shape) for k in keys}
    numel = {k: math.prod(shapes[k]) for k in keys}
    P = P or sum(numel.values())
    scales = grad_scales(cfg, metrics, P, grad_norm)
    steps = cfg.snapshot_steps()
    flat = {}
    for k in keys:
        x = theta0[k].reshape(-1).float()
        flat[k] = x[sample_index(numel[k], sample)] if sample and sample < numel[k] else x
    weight = {k: numel[k] / flat[k].numel() for k in keys}
    gen = torch.Generator(device=device).manual_seed(noise_seed)
    grams = [{} for _ in range(n_seeds)]
    chunk = []
    for j, k in enumerate(keys):  # chunks of whole tensors, about CHUNK coordinates each
        chunk.append(k)
        if j + 1 < len(keys) and sum(flat[c].numel()
                                     for c in chunk) + flat[keys[j + 1]].numel() <= CHUNK:
            continue
        X = replay(cfg, torch.cat([flat[c] for c in chunk]).to(device), scales, n_seeds, gen, steps)
        a = 0
        for c in chunk:
            b = a + flat[c].numel()
            for s in range(n_seeds):
                x = X[:, s, a:b].double()
                rows = torch.cat([x[1:] - x[0], x[:1]])  # the record's basis (geometry.Record)
                grams[s][c] = (rows @ rows.T).cpu() * weight[c]
            a = b
        del X
        chunk = []
    groups = {
        **{f"block{l}": trunk_keys(cfg.n_layer, l)
           for l in range(cfg.n_layer)}, "trunk": keys
    }
    return [
        geo.Record(
            steps, shapes, grams[s], groups, cfg.to_dict(), [],
            dict(
                meta or {}, source=dict(kind="optimizer null", noise_seed=noise_seed, draw=s,
                                        sample=sample or None, P=P))) for s in range(n_seeds)
    ]


# --------------------------------------------------------------------------- statistics of a record
def record_stats(rec, null_draws: int = 100) -> dict:
    """{group: {stat: value}} of a record (anchor 0), every number from the run's own analysis
    code."""
    grams_a = rec.group_grams(0)
    numel = {g: rec.numel(k) for g, k in rec.groups.items()}
    pca = tpu.analyse(grams_a, numel, rec.steps, 0, rec.config, [], 10, null_draws)
    rows = pca["rows"]
    grams = {g: geo.split_anchor(Ga)[0] for g, Ga in grams_a.items()}
    L = int(rec.config.get("steps") or rec.steps[-1])
    upd = bua.analyse(grams, rows, 0, 0, L)["summary"]
    out = {}
    for g, r in pca["groups"].items():
        a = np.asarray(r["decomposition"]["a"], float)
        shape = geo.cosine_shape(grams[g], rows, 0)
        out[g] = dict(
            pc1=r["raw"]["pc1"],
            coherence=r["coherence"],
            cos_vb_theta0=r["cos_vb_theta0"],
            early_abs_C=upd[g]["early_abs_C"],
            mid_abs_C=upd[g]["mid_abs_C"],
            late_abs_C=upd[g]["late_abs_C"],
            t_star=upd[g]["t_star"],
            a_peak_step=rows[int(np.argmax(a))],
            a_retreat=float(1 - a[-1] / a.max()),
            f_b_final=r["decomposition"]["f_b_final"],
            null_matched_pc1=r["null_matched_pc1"],
            cos_shape_1=shape[0],
            # C2's stability windows (W = 10, the PCA's default): consecutive and against v_b
            window_cos_prev=r["stability"].get("cos_prev_mean"),
            window_cos_global=r["stability"].get("cos_global_mean"),
            cos_shape=shape,
            matched_walk_cos_shape=geo.cosine_shape(
                geo.matched_walk(geo.increment_norms_sq(grams[g])), rows, 0
            ),
        )
    return out


def summarize(draws: list[dict]) -> dict:
    """{group: {stat: {mean, sd, min, max, n}}} over the draws' {group: {stat: value}}."""
    out = {}
    for g in draws[0]:
        out[g] = {}
        for st in STATS:
            x = np.asarray([d[g][st] for d in draws if d[g].get(st) is not None], float)
            out[g][st] = dict(mean=float(x.mean()) if len(x) else None,
                              sd=float(x.std(ddof=1)) if len(x) > 1 else None,
                              min=float(x.min()) if len(x) else None,
                              max=float(x.max()) if len(x) else None, n=len(x))
    return out


# ----------------------------------------------------------------------------- inputs
def run_inputs(run: str, device) -> tuple[Config, dict, list, int]:
    """(config, theta0 trunk tensors, metrics, P) of a run folder: config.json and the step-0
    snapshot."""
    rec = read_record(run)
    if rec is None:
        raise UsageError(f"{run}: no readable config.json")
    cfg = config_from_dict(rec["config"])
    path = snapshot_path(run, 0)
    if not os.path.isfile(path):
        raise UsageError(f"{run}: no step-0 snapshot {path} (theta(0) of the replay)")
    keys = trunk_keys(cfg.n_layer)
    with safe_open(path, framework="pt") as f:
        have = set(f.keys())
        if not set(keys) <= have:
            raise UsageError(f"{path}: lacks trunk tensor {sorted(set(keys) - have)[0]}")
        P = sum(math.prod(f.get_slice(k).get_shape()) for k in have)
        theta0 = {k: f.get_tensor(k).float() for k in keys}
    return cfg, theta0, read_metrics(run), P


def drawn_theta0(cfg: Config) -> dict:
    """theta(0) of a run that does not exist: N(0, INIT_STD^2) per trunk matrix, generator seeded
    cfg.seed."""
    gen = torch.Generator().manual_seed(cfg.seed)
    shapes = {
        k: v.shape
        for k, v in GPT(8, cfg.n_layer, cfg.d_model, cfg.n_head, cfg.d_ff, 8).state_dict().items()
    }
    return {k: torch.randn(shapes[k], generator=gen) * INIT_STD for k in trunk_keys(cfg.n_layer)}


def read_metrics_file(path: str) -> list[dict]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError) as e:
        raise UsageError(f"--metrics {path}: {e}")


# ----------------------------------------------------------------------------- main
def parse_args(argv):
    p = add_config_args(
        Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument(
        "--run", help="run folder with config.json and snapshots/step_000000.safetensors"
    )
    p.add_argument("--out", help="output folder (default <run>/analysis/; required without --run)")
    p.add_argument("--seeds", type=int, default=5, help="noise seeds (default 5)")
    p.add_argument("--noise-seed", type=int, default=0,
                   help="seed of the noise generator (default 0)")
    p.add_argument("--sample", type=int, default=0,
                   help="replay N fixed coordinates of each trunk tensor (0: all; for a CPU)")
    p.add_argument(
        "--metrics",
        help="metrics.jsonl whose grad_norm sets the gradient scale (default: the run's)",
    )
    p.add_argument("--grad-norm", type=float, default=1.0,
                   help="gradient norm without metrics (default 1.0)")
    p.add_argument(
        "--null-draws",
        type=int,
        default=100,
        help="draws of the shuffle and direction nulls inside the PCA of each null (default 100)",
    )
    p.add_argument("--mechanics", action="store_true", help="the mechanics table (mechanics.json)")
    args = p.parse_args(argv)
    if args.seeds < 2 or args.sample < 0 or args.null_draws < 2 or not args.grad_norm > 0:
        p.error("need --seeds >= 2, --sample >= 0, --null-draws >= 2, --grad-norm > 0")
    if not args.run and not args.out:
        p.error("--out is required without --run")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    cli(run, parse_args(argv), argv)


def run(args, argv):
    t0 = time.perf_counter()
    over = given_overrides(args)
    device = pick_device(over.pop("device", "auto"), float64=True)  # --device: where the replay runs
    if args.run:
        cfg, theta0, metrics, P = run_inputs(args.run, device)
        if over:
            cfg = make_config(**{**cfg.to_dict(), **over})
    else:
        cfg = make_config(**over)
        theta0, metrics, P = drawn_theta0(cfg), [], None
    if args.metrics:
        metrics = read_metrics_file(args.metrics)
    out = args.out or os.path.join(args.run, "analysis")
    os.makedirs(out, exist_ok=True)
    common = dict(n_seeds=args.seeds, noise_seed=args.noise_seed, device=device, metrics=metrics,
                  P=P, sample=args.sample, grad_norm=args.grad_norm)
    setup = dict(
        seeds=args.seeds,
        noise_seed=args.noise_seed,
        sample=args.sample or None,
        P=P,
        grad_norm_source=(
            "metrics grad_norm"
            if any(r.get("grad_norm") for r in metrics)
            else f"constant {args.grad_norm}"
        ),
        theta0="step-0 snapshot of the run" if args.run else f"N(0, {INIT_STD}^2), seed {cfg.seed}",
    )
    if args.mechanics:
        return mechanics(args, argv, cfg, theta0, common, setup, out, t0, device)
    recs = null_records(cfg, theta0, **common)
    draws = [record_stats(r, args.null_draws) for r in recs]
    files = []
    for s, r in enumerate(recs):
        files.append(f"optimizer_null_s{s}.safetensors")
        save_record(os.path.join(out, files[-1]), r)
    own = run_own(args.run, args.null_draws) if args.run else None
    res = dict(setup=setup, summary=summarize(draws),
               draws=[dict(seed=s, groups=d) for s, d in enumerate(draws)], run=own)
    path = os.path.join(out, "optimizer_null.json")
    write_result(path, "optimizer_null", cfg.to_dict(), DEFINITIONS, res, t0, argv, device,
                 __file__, files=files)
    s = res["summary"]["trunk"]
    print(
        f"{path}: {args.seeds} noise seeds, trunk PC1 {s['pc1']['mean']:.3f} +-"
        f" {s['pc1']['sd']:.3f}, matched {s['null_matched_pc1']['mean']:.3f}, cos(v_b, -theta0)"
        f" {s['cos_vb_theta0']['mean']:.2f}"
    )


def run_own(run: str, null_draws: int):
    """The run's own statistics by the same code, from its trajectory record when it has one."""
    if list_snapshots(run):
        rec = run_record(run)
    elif os.path.isfile(record_path(run)):
        rec = load_record(record_path(run))
    else:
        return None
    return record_stats(rec, null_draws)


def mechanics(args, argv, cfg, theta0, common, setup, out, t0, device):
    rows = []
    for name, desc, change in MECHANICS:
        c = make_config(**{**cfg.to_dict(), **change})
        t1 = time.perf_counter()
        draws = [record_stats(r, args.null_draws) for r in null_records(c, theta0, **common)]
        sm = summarize(draws)
        rows.append(
            dict(
                ingredient=name,
                description=desc,
                config=change,
                **{
                    g: {st: dict(mean=sm[g][st]["mean"], sd=sm[g][st]["sd"]) for st in STATS}
                    for g in ("trunk", "block0")
                },
                wall_s=round(time.perf_counter() - t1, 1),
            )
        )
        tr = rows[-1]["trunk"]
        print(f"{name:>16}: PC1 {tr['pc1']['mean']:.3f}, coherence {tr['coherence']['mean']:.2f}, "
              f"cos(v_b, -theta0) {tr['cos_vb_theta0']['mean']:.2f}, t* {tr['t_star']['mean']}, "
              f"a retreat {tr['a_retreat']['mean']:.3f} ({rows[-1]['wall_s']} s)", flush=True)
    path = os.path.join(out, "mechanics.json")
    write_result(
        path,
        "optimizer_null_mechanics",
        cfg.to_dict(),
        dict(
            DEFINITIONS,
            rows=(
                "one ingredient changed at a time from the configured optimizer; "
                "trunk and block0: mean and sd over the noise seeds"
            ),
        ),
        dict(setup=setup, rows=rows),
        t0,
        argv,
        device,
        __file__,
    )
    print(f"{path}: {len(rows)} rows")


if __name__ == "__main__":
    main()
