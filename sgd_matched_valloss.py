"""Trajectory geometry at matched validation loss (paper section 5.2, Table 10): runs A and C.

    python sgd_matched_valloss.py  # paper preset; needs runs A and C of sgd_control.py
    python sgd_matched_valloss.py --preset tiny  # CPU, seconds (after sgd_control.py --preset tiny)
    # run A against the control D (after backbone_controls.py)
    python sgd_matched_valloss.py --against D

Momentum-SGD (run C) never gets below val ~5.1; AdamW (run A) passes that loss before its first
evaluation after step 0. The comparison therefore takes:
  * AdamW's earliest windows [0, 200, 400], [0, 200, 400, 600] and [200, 400, 600] (the paper's
    step 1 is our step 0, the true initialization);
  * run C's plateau windows, found from its validation loss by `plateau_windows`: the plateau
    starts at the first evaluation t* whose val lies within --band (default 0.1 nats) of C's best
    val, and the windows are the 3 and 5 evaluations centred on t* (shifted to stay inside the run
    when t* is near either end). With the paper's run C (best 5.10, val within 5.1-5.2 from step
    2,200) this gives its windows [2000, 2400] and [1800, 2600];
  * the reference windows AdamW [200, 1000], AdamW [600, 2000] and SGD+momentum [600, 2000].
Each window [s, e] is analysed with runs.window_summary, anchor s, over every snapshot in
(s, e] (runs A and C have snapshots every 200 steps, every 50 in [600, 2000], every 100 after):
PC1 of raw and row-normalized rows, k95, k99, drift ||theta(e) - theta(s)||, and the range of val
over the evaluations in the window, and whether that range contains C's best val + band
(spans_target). The JSON also says between which evaluations run A passes that loss.

With --against D (after backbone_controls.py): run A against the control D, SGD + momentum at the
learning rate of its sweep, which learns. Levels: D's validation loss at steps 1,000, 2,000 and
4,000; for each level and run, the 5 evaluations centred on the run's first evaluation at or below
it (A passes each level early, D at that step or before); and both runs' [600, 2000]. Every window
carries its matched null, cos(v_b, -theta(start)) and the PC1 with that component removed.

Writes <out_dir>/[tiny_]sgd_control/sgd_matched_valloss.{json,csv,png} (with --against D:
sgd_matched_valloss_D.*) (or --out DIR); for the paper preset, or with --results DIR, copies them
into results/sgd_control/.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import experiments as ex
from common import (
    cli,
    copy_results,
    fmt,
    format_table,
    pyplot,
    save_figure,
    write_csv,
    write_result,
)
from config import Parser, UsageError, add_config_args, given_overrides
from runs import curves, existing_run

# paper steps; [1, 200, 400] etc. in the paper
ADAMW_EARLY = [(0, 400), (0, 600), (200, 600)]
REFERENCE = [("A", 200, 1000), ("A", 600, 2000), ("C", 600, 2000)]
HALF_WIDTHS = (1, 2)                                        # plateau windows of 3 and 5 evaluations
BAND = 0.1                                                  # nats above C's best val
COLUMNS = [
    "run",
    "optimizer",
    "kind",
    "window",
    "start",
    "end",
    "n_snapshots",
    "val_max",
    "val_min",
    "pc1_pct",
    "pc1_normalized_pct",
    "k95",
    "k99",
    "drift",
    "spans_target",
    "null_matched_pc1_pct",
    "cos_vb_theta0",
    "pc1_decay_removed_pct",
    "target",
]
# paper steps: D's val there, the matched levels
D_TARGET_STEPS = (1000, 2000, 4000)


def plateau_windows(steps, vals, band: float = BAND, half_widths=HALF_WIDTHS) -> dict:
    """Plateau windows of an evaluation series (steps ascending, vals their validation losses).

    best = min(vals); the plateau starts at t* = the first step with val <= best + band; for each h
    in `half_widths` the window is the 2h + 1 evaluations centred on t*, shifted (not cut) to stay
    within the series, or the whole series when it is shorter. Returns best_val, best_step, target
    (= best + band), entry_step (t*) and windows [(start step, end step), ...]."""
    steps, vals = list(steps), [float(v) for v in vals]
    if len(steps) != len(vals) or len(steps) < 2:
        raise UsageError(
            f"need at least 2 evaluations with a val loss each, got {len(steps)} steps and"
            f" {len(vals)} values"
        )
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise UsageError("evaluation steps must be strictly increasing")
    if not all(map(math.isfinite, vals)) or not band >= 0:
        raise UsageError("val losses must be finite and the band >= 0")
    best_i = min(range(len(vals)), key=vals.__getitem__)
    target = vals[best_i] + band
    i = next(j for j, v in enumerate(vals) if v <= target)
    wins = [centred_window(steps, i, h) for h in half_widths]
    return dict(best_val=vals[best_i], best_step=steps[best_i], band=band, target=target,
                entry_step=steps[i], windows=wins)


def centred_window(steps, i: int, h: int) -> tuple[int, int]:
    """(start, end) steps of the 2h + 1 evaluations centred on evaluation i, shifted (not cut) to
    stay within the series, or the whole series when it is shorter."""
    lo = min(max(0, i - h), max(0, len(steps) - 1 - 2 * h))
    return steps[lo], steps[min(len(steps) - 1, lo + 2 * h)]


def first_crossing(steps, vals, target: float):
    """(s_before, s_after): the first consecutive evaluations between which val falls to <= target;
    (None, steps[0]) if the first one is already there, None if it never gets there."""
    for j, v in enumerate(vals):
        if v <= target:
            return (steps[j - 1] if j else None, steps[j])
    return None


def window_label(steps: list[int]) -> str:
    return "[" + ", ".join(map(
        str, steps)) + "]" if len(steps) <= 4 else f"[{steps[0]}, ..., {steps[-1]}]"


def window_row(run: str, kind: str, cfg, metrics: list[dict], start: int,
               end: int) -> tuple[dict, dict]:
    ws = ex.control_window(cfg, start, end, groups=["trunk"])
    t = ws["groups"]["trunk"]
    vals = [r["val_loss"] for r in metrics if start <= r["step"] <= end]
    snaps = [start] + ws["row_steps"]
    row = dict(
        run=run,
        optimizer=ex.CONTROLS[run]["label"],
        kind=kind,
        window=window_label(snaps),
        start=start,
        end=end,
        n_snapshots=len(snaps),
        val_max=max(vals, default=None),
        val_min=min(vals, default=None),
        pc1_pct=100 * t["pc1"],
        pc1_normalized_pct=100 * t["pc1_normalized"],
        k95=t["k95"],
        k99=t["k99"],
        drift=t["drift"],
        null_matched_pc1_pct=100 * t["null_matched_pc1"],
        cos_vb_theta0=t["cos_vb_theta0"],
        pc1_decay_removed_pct=(
            None if t["pc1_decay_removed"] is None else 100 * t["pc1_decay_removed"]
        ),
    )
    return row, ws


def spans(row: dict, target: float) -> bool:
    """Whether the window's evaluations reach down to `target` from above (val_max >= target
    >= val_min)."""
    return row["val_min"] is not None and row["val_min"] <= target <= row["val_max"]


def format_rows(rows: list[dict]) -> str:
    head = [
        "optimizer", "kind", "window", "val range", "PC1 %", "matched %", "PC1n %", "k95", "k99",
        "drift"
    ]
    body = [
        [
            r["optimizer"],
            r["kind"],
            r["window"],
            f"{fmt(r['val_max'], 2)}-{fmt(r['val_min'], 2)}",
            fmt(r["pc1_pct"], 1),
            fmt(r.get("null_matched_pc1_pct"), 1),
            fmt(r["pc1_normalized_pct"], 1),
            r["k95"],
            r["k99"],
            fmt(r["drift"], 3),
        ]
        for r in rows
    ]
    return format_table(head, body)


def plot(record: dict, path: str):
    """Validation loss of A and C with the windows marked; PC1 (raw, row-normalized) per window."""
    plt = pyplot()
    colors = {"A": "tab:blue", "C": "tab:green", "D": "tab:red"}
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for run, c in record["curves"].items():
        ax[0].plot(c["step"], c["val_loss"], color=colors[run],
                   label=f"{run} {ex.CONTROLS[run]['label']}")
    p = record.get("plateau")
    if p:
        ax[0].axhspan(p["best_val"], p["target"], color="tab:green", alpha=0.15,
                      label=f"C's best val + {p['band']}")
    for k, tg in enumerate(record.get("targets", [])):
        ax[0].axhline(tg["val"], color="tab:red", ls=":", lw=0.8,
                      label="matched levels (D's val)" if k == 0 else None)
    vals = [v for c in record["curves"].values() for v in c["val_loss"]]
    top, span = max(vals), max(vals) - min(vals) or 1.0
    # matched windows, stacked above the curves
    for k, r in enumerate(x for x in record["rows"] if x["kind"] == "matched"):
        y = top + (0.05 + 0.04 * k) * span
        ax[0].plot([r["start"], r["end"]], [y, y], color=colors[r["run"]], lw=3, alpha=0.8,
                   solid_capstyle="butt")
    ax[0].set_xlabel("step"), ax[0].set_ylabel("validation loss"), ax[0].legend(fontsize=7)
    rows = record["rows"]
    x = range(len(rows))
    ax[1].bar([i - 0.2 for i in x], [r["pc1_pct"] for r in rows], width=0.4,
              color=[colors[r["run"]] for r in rows], label="raw rows")
    ax[1].scatter(
        [i - 0.2 for i in x],
        [r["null_matched_pc1_pct"] for r in rows],
        marker="_",
        s=150,
        lw=2,
        color="k",
        zorder=3,
        label="matched null",
    )
    ax[1].bar(
        [i + 0.2 for i in x],
        [r["pc1_normalized_pct"] for r in rows],
        width=0.4,
        color=[colors[r["run"]] for r in rows],
        alpha=0.45,
        label="row-normalized",
    )
    ax[1].set_xticks(
        list(x),
        [f"{r['run']} {r['window']}" + ("*" if r["kind"] == "reference" else "") for r in rows],
        rotation=60,
        ha="right",
        fontsize=7,
    )
    ax[1].set_ylim(0, 105), ax[1].set_ylabel("trunk PC1 (%)"), ax[1].legend(fontsize=7)
    ax[1].set_title("* reference windows", fontsize=8)
    fig.suptitle(
        f"Matched validation loss, A against {record.get('against', 'C')} ({record['preset']} "
        f"preset, seed {record['seed']})",
        fontsize=10,
    )
    save_figure(fig, path)


def finished_runs(cfgs: dict, script: str) -> dict:
    """{run: existing_run info} of finished runs, or a UsageError that says how to train them."""
    runs = {}
    for r, cfg in cfgs.items():
        info = existing_run(cfg)
        if info is None or not info["metrics"]:
            raise UsageError(
                f"run {r} not found at {cfg.run_dir}; train it first: python {script} --runs "
                f"{','.join(cfgs)} (with the same options)"
            )
        if info["status"] is None or info["status"]["status"] == "running":
            raise UsageError(
                f"run {r} at {cfg.run_dir} is not finished; finish it first: python {script} "
                f"--runs {r}"
            )
        runs[r] = info
    return runs


def run(ns, argv) -> tuple[dict, list[str]]:
    return run_against_d(ns, argv) if ns.against == "D" else run_against_c(ns, argv)


def run_against_d(ns, argv) -> tuple[dict, list[str]]:
    """A against D at the validation losses that D reaches at D_TARGET_STEPS: for each level and
    run, the 5 evaluations centred on the run's first evaluation at or below it; and both runs'
    [600, 2000]."""
    t0 = time.perf_counter()
    given = given_overrides(ns)
    sweep = ex.d_sweep_outcome(given)
    if sweep["lr"] is None:
        raise UsageError("run D needs its learning-rate sweep; train it first: "
                         "python backbone_controls.py --runs A,D")
    cfgs = {"A": ex.control_config("A", given), "D": ex.new_control_config("D", given, sweep["lr"])}
    runs = finished_runs(cfgs, "backbone_controls.py")
    preset = cfgs["A"].preset
    out, results = ex.output_dirs("sgd_control", cfgs["A"], ns.out, ns.results)
    series = {r: ([m["step"] for m in info["metrics"]], [m["val_loss"] for m in info["metrics"]])
              for r, info in runs.items()}
    targets, todo = [], []
    for s in D_TARGET_STEPS:
        st, vals = series["D"]
        at = [v for t, v in zip(st, vals) if t == ex.exp_steps(preset, s)]
        if not at:
            continue
        tg = dict(step=ex.exp_steps(preset, s), val=at[0], crossings={})
        for r, (st_r, vals_r) in series.items():
            i = next((j for j, v in enumerate(vals_r) if v <= tg["val"]), None)
            tg["crossings"][r] = None if i is None else st_r[i]
            if i is not None:
                todo.append((r, "matched", *centred_window(st_r, i, max(HALF_WIDTHS)), tg["val"]))
        targets.append(tg)
    w0, w1 = ex.window(preset)
    todo += [(r, "reference", w0, w1, None) for r in ("A", "D")]
    rows, summaries = [], []
    for run_, kind, s, t, level in todo:
        row, ws = window_row(run_, kind, cfgs[run_], runs[run_]["metrics"], s, t)
        row.update(target=level, spans_target=None if level is None else spans(row, level))
        rows.append(row)
        summaries.append(ws)
    at = [ex.exp_steps(preset, s) for s in D_TARGET_STEPS]
    rule = (
        f"levels: D's validation loss at steps {at}; for each level and run, the"
        f" {2 * max(HALF_WIDTHS) + 1} evaluations centred on the run's first evaluation at or below"
        " it (shifted to fit); reference: both runs' window [600, 2000] (paper steps)"
    )
    paths = [os.path.join(out, f"sgd_matched_valloss_D.{x}") for x in ("json", "csv", "png")]
    config = dict(preset=preset, seed=cfgs["A"].seed, d_lr=sweep["lr"])
    record = write_result(
        paths[0],
        "sgd_matched_valloss_D",
        config,
        dict(rule=rule),
        rows,
        t0,
        argv,
        cfgs["A"].device,
        __file__,
        against="D",
        preset=preset,
        seed=cfgs["A"].seed,
        run_dirs={r: c.run_dir for r, c in cfgs.items()},
        sweep=sweep,
        targets=targets,
        rule=rule,
        rows=rows,
        window_summaries=summaries,
        curves={r: curves(info["metrics"]) for r, info in runs.items()},
    )
    write_csv(paths[1], rows, COLUMNS)
    plot(record, paths[2])
    return record, paths + copy_results(paths, results)


def run_against_c(ns, argv) -> tuple[dict, list[str]]:
    t0 = time.perf_counter()
    given = given_overrides(ns)
    cfgs = {r: ex.control_config(r, given) for r in ("A", "C")}
    runs = finished_runs(cfgs, "sgd_control.py")
    preset = cfgs["A"].preset
    out, results = ex.output_dirs("sgd_control", cfgs["A"], ns.out, ns.results)
    # noqa: E731  (exp_steps maps 0 to 1; step 0 stays 0)
    e = lambda n: n and ex.exp_steps(preset, n)
    mc = runs["C"]["metrics"]
    plateau = plateau_windows([m["step"] for m in mc], [m["val_loss"] for m in mc], ns.band)
    ma = runs["A"]["metrics"]
    crossing = first_crossing([m["step"] for m in ma], [m["val_loss"] for m in ma],
                              plateau["target"])
    todo = (
        [("A", "matched", e(s), e(t)) for s, t in ADAMW_EARLY]
        + [("C", "matched", s, t) for s, t in plateau["windows"]]
        + [(r, "reference", e(s), e(t)) for r, s, t in REFERENCE]
    )
    rows, summaries = [], []
    for run_, kind, s, t in todo:
        row, ws = window_row(run_, kind, cfgs[run_], runs[run_]["metrics"], s, t)
        row["spans_target"] = spans(row, plateau["target"])
        rows.append(row)
        summaries.append(ws)
    rule = (
        "plateau: first evaluation t* of run C with val <= best val + band; windows: the 3 and 5 "
        "evaluations centred on t* (shifted to fit); AdamW: its earliest windows, fixed"
    )
    paths = [os.path.join(out, f"sgd_matched_valloss.{x}") for x in ("json", "csv", "png")]
    record = write_result(
        paths[0],
        "sgd_matched_valloss",
        dict(preset=preset, seed=cfgs["A"].seed, band=ns.band),
        dict(rule=rule),
        rows,
        t0,
        argv,
        cfgs["A"].device,
        __file__,
        preset=preset,
        seed=cfgs["A"].seed,
        run_dirs={r: c.run_dir for r, c in cfgs.items()},
        plateau=plateau,
        adamw_crossing=dict(target=plateau["target"], between_steps=crossing),
        rule=rule,
        rows=rows,
        window_summaries=summaries,
        curves={r: curves(info["metrics"]) for r, info in runs.items()},
    )
    write_csv(paths[1], rows, COLUMNS)
    plot(record, paths[2])
    return record, paths + copy_results(paths, results)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = add_config_args(
        Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
               allow_abbrev=False))
    p.add_argument("--band", type=float, default=BAND,
                   help=f"plateau band above C's best val, nats (default {BAND})")
    p.add_argument(
        "--against",
        default="C",
        choices=("C", "D"),
        help=(
            "C: the paper's Table 10 (default); D: run A against the control D that learns "
            "(backbone_controls.py)"
        ),
    )
    p.add_argument("--out", default=None,
                   help="output folder (default <out_dir>/[tiny_]sgd_control)")
    p.add_argument(
        "--results",
        default=None,
        help="copy the files here (default results/sgd_control for the paper preset)",
    )
    record, paths = cli(run, p.parse_args(argv), argv)
    rows = record["rows"]
    if record.get("against") == "D":
        levels = ", ".join(
            f"{t['val']:.3f} (D at step {t['step']}, A first at {t['crossings']['A']})"
            for t in record["targets"]
        )
        print(f"run D (lr {record['sweep']['lr']}): matched levels {levels}")
    else:
        plateau, crossing = record["plateau"], record["adamw_crossing"]["between_steps"]
        print(
            f"run C: best val {plateau['best_val']:.3f} at step {plateau['best_step']}; plateau"
            f" (val <= {plateau['target']:.3f}) from step {plateau['entry_step']}; run A passes it"
            f" between steps {crossing}"
        )
    print(format_rows(rows))
    print("wrote " + ", ".join(paths))


if __name__ == "__main__":
    main()
