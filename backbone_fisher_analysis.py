"""Fisher curvature along the backbone: Rayleigh quotients and anisotropy (paper section 4.5, 9.4,
Tables 6-7, Figure 3).

    python backbone_fisher_analysis.py --run runs/seed42 [--anchor 0] [--steps 200,1800,4800,9600 \
        | --every 1] [--batches 32] [--K 10] [--group trunk|block0|all] [--device auto]
    python backbone_fisher_analysis.py --record R/trajectory_record.safetensors \
        --gradient-record R/gradient_record.safetensors [--steps ...] [--group all]

At each chosen snapshot theta(t) (default: every snapshot from the anchor on), M = 32 mini-batch
(16 for the tiny preset's runs) gradients of the combined training loss L_LM + lambda(t) L_probe (model.losses) are stacked into
G (M x D, float32, canonical trunk order): the batches the run trained on right after t, rebuilt
from (seed, step, micro-step) exactly as in backbone_gradient_analysis.py (`replay_batches`: the
stream (t, 0), (t, 1), (t + 1, 0), ... in mini-batches of --batch-size sequences, by default the
run's micro-batch size, so that with the paper's batch_size 64 and grad_accum 2 these are the
micro-batches of steps t .. t + 15). With F = G^T G / M:
    q(v) = ||G v||^2 / M       for v_b, v_PC2, v_sw and K = 10 random unit directions
                               orthonormalized
                               against v_b and each other (geometry.random_directions, seed --seed)
    alpha = q(v_b) / mean_k q(w_k)
    u_1, lambda_1, trace(F)    top eigenvector of F through the M x M Gram G G^T
                               (geometry.fisher_top)
                               and |<u_1, v>| for each named direction.
v_b and v_PC2 are the first two right singular vectors of the uncentered drift from the anchor
(recomputed here from one Gram pass, sign a(T) > 0). v_sw = theta(peak) - theta(trough),
normalized, for THE switching pair (geometry.switching_pair, the one definition: of the p_ood
peak/trough pairs, prominence >= 0.03 within +-3 evals, the one whose peak is the most prominent);
at snapshots whose replayed batches lie inside the pair's interval (they made v_sw) v_sw is not
measured. Without such a pair v_sw is left out and the JSON says why.
Every quantity is computed for the LM loss, the probe loss and the combined loss apart (one batch
with a wrong probe answer can own the combined Fisher late in training), with lambda_1 / trace, a
rank-1 flag, the median over batches of <g_i, v>^2 beside the mean, and per mini-batch the LM and
probe gradient norms and the number of probe answers and wrong answers.
Groups: the trunk (default; the paper's Fisher),
one block (--group blockN), or the trunk and every block (--group all); every direction is taken
within its group and normalized there.

Every number is a pure function (`analyse`) of the trajectory record and the gradient record
(runs.GradientRecord): each direction is a combination of the trajectory rows and the record's K
raw random draws, so q(v), the medians, u_1 and the overlaps come from the gradients' Gram and their
inner products with those rows, and the random directions are orthonormalized in coefficients
(geometry.span_orthonormal, the same steps as random_directions). From --run both records are made,
or reused when up to date, in <run>/analysis/ (one replay, shared with the gradient analysis);
--record FILE --gradient-record FILE reads them alone (no snapshots, no corpus, CPU) and gives the
same JSON. Making the gradient record holds G (M x D float32 per loss: 3.2 GB for the paper trunk),
the trajectory rows and the draws (float64) on the device; on a CPU use the tiny preset.
Forward/backward in the run's bf16 autocast on CUDA (float32 gradients), --fp32 for full fp32;
inner products in float64, TF32 off.

Writes <run>/analysis/backbone_fisher_analysis.json and <run>/analysis/backbone_fisher_analysis.png
(q(v) against step for the combined, LM and probe losses: v_b red with its median estimate dashed,
v_sw blue, v_PC2 purple, random directions as a grey band, rank-1 snapshots marked; and
lambda_1 / trace of the three losses; alpha per group; per-batch LM and probe gradient norms, the
batches with a wrong probe answer marked; log scales, the lambda step dashed).
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
from geometry import (RANK1, fisher_stats, record_backbone, replays_switch, span_orthonormal,
                      switch_interval, switching_pair)
from runs import (batch_record, open_gradient_analysis, record_info, replay_pairs, replay_record)

BATCHES = 32  # mini-batches per snapshot by default (config.default_batches: 16 for the tiny preset)


# ----------------------------------------------------------------------------- inputs
def parse_steps(text: str) -> list[int]:
    try:
        steps = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise UsageError(
            f"--steps must be comma-separated snapshot steps, e.g. 200,1800,4800; got {text!r}"
        )
    if not steps:
        raise UsageError("--steps is empty")
    return steps


def select_groups(spec: str, groups: dict) -> list[str]:
    if spec == "all":
        return ["trunk"] + [g for g in groups if g != "trunk"]
    if spec not in groups:
        raise UsageError(
            f"--group must be trunk, all or one of {', '.join(g for g in groups if g != 'trunk')};"
            f" got {spec!r}"
        )
    return [spec]


def summary(GG, P, dirs: dict, rand: list, excluded: bool) -> dict:
    """geometry.fisher_stats of one loss and group from its Gram GG and inner products P with the
    spanning rows; `dirs` and `rand` are coefficient vectors on those rows. v_sw's entries are None
    where it is `excluded`."""
    named = {n: d for n, d in dirs.items() if not (excluded and n == "v_sw")}
    s = fisher_stats(GG, P @ torch.stack(list(named.values()) + rand, 1), list(named))
    s["q_random_mean"] = float(np.mean(s["q_random"]))
    if excluded and "v_sw" in dirs:
        for k in ("q", "q_median", "u1_overlap"):
            s[k]["v_sw"] = None
    return s


# ----------------------------------------------------------------------------- figure
def plot(out_dir: str, out: dict) -> str:
    """q(v) of the combined loss (with the median estimate of q(v_b) and rank-1 snapshots marked),
    of the LM loss and of the probe loss apart; lambda_1 / trace of the three; alpha; per-batch LM
    and probe gradient norms."""
    plt = pyplot()
    g0 = out["groups"][0]
    steps = np.array(out["steps"])
    rows = [r["groups"][g0] for r in out["table"]]
    nan = lambda xs: np.array([np.nan if x is None else x for x in xs], dtype=float)  # noqa: E731
    # noqa: E731  (log axes: a zero q is not drawn)
    pos = lambda xs: np.where(nan(xs) > 0, nan(xs), np.nan)
    styles = {
        "v_b": ("tab:red", r"$v_b$ (backbone)"),
        "v_sw": ("tab:blue", r"$v_{sw}$ (switching)"),
        "v_PC2": ("tab:purple", r"$v_{PC2}$"),
    }
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))

    def qpanel(ax, summ, title):
        qr = np.array([s["q_random"] for s in summ])
        ax.fill_between(steps, qr.min(1), qr.max(1), color="grey", alpha=0.3, lw=0,
                        label=f"random (K={qr.shape[1]}, min-max)")
        ax.plot(steps, qr.mean(1), color="grey", lw=1)
        for name, (color, label) in styles.items():
            if name in summ[0]["q"]:
                ax.plot(steps, pos([s["q"][name] for s in summ]), "o-", ms=3, color=color,
                        lw=1.5 if name != "v_PC2" else 1, label=label)
        ax.plot(steps, pos([s["q_median"]["v_b"] for s in summ]), "--", color="tab:red", lw=1,
                label=r"$v_b$, median over batches")
        rk = [t for t, s in zip(steps, summ) if s["rank1"]]
        if rk:
            ax.plot(rk, [0.96] * len(rk), "kv", ms=5, transform=ax.get_xaxis_transform(),
                    label=f"rank 1 ($\\lambda_1$/trace > {RANK1})")
        ax.set_yscale("log"), ax.set_title(title, fontsize=9), ax.legend(fontsize=6)

    qpanel(axes[0, 0], rows, f"combined loss: q(v) = ||Gv||^2 / M ({g0})")
    qpanel(axes[1, 0], [r["lm"] for r in rows], "LM loss only")
    qpanel(axes[1, 1], [r["probe"] for r in rows], "probe loss only")
    bx = axes[0, 1]
    for key, color, label in ((None, "k", "combined"), ("lm", "tab:green", "LM"),
                              ("probe", "tab:orange", "probe")):
        frac = [(r if key is None else r[key])["lambda1_frac"] for r in rows]
        bx.plot(steps, nan(frac), "o-", ms=3, color=color, label=label)
    bx.axhline(RANK1, color="grey", ls=":", lw=0.8)
    bx.set_ylim(0, 1.05), bx.set_ylabel(r"$\lambda_1$ / trace"), bx.legend(fontsize=7)
    bx.set_title(r"share of the top Fisher eigenvalue (1: one batch owns it)", fontsize=9)
    cx = axes[0, 2]
    cx.axhline(1, color="grey", ls=":", lw=0.8)
    for g in out["groups"]:
        cx.plot(
            steps,
            nan([r["groups"][g]["alpha"] for r in out["table"]]),
            "o-" if g == g0 else "-",
            ms=3,
            lw=1.8 if g == g0 else 0.8,
            color="k" if g == g0 else None,
            label=g,
        )
    cx.plot(steps, nan([r["alpha_median"] for r in rows]), "--", color="k", lw=1,
            label=f"{g0}, median estimate")
    cx.set_yscale("log"), cx.set_ylabel(r"$\alpha = q(v_b)$ / mean $q(w)$")
    cx.set_title("anisotropy", fontsize=9)
    cx.legend(fontsize=6, ncol=2)
    dx = axes[1, 2]  # per-batch gradient norms: LM smooth, probe spread over orders of magnitude
    for t, r in zip(steps, out["table"]):
        s_, wrong = r["groups"][g0], np.array(r["per_batch"]["n_wrong"]) > 0
        pn = np.array(s_["probe"]["grad_norms"])
        dx.scatter([t] * len(pn), np.where(pn > 0, pn, np.nan), s=6, lw=0,
                   c=np.where(wrong, "tab:orange", "tab:blue"))
        dx.scatter([t] * len(pn), s_["lm"]["grad_norms"], s=4, c="tab:green", lw=0)
    for color, label in (("tab:green", "LM, per batch"), ("tab:blue", "probe, no wrong answer"),
                         ("tab:orange", "probe, >= 1 wrong answer")):
        dx.scatter([], [], s=6, c=color, label=label)
    dx.set_yscale("log"), dx.set_ylabel(r"$\|g_i\|$")
    dx.set_title(f"per-batch gradient norms ({g0})", fontsize=9)
    dx.legend(fontsize=6)
    lam_step = out["config"]["lambda_step"]
    for a in axes.flat:
        a.set_xlabel("step")
        if steps.min() < lam_step <= steps.max():
            a.axvline(lam_step, color="k", ls="--", lw=0.8)
    fig.suptitle(
        f"{out['run']}: M = {out['batches']['n']} mini-batches of {out['batches']['batch_size']}",
        fontsize=9,
    )
    return save_figure(fig, os.path.join(out_dir, "backbone_fisher_analysis.png"), dpi=130)


# ----------------------------------------------------------------------------- main
def analyse(rec, grec, cfg, steps, anchor: int, groups, n: int, batch_size: int, K: int) -> dict:
    """Every number of the JSON from the trajectory record `rec` and the gradient record `grec`
    (first n mini-batches at each of `steps`, the first K random draws); cfg: the run's Config."""
    D = {g: rec.numel(rec.groups[g]) for g in groups}
    N1 = len(rec.steps)
    # directions as coefficients on the group's spanning rows [b; z] (trajectory rows, draws)
    H = {g: grec.span_gram(g, sum(rec.grams[k] for k in rec.groups[g])) for g in groups}
    pad = lambda c: torch.cat([c, torch.zeros(grec.K, dtype=torch.float64)])  # noqa: E731
    k = 2 if len(rec.row_steps(anchor)) >= 2 else 1  # one drift row has no second component
    pcas, coef = record_backbone(rec, anchor, k)
    dirs = {g: {"v_b": pad(coef[g][0]), **({"v_PC2": pad(coef[g][1])} if k == 2 else {})}
            for g in groups}
    peak, trough, sw_info = switching_pair(rec.metrics, rec.steps, anchor)
    if peak is not None:
        e = torch.zeros(N1, dtype=torch.float64)
        e[rec.index[peak]], e[rec.index[trough]] = 1, -1
        c = pad(rec.basis().T @ e)  # theta(peak) - theta(trough) on the rows b
        for g in groups:
            n2 = float(c @ H[g] @ c)
            if n2 > 0:
                dirs[g]["v_sw"] = c / math.sqrt(n2)
        switching = dict(
            peak_step=peak, trough_step=trough, **sw_info,
            cos_vb={g: float(dirs[g]["v_sw"] @ H[g] @ dirs[g]["v_b"])
                    for g in groups if "v_sw" in dirs[g]})
        lo, hi = switch_interval(peak, trough)
        switching["rule"] = (
            "v_sw is not measured at the snapshots whose replayed training steps fall in "
            f"[{lo}, {hi}): those batches made the update that defines it (table rows: "
            "v_sw_excluded)"
        )
    else:
        switching = dict(omitted=sw_info)
    # random_directions(v_b, K, [v_b], seed) on the record's draws z_1..z_K
    rand = {g: span_orthonormal(H[g], [dirs[g]["v_b"]], N1, K) for g in groups}

    # Fisher quantities at each step: LM and probe losses apart, then LM + lambda probe
    table, batches_used = [], {}
    for t in steps:
        lam = cfg.lambda_at(t)
        used = batches_used[str(t)] = batch_record(cfg, replay_pairs(cfg, t, n, batch_size))
        # v_sw is made by the updates of its pair's interval: never measured on those batches
        excluded = peak is not None and replays_switch(range(used["from"][0], used["to"][0] + 1),
                                                       peak, trough)
        counts = grec.meta["probe"][str(t)]
        row = dict(step=t, **{"lambda": lam}, v_sw_excluded=excluded,
                   per_batch=dict(n_probe=counts["n_probe"][:n], n_wrong=counts["n_wrong"][:n]),
                   groups={})
        for g in groups:
            lm, pr, s = (summary(*grec.products(g, t, name, lam, n), dirs[g], rand[g][:K], excluded)
                         for name in ("lm", "probe", "combined"))
            s.update(q_lm=lm["q"], q_probe=pr["q"], lm=lm, probe=pr)
            row["groups"][g] = s
        table.append(row)

    gb = n * D[groups[0] if len(groups) == 1 else "trunk"] * 4 / 1e9
    return dict(
        analysis="backbone_fisher_analysis",
        anchor=anchor,
        groups=groups,
        definitions=dict(
            G=(
                "M x D matrix of mini-batch gradients of L_LM + lambda(t) L_probe at theta(t),"
                " float32, canonical trunk order (model.trunk_keys), restricted to the group's"
                " columns; computed as G_LM + lambda G_probe (the gradient is linear in the loss),"
                " G_LM and G_probe each from its own backward pass of one shared forward (L_probe"
                " from the head at the answer positions alone)"
            ),
            split=(
                "every quantity for three losses: combined (the keys of groups.<g> themselves, q),"
                " LM only (groups.<g>.lm, q_lm) and probe only (groups.<g>.probe, q_probe). After"
                " the probe is learned most mini-batches carry almost no probe gradient and one"
                " batch with a wrong answer can carry 10^4 times more: then the combined and probe"
                " Fishers are that one batch"
            ),
            per_batch=(
                "per_batch.n_probe / n_wrong: probe answers in each mini-batch and those the model"
                " gets wrong (greedy argmax at the answer); <loss>.grad_norms: ||g_i|| per"
                " mini-batch and group"
            ),
            median=(
                "q_median(v) = median over the mini-batches of <g_i, v>^2 beside the mean q(v);"
                " alpha_median = q_median(v_b) / mean_k q_median(w_k): robust to one dominating"
                " batch"
            ),
            lambda1_frac=(
                f"lambda_1 / trace(F); rank1 = lambda1_frac > {RANK1}: the Fisher of M batches "
                "is one direction"
            ),
            F="empirical Fisher F = G^T G / M (never formed)",
            q="q(v) = v^T F v = ||G v||^2 / M for unit v",
            v_b=(
                "first right singular vector of the uncentered drift rows theta(t) - theta(anchor),"
                " sign a(T) > 0"
            ),
            v_PC2=(
                "second right singular vector of the same rows (sign: last row's coordinate >= 0)"
            ),
            v_sw=(
                "(theta(peak) - theta(trough)) / norm of THE switching pair"
                " (geometry.switching_pair: the most prominent p_ood peak and its adjacent trough);"
                " None at steps whose replayed batches lie in the pair's interval (v_sw_excluded)"
            ),
            random=(
                f"K = {K} Gaussian directions Gram-Schmidt orthonormalized against v_b and"
                f" each other (geometry.random_directions, seed {grec.meta['seed']}), the same at"
                " every step"
            ),
            alpha=(
                "q(v_b) / mean_k q(w_k) (None when every q(w_k) is 0, e.g. a probe-free batch set)"
            ),
            lambda1=(
                "top eigenvalue of F (from the M x M Gram G G^T); trace = trace(F) = sum_i"
                " ||g_i||^2 / M"
            ),
            u1_overlap="|<u_1, v>| for the top eigenvector u_1 of F",
            precision=(
                "fp32 forward/backward"
                if grec.meta["precision"] == "fp32"
                else (
                    "bf16 autocast forward/backward as in training (float32 gradients); float64"
                    " products, TF32 off"
                )
            ),
            memory=f"G takes M x D x 4 B = {gb:.3g} GB here (paper trunk, M = 32: 3.2 GB)",
            record=("computed from the trajectory record and the gradient record (runs.py:"
                    " GRADIENT_RECORD_DEFINITION): every direction is a combination c of the"
                    " trajectory rows b_j and the random draws z_k, <g_i, v> = sum_j c_j"
                    " <g_i, b_j>, and the Gram G G^T is the record's"),
        ),
        **replay_record(cfg, n, batch_size, batches_used),
        D=D,
        backbone={
            g: dict(
                pc1=pcas[g].pc1,
                pc2=float(pcas[g].rho[1]) if k == 2 else None,
                k95=pcas[g].k95,
                rows=len(rec.row_steps(anchor)),
            )
            for g in groups
        },
        switching=switching,
        steps=steps,
        table=table,
    )


