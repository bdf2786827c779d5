"""Per-batch gradient alignment with the backbone (paper section 4.1, 4.4, Table 5, Figure 2 blue points).

    python backbone_gradient_analysis.py --run runs/seed42 [--anchor 0] [--every 1] [--batches 16] [--batch-size 64] [--device auto]

At each snapshot step t >= anchor (every k-th with --every k) the weights theta(t) are loaded and
the gradients of the three training losses of train.losses (combined L_LM + lambda L_probe with
the lambda in force at t, LM-only, probe-only) are taken on 16 mini-batches of 64 sequences (by
default the run's own micro-batch size: 64 in the paper preset, 16 in the tiny one): the batches
the run trained on right after t, rebuilt from (seed, step, micro-step) by `replay_batches`: the
training stream (t, micro 0), (t, 1), ..., (t, grad_accum - 1), (t + 1, 0), ... cut into
consecutive mini-batches. With the default --batch-size, mini-batch i is exactly the run's
micro-batch i % grad_accum of step t + i // grad_accum (paper: steps t .. t + 7); another
--batch-size regroups the same stream of sequences. Steps at or beyond the run's last step were
never trained on; the JSON flags them (trained_on).

The backbone v_b (per block and for the trunk) is recomputed here from one streamed Gram pass
(uncentered PCA of drift from the anchor, geometry.pca), so this script does not depend on the
order in which the analyses run. For each group (block l, trunk) and batch i:
    |cos(g_i, v_b)|   mean and sd over the batches, against the noise floor sqrt(2 / (pi D))
    b_l(t) = <g_l, v_b^(l)>   signed projection, mean over the batches; B_l = cumulative sum of
                              b_l over the analysed snapshots (so B depends on --every).
The combined gradient is g_LM + lambda g_probe (the gradient is linear in the loss; this saves a
third backward pass). On CUDA the forward/backward runs under the run's bf16 autocast
(train.autocast: the gradients the run actually followed, float32 tensors); --fp32 computes them
in full fp32. All dot products are float64, TF32 off.

Writes <run>/analysis/backbone_gradient_analysis.json and
<run>/analysis/backbone_gradient_alignment_block0.png (Figure 2 style: blue |cos| mean +- sd,
noise floor, and the update alignment |C(t)| in red when backbone_update_analysis.json exists),
<run>/analysis/backbone_gradient_projection.png (b_l(t), B_l and the median normalized b_l per block).
Cost (paper run, 51 snapshots): 2 x 816 forward/backward passes of 64 x 256 tokens; the
16 x 25.2M float32 gradient matrices take 1.6 GB each (two at a time; the combined one is formed
in place).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from contextlib import nullcontext

import numpy as np
import torch

from config import Parser, UsageError, config_from_dict, fail
from dataset import get_batch, load_corpus
from geometry import Trajectory, analysis_parser, batch_gradients, group_grams, group_slices, pca
from model import GPT, flatten
from train import autocast, environment, losses

LOSSES = ("combined", "lm", "probe")


# ----------------------------------------------------------------------------- shared helpers (also used by backbone_fisher_analysis.py)
def load_run(run: str, anchor: int = 0, cache_dir: str | None = None, device: str = "auto"):
    """(traj, cfg, corpus): the run's validated snapshots, the Config it was trained with (cache_dir
    overridable) and its corpus, checked against the run's codewords.json."""
    cfg_path = os.path.join(run, "config.json")
    if not os.path.isdir(run):
        raise UsageError(f"run folder not found: {run}")
    if not os.path.isfile(cfg_path):
        raise UsageError(f"no config.json in {run} (not a training run folder?)")
    try:
        saved = json.load(open(cfg_path))["config"]
    except Exception as e:
        raise UsageError(f"{cfg_path} is unreadable ({type(e).__name__})")
    traj = Trajectory(run, anchor=anchor, device=device)
    cfg = config_from_dict({**saved, **({"cache_dir": cache_dir} if cache_dir else {})}).validate()
    try:
        corpus = load_corpus(cfg)
    except UsageError as e:
        raise UsageError(f"cannot load the data of {run}: {e}")
    except Exception as e:  # e.g. the corpus generator missing, or an unreadable cache
        raise UsageError(f"cannot load the data of {run}: {type(e).__name__}: {e}")
    cw = os.path.join(run, "codewords.json")
    try:
        ids = json.load(open(cw)).get("ids") if os.path.isfile(cw) else None
    except ValueError:
        raise UsageError(f"{cw} is not valid JSON")
    if ids is not None and ids != [int(i) for i in corpus.codeword_ids]:
        raise UsageError(f"the corpus rebuilt from {cfg_path} is not the one the run trained on "
                         f"(codewords differ from codewords.json: corpus generator or tokenizer changed?)")
    return traj, cfg, corpus


