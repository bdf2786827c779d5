"""SGD-family controls (paper section 5.1, Tables 8 and 9): runs A, B, C and their window geometry.

    python sgd_control.py                        # paper preset (GPU): trains A, B, C, then the table
    python sgd_control.py --runs A,C             # only these runs (finished runs are reused)
    python sgd_control.py --preset tiny          # CPU, a few minutes (steps scaled by config.exp_steps)

Runs (Table 8; same model, data, seed, warmup 1,500, cosine to a 10% floor, clip 1.0, batch 64 x 2):
    A   AdamW           lr 1e-3                  wd 0.5   decoupled
    B   SGD             lr 1e-3  momentum 0      wd 0.5   L2
    C   SGD + momentum  lr 1e-2  momentum 0.9    wd 0.05  L2
    C'  SGD + Nesterov  lr 1e-2  momentum 0.9    wd 0.5   decoupled (SGDW), run by sgd_nesterov_run.py
4,000 steps each; snapshots at step 0, every 200 steps, every 50 in [600, 2000] and every 100 after;
eval every 200. Run folders <out_dir>/sgd_A_seed42, ... (tiny preset: tiny_sgd_A_seed42, ...).
Any Config field can be given (--seed, --out_dir, --device, ...) except those the experiment fixes:
optimizer, lr, momentum, nesterov, weight_decay, wd_mode, steps, warmup, lambda_step, eval_every,
snapshot_every, snapshot_extra, name, stop_rule. The tiny preset keeps Table 8's hyperparameters
on its own model and batch, with every step count scaled by config.exp_steps (4,000 -> 160).

Analysis (geometry.window_summary) of the window [600, 2000] with anchor 600: uncentered PCA of
theta(t) - theta(600) over every snapshot in (600, 2000]: PC1 of raw and row-normalized rows, k95,
k99, drift ||theta(2000) - theta(600)||, mean |C| of the update alignment (consecutive-snapshot
updates against v_b), and PC1 against its nulls (random-walk theory, increments reshuffled,
increments in random directions; 1,000 draws): trunk in the table, every block in the JSON.
The table holds every finished run of the experiment present under out_dir, C' included. A run
that ended before step 2,000 (diverged, stopped) gets its outcome but no geometry.

Writes <out_dir>/[tiny_]sgd_control/sgd_control.{json,csv,png} (or --out DIR) and
<run>/analysis/sgd_window.json per run; for the paper preset, or with --results DIR, copies the
three table files into results/sgd_control/.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os

from config import Config, Parser, UsageError, add_config_args, fail, make_config
import experiments as ex
from experiments import exp_steps, run_prefix
from geometry import copy_results
from runs import check_run_dir, snapshot_path

ROOT = os.path.dirname(os.path.abspath(__file__))

RUNS = ex.TABLE8
TRAINED_HERE = ex.TRAINED_BY_SGD_CONTROL

# Columns of the CSV and of the printed table (JSON rows also hold per-block PC1).
COLUMNS = ["run", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "wd_mode", "status", "last_step",
           "final_val", "best_p_ood", "best_p_ood_step", "window", "n_rows", "pc1_pct", "pc1_normalized_pct", "k95",
           "k99", "drift", "update_abs_C_mean", "null_theory_pc1_pct", "null_shuffle_pc1_pct", "null_shuffle_sd_pct",
           "null_direction_pc1_pct", "null_direction_sd_pct"]


# ----------------------------------------------------------------------------- configs
def given_overrides(ns: argparse.Namespace) -> dict:
    """The Config fields given on the command line."""
    return {k[4:]: v for k, v in vars(ns).items() if k.startswith("cfg_") and v is not None}


def run_config(run: str, given: dict | None = None) -> Config:
    """Config of run `run` (a key of RUNS): preset and user overrides, then the fields the experiment fixes
    (Table 8, schedule, snapshots, name, C's stop rule); overriding one of those is an error."""
    if run not in RUNS:
        raise UsageError(f"unknown run {run!r} (choose from {', '.join(RUNS)})")
    given = dict(given or {})
    base = make_config(**given)
    spec = RUNS[run]
    fixed = {k: v for k, v in spec.items() if k not in ("tag", "label")}
    fixed.update(ex.control_schedule(base.preset), name=f"{run_prefix(base.preset)}sgd_{spec['tag']}_seed{base.seed}",
                 stop_rule=ex.stop_rule(base.preset) if run == "C'" else "")
    clash = sorted(set(given) & set(fixed))
    if clash:
        raise UsageError(f"--{clash[0]} is fixed by the experiment (run {run}: {fixed[clash[0]]!r}); leave it out")
    return make_config(**given, **fixed)


def parse_runs(text: str) -> list[str]:
    runs = [r.strip().upper() for r in text.split(",") if r.strip()]
    bad = [r for r in runs if r not in TRAINED_HERE]
    if bad or not runs:
        hint = " (C' is trained by sgd_nesterov_run.py)" if bad and bad[0] in ("C'", "CP") else ""
        raise UsageError(f"unknown run {bad[0] if bad else text!r} in --runs (choose from {', '.join(TRAINED_HERE)}){hint}")
    return list(dict.fromkeys(runs))


# ----------------------------------------------------------------------------- run folders
def existing_run(cfg: Config) -> dict | None:
    """{config, metrics, status} of the run folder of `cfg`, None when it does not exist;
    a folder made with another config is an error."""
    old = check_run_dir(cfg)
    if old is None:
        return None
    mpath, spath = os.path.join(cfg.run_dir, "metrics.jsonl"), os.path.join(cfg.run_dir, "status.json")
    try:
        metrics = [json.loads(l) for l in open(mpath) if l.strip()] if os.path.exists(mpath) else []
        status = json.load(open(spath)) if os.path.exists(spath) else None
    except ValueError:
        raise UsageError(f"{cfg.run_dir}: metrics.jsonl or status.json is not valid JSON")
    return dict(config=old, metrics=metrics, status=status)


def window_geometry(cfg: Config, start: int, end: int, groups=None, null_draws: int | None = None):
    """geometry.window_summary of the run on [start, end] with anchor `start`, trunk and every block
    (or `groups`). Every snapshot the run's schedule puts in [start, end] must be on disk."""
    from geometry import window_summary
    want = [s for s in cfg.snapshot_steps() if start <= s <= end]
    if start not in want or end not in want:
        raise UsageError(f"window [{start}, {end}] of {cfg.run_dir}: the snapshot schedule has no snapshot at "
                         f"step {start if start not in want else end}")
    missing = [s for s in want if not os.path.exists(snapshot_path(cfg.run_dir, s))]
    if missing:
        raise UsageError(f"window [{start}, {end}] of {cfg.run_dir}: no snapshot at step {missing[0]} "
                         f"({len(missing)} of {len(want)} missing)")
    groups = groups or ["trunk"] + [f"block{l}" for l in range(cfg.n_layer)]
    return window_summary(cfg.run_dir, start, end, groups=tuple(groups), device=cfg.device,
                          null_draws=null_draws or ex.NULL_DRAWS)


def reached(status: dict | None, end: int) -> bool:
    return bool(status) and status["status"] != "running" and status["step"] >= end


# ----------------------------------------------------------------------------- table
def strict_json(o):
    """`o` with every non-finite float replaced by None (the files are standard JSON)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: strict_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [strict_json(v) for v in o]
    return o


def dump_json(obj, path: str):
    with open(path, "w") as f:
        json.dump(strict_json(obj), f, indent=1, allow_nan=False)


def _pct(x):
    return None if x is None else 100.0 * x


def table_row(run: str, cfg: dict, metrics: list[dict], status: dict, ws: dict | None) -> dict:
    """One row of Table 9 from a run's config fields, metrics, status and window summary (None: no geometry)."""
    if not metrics:
        raise UsageError(f"run {run} has no evaluations in metrics.jsonl")
    best = max(metrics, key=lambda r: (r["p_ood"], -r["step"]))  # earliest step of the best p_ood
    row = dict(run=run, optimizer=RUNS[run]["label"], **{k: cfg[k] for k in ("lr", "momentum", "nesterov", "weight_decay", "wd_mode")},
               status=status["status"], last_step=status["step"], final_val=metrics[-1]["val_loss"],
               best_p_ood=best["p_ood"], best_p_ood_step=best["step"])
    if cfg["optimizer"] == "adamw":
        row.update(momentum=None, nesterov=None)  # AdamW: beta1 = cfg["beta1"], not SGD momentum
    row.update({c: None for c in COLUMNS if c not in row}, block_pc1_pct=None)
    if ws is not None:
        t = ws["groups"]["trunk"]
        row.update(window=f"[{ws['anchor']}, {ws['end']}]", n_rows=len(ws["row_steps"]), pc1_pct=_pct(t["pc1"]),
                   pc1_normalized_pct=_pct(t["pc1_normalized"]), k95=t["k95"], k99=t["k99"], drift=t["drift"],
                   update_abs_C_mean=t["update_abs_C_mean"], null_theory_pc1_pct=_pct(t["null_theory_pc1"]),
                   null_shuffle_pc1_pct=_pct(t["null_shuffle"]["mean"]), null_shuffle_sd_pct=_pct(t["null_shuffle"]["sd"]),
                   null_direction_pc1_pct=_pct(t["null_direction"]["mean"]), null_direction_sd_pct=_pct(t["null_direction"]["sd"]),
                   block_pc1_pct={g: _pct(v["pc1"]) for g, v in ws["groups"].items() if g != "trunk"})
    return row


def _fmt(v, nd=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}" if math.isfinite(v) else str(v)
    return str(v)


def format_table(rows: list[dict]) -> str:
    """Plain-text table: the paper's Table 9 plus k99, row-normalized PC1, mean |C| and the null PC1s."""
    head = ["run", "optimizer", "status", "final val", "best p_ood", "PC1 %", "PC1n %", "k95", "k99", "drift", "mean|C|",
            "theory %", "shuffle %", "direction %"]
    body = [[r["run"], r["optimizer"], f"{r['status']}@{r['last_step']}", _fmt(r["final_val"]), _fmt(r["best_p_ood"]),
             _fmt(r["pc1_pct"], 1), _fmt(r["pc1_normalized_pct"], 1), _fmt(r["k95"]), _fmt(r["k99"]), _fmt(r["drift"], 2),
             _fmt(r["update_abs_C_mean"]), _fmt(r["null_theory_pc1_pct"], 1), _fmt(r["null_shuffle_pc1_pct"], 1),
             _fmt(r["null_direction_pc1_pct"], 1)] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    return "\n".join("  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in [head, *body])


def write_csv(path: str, rows: list[dict], columns: list[str]):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def curves(metrics: list[dict]) -> dict:
    return {k: [r[k] for r in metrics] for k in ("step", "val_loss", "p_in", "p_ood")}


def plot_table(record: dict, path: str):
    """PC1 per run against its nulls, drift per run, and the validation loss / p_ood curves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows, (w0, w1) = record["rows"], record["window"]
    geo = [r for r in rows if r["pc1_pct"] is not None]
    colors = dict(zip(RUNS, ["tab:blue", "tab:red", "tab:green", "tab:olive"]))
    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    a = ax[0, 0]
    x = range(len(geo))
    a.bar(x, [r["pc1_pct"] for r in geo], width=0.5, color=[colors[r["run"]] for r in geo], label="observed (raw rows)")
    a.scatter([i - 0.3 for i in x], [r["pc1_normalized_pct"] for r in geo], marker="D", color="k", s=18, label="row-normalized", zorder=3)
    a.errorbar([i + 0.3 for i in x], [r["null_shuffle_pc1_pct"] for r in geo], yerr=[r["null_shuffle_sd_pct"] for r in geo],
               fmt="o", color="grey", ms=4, capsize=2, label="shuffle null (mean +- sd)")
    a.errorbar([i + 0.4 for i in x], [r["null_direction_pc1_pct"] for r in geo], yerr=[r["null_direction_sd_pct"] for r in geo],
               fmt="s", color="purple", ms=4, capsize=2, label="direction null (mean +- sd)")
    a.scatter([i + 0.3 for i in x], [r["null_theory_pc1_pct"] for r in geo], marker="_", s=200, color="k", label="random-walk theory")
    a.set_xticks(list(x), [r["run"] for r in geo])
    a.set_ylim(0, 105), a.set_ylabel(f"trunk PC1 (%), window [{w0}, {w1}]")
    a.legend(fontsize=6, loc="lower left")
    a = ax[0, 1]
    a.bar(x, [r["drift"] for r in geo], width=0.5, color=[colors[r["run"]] for r in geo])
    a.set_xticks(list(x), [r["run"] for r in geo])
    a.set_ylabel(f"drift ||theta({w1}) - theta({w0})||")
    if geo and min(r["drift"] for r in geo) > 0 and max(r["drift"] for r in geo) / min(r["drift"] for r in geo) > 30:
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
    fig.suptitle(f"SGD-family controls ({record['preset']} preset, seed {record['seed']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table_dir(cfg: Config, out: str | None) -> str:
    return out or os.path.join(cfg.out_dir, f"{run_prefix(cfg.preset)}sgd_control")


def results_dir(preset: str, results: str | None) -> str | None:
    """Where the small files are copied: --results, else results/sgd_control for the paper preset."""
    return results or (os.path.join(ROOT, "results", "sgd_control") if preset == "paper" else None)


def build_table(given: dict) -> tuple[dict, dict]:
    """Rows for every finished run of the experiment under out_dir. Returns (record, {run: (cfg, window summary)})."""
    cfgs = {r: run_config(r, given) for r in RUNS}
    any_cfg = cfgs["A"]
    w0, w1 = ex.window(any_cfg.preset)
    rows, summaries, found = [], {}, {}
    for run, cfg in cfgs.items():
        info = existing_run(cfg)
        if info is None or info["status"] is None or info["status"]["status"] == "running":
            if info is not None:
                print(f"{cfg.run_dir}: not finished; left out of the table")
            continue
        ws = window_geometry(cfg, w0, w1) if reached(info["status"], w1) else None
        rows.append(table_row(run, info["config"].to_dict(), info["metrics"], info["status"], ws))
        summaries[run] = (cfg, ws)
        found[run] = dict(run_dir=cfg.run_dir, curves=curves(info["metrics"]))
    record = dict(experiment="sgd_control", preset=any_cfg.preset, seed=any_cfg.seed, window=[w0, w1], anchor=w0,
                  paper_window=list(ex.WINDOW), null_draws=ex.NULL_DRAWS,
                  table8={r: {k: v for k, v in RUNS[r].items() if k != "tag"} for r in RUNS},
                  schedule=ex.control_schedule(any_cfg.preset), c_prime_stop_rule=cfgs["C'"].stop_rule,
                  rows=rows, run_dirs={r: f["run_dir"] for r, f in found.items()},
                  curves={r: f["curves"] for r, f in found.items()},
                  window_summaries={r: ws for r, (_, ws) in summaries.items()},
                  notes=["pc1_pct etc. are percentages of the trunk's raw (uncentered) drift energy on the window, anchor = window start",
                         "null_* are the PC1 of the random-walk theory for this many rows, of the increments reshuffled in time "
                         "and of the increments in random directions (mean and sd over null_draws)",
                         "runs that ended before the window end have no geometry"])
    return record, summaries


def write_table(record: dict, summaries: dict, out: str, results: str | None) -> list[str]:
    os.makedirs(out, exist_ok=True)
    for run, (cfg, ws) in summaries.items():
        if ws is not None:
            os.makedirs(os.path.join(cfg.run_dir, "analysis"), exist_ok=True)
            dump_json(ws, os.path.join(cfg.run_dir, "analysis", "sgd_window.json"))
    paths = [os.path.join(out, f"sgd_control.{ext}") for ext in ("json", "csv", "png")]
    dump_json(record, paths[0])
    write_csv(paths[1], record["rows"], COLUMNS)
    plot_table(record, paths[2])
    return paths + copy_results(paths, results)


def main(argv=None):
    p = add_config_args(Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False))
    p.add_argument("--runs", default="A,B,C", help="runs to train (comma-separated from A, B, C; default A,B,C)")
    p.add_argument("--out", default=None, help="table folder (default <out_dir>/[tiny_]sgd_control)")
    p.add_argument("--results", default=None, help="copy the table files here (default results/sgd_control for the paper preset)")
    ns = p.parse_args(argv)
    try:
        given = given_overrides(ns)
        runs = parse_runs(ns.runs)
        cfgs = {r: run_config(r, given) for r in RUNS}  # every config error before any training
        for r in RUNS:
            existing_run(cfgs[r])
        import train
        for r in runs:
            st = train.train(cfgs[r])
            print(f"{cfgs[r].run_dir}: {st['status']} at step {st['step']}")
        record, summaries = build_table(given)
        if not record["rows"]:
            raise UsageError("no finished run to tabulate")
        paths = write_table(record, summaries, table_dir(cfgs["A"], ns.out), results_dir(cfgs["A"].preset, ns.results))
    except UsageError as e:
        fail(str(e))
    print(format_table(record["rows"]))
    print("wrote " + ", ".join(paths))


if __name__ == "__main__":
    main()
