"""Per-batch gradient alignment with the backbone (paper section 4.1, 4.4, Table 5, Figure 2 blue
points).

    python backbone_gradient_analysis.py --run runs/seed42 [--anchor 0] [--every 1] [--batches \
        16] [--batch-size 64] [--device auto]
    python backbone_gradient_analysis.py --record R/trajectory_record.safetensors \
        --gradient-record R/gradient_record.safetensors [--anchor 0] [--every 1] [--batches 16]

At each snapshot step t >= anchor (every k-th with --every k) the weights theta(t) are loaded and
the gradients of the three training losses of model.losses (combined L_LM + lambda L_probe with
the lambda in force at t, LM-only, probe-only) are taken on 16 mini-batches of 64 sequences (by
default the run's own micro-batch size: 64 in the paper preset, 16 in the tiny one): the batches
the run trained on right after t, rebuilt from (seed, step, micro-step) by `replay_batches`: the
training stream (t, micro 0), (t, 1), ..., (t, grad_accum - 1), (t + 1, 0), ... cut into
consecutive mini-batches. With the default --batch-size, mini-batch i is exactly the run's
micro-batch i % grad_accum of step t + i // grad_accum (paper: steps t .. t + 7); another
--batch-size regroups the same stream of sequences. Steps at or beyond the run's last step were
never trained on; the JSON flags them (trained_on).

Every number is a pure function (`analyse`) of two records: the trajectory record (v_b per block
and for the trunk: uncentered PCA of drift from the anchor, geometry.pca, so this script does not
depend on the order in which the analyses run) and the gradient record (runs.GradientRecord: the
gradients' Grams and their inner products with the trajectory rows, from one replay that the
Fisher analysis shares: these 16 mini-batches are the first 16 of its 32; 8 of 16 for the tiny
preset's runs). From --run both are
made, or reused when up to date, in <run>/analysis/; --record FILE --gradient-record FILE reads
them alone (no snapshots, no corpus, CPU) and gives the same JSON.

For each group (block l, trunk) and batch i:
    |cos(g_i, v_b)|   mean and sd over the batches, against the noise floor sqrt(2 / (pi D))
    b_l(t) = <g_l, v_b^(l)>   signed projection, mean over the batches; B_l = cumulative sum of
                              b_l over the analysed snapshots (so B depends on --every).
The combined gradient is g_LM + lambda g_probe (the gradient is linear in the loss; this saves a
third backward pass), formed from the record's LM and probe rows in float64. On CUDA the
forward/backward runs under the run's bf16 autocast (common.autocast: the gradients the run
actually followed, float32 tensors); --fp32 computes them in full fp32. All dot products are
float64, TF32 off.

Writes <run>/analysis/backbone_gradient_analysis.json and
<run>/analysis/backbone_gradient_alignment_block0.png (Figure 2 style: blue |cos| mean +- sd,
noise floor, and the update alignment |C(t)| in red when backbone_update_analysis.json exists),
<run>/analysis/backbone_gradient_projection.png (b_l(t), B_l and the median normalized b_l per
block). Cost (paper run, 51 snapshots): the gradient record's replay, 51 x 32 mini-batches of
64 x 256 tokens (one forward, an LM and a probe backward each), shared with the Fisher analysis;
the record is 29.4 MB (results/README.md). From the records the numbers take well under a second.
"""
from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import torch

from common import analysis_parser, cli, out_path, pyplot, save_figure, write_result
from config import UsageError
from geometry import record_backbone
from runs import (batch_record, open_gradient_analysis, read_json, record_info, replay_pairs,
                  replay_record)

LOSSES = ("combined", "lm", "probe")
BATCHES = 16  # mini-batches per snapshot by default (config.default_batches: 8 for the tiny preset)


