"""SGD-family controls (paper section 5.1, Tables 8 and 9): runs A, B, C and their window geometry.

    python sgd_control.py  # paper preset (GPU): trains A, B, C, then the table
    python sgd_control.py --runs A,C             # only these runs (finished runs are reused)
    # CPU, a few minutes (steps scaled by experiments.exp_steps)
    python sgd_control.py --preset tiny

Runs (Table 8; same model, data, seed, warmup 1,500, cosine to a 10% floor, clip 1.0, batch 64 x 2):
    A   AdamW           lr 1e-3                  wd 0.5   decoupled
    B   SGD             lr 1e-3  momentum 0      wd 0.5   L2
    C   SGD + momentum  lr 1e-2  momentum 0.9    wd 0.05  L2
    C'  SGD + Nesterov  lr 1e-2  momentum 0.9    wd 0.5   decoupled (SGDW), run by
        sgd_nesterov_run.py
4,000 steps each; snapshots at step 0, every 200 steps, every 50 in [600, 2000] and every 100 after;
eval every 200. Run folders <out_dir>/sgd_A_seed42, ... (tiny preset: tiny_sgd_A_seed42, ...).
Any Config field can be given (--seed, --out_dir, --device, --steps, ...) except those
the experiment
fixes: optimizer, lr, momentum, nesterov, weight_decay, wd_mode, name, stop_rule (experiments.py:
       the
schedule is a default, the run's identity is fixed). The tiny preset keeps Table 8's hyperparameters
on its own model and batch, with every step count scaled by experiments.exp_steps (4,000 -> 160).

Analysis (runs.window_summary) of the window [600, 2000] with anchor 600: uncentered PCA of
theta(t) - theta(600) over every snapshot in (600, 2000]: PC1 of raw and row-normalized rows, k95,
k99, drift ||theta(2000) - theta(600)||, mean |C| of the update alignment (non-overlapping 200-step
updates against v_b, beside the matched random walk's), and PC1 against its nulls (the matched null,
the reference; random-walk theory, increments reshuffled, increments in random directions; 1,000
draws), the coherence ratio and the weight-decay decomposition: trunk in the table, every block in
the JSON. The controls that the paper lacks (D, A0, D0) are trained by backbone_controls.py.
The table holds every finished run of the experiment present under out_dir, C' included. A run
that ended before step 2,000 (diverged, stopped) gets its outcome but no geometry.

Writes <out_dir>/[tiny_]sgd_control/sgd_control.{json,csv,png} (or --out DIR) and
<run>/analysis/sgd_window.json per run; for the paper preset, or with --results DIR, copies the
three table files into results/sgd_control/.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import experiments as ex
import train
from common import cli, copy_results, pyplot, save_figure, write_csv, write_result
from config import Parser, UsageError, add_config_args, given_overrides
from runs import curves, existing_run

RUNS = ex.TABLE8
TRAINED_HERE = ex.TRAINED_BY_SGD_CONTROL


# ----------------------------------------------------------------------------- configs
def parse_runs(text: str) -> list[str]:
    runs = [r.strip().upper() for r in text.split(",") if r.strip()]
    bad = [r for r in runs if r not in TRAINED_HERE]
    if bad or not runs:
        hint = " (C' is trained by sgd_nesterov_run.py)" if bad and bad[0] in ("C'", "CP") else ""
        raise UsageError(
            f"unknown run {bad[0] if bad else text!r} in --runs (choose from"
            f" {', '.join(TRAINED_HERE)}){hint}"
        )
    return list(dict.fromkeys(runs))


# ----------------------------------------------------------------------------- table
def plot_table(record: dict, path: str):
    """PC1 per run against its nulls, drift per run, and the validation loss / p_ood curves."""
    plt = pyplot()
    rows, (w0, w1) = record["rows"], record["window"]
    geo = [r for r in rows if r["pc1_pct"] is not None]
    colors = dict(zip(RUNS, ["tab:blue", "tab:red", "tab:green", "tab:olive"]))
    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    a = ax[0, 0]
    x = range(len(geo))
    a.bar(x, [r["pc1_pct"] for r in geo], width=0.5, color=[colors[r["run"]] for r in geo],
          label="observed (raw rows)")
    a.scatter([i - 0.3 for i in x], [r["pc1_normalized_pct"] for r in geo], marker="D", color="k",
              s=18, label="row-normalized", zorder=3)
    a.errorbar(
        [i + 0.3 for i in x],
        [r["null_shuffle_pc1_pct"] for r in geo],
        yerr=[r["null_shuffle_sd_pct"] for r in geo],
        fmt="o",
        color="grey",
        ms=4,
        capsize=2,
        label="shuffle null (mean +- sd)",
    )
    a.errorbar(
        [i + 0.4 for i in x],
        [r["null_direction_pc1_pct"] for r in geo],
        yerr=[r["null_direction_sd_pct"] for r in geo],
        fmt="s",
        color="purple",
        ms=4,
        capsize=2,
        label="direction null (mean +- sd)",
    )
    a.scatter([i + 0.3 for i in x], [r["null_theory_pc1_pct"] for r in geo], marker="_", s=200,
              color="k", label="random-walk theory")
    a.scatter(
        list(x),
        [r["null_matched_pc1_pct"] for r in geo],
        marker="_",
        s=400,
        lw=2.5,
        zorder=3,
        color="tab:orange",
        label="matched null (observed step sizes)",
    )
    a.set_xticks(list(x), [r["run"] for r in geo])
    a.set_ylim(0, 105), a.set_ylabel(f"trunk PC1 (%), window [{w0}, {w1}]")
    a.legend(fontsize=6, loc="lower left")
    a = ax[0, 1]
    a.bar(x, [r["drift"] for r in geo], width=0.5, color=[colors[r["run"]] for r in geo])
    a.set_xticks(list(x), [r["run"] for r in geo])
    a.set_ylabel(f"drift ||theta({w1}) - theta({w0})||")
    if geo and min(r["drift"] for r in geo) > 0 and max(r["drift"]
                                                        for r in geo) / min(r["drift"]
                                                                            for r in geo) > 30:
        a.set_yscale("log")
    for r in rows:
        c = record["curves"][r["run"]]
        lab = f"{r['run']} {r['optimizer']}"
        ax[1, 0].plot(c["step"], c["val_loss"], color=colors[r["run"]], label=lab)
        ax[1, 1].plot(c["step"], c["p_ood"], color=colors[r["run"]], label=lab)
    for a, yl in ((ax[1, 0], "validation loss"), (ax[1, 1], "p_ood")):
        a.axvspan(w0, w1, color="grey", alpha=0.12)
        a.set_xlabel("step"), a.set_ylabel(yl)
        a.legend(fontsize=7)
    fig.suptitle(
        f"SGD-family controls ({record['preset']} preset, seed {record['seed']})", fontsize=10
    )
    save_figure(fig, path)


def build_table(given: dict) -> tuple[dict, dict]:
    """Rows for every finished run of the experiment under out_dir. Returns (record, {run: (cfg,
    window summary)})."""
    cfgs = {r: ex.control_config(r, given) for r in RUNS}
    any_cfg = cfgs["A"]
    w0, w1 = ex.window(any_cfg.preset)
    rows, summaries, found = [], {}, {}
    for run, cfg in cfgs.items():
        info = existing_run(cfg)
        if info is None or info["status"] is None or info["status"]["status"] == "running":
            if info is not None:
                print(f"{cfg.run_dir}: not finished; left out of the table")
            continue
        ws = ex.control_window(cfg, w0, w1) if ex.reached(info["status"], w1) else None
        rows.append(
            ex.table9_row(run, info["config"].to_dict(), info["metrics"], info["status"], ws))
        summaries[run] = (cfg, ws)
        found[run] = dict(run_dir=cfg.run_dir, curves=curves(info["metrics"]))
    record = dict(
        experiment="sgd_control",
        preset=any_cfg.preset,
        seed=any_cfg.seed,
        window=[w0, w1],
        anchor=w0,
        paper_window=list(ex.WINDOW),
        null_draws=ex.NULL_DRAWS,
        table8={r: {k: v for k, v in RUNS[r].items() if k != "tag"} for r in RUNS},
        schedule=ex.control_schedule(any_cfg.preset),
        c_prime_stop_rule=cfgs["C'"].stop_rule,
        rows=rows,
        run_dirs={r: f["run_dir"] for r, f in found.items()},
        curves={r: f["curves"] for r, f in found.items()},
        window_summaries={r: ws for r, (_, ws) in summaries.items()},
        notes=[
            (
                "pc1_pct etc. are percentages of the trunk's raw (uncentered) drift energy on the"
                " window, anchor = window start"
            ),
            (
                "null_* are the PC1 of the random-walk theory for this many rows, of the increments"
                " reshuffled in time and of the increments in random directions (mean and sd over"
                " null_draws)"
            ),
            "runs that ended before the window end have no geometry",
        ],
    )
    return record, summaries


def write_table(record: dict, summaries: dict, dirs: tuple[str, str | None], t0: float,
                argv) -> list[str]:
    for run, (cfg, ws) in summaries.items():
        if ws is not None:
            ex.write_window(cfg, ws, t0, argv, __file__)
    paths = [os.path.join(dirs[0], f"sgd_control.{ext}") for ext in ("json", "csv", "png")]
    config = dict(
        preset=record["preset"],
        seed=record["seed"],
        table8=record["table8"],
        schedule=record["schedule"],
        window=record["window"],
        null_draws=record["null_draws"],
    )
    write_result(
        paths[0],
        "sgd_control",
        config,
        dict(notes=record.pop("notes")),
        record["rows"],
        t0,
        argv,
        "cpu",
        __file__,
        **{k: v for k, v in record.items() if k != "experiment"},
    )
    write_csv(paths[1], record["rows"], ex.TABLE9_COLUMNS)
    plot_table(record, paths[2])
    return paths + copy_results(paths, dirs[1])


def run(ns, argv) -> tuple[dict, list[str]]:
    t0 = time.perf_counter()
    given = given_overrides(ns)
    runs = parse_runs(ns.runs)
    cfgs = {r: ex.control_config(r, given) for r in RUNS}  # every config error before any training
    for r in RUNS:
        existing_run(cfgs[r])
    dirs = ex.output_dirs("sgd_control", cfgs["A"], ns.out, ns.results)
    for r in runs:
        st = train.train(cfgs[r])
        print(f"{cfgs[r].run_dir}: {st['status']} at step {st['step']}")
    record, summaries = build_table(given)
    if not record["rows"]:
        raise UsageError("no finished run to tabulate")
    return record, write_table(record, summaries, dirs, t0, argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = add_config_args(
        Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
               allow_abbrev=False))
    p.add_argument(
        "--runs",
        default="A,B,C",
        help="runs to train (comma-separated from A, B, C; default A,B,C)",
    )
    p.add_argument("--out", default=None,
                   help="table folder (default <out_dir>/[tiny_]sgd_control)")
    p.add_argument(
        "--results",
        default=None,
        help="copy the table files here (default results/sgd_control for the paper preset)",
    )
    record, paths = cli(run, p.parse_args(argv), argv)
    print(ex.format_table9(record["rows"]))
    print("wrote " + ", ".join(paths))


if __name__ == "__main__":
    main()