def load_model(traj: Trajectory, cfg, corpus, step: int, model: GPT | None = None) -> GPT:
    """The run's model (uncompiled) with the weights of snapshot `step`, on traj.device."""
    model = model or GPT.from_config(cfg, corpus.vocab_size).to(traj.device)
    try:
        model.load_state_dict(traj.load(step, list(traj.shapes)))
    except RuntimeError as e:
        raise UsageError(f"snapshot step {step} does not fit the model built from config.json and the corpus "
                         f"(vocabulary {corpus.vocab_size}): {str(e).splitlines()[-1].strip()[:160]}")
    return model


def replay_batches(corpus, cfg, step: int, n: int, batch_size: int):
    """n mini-batches of batch_size sequences: the training stream from step on, i.e. the run's
    micro-batches get_batch(corpus, cfg, s, m) in the order (step, 0), ..., (step, grad_accum - 1),
    (step + 1, 0), ..., concatenated and cut into consecutive mini-batches (the first n * batch_size
    sequences). Returns (batches, used): used = the (step, micro) pairs read, in order."""
    xs, ys, ps, used = [], [], [], []
    s, m, have = step, 0, 0
    while have < n * batch_size:
        x, y, p = get_batch(corpus, cfg, s, m)
        xs.append(x), ys.append(y), ps.append(p), used.append((s, m))
        have += len(x)
        s, m = (s + 1, 0) if m + 1 == cfg.grad_accum else (s, m + 1)
    x, y, p = (torch.cat(t)[: n * batch_size] for t in (xs, ys, ps))
    return [(x[i : i + batch_size], y[i : i + batch_size], p[i : i + batch_size])
            for i in range(0, n * batch_size, batch_size)], used


def batch_record(cfg, used) -> dict:
    """Which micro-batches a snapshot's mini-batches came from; trained_on: all of them are steps the run took."""
    return {"from": list(used[0]), "to": list(used[-1]), "micro_batches": len(used), "trained_on": used[-1][0] < cfg.steps}


def loss_fn(which: int, lam: float, device: torch.device, fp32: bool):
    """loss_fn(model, batch) for geometry.batch_gradients: train.losses(...)[which] (0 combined, 1 LM, 2 probe)."""
    ctx = nullcontext if fp32 else (lambda: autocast(device))

    def f(model, batch):
        with ctx():
            return losses(model, *(t.to(device) for t in batch), lam)[which]
    return f


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


def provenance(device: torch.device, t0: float, args: argparse.Namespace) -> dict:
    env = environment(device)
    hidden = {"run", "cache_dir"}  # paths of the machine that ran it
    return dict(**env, wall_s=round(time.perf_counter() - t0, 1), date=time.strftime("%Y-%m-%d %H:%M:%S"),
                args={k: v for k, v in vars(args).items() if k not in hidden})


