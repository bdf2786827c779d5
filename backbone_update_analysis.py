"""Update-direction alignment with the backbone: C(t) = <u(t), v_b> / ||u(t)||, its sign flip and
phase means.

    python backbone_update_analysis.py --run runs/seed42  # paper Tables 3-4, Figure 2 (red lines)
    python backbone_update_analysis.py --run runs/tiny_seed42 --anchor 0
    python backbone_update_analysis.py --record \
        runs/tiny_seed42/analysis/trajectory_record.safetensors

u(t) = theta(t) - theta(t_prev), t_prev the previous snapshot step (200 steps earlier on
the standard schedule; `--lag L` takes t_prev = t - L instead). u(t) is a difference of drift rows,
so C(t) comes from the T x T Gram of the run's trajectory record (runs.run_record), as does v_b
(first right singular vector of the uncentered drift rows, a(T) > 0: the same v_b as
trajectory_pca_uncentered.py). Each update is also labelled by its midpoint (t - 100 for 200-step
updates, the paper's convention), which sets its phase and t*; C(t) of the matched random walk (the
same increment norms, orthogonal directions) is reported beside ours.
Writes <run>/analysis/backbone_update_analysis.json and backbone_update_alignment.png (next to
--out).
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

import geometry as geo
from common import analysis_parser, cli, fmt, out_path, pyplot, save_figure, write_result
from config import UsageError
from runs import lambda_step, open_analysis, record_info

# paper phases: early t < 2000, mid 2000-6000, late t > 6000
PAPER_STEPS, PAPER_BOUNDS = 10_000, (2_000, 6_000)

DEFINITIONS = {
    "anchor": (
        "theta(anchor) is the snapshot at step `anchor` (default 0); only snapshots at or after it"
        " are used."
    ),
    "rows": (
        "x(t) = theta(t) - theta(anchor) per group (block<l>: its 4 weight matrices; trunk: all"
        " blocks), canonical order of model.trunk_keys; G = X X^T accumulated in float64 from"
        " float32 snapshots, TF32 off."
    ),
    "backbone": (
        "v_b = first right singular vector of the uncentered rows X (unit norm), sign fixed so that"
        " a(T) = <x(T), v_b> > 0 (the paper's signs may be the opposite: its SVD sign was not"
        " fixed)."
    ),
    "u": (
        "u(t) = theta(t) - theta(t_prev) = x(t) - x(t_prev), x(anchor) = 0; t_prev in u_prev_steps."
    ),
    "C": (
        "C(t) = <u(t), v_b> / ||u(t)|| (signed); abs_C = |C(t)|; from G: C = (e G c_b) / sqrt(e G"
        " e^T) with e the coefficients of u(t) over the rows and v_b = X^T c_b."
    ),
    "labels": (
        "each update u(t) = theta(t) - theta(t_prev) is labelled by its midpoint (t + t_prev) / 2"
        " (update_mid_steps; t - 100 for 200-step updates: the paper's convention, SPEC 6); phases,"
        " early_sign and t_star use these labels. by_end_step: the same labelled by the later step"
        " t (summary *_end)."
    ),
    "early_sign": (
        "sign of the mean of C over the early phase (of C at the first u when the early phase is"
        " empty)."
    ),
    "t_star": (
        "the first label (in the order of u) whose C has the sign opposite to early_sign (the"
        " paper's 'first checkpoint where C(t) crosses zero'); t_star_persistent: the first label"
        " from which C keeps the opposite sign to the end of the run; None when there is none."
    ),
    "phases": (
        "the paper's phases of its 10,000-step run by update midpoint, early < 2000, mid 2000-6000,"
        " late > 6000, scaled to this run's length L: early < 0.2 L, mid 0.2 L-0.6 L, late > 0.6 L."
    ),
    "phase_means": (
        "mean of |C| and of C over the updates of each phase; abs_C_peak: the largest |C| in it."
    ),
    "matched_walk": (
        "the same updates in the matched random walk: increments with the observed norms ||x(t) "
        "- x(t_prev)|| between consecutive snapshots and mutually orthogonal directions (the D "
        "-> inf limit of random ones), C(t) against that walk's own backbone "
        "(matched_walk_update_C), its phase means and sign flip. It never flips sign: its "
        "backbone has a positive component on every increment."
    ),
}


def parse_args(argv):
    p = analysis_parser(__doc__, "backbone_update_analysis", record=True)
    p.add_argument(
        "--lag",
        type=int,
        default=0,
        help="u(t) = theta(t) - theta(t - lag); 0 (default): the previous snapshot",
    )
    args = p.parse_args(argv)
    if args.lag < 0:
        p.error("--lag must be >= 0")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    cli(run, parse_args(argv), argv)


def phase_stats(labels, C, phases) -> dict:
    """Phase means of |C| and C and the sign flip of the updates labelled `labels` (NaN C left
    out)."""
    ok = [i for i, c in enumerate(C) if np.isfinite(c)]
    out = dict(phase_means={})
    for name, inside in phases.items():
        sel = [C[i] for i in ok if inside(labels[i])]
        out["phase_means"][name] = dict(abs_C=float(np.mean(np.abs(sel))) if sel else None,
                                        C=float(np.mean(sel)) if sel else None,
                                        abs_C_peak=float(np.max(np.abs(sel))) if sel else None,
                                        n=len(sel))
    lab, C_ = [labels[i] for i in ok], [C[i] for i in ok]
    out.update(sign_flip(lab, C_, [phases["early"](t) for t in lab]))
    return out


def sign_flip(steps, C, early_mask) -> dict:
    early = [c for c, e in zip(C, early_mask) if e]
    s0 = np.sign(np.mean(early) if early else C[0])
    flips = [t for t, c in zip(steps, C) if np.sign(c) == -s0]
    persistent = None
    for i in range(len(C) - 1, -1, -1):  # walk back from the end while C keeps the opposite sign
        if np.sign(C[i]) != -s0:
            break
        persistent = steps[i]
    return dict(early_sign=int(s0), t_star=flips[0] if flips else None,
                t_star_persistent=persistent)


def update_pairs(rows, anchor: int, lag: int) -> list[tuple[int, int]]:
    """geometry.update_pairs of the rows; one line when there is none."""
    pairs = geo.update_pairs(rows, anchor, lag)
    if not pairs:
        raise UsageError(f"no snapshot pair {lag} steps apart at or after the anchor {anchor}")
    return pairs


def analyse(grams: dict, rows, anchor: int, lag: int, run_length: int) -> dict:
    """C(t) and its summaries per group from the drift Grams {group: G} of the rows at steps `rows`:
    a function of a trajectory record (or of the snapshots) alone."""
    pairs = update_pairs(rows, anchor, lag)
    E = geo.update_rows(pairs, rows)  # u(t) = x(t) - x(t_prev), x(anchor) = 0
    steps, mids = [t for t, _ in pairs], [geo.midpoint(t, tp) for t, tp in pairs]
    b1, b2 = (b * run_length / PAPER_STEPS for b in PAPER_BOUNDS)
    phases = dict(early=lambda t: t < b1, mid=lambda t: b1 <= t <= b2, late=lambda t: t > b2)
    groups = {}
    for g in grams:
        al = geo.update_cos(grams[g], geo.pca(grams[g]).coef(1)[:, 0], E)
        C = al["C"].tolist()
        res = dict(C=[c if np.isfinite(c) else None for c in C],
                   abs_C=[abs(c) if np.isfinite(c) else None for c in C],
                   u_norm=al["u_norm"].tolist(), u_dot_vb=al["u_dot_vb"].tolist(),
                   **phase_stats(mids, C, phases), by_end_step=phase_stats(steps, C, phases))
        Cw = geo.matched_walk_alignment(grams[g], E).tolist()
        res.update(matched_walk_update_C=[c if np.isfinite(c) else None for c in Cw],
                   matched_walk=phase_stats(mids, Cw, phases))
        groups[g] = res
    summary = {
        g: dict(
            t_star=r["t_star"],
            t_star_persistent=r["t_star_persistent"],
            early_sign=r["early_sign"],
            **{f"{ph}_abs_C": r["phase_means"][ph]["abs_C"] for ph in phases},
            **{f"{ph}_C": r["phase_means"][ph]["C"] for ph in phases},
            t_star_end=r["by_end_step"]["t_star"],
            **{f"{ph}_abs_C_end": r["by_end_step"]["phase_means"][ph]["abs_C"] for ph in phases},
            **{
                f"matched_walk_{ph}_abs_C": r["matched_walk"]["phase_means"][ph]["abs_C"]
                for ph in phases
            },
            matched_walk_t_star=r["matched_walk"]["t_star"],
        )
        for g, r in groups.items()
    }
    others = [g for g in groups if g not in ("block0", "trunk")]
    if others:
        def med(ph, key=None):
            return _median([(groups[g][key] if key else groups[g])["phase_means"][ph]["abs_C"]
                            for g in others])
        summary["median_of_blocks_1_on"] = {
            **{f"{ph}_abs_C": med(ph) for ph in phases},
            **{f"{ph}_abs_C_end": med(ph, "by_end_step") for ph in phases},
        }
    return dict(
        groups=groups,
        summary=summary,
        pairs=pairs,
        steps=steps,
        mids=mids,
        phases=dict(
            run_length=run_length,
            scale=run_length / PAPER_STEPS,
            early=f"t < {b1:g}",
            mid=f"{b1:g} <= t <= {b2:g}",
            late=f"t > {b2:g}",
        ),
    )


def run(args, argv):
    t0 = time.perf_counter()
    out_json = out_path(args, "backbone_update_analysis")
    # --- load: the run's trajectory record (made if missing or stale), or a record alone
    rec, _, state, device = open_analysis(
        args, argv, check=lambda rows: update_pairs(rows, args.anchor, args.lag))
    rows = rec.row_steps(args.anchor)
    grams = {g: geo.split_anchor(Ga)[0] for g, Ga in rec.group_grams(args.anchor).items()}
    L = int(rec.config.get("steps") or rec.steps[-1])
    res = analyse(grams, rows, args.anchor, args.lag, L)
    groups, summary, pairs, steps, mids = (res[k]
                                           for k in ("groups", "summary", "pairs", "steps", "mids"))

    # --- save
    out_dir = os.path.dirname(os.path.abspath(out_json))
    os.makedirs(out_dir, exist_ok=True)
    fig = plot_alignment(groups, mids, lambda_step(rec.config, mids), out_dir)
    gaps = sorted({t - tp for t, tp in pairs})
    definitions = dict(
        DEFINITIONS,
        u_choice=("consecutive snapshot steps" if args.lag == 0 else f"lag of {args.lag} steps")
        + f"; gaps t - t_prev in this run: {gaps}",
    )
    result = write_result(
        out_json,
        "backbone_update_analysis",
        rec.config,
        definitions,
        summary,
        t0,
        argv,
        device,
        __file__,
        anchor=args.anchor,
        snapshot_steps=rows,
        u_steps=steps,
        u_prev_steps=[tp for _, tp in pairs],
        update_mid_steps=mids,
        phases=res["phases"],
        summary=summary,
        groups=groups,
        files=[os.path.basename(fig)],
        run_state=state,
        record=record_info(rec),
    )
    s = summary["block0"]
    print(
        f"{out_json}: {len(steps)} updates; block0 early |C| {fmt(s['early_abs_C'])}, t*"
        f" {s['t_star']}; wall {result['provenance']['wall_s']} s"
    )


def _median(xs):
    xs = [x for x in xs if x is not None]
    return float(np.median(xs)) if xs else None


# ----------------------------------------------------------------------------- figure
def plot_alignment(groups: dict, steps, lam_step, out_dir: str) -> str:
    """Figure 2 (red lines): |C(t)| solid and signed C(t) dashed for block 0, against the updates'
    midpoints, with the matched random walk's C(t) (green, dotted); small multiples for every
    group."""
    plt = pyplot()

    def draw(ax, r, title, fs):
        nan = lambda xs: [np.nan if x is None else x for x in xs]
        ax.plot(steps, nan(r["abs_C"]), color="tab:red", lw=1.5, label="|C(t)|")
        ax.plot(steps, nan(r["C"]), color="tab:red", ls="--", lw=1, label="C(t)")
        ax.plot(steps, nan(r["matched_walk_update_C"]), color="tab:green", ls=":", lw=1.2,
                label="matched random walk")
        ax.axhline(0, color="k", lw=0.5)
        if lam_step is not None:
            ax.axvline(lam_step, color="k", ls=":", lw=0.8, label="lambda step")
        if r["t_star"] is not None:
            ax.axvline(r["t_star"], color="tab:red", ls=":", lw=0.8, alpha=0.6)
        ax.set_title(title, fontsize=fs, loc="left", pad=2)
        ax.tick_params(labelsize=fs - 1)

    names = list(groups)
    ncol = min(3, len(names))
    nrow = -(-len(names) // ncol)
    fig = plt.figure(figsize=(5 + 2.4 * ncol, max(3.8, 1.9 * nrow)))
    gs = fig.add_gridspec(1, 2, width_ratios=[5, 2.4 * ncol])
    ax = fig.add_subplot(gs[0])
    draw(ax, groups["block0"], "block 0: update-backbone alignment", 9)
    ax.set_xlabel("update midpoint (step)"), ax.set_ylabel("cos(u(t), v_b)"), ax.legend(fontsize=8)
    sub = gs[1].subgridspec(nrow, ncol)
    axes = []
    for i, g in enumerate(names):
        a = fig.add_subplot(sub[i // ncol, i % ncol], sharex=axes[0] if axes else None,
                            sharey=axes[0] if axes else None)
        draw(a, groups[g], g, 8)
        # outer labels only
        a.tick_params(labelbottom=i >= len(names) - ncol, labelleft=i % ncol == 0)
        a.xaxis.set_major_locator(plt.MaxNLocator(3))
        axes.append(a)
    return save_figure(fig, os.path.join(out_dir, "backbone_update_alignment.png"))


if __name__ == "__main__":
    main()
