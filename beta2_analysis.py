"""Second-moment memory ablation: AdamW runs that differ only in beta2, and their trajectory
geometry.

    # paper: beta2 in {0.99, 0.95, 0.90, 0.80, 0.0}, 4,000 steps each (GPU)
    python beta2_analysis.py
    python beta2_analysis.py --betas 0.99,0.0         # a subset; finished runs are reused
    python beta2_analysis.py --preset tiny            # CPU, a few minutes

Each run is an ordinary train.py run, `<out_dir>/<prefix>beta2_<beta2>_seed<seed>`: the paper
schedule (lr, warmup 1,500, cosine to a 10% floor, wd 0.5, lambda 2 -> 4 at step 4,000, so 2
throughout a 4,000-step run) with only beta2 changed; snapshots every 200 steps plus every 50 in
[600, 2000] and every 100 after, like the SGD controls. The tiny preset shrinks every step count
with `experiments.exp_steps`. A run that diverges (train.py status "diverged") keeps its snapshots,
its geometry is computed on the ones with finite trunk weights, and the sweep goes on.

Geometry (trunk and per block, uncentered PCA through geometry.py):
  primary  anchor = step 0, the whole run: rows theta(t) - theta(0) for the snapshots on the regular
           200-step grid (and the last usable snapshot), so time is sampled evenly as in the main
           analysis. PC1, k95, k99, drift ||theta(end) - theta(0)||, update alignment
           C(t) = <u, v_b>/||u|| of the 200-step updates u(t) = theta(t) - theta(t - 200), null
           models. (The beta2 table of the original reports PC1/k95/drift most likely this way: from
           the initialization over the whole run.)
  window   [600, 2000] anchored at 600 with every snapshot in it (every 50 steps), as the SGD
           controls (`runs.window_summary`); `--window START:END` changes it (preset steps).
The table lists the asked-for runs and any other finished run of the same sweep.
Writes `<out>/beta2_seed<seed>.json`, `.csv`, `.png` (`--out`, default `<out_dir>/<prefix>beta2`),
and copies them into `results/beta2/` for the paper preset (or into `--results DIR`).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

import experiments as ex
import geometry as geo
import train
from common import cli, copy_results, parse_floats, pyplot, save_figure, write_csv, write_result
from config import Config, Parser, UsageError, add_config_args, given_overrides
from runs import (Trajectory, check_run_dir, last_finite_step, read_metrics, run_record,
                  same_finished_run, window_summary)

PAPER_BETAS = ",".join(map(str, ex.BETA2_GRID))


# ----------------------------------------------------------------------------- config
def sweep_config(given: dict, beta2: float) -> Config:
    """The run of one beta2: the control schedule in the preset's steps, the command line's
    overrides, then beta2, AdamW and the run name (fixed)."""
    base = ex.experiment_config(given, {}, ex.control_schedule(given.get("preset", "paper")))
    fixed = dict(
        beta2=beta2,
        optimizer="adamw",
        name=f"{ex.run_prefix(base.preset)}beta2_{beta2:g}_seed{base.seed}",
    )
    return ex.experiment_config(given, fixed, ex.control_schedule(base.preset),
                                why="set by --betas")


# ----------------------------------------------------------------------------- geometry
def run_geometry(run_dir: str, grid: int, window: tuple[int, int], device: str,
                 null_draws: int) -> dict:
    """Primary view (anchor 0, grid rows) and window view of one run, on its finite snapshots."""
    traj = Trajectory(run_dir, anchor=0, device=device)
    last = last_finite_step(traj.paths, traj.groups["trunk"])
    if not last:
        return dict(last_step=last, primary=None, window=None,
                    note="no finite snapshot after step 0")
    rec = run_record(run_dir, device, end=last)  # the finite snapshots of a diverged run
    rows = rec.row_steps(0, last)
    G = {g: geo.split_anchor(Ga)[0] for g, Ga in rec.group_grams(0, last).items()}
    idx = [i for i, s in enumerate(rows) if s % grid == 0 or s == last]
    R = torch.eye(len(rows), dtype=torch.float64)[idx]  # selects the grid rows
    primary = dict(anchor=0, end=last, row_steps=[rows[i] for i in idx],
                   groups={g: geo.rows_summary(R @ Gg @ R.T, rec.numel(rec.groups[g]), null_draws)
                           for g, Gg in G.items()})
    w0, w1 = window
    w_end = max([s for s in rec.steps if s <= min(w1, last)], default=-1)
    if w0 in rec.index and len([s for s in rec.steps if w0 < s <= w_end]) >= 2:
        lag = ex.exp_steps(rec.config.get("preset", "paper"), 200)
        win = window_summary(run_dir, w0, w_end, groups=tuple(rec.groups), null_draws=null_draws,
                             update_lag=lag, record=rec)
        win.pop("definitions")
    else:
        win = dict(
            note=f"fewer than 2 snapshots in the window [{w0}, {w1}] (last usable step {last})"
        )
    return dict(last_step=last, primary=primary, window=win)


# ----------------------------------------------------------------------------- table and figure
def table_row(entry: dict) -> dict:
    """One line of the table from a run's record (trunk values)."""
    m, geo_ = entry["metrics"], entry["geometry"]
    best = max(m, key=lambda r: r["p_ood"] if r["p_ood"] is not None else -1) if m else None
    prim = ((geo_.get("primary") or {}).get("groups") or {}).get("trunk") or {}
    win = (geo_.get("window") or {}).get("groups", {}).get("trunk") or {}
    n_rows = len((geo_.get("primary") or {}).get("row_steps", []))
    return dict(
        beta2=entry["beta2"],
        status=entry["status"],
        last_step=entry["step"],
        final_val=m[-1]["val_loss"] if m and entry["status"] == "complete" else None,
        last_val=m[-1]["val_loss"] if m else None,
        best_p_ood=best["p_ood"] if best else None,
        best_p_ood_step=best["step"] if best else None,
        n_rows=n_rows,
        pc1=prim.get("pc1"),
        k95=prim.get("k95"),
        k99=prim.get("k99"),
        drift=prim.get("drift"),
        abs_C=prim.get("update_abs_C_mean"),
        pc1_null_theory=prim.get("null_theory_pc1"),
        window_pc1=win.get("pc1"),
        window_k95=win.get("k95"),
        window_drift=win.get("drift"),
        window_abs_C=win.get("update_abs_C_mean"),
        pc1_null_matched=prim.get("null_matched_pc1"),
        window_pc1_null_matched=win.get("null_matched_pc1"),
    )