def save_json(run: str, name: str, out: dict) -> str:
    os.makedirs(os.path.join(run, "analysis"), exist_ok=True)
    path = os.path.join(run, "analysis", f"{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(path + ".tmp", path)
    return path


def snapshot_selection(traj: Trajectory, every: int) -> list[int]:
    if every < 1:
        raise UsageError(f"--every must be >= 1, got {every}")
    return [s for s in traj.steps if s >= traj.anchor][::every]


# ----------------------------------------------------------------------------- alignment statistics
def alignment(G: torch.Tensor, vb: dict[str, torch.Tensor], slices: dict[str, slice]) -> dict:
    """Per group: |cos(g_i, v_b)| and b = <g_i, v_b> for each row g_i of G (M x D_trunk, canonical
    order), mean and sd over the rows. vb[g] is the flattened unit backbone of group g; the trunk
    numbers are accumulated block by block (one float64 copy of a block's columns at a time)."""
    M = G.shape[0]
    dots = {g: torch.zeros(M, dtype=torch.float64, device=G.device) for g in vb}
    n2 = {g: torch.zeros(M, dtype=torch.float64, device=G.device) for g in vb}
    for g, sl in slices.items():
        if g == "trunk":
            continue
        cols = G[:, sl].double()
        bn2 = (cols * cols).sum(1)
        dots[g] += cols @ vb[g].double()
        n2[g] += bn2
        dots["trunk"] += cols @ vb["trunk"][sl].double()
        n2["trunk"] += bn2
    out = {}
    for g in vb:
        ok = n2[g] > 0  # a probe-only loss is 0 on a mini-batch without probe sequences: no direction, no cosine
        sc = (dots[g][ok] / n2[g][ok].sqrt()).cpu().numpy()  # signed cosines
        b = dots[g].cpu().numpy()
        med = lambda x: float(np.median(x)) if len(x) else None  # noqa: E731
        out[g] = dict(cos_mean=float(np.abs(sc).mean()) if len(sc) else None,
                      cos_sd=float(np.abs(sc).std(ddof=1)) if len(sc) > 1 else None,
                      b=float(b.mean()), b_sd=float(b.std(ddof=1)) if M > 1 else 0.0,
                      grad_norm=float(n2[g].sqrt().mean()), zero_gradients=int((~ok).sum()),
                      cos_median=med(np.abs(sc)), b_median=med(b), b_norm=float(sc.mean()) if len(sc) else None,
                      b_norm_median=med(sc), b_pos_frac=float((sc > 0).mean()) if len(sc) else None)
    return out


# ----------------------------------------------------------------------------- figures
def update_alignment(run: str):
    """(steps, signed C(t) of block 0) from <run>/analysis/backbone_update_analysis.json (keys u_steps and
    groups.block0.C, as backbone_update_analysis.py writes them), or None when the file is absent."""
    path = os.path.join(run, "analysis", "backbone_update_analysis.json")
    if not os.path.isfile(path):
        return None
    try:
        d = json.load(open(path))
        steps, C = d.get("u_mid_steps", d["u_steps"]), d["groups"]["block0"]["C"]  # updates at their midpoints
        assert len(steps) == len(C)
    except Exception:
        print(f"note: {path} has no u_steps / groups.block0.C series; the red line is left out")
        return None
    return steps, [np.nan if c is None else c for c in C]


def plot(run: str, out: dict) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps, res, floor = np.array(out["steps"]), out["results"], out["noise_floor"]
    lam_step = out["config"]["lambda_step"]
    paths = []

    # Figure 2 style: block 0, per-batch |cos(g, v_b)| (blue) vs the 200-step update alignment (red)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    m, sd = np.array(res["combined"]["block0"]["cos_mean"]), np.array(res["combined"]["block0"]["cos_sd"])
    ax.errorbar(steps, m, yerr=[np.minimum(sd, 0.9 * m), sd], fmt="o", ms=4, color="tab:blue", capsize=2,
                label=r"per-batch gradient $|\cos(g_t, v_b)|$ (mean $\pm$ sd)")
    ax.axhline(floor["block0"], color="grey", ls=":", label=r"noise floor $\sqrt{2/(\pi D)}$")
    upd = update_alignment(run)
    if upd:
        us, uc = np.array(upd[0]), np.array(upd[1], dtype=float)
        ax.plot(us, np.abs(uc), color="tab:red", lw=1.8, label=r"update alignment $|C(t)|$")
    if steps.min() < lam_step <= steps.max():
        ax.axvline(lam_step, color="k", ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step"), ax.set_ylabel("alignment with block-0 backbone")
    ax.set_title(f"{out['run']}: gradient vs update alignment with the backbone (block 0)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    paths.append(os.path.join(run, "analysis", "backbone_gradient_alignment_block0.png"))
    fig.savefig(paths[-1], dpi=130)
    plt.close(fig)

    # b_l(t), its cumulative sum B_l, and the median signed cosine per block (combined loss)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    blocks = [g for g in res["combined"] if g != "trunk"]
    cmap = plt.get_cmap("tab10" if len(blocks) <= 10 else "viridis", 10 if len(blocks) <= 10 else len(blocks))
    for i, g in enumerate(blocks):
        axes[0].plot(steps, res["combined"][g]["b"], "o-", ms=3, color=cmap(i), label=g)
        axes[1].plot(steps, res["combined"][g]["B"], "-", color=cmap(i), label=g)
        axes[2].plot(steps, [np.nan if x is None else x for x in res["combined"][g]["b_norm_median"]], "o-", ms=3,
                     color=cmap(i), label=g)
    axes[2].axhline(floor["block0"], color="grey", ls=":", lw=0.8), axes[2].axhline(-floor["block0"], color="grey", ls=":", lw=0.8)
    for ax, name in zip(axes, (r"$b_\ell(t) = \langle g_\ell, v_b^{(\ell)} \rangle$ (mean over batches)",
                                r"$B_\ell = \sum_{t' \leq t} b_\ell(t')$",
                                r"median over batches of $\langle g_\ell, v_b^{(\ell)} \rangle / \|g_\ell\|$ ($\pm$ block-0 floor)")):
        ax.axhline(0, color="grey", lw=0.6)
        if steps.min() < lam_step <= steps.max():
            ax.axvline(lam_step, color="k", ls="--", lw=0.8)
        ax.set_xlabel("snapshot step"), ax.set_title(name, fontsize=9)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{out['run']}: signed gradient projection on the block backbones (combined loss)", fontsize=9)
    fig.tight_layout()
    paths.append(os.path.join(run, "analysis", "backbone_gradient_projection.png"))
    fig.savefig(paths[-1], dpi=130)
    plt.close(fig)
    return paths


# ----------------------------------------------------------------------------- main
def analyse(args) -> dict:
    from tqdm import tqdm
    t0 = time.perf_counter()
    if args.batches < 2 or (args.batch_size is not None and args.batch_size < 1):
        raise UsageError("--batches must be >= 2 (for a standard deviation) and --batch-size >= 1")
    if args.every < 1:
        raise UsageError(f"--every must be >= 1, got {args.every}")
    # load
    traj, cfg, corpus = load_run(args.run, args.anchor, args.cache_dir, args.device)
    args.batch_size = args.batch_size or cfg.batch_size
    steps = snapshot_selection(traj, args.every)
    groups = list(traj.groups)  # block0 .. block{L-1}, trunk
    keys = traj.groups["trunk"]
    D = {g: traj.numel(traj.groups[g]) for g in groups}
    slices = group_slices(traj)

    # backbone per group (one Gram pass + one direction pass)
    pcas, dirs = backbone(traj, groups, k=1)
    vb = {g: flatten(dirs[g][0], traj.groups[g]) for g in groups}

    # gradients at each snapshot
    per_step, batches_used = [], {}
    model = None
    for t in tqdm(steps, desc="gradients", dynamic_ncols=True):
        model = load_model(traj, cfg, corpus, t, model)
        lam = cfg.lambda_at(t)
        batches, used = replay_batches(corpus, cfg, t, args.batches, args.batch_size)
        batches_used[str(t)] = batch_record(cfg, used)
        G_lm = batch_gradients(model, batches, loss_fn(1, lam, traj.device, args.fp32), keys)
        G_pr = batch_gradients(model, batches, loss_fn(2, lam, traj.device, args.fp32), keys)
        row = dict(lm=alignment(G_lm, vb, slices), probe=alignment(G_pr, vb, slices))
        G_lm.add_(G_pr, alpha=lam)  # combined = g_LM + lambda g_probe
        row["combined"] = alignment(G_lm, vb, slices)
        per_step.append((t, lam, row))
        del G_lm, G_pr

    # collect per loss and group: columns over the analysed steps
    results = {}
    for name in LOSSES:
        results[name] = {}
        for g in groups:
            col = {k: [r[name][g][k] for _, _, r in per_step]
                   for k in ("cos_mean", "cos_sd", "b", "b_sd", "grad_norm", "zero_gradients", "cos_median", "b_median",
                             "b_norm", "b_norm_median", "b_pos_frac")}
            col["B"] = np.cumsum(col["b"]).tolist()
            col["B_norm"] = np.cumsum([0.0 if x is None else x for x in col["b_norm"]]).tolist()
            col["cos_over_floor"] = [None if c is None else c / math.sqrt(2 / (math.pi * D[g])) for c in col["cos_mean"]]
            results[name][g] = col
    device = traj.device
    out = dict(
        analysis="backbone_gradient_analysis",
        run=os.path.basename(os.path.normpath(args.run)),
        anchor=traj.anchor,
        definitions=dict(
            backbone="v_b = first right singular vector of the uncentered drift rows x(t) = theta(t) - theta(anchor), "
                     "t in (anchor, last snapshot], per group (block l: its 4 trunk matrices; trunk: all blocks); "
                     "sign so that a(T) = <x(T), v_b> > 0",
            gradients="g_i = gradient of the loss on mini-batch i at theta(t), trunk parameters, canonical order "
                      "(model.trunk_keys); combined = L_LM + lambda(t) L_probe computed as g_LM + lambda g_probe",
            cos="|cos(g_i, v_b)| = |<g_i, v_b>| / ||g_i|| per group (block gradient vs block backbone); mean and sample sd "
                "over the mini-batches whose gradient is nonzero (zero_gradients: mini-batches left out, e.g. probe-only "
                "loss on a mini-batch without probe sequences; null when none or one is left)",
            noise_floor="sqrt(2 / (pi D)): E|cos| of a fixed unit vector with a uniformly random one in R^D",
            b="b_l(t) = <g_l, v_b^(l)> mean over the mini-batches (b_sd: sample sd); unnormalized gradient; b < 0: a "
              "gradient-descent step moves along +v_b, the direction of the drift (a(T) > 0)",
            B="B_l(t) = sum of b_l over the analysed snapshots up to t (depends on --every)",
            b_norm="signed cosine <g_i, v_b> / ||g_i|| per mini-batch, mean over the batches with a nonzero gradient "
                   "(b normalized: a few probe batches with large gradients dominate the raw mean late in training); "
                   "B_norm its cumulative sum",
            medians="cos_median, b_median, b_norm_median: medians over the mini-batches beside the means",
            b_pos_frac="fraction of mini-batches whose signed cosine is > 0 (0 or 1: a consistent sign)",
            precision="fp32 forward/backward" if (args.fp32 or device.type != "cuda") else
                      "bf16 autocast forward/backward as in training (float32 gradients); float64 dot products, TF32 off",
        ),
        batches=dict(n=args.batches, batch_size=args.batch_size, run_batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                     rule="the run's training stream from step t on: micro-batches (t, 0), ..., (t, grad_accum-1), (t+1, 0), ... "
                          "(dataset.get_batch, a pure function of seed, step, micro) concatenated and cut into consecutive "
                          "mini-batches; trained_on = false when the stream reaches steps the run never took",
                     per_step=batches_used),
        config={k: getattr(cfg, k) for k in ("seed", "data", "steps", "batch_size", "grad_accum", "lambda_probe",
                                             "lambda_probe_late", "lambda_step", "n_layer", "d_model")},
        steps=[t for t, _, _ in per_step],
        **{"lambda": [lam for _, lam, _ in per_step]},
        D=D,
        noise_floor={g: math.sqrt(2 / (math.pi * D[g])) for g in groups},
        backbone={g: dict(pc1=pcas[g].pc1, k95=pcas[g].k95, rows=len(traj.row_steps)) for g in groups},
        results=results,
    )
    out["provenance"] = provenance(device, t0, args)
    return out


def replay_parser(doc: str, batches: int) -> Parser:
    """The options every gradient-replaying analysis takes (this script and the Fisher analysis)."""
    ap = analysis_parser(doc)
    ap.add_argument("--batches", type=int, default=batches, help=f"mini-batches per snapshot (default {batches})")
    ap.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=None,
                    help="sequences per mini-batch (default: the run's batch_size, 64 in the paper preset)")
    ap.add_argument("--cache_dir", "--cache-dir", dest="cache_dir", default=None,
                    help="tokenized-corpus cache (default: the run's config cache_dir)")
    ap.add_argument("--fp32", action="store_true", help="full fp32 forward/backward on CUDA too (default: the run's bf16 autocast)")
    return ap


def main(argv=None):
    ap = replay_parser(__doc__, batches=16)
    ap.add_argument("--every", type=int, default=1, help="analyse every k-th snapshot from the anchor on (default 1)")
    args = ap.parse_args(argv)
    try:
        out = analyse(args)
        path = save_json(args.run, "backbone_gradient_analysis", out)
        figs = plot(args.run, out)
    except UsageError as e:
        fail(str(e))
    c = out["results"]["combined"]
    print(f"{path}: {len(out['steps'])} snapshots, {out['provenance']['wall_s']} s; "
          f"block0 |cos| {np.mean(c['block0']['cos_mean']):.4g} (floor {out['noise_floor']['block0']:.3g}), "
          f"B_block0 {c['block0']['B'][-1]:.4g}; figures: {', '.join(os.path.basename(p) for p in figs)}")


if __name__ == "__main__":
    main()