# ----------------------------------------------------------------------------- alignment statistics
def alignment(dots: torch.Tensor, n2: torch.Tensor) -> dict:
    """|cos(g_i, v_b)| and b = <g_i, v_b> of one group over the mini-batches i, from dots[i] =
    <g_i, v_b> and n2[i] = ||g_i||^2 (float64): means, sample sds, medians, signed cosines."""
    M = len(dots)
    # a probe-only loss is 0 on a mini-batch without probe sequences: no direction, no cosine
    ok = n2 > 0
    sc = (dots[ok] / n2[ok].sqrt()).numpy()  # signed cosines
    b = dots.numpy()
    med = lambda x: float(np.median(x)) if len(x) else None  # noqa: E731
    return dict(cos_mean=float(np.abs(sc).mean()) if len(sc) else None,
                cos_sd=float(np.abs(sc).std(ddof=1)) if len(sc) > 1 else None,
                b=float(b.mean()), b_sd=float(b.std(ddof=1)) if M > 1 else 0.0,
                grad_norm=float(n2.clamp(min=0).sqrt().mean()), zero_gradients=int((~ok).sum()),
                cos_median=med(np.abs(sc)), b_median=med(b),
                b_normalized=float(sc.mean()) if len(sc) else None,
                b_normalized_median=med(sc),
                b_pos_frac=float((sc > 0).mean()) if len(sc) else None)


# ----------------------------------------------------------------------------- figures
def update_alignment(out_dir: str):
    """(steps, signed C(t) of block 0) from backbone_update_analysis.json beside the output (keys
    u_steps and groups.block0.C, as backbone_update_analysis.py writes them), or None when the file
    is absent."""
    path = os.path.join(out_dir, "backbone_update_analysis.json")
    d = read_json(path)
    if d is None:
        return None
    try:
        # at the midpoints
        steps, C = d.get("update_mid_steps", d["u_steps"]), d["groups"]["block0"]["C"]
        assert len(steps) == len(C)
    except Exception:
        print(f"note: {path} has no u_steps / groups.block0.C series; the red line is left out")
        return None
    return steps, [np.nan if c is None else c for c in C]