def format_table(rows: list[dict], window) -> str:
    def f(v, fmt):
        return "-" if v is None else format(v, fmt)
    head = (
        f"{'beta2':>6} {'final val':>13} {'best p_ood':>10} {'rows':>4} {'PC1 %':>6} {'k95':>4}"
        f" {'drift':>10} {'|C|':>6} | window [{window[0]}, {window[1]}]: {'PC1 %':>6} {'k95':>4}"
        f" {'drift':>9} {'|C|':>6}"
    )
    lines = [head]
    for r in rows:
        val = f(r["final_val"],
                ".3f") if r["status"] == "complete" else f"{r['status']}@{r['last_step']}"
        lines.append(
            f"{r['beta2']:>6g} {val:>13} {f(r['best_p_ood'], '.3f'):>10} {r['n_rows']:>4}"
            f" {f(r['pc1'] and 100 * r['pc1'], '.1f'):>6} {f(r['k95'], 'd'):>4}"
            f" {f(r['drift'], '.4g'):>10} {f(r['abs_C'], '.3f'):>6} |"
            f" {'':>{len(f'window [{window[0]}, {window[1]}]:')}}"
            f" {f(r['window_pc1'] and 100 * r['window_pc1'], '.1f'):>6}"
            f" {f(r['window_k95'], 'd'):>4} {f(r['window_drift'], '.4g'):>9}"
            f" {f(r['window_abs_C'], '.3f'):>6}"
        )
    return "\n".join(lines)