def run(args, argv) -> tuple[str, dict, str]:
    t0 = time.perf_counter()
    if ((args.batches is not None and args.batches < 1) or args.K < 1
            or (args.batch_size is not None and args.batch_size < 1)):
        raise UsageError("--batches, --batch-size and --K must be >= 1")
    if args.every is not None and args.every < 1:
        raise UsageError(f"--every must be >= 1, got {args.every}")
    asked = parse_steps(args.steps) if args.steps is not None else None
    path = out_path(args, "backbone_fisher_analysis")

    def select(steps, check, groups):  # --steps, or every k-th snapshot from the anchor on
        if asked is None:
            steps = [s for s in steps if s >= args.anchor][::args.every or 1]
        else:
            check(asked, "--steps step")
        return asked or steps, select_groups(args.group, groups)
    rec, grec, cfg, (steps, groups), state, device, name = open_gradient_analysis(
        args, argv, select, args.K, args.seed, batches=BATCHES)
    out = analyse(rec, grec, cfg, steps, args.anchor, groups, args.batches, args.batch_size, args.K)
    out = dict(run=name, **out, run_state=state, record=record_info(rec),
               gradient_record=getattr(grec, "path", None))
    out = write_result(
        path,
        out.pop("analysis"),
        out.pop("config"),
        out.pop("definitions"),
        out["table"],
        t0,
        # results = table (kept)
        argv,
        device,
        __file__,
        analysis="backbone_fisher_analysis",
        **out,
    )
    return path, out, plot(os.path.dirname(os.path.abspath(path)), out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = analysis_parser(__doc__, "backbone_fisher_analysis", replay_batches=BATCHES, record=True)
    which = ap.add_mutually_exclusive_group()
    which.add_argument(
        "--steps",
        default=None,
        help="comma-separated snapshot steps, e.g. 200,1800,4800,9600 (the paper's Table 6)",
    )
    which.add_argument("--every", type=int, default=None,
                       help="every k-th snapshot from the anchor on (default: 1, all)")
    ap.add_argument("--K", type=int, default=10,
                    help="random directions for the anisotropy (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random directions (default 0)")
    ap.add_argument("--group", default="trunk",
                    help="trunk (default) | blockN | all (trunk and every block)")
    args = ap.parse_args(argv)
    path, out, fig = cli(run, args, argv)
    g0 = out["groups"][0]
    last = out["table"][-1]["groups"][g0]
    fmt = lambda x: "n/a" if x is None else f"{x:.3g}"  # noqa: E731
    rank1 = sum(r["groups"][g0]["rank1"] for r in out["table"])
    omitted = ('' if 'v_sw' in last['q']
               else '; v_sw omitted (' + out['switching']['omitted'] + ')')
    print(
        f"{path}: {len(out['steps'])} steps, {out['provenance']['wall_s']} s; {g0} at step"
        f" {out['steps'][-1]}: q(v_b) {fmt(last['q']['v_b'])} (LM {fmt(last['q_lm']['v_b'])}, probe"
        f" {fmt(last['q_probe']['v_b'])}), alpha {fmt(last['alpha'])}, |<u1, v_b>|"
        f" {fmt(last['u1_overlap']['v_b'])}; rank-1 at {rank1}"
        f" steps{omitted};"
        f" figure: {os.path.basename(fig)}"
    )


if __name__ == "__main__":
    main()