def plot(out_dir: str, out: dict) -> list[str]:
    plt = pyplot()
    steps, res, floor = np.array(out["steps"]), out["results"], out["noise_floor"]
    lam_step = out["config"]["lambda_step"]
    paths = []

    # Figure 2 style: block 0, per-batch |cos(g, v_b)| (blue) vs the 200-step update alignment (red)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    m, sd = np.array(res["combined"]["block0"]["cos_mean"]), np.array(
        res["combined"]["block0"]["cos_sd"])
    ax.errorbar(
        steps,
        m,
        yerr=[np.minimum(sd, 0.9 * m), sd],
        fmt="o",
        ms=4,
        color="tab:blue",
        capsize=2,
        label=r"per-batch gradient $|\cos(g_t, v_b)|$ (mean $\pm$ sd)",
    )
    ax.axhline(floor["block0"], color="grey", ls=":", label=r"noise floor $\sqrt{2/(\pi D)}$")
    upd = update_alignment(out_dir)
    if upd:
        us, uc = np.array(upd[0]), np.array(upd[1], dtype=float)
        ax.plot(us, np.abs(uc), color="tab:red", lw=1.8, label=r"update alignment $|C(t)|$")
    if steps.min() < lam_step <= steps.max():
        ax.axvline(lam_step, color="k", ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step"), ax.set_ylabel("alignment with block-0 backbone")
    ax.set_title(
        f"{out['run']}: gradient vs update alignment with the backbone (block 0)", fontsize=9
    )
    ax.legend(fontsize=7, loc="best")
    paths.append(
        save_figure(fig, os.path.join(out_dir, "backbone_gradient_alignment_block0.png"), dpi=130))

    # b_l(t), its cumulative sum B_l, and the median signed cosine per block (combined loss)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    blocks = [g for g in res["combined"] if g != "trunk"]
    cmap = plt.get_cmap("tab10" if len(blocks) <= 10 else "viridis",
                        10 if len(blocks) <= 10 else len(blocks))
    for i, g in enumerate(blocks):
        axes[0].plot(steps, res["combined"][g]["b"], "o-", ms=3, color=cmap(i), label=g)
        axes[1].plot(steps, res["combined"][g]["B"], "-", color=cmap(i), label=g)
        med = [np.nan if x is None else x for x in res["combined"][g]["b_normalized_median"]]
        axes[2].plot(steps, med, "o-", ms=3, color=cmap(i), label=g)
    for sign in (1, -1):
        axes[2].axhline(sign * floor["block0"], color="grey", ls=":", lw=0.8)
    for ax, name in zip(
            axes, (r"$b_\ell(t) = \langle g_\ell, v_b^{(\ell)} \rangle$ (mean over batches)",
                   r"$B_\ell = \sum_{t' \leq t} b_\ell(t')$",
                   r"median over batches of $\langle g_\ell, v_b^{(\ell)} \rangle / \|g_\ell\|$"
                   r" ($\pm$ block-0 floor)")):
        ax.axhline(0, color="grey", lw=0.6)
        if steps.min() < lam_step <= steps.max():
            ax.axvline(lam_step, color="k", ls="--", lw=0.8)
        ax.set_xlabel("snapshot step"), ax.set_title(name, fontsize=9)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(
        f"{out['run']}: signed gradient projection on the block backbones (combined loss)",
        fontsize=9,
    )
    paths.append(
        save_figure(fig, os.path.join(out_dir, "backbone_gradient_projection.png"), dpi=130))
    return paths


# ----------------------------------------------------------------------------- main
def analyse(rec, grec, cfg, steps, anchor: int, n: int, batch_size: int) -> dict:
    """Every number of the JSON from the trajectory record `rec` and the gradient record `grec`
    (first n mini-batches at each of `steps`); cfg: the run's Config (lambda, replay)."""
    groups = list(rec.groups)  # block0 .. block{L-1}, trunk
    D = {g: rec.numel(rec.groups[g]) for g in groups}
    pcas, coef = record_backbone(rec, anchor, 1)
    N1 = len(rec.steps)

    per_step, batches_used = [], {}
    for t in steps:
        lam = cfg.lambda_at(t)
        batches_used[str(t)] = batch_record(cfg, replay_pairs(cfg, t, n, batch_size))
        row = {}
        for name in LOSSES:
            row[name] = {}
            for g in groups:
                GG, P = grec.products(g, t, name, lam, n)
                row[name][g] = alignment(P[:, :N1] @ coef[g][0], GG.diagonal())
        per_step.append((t, lam, row))

    # collect per loss and group: columns over the analysed steps
    results = {}
    for name in LOSSES:
        results[name] = {}
        for g in groups:
            col = {
                k: [r[name][g][k] for _, _, r in per_step]
                for k in (
                    "cos_mean",
                    "cos_sd",
                    "b",
                    "b_sd",
                    "grad_norm",
                    "zero_gradients",
                    "cos_median",
                    "b_median",
                    "b_normalized",
                    "b_normalized_median",
                    "b_pos_frac",
                )
            }
            col["B"] = np.cumsum(col["b"]).tolist()
            col["B_normalized"] = np.cumsum([0.0 if x is None else x
                                             for x in col["b_normalized"]]).tolist()
            col["cos_over_floor"] = [
                None if c is None else c / math.sqrt(2 / (math.pi * D[g])) for c in col["cos_mean"]
            ]
            results[name][g] = col
    return dict(
        analysis="backbone_gradient_analysis",
        anchor=anchor,
        definitions=dict(
            backbone=(
                "v_b = first right singular vector of the uncentered drift rows x(t) = theta(t) -"
                " theta(anchor), t in (anchor, last snapshot], per group (block l: its 4 trunk"
                " matrices; trunk: all blocks); sign so that a(T) = <x(T), v_b> > 0"
            ),
            gradients=(
                "g_i = gradient of the loss on mini-batch i at theta(t), trunk parameters,"
                " canonical order (model.trunk_keys); combined = L_LM + lambda(t) L_probe computed"
                " as g_LM + lambda g_probe"
            ),
            cos=(
                "|cos(g_i, v_b)| = |<g_i, v_b>| / ||g_i|| per group (block gradient vs block"
                " backbone); mean and sample sd over the mini-batches whose gradient is nonzero"
                " (zero_gradients: mini-batches left out, e.g. probe-only loss on a mini-batch"
                " without probe sequences; null when none or one is left)"
            ),
            noise_floor=(
                "sqrt(2 / (pi D)): E|cos| of a fixed unit vector with a uniformly random one in R^D"
            ),
            b=(
                "b_l(t) = <g_l, v_b^(l)> mean over the mini-batches (b_sd: sample sd); unnormalized"
                " gradient; b < 0: a gradient-descent step moves along +v_b, the direction of the"
                " drift (a(T) > 0)"
            ),
            B="B_l(t) = sum of b_l over the analysed snapshots up to t (depends on --every)",
            b_normalized=(
                "signed cosine <g_i, v_b> / ||g_i|| per mini-batch, mean over the batches with a "
                "nonzero gradient (b normalized: a few probe batches with large gradients dominate "
                "the raw mean late in training); B_normalized its cumulative sum"
            ),
            medians=(
                "cos_median, b_median, b_normalized_median: medians over the mini-batches beside"
                " the means"
            ),
            b_pos_frac=(
                "fraction of mini-batches whose signed cosine is > 0 (0 or 1: a consistent sign)"
            ),
            precision=(
                "fp32 forward/backward"
                if grec.meta["precision"] == "fp32"
                else (
                    "bf16 autocast forward/backward as in training (float32 gradients); float64 dot"
                    " products, TF32 off"
                )
            ),
            record=("computed from the trajectory record and the gradient record (runs.py:"
                    " GRADIENT_RECORD_DEFINITION); <g_i, v_b> = sum_j c_j <g_i, b_j> over the"
                    " trajectory rows b_j, ||g_i||^2 from the record's Gram"),
        ),
        **replay_record(cfg, n, batch_size, batches_used),
        steps=[t for t, _, _ in per_step],
        **{"lambda": [lam for _, lam, _ in per_step]},
        D=D,
        noise_floor={g: math.sqrt(2 / (math.pi * D[g])) for g in groups},
        backbone={
            g: dict(pc1=pcas[g].pc1, k95=pcas[g].k95, rows=len(rec.row_steps(anchor)))
            for g in groups
        },
        results=results,
    )


def run(args, argv) -> tuple[str, dict, list[str]]:
    t0 = time.perf_counter()
    if (args.batches is not None and args.batches < 2) or (args.batch_size is not None
                                                            and args.batch_size < 1):
        raise UsageError("--batches must be >= 2 (for a standard deviation) and --batch-size >= 1")
    if args.every < 1:
        raise UsageError(f"--every must be >= 1, got {args.every}")
    path = out_path(args, "backbone_gradient_analysis")
    def select(steps, check, groups):  # every k-th snapshot from the anchor on; every group
        return [s for s in steps if s >= args.anchor][::args.every], list(groups)
    rec, grec, cfg, (steps, _), state, device, name = open_gradient_analysis(args, argv, select,
                                                                             batches=BATCHES)
    out = analyse(rec, grec, cfg, steps, args.anchor, args.batches, args.batch_size)
    out = dict(run=name, **out, run_state=state, record=record_info(rec),
               gradient_record=getattr(grec, "path", None))
    out = write_result(
        path,
        out.pop("analysis"),
        out.pop("config"),
        out.pop("definitions"),
        out.pop("results"),
        t0,
        argv,
        device,
        __file__,
        analysis="backbone_gradient_analysis",
        **out,
    )
    return path, out, plot(os.path.dirname(os.path.abspath(path)), out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = analysis_parser(__doc__, "backbone_gradient_analysis", replay_batches=BATCHES, record=True)
    ap.add_argument("--every", type=int, default=1,
                    help="analyse every k-th snapshot from the anchor on (default 1)")
    args = ap.parse_args(argv)
    path, out, figs = cli(run, args, argv)
    c = out["results"]["combined"]
    print(
        f"{path}: {len(out['steps'])} snapshots, {out['provenance']['wall_s']} s; block0 |cos|"
        f" {np.mean(c['block0']['cos_mean']):.4g} (floor {out['noise_floor']['block0']:.3g}),"
        f" B_block0 {c['block0']['B'][-1]:.4g}; figures:"
        f" {', '.join(os.path.basename(p) for p in figs)}"
    )


if __name__ == "__main__":
    main()