def plot(record: dict, path: str):
    """Validation loss and p_ood against step per beta2; PC1, k95, drift, mean |C| against beta2."""
    plt = pyplot()
    runs, rows = record["runs"], record["table"]
    fig, ax = plt.subplots(2, 3, figsize=(13, 6.5))
    colors = plt.cm.viridis([i / max(1, len(runs) - 1) for i in range(len(runs))])
    first = [r["metrics"][0]["val_loss"] for r in runs if r["metrics"]]
    for r, c in zip(runs, colors):
        st, m = r["status"], [x for x in r["metrics"] if x["val_loss"] is not None]
        lab = f"beta2={r['beta2']:g}" + ("" if st == "complete" else f" ({st})")
        ax[0, 0].plot([x["step"] for x in m], [x["val_loss"] for x in m], color=c, label=lab)
        ax[0, 1].plot([x["step"] for x in r["metrics"]], [x["p_ood"] for x in r["metrics"]],
                      color=c, label=lab)
    vals = [x["val_loss"] for r in runs for x in r["metrics"] if x["val_loss"] is not None]
    if first:  # diverged runs leave the plot at the top
        ax[0, 0].set_ylim(0.95 * min(vals), 1.6 * max(first))
    ax[0, 0].set(xlabel="step", ylabel="validation loss", title="validation loss")
    ax[0, 1].set(xlabel="step", ylabel="p_ood", title="OOD probe accuracy", ylim=(-0.02, 1.02))
    ax[0, 0].legend(fontsize=7)
    xs = list(range(len(rows)))
    ok = [r["status"] == "complete" for r in rows]
    panels = [
        (ax[0, 2], "pc1", "window_pc1", 100, "PC1 (%)"),
        (ax[1, 0], "k95", "window_k95", 1, "k95"),
        (ax[1, 1], "drift", "window_drift", 1, "drift"),
        (ax[1, 2], "abs_C", "window_abs_C", 1, "mean |C| of updates"),
    ]
    for a, key, wkey, scale, label in panels:
        for k, style, lab in ((key, "-o", "anchor 0, whole run"), (wkey, "--s",
                                                                   f"window {record['window']}")):
            y = [None if r[k] is None else scale * r[k] for r in rows]
            a.plot(xs, [math.nan if v is None else v for v in y], style,
                   color="k" if k == key else "tab:blue", label=lab, mfc="none")
            bad = [(x, v) for x, v, o in zip(xs, y, ok) if not o and v is not None]
            if bad:
                a.plot(*zip(*bad), "x", color="tab:red", ms=9,
                       label="diverged" if k == key else None)
        # each PC1 beside its matched null (the observed step sizes, independent directions)
        if key == "pc1":
            for k, color in (("pc1_null_matched", "k"), ("window_pc1_null_matched", "tab:blue")):
                a.plot(
                    xs,
                    [math.nan if r.get(k) is None else 100 * r[k] for r in rows],
                    "_",
                    ms=14,
                    mew=2,
                    color=color,
                    label="matched null" if k == "pc1_null_matched" else None,
                )
        a.set_xticks(xs, [f"{r['beta2']:g}" for r in rows])
        a.set(xlabel="beta2", ylabel=label, title=label)
        if key == "drift":
            a.set_yscale("log")
    ax[0, 2].legend(fontsize=7)
    fig.suptitle(f"beta2 ablation ({record['preset']} preset, seed {record['seed']})", fontsize=10)
    save_figure(fig, path)


# ----------------------------------------------------------------------------- main
DEFINITIONS = dict(
    primary=(
        "anchor step 0, whole run: rows theta(t) - theta(0), t on the snapshot_every grid plus the"
        " last usable snapshot; uncentered PCA; drift = ||theta(end) - theta(0)||; C = <u,"
        " v_b>/||u|| for u the update between consecutive grid rows"
    ),
    window="runs.window_summary(anchor = window start, every snapshot in (start, end])",
    usable="snapshots with finite trunk weights; a diverged run keeps those it has",
    final_val=(
        "validation loss at the last step of a complete run (None for a diverged run; see last_val)"
    ),
    table="trunk values; per block in runs[i].geometry",
)


def parse_window(text: str | None, preset: str) -> tuple[int, int]:
    try:
        window = tuple(int(x) for x in text.split(":")) if text else ex.window(preset)
        assert len(window) == 2 and 0 <= window[0] < window[1]
    except (ValueError, AssertionError):
        raise UsageError(f"--window must be START:END with 0 <= START < END, got {text!r}")
    return window


def sweep_configs(ns) -> dict[float, Config]:
    """The asked-for runs, then the other finished runs of this sweep (the paper's betas); a folder
    made with another config stops the sweep before anything is trained."""
    given = given_overrides(ns)
    cfgs = {
        b: sweep_config(given, b)
        for b in parse_floats(ns.betas, "--betas", 0.0, 1.0, hi_open=True)
    }
    for b in cfgs:
        check_run_dir(cfgs[b])
    others = {b: sweep_config(given, b) for b in ex.BETA2_GRID if b not in cfgs}
    return {**cfgs, **{b: c for b, c in others.items() if same_finished_run(c)}}


def sweep_run(cfg: Config, beta2: float, window, null_draws: int) -> dict:
    """Train (or reuse) one run of the sweep and measure its geometry; a diverged run is recorded,
    not fatal."""
    print(f"== beta2 = {beta2:g}: {cfg.run_dir}")
    st = train.train(cfg)
    if st["status"] == "diverged":
        print(
            f"   diverged at step {st['step']} ({st.get('reason', '')}); geometry on its snapshots,"
            " sweep goes on"
        )
    try:
        geom = run_geometry(cfg.run_dir, cfg.snapshot_every, window, cfg.device, null_draws)
    except UsageError as err:  # e.g. an unreadable snapshot: recorded, and the sweep goes on
        print(f"   no geometry: {err}")
        geom = dict(primary=None, window=None, note=str(err))
    return dict(
        beta2=beta2,
        run=cfg.run_dir,
        status=st["status"],
        step=st["step"],
        reason=st.get("reason"),
        config={
            k: getattr(cfg, k)
            for k in (
                "steps",
                "lr",
                "beta1",
                "beta2",
                "eps",
                "weight_decay",
                "warmup",
                "min_lr_frac",
                "lambda_probe",
                "lambda_step",
                "snapshot_every",
                "snapshot_extra",
            )
        },
        metrics=[
            {k: r.get(k) for k in ("step", "val_loss", "p_in", "p_ood", "lm_loss")}
            for r in read_metrics(cfg.run_dir)
        ],
        geometry=geom,
    )


def run(ns, argv) -> tuple[dict, list[str]]:
    t0 = time.perf_counter()
    if ns.null_draws < 1:
        raise UsageError("--null_draws must be >= 1")
    cfgs = sweep_configs(ns)
    base = next(iter(cfgs.values()))
    window = parse_window(ns.window, base.preset)
    out, results = ex.output_dirs("beta2", base, ns.out, ns.results)
    runs = sorted((sweep_run(cfg, b, window, ns.null_draws) for b, cfg in cfgs.items()),
                  key=lambda r: -r["beta2"])
    table = [table_row(r) for r in runs]
    stem = os.path.join(out, f"beta2_seed{base.seed}")
    config = dict(preset=base.preset, seed=base.seed, window=list(window), null_draws=ns.null_draws,
                  schedule=ex.control_schedule(base.preset))
    record = write_result(stem + ".json", "beta2", config, DEFINITIONS, table, t0, argv,
                          base.device, __file__, preset=base.preset, seed=base.seed,
                          window=list(window), null_draws=ns.null_draws, table=table, runs=runs)
    write_csv(stem + ".csv", table)
    plot(record, stem + ".png")
    files = [stem + x for x in (".json", ".csv", ".png")]
    return record, files + copy_results(files, results)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = add_config_args(
        Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    p.add_argument(
        "--betas",
        default=PAPER_BETAS,
        help=f"comma-separated beta2 values in [0, 1) (default {PAPER_BETAS})",
    )
    p.add_argument(
        "--window",
        default=None,
        metavar="START:END",
        help=(
            "second-view window in this preset's steps (default: paper 600:2000, scaled by the"
            " preset)"
        ),
    )
    p.add_argument("--null_draws", "--null-draws", type=int, default=1000,
                   help="draws per null model (default 1000)")
    p.add_argument("--out", default=None,
                   help="experiment folder (default <out_dir>/<prefix>beta2)")
    p.add_argument(
        "--results",
        default=None,
        help=(
            "copy JSON/CSV/figure here (default: results/beta2 for the paper preset, nowhere for"
            " tiny)"
        ),
    )
    record, files = cli(run, p.parse_args(argv), argv)
    print(format_table(record["table"], record["window"]))
    print("wrote " + ", ".join(files))


if __name__ == "__main__":
    main()
