"""The experiment protocols as data: Table 8 runs, the analysis window, the stop rule,
the 4,000-step control schedule, the beta2 grid, the reheat plan, and the step scaling of `--preset
tiny`.

    python experiments.py                  # print every protocol of the paper preset
    python experiments.py --preset tiny    # the same in the tiny preset's steps

Protocols are stated in paper steps; `exp_steps` maps them to a preset's time scale. Every
experiment script builds its run configs with `experiment_config`: the preset and the command
line's overrides first, then the fields the experiment fixes (one policy, one message: overriding a
fixed field is an error; the schedule is a default the command line may change).
"""
from __future__ import annotations

import argparse
import json
import math
import os

from common import ROOT, check_writable, fmt, format_table, write_result
from config import Config, Parser, UsageError, fail, make_config
from runs import existing_run, list_snapshots, window_summary

# Experiments state their schedules in paper steps; the tiny preset runs them shrunk by this factor
# (paper 10,000 steps -> tiny 400, like the tiny preset itself).
STEP_SCALE = {"paper": 1.0, "tiny": 0.04}

# Table 8. `tag` names the run folder; every other field but `label` is a Config field
# the experiment fixes.
TABLE8 = {
    "A": dict(
        tag="A",
        label="AdamW",
        optimizer="adamw",
        lr=1e-3,
        momentum=0.0,
        nesterov=False,
        weight_decay=0.5,
        wd_mode="decoupled",
    ),
    "B": dict(
        tag="B",
        label="SGD",
        optimizer="sgd",
        lr=1e-3,
        momentum=0.0,
        nesterov=False,
        weight_decay=0.5,
        wd_mode="l2",
    ),
    "C": dict(
        tag="C",
        label="SGD+momentum",
        optimizer="sgd",
        lr=1e-2,
        momentum=0.9,
        nesterov=False,
        weight_decay=0.05,
        wd_mode="l2",
    ),
    "C'": dict(
        tag="Cp",
        label="SGDW+Nesterov",
        optimizer="sgd",
        lr=1e-2,
        momentum=0.9,
        nesterov=True,
        weight_decay=0.5,
        wd_mode="decoupled",
    ),
}
TRAINED_BY_SGD_CONTROL = ("A", "B", "C")  # C' is trained by sgd_nesterov_run.py
# analysis window and anchor of the controls and beta2, paper steps
WINDOW = (600, 2000)
# run C': at step 2,000 stop if val > 5.1 and best p_ood < 0.02
STOP_RULE = (2000, 5.1, 0.02)
NULL_DRAWS = 1000                         # draws per null model in the window summaries

BETA2_GRID = (0.99, 0.95, 0.90, 0.80, 0.0)

# Reheating (paper steps): from the source's last weights, fresh AdamW, the doubled probe weight.
REHEAT_LRS = (1e-3, 6e-4, 3e-4)
REHEAT = dict(steps=2000, warmup=200, eval_every=100, snapshot_every=100, min_lr_frac=0.1)
REHEAT_THRESHOLD = 0.60                   # p_ood level whose first crossing is reported


def exp_steps(preset: str, n: int) -> int:
    """Paper step count `n` in the preset's time scale."""
    return n if STEP_SCALE[preset] == 1.0 or n == 0 else max(1, round(n * STEP_SCALE[preset]))


def run_prefix(preset: str) -> str:
    """Prefix of experiment run names: '' for the paper preset, 'tiny_' for tiny."""
    return "" if preset == "paper" else f"{preset}_"


def window(preset: str) -> tuple[int, int]:
    return exp_steps(preset, WINDOW[0]), exp_steps(preset, WINDOW[1])


def control_schedule(preset: str) -> dict:
    """The 4,000-step schedule of the SGD controls and the beta2 runs: warmup 1,500, lambda 2
    throughout, eval every 200, snapshots every 200 plus every 50 in [600, 2000] and every 100
    after."""
    e = lambda n: exp_steps(preset, n)  # noqa: E731
    return dict(steps=e(4000), warmup=e(1500), lambda_step=e(4000), eval_every=e(200),
                snapshot_every=e(200),
                snapshot_extra=f"{e(600)}:{e(2000)}:{e(50)},{e(2000)}:{e(4000)}:{e(100)}")


def stop_rule(preset: str) -> str:
    step, max_val, min_ood = STOP_RULE
    return f"{exp_steps(preset, step)}:{max_val}:{min_ood}"


def reheat_protocol(preset: str, lam: float, data_offset: int) -> dict:
    """Config fields of a reheat run: the plan in the preset's steps, `lam` throughout, the data
    stream continued from `data_offset` (the source's steps: fresh batches, not a replay)."""
    e = lambda n: exp_steps(preset, n)  # noqa: E731
    return dict(
        {k: e(v) if k != "min_lr_frac" else v for k, v in REHEAT.items()},
        snapshot_extra="",
        lambda_probe=lam,
        lambda_probe_late=lam,
        lambda_step=0,
        stop_rule="",
        data_offset=data_offset,
    )


def experiment_config(given: dict, fixed: dict, defaults: dict | None = None,
                      why: str = "") -> Config:
    """Preset, then `defaults` (the protocol's schedule), then the command line `given`, then
    `fixed`. A `given` field that the experiment fixes is an error (the one override message)."""
    clash = sorted(set(given) & set(fixed))
    if clash:
        k = clash[0]
        why = f"{why}: " if why else ""
        raise UsageError(f"--{k} is fixed by the experiment ({why}{fixed[k]!r}); leave it out")
    return make_config(**{**(defaults or {}), **given, **fixed})


def output_dirs(kind: str, cfg: Config, out: str | None, results: str | None, sub: str = ""):
    """(experiment folder, results copy folder or None): --out, else <out_dir>/<prefix><kind>;
    --results, else results/<kind>[/<sub>] for the paper preset (tiny outputs stay out of
    results/); both checked writable."""
    paper = os.path.join(ROOT, "results", kind, sub) if sub else os.path.join(ROOT, "results", kind)
    dirs = (out or os.path.join(cfg.out_dir, f"{run_prefix(cfg.preset)}{kind}"),
            results or (paper if cfg.preset == "paper" else None))
    for d in filter(None, dirs):
        check_writable(d)  # before any training: a read-only folder is found now, not after hours
    return dirs


# ----------------------------------------------------------------------------- the no-decay twin
def twin_config(given: dict | None = None) -> Config:
    """The paper run with weight decay 0 (seed 42 unless given), run folder seed<N>_wd0 (tiny_
    prefix in the tiny preset): the twin every trajectory claim is read against (claims.py,
    readers.TWIN)."""
    given = dict(given or {})
    base = make_config(**given)
    fixed = dict(weight_decay=0.0, name=f"{run_prefix(base.preset)}seed{base.seed}_wd0")
    return experiment_config(given, fixed, why="the no-decay twin")


# -------------------------------------------------------------------------- the SGD-family controls
def control_config(run: str, given: dict | None = None) -> Config:
    """Config of control run `run` (a key of TABLE8): preset, the 4,000-step schedule and snapshots,
    user overrides, then the fields the experiment fixes (Table 8, the name, C''s stop rule)."""
    if run not in TABLE8:
        raise UsageError(f"unknown run {run!r} (choose from {', '.join(TABLE8)})")
    given = dict(given or {})
    base = make_config(**given)
    spec = TABLE8[run]
    fixed = dict({k: v for k, v in spec.items() if k not in ("tag", "label")},
                 name=f"{run_prefix(base.preset)}sgd_{spec['tag']}_seed{base.seed}",
                 stop_rule=stop_rule(base.preset) if run == "C'" else "")
    return experiment_config(given, fixed, control_schedule(base.preset), why=f"run {run}")


def control_window(cfg: Config, start: int, end: int, groups=None,
                   null_draws: int | None = None) -> dict:
    """runs.window_summary of the run on [start, end] with anchor `start`, trunk and every block
    (or `groups`). Every snapshot the run's schedule puts in [start, end] must be on disk."""
    want = [s for s in cfg.snapshot_steps() if start <= s <= end]
    if start not in want or end not in want:
        raise UsageError(f"window [{start}, {end}] of {cfg.run_dir}: the snapshot schedule has no "
                         f"snapshot at step {start if start not in want else end}")
    have = list_snapshots(cfg.run_dir)
    missing = [s for s in want if s not in have]
    if missing:
        raise UsageError(
            f"window [{start}, {end}] of {cfg.run_dir}: no snapshot at step {missing[0]} "
            f"({len(missing)} of {len(want)} missing)"
        )
    groups = groups or ["trunk"] + [f"block{l}" for l in range(cfg.n_layer)]
    return window_summary(cfg.run_dir, start, end, groups=tuple(groups), device=cfg.device,
                          update_lag=exp_steps(cfg.preset, 200),
                          null_draws=null_draws or NULL_DRAWS)


def write_window(cfg: Config, ws: dict, t0: float, argv, script: str):
    """<run>/analysis/sgd_window.json: the window summary of one control run (`script` wrote it)."""
    ws = dict(ws)
    write_result(os.path.join(cfg.run_dir, "analysis", "sgd_window.json"), "sgd_window",
                 cfg.to_dict(), ws.pop("definitions"), ws.pop("groups"), t0, argv, cfg.device,
                 script, **ws)


def reached(status: dict | None, end: int) -> bool:
    """Whether a finished run got to step `end`."""
    return bool(status) and status["status"] != "running" and status["step"] >= end


# Columns of the CSV and of the printed Table 9 (JSON rows also hold per-block PC1).
TABLE9_COLUMNS = [
    "run",
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "wd_mode",
    "status",
    "last_step",
    "final_val",
    "best_p_ood",
    "best_p_ood_step",
    "window",
    "n_rows",
    "pc1_pct",
    "pc1_normalized_pct",
    "k95",
    "k99",
    "drift",
    "update_abs_C_mean",
    "null_theory_pc1_pct",
    "null_shuffle_pc1_pct",
    "null_shuffle_sd_pct",
    "null_direction_pc1_pct",
    "null_direction_sd_pct",
    "null_matched_pc1_pct",
]


def _pct(x):
    return None if x is None else 100.0 * x


def table9_row(run: str, cfg: dict, metrics: list[dict], status: dict, ws: dict | None) -> dict:
    """One row of Table 9 from a run's config fields, metrics, status and window summary (None:
    none)."""
    if not metrics:
        raise UsageError(f"run {run} has no evaluations in metrics.jsonl")
    best = max(metrics, key=lambda r: (r["p_ood"], -r["step"]))  # earliest step of the best p_ood
    row = dict(run=run, optimizer=CONTROLS[control_of(run)]["label"],
               **{k: cfg[k] for k in ("lr", "momentum", "nesterov", "weight_decay", "wd_mode")},
               status=status["status"], last_step=status["step"], final_val=metrics[-1]["val_loss"],
               best_p_ood=best["p_ood"], best_p_ood_step=best["step"])
    if cfg["optimizer"] == "adamw":
        row.update(momentum=None, nesterov=None)  # AdamW: beta1 = cfg["beta1"], not SGD momentum
    row.update({c: None for c in TABLE9_COLUMNS if c not in row}, block_pc1_pct=None)
    if ws is not None:
        t = ws["groups"]["trunk"]
        row.update(
            window=f"[{ws['anchor']}, {ws['end']}]",
            n_rows=len(ws["row_steps"]),
            pc1_pct=_pct(t["pc1"]),
            pc1_normalized_pct=_pct(t["pc1_normalized"]),
            k95=t["k95"],
            k99=t["k99"],
            drift=t["drift"],
            update_abs_C_mean=t["update_abs_C_mean"],
            null_theory_pc1_pct=_pct(t["null_theory_pc1"]),
            null_shuffle_pc1_pct=_pct(t["null_shuffle"]["mean"]),
            null_shuffle_sd_pct=_pct(t["null_shuffle"]["sd"]),
            null_direction_pc1_pct=_pct(t["null_direction"]["mean"]),
            null_direction_sd_pct=_pct(t["null_direction"]["sd"]),
            null_matched_pc1_pct=_pct(t["null_matched_pc1"]),
            block_pc1_pct={g: _pct(v["pc1"]) for g, v in ws["groups"].items() if g != "trunk"},
        )
    return row


def format_table9(rows: list[dict]) -> str:
    """Plain-text table: the paper's Table 9 plus k99, row-normalized PC1, mean |C| and the null
    PC1s."""
    head = [
        "run",
        "optimizer",
        "status",
        "final val",
        "best p_ood",
        "PC1 %",
        "PC1n %",
        "k95",
        "k99",
        "drift",
        "mean|C|",
        "theory %",
        "shuffle %",
        "direction %",
        "matched %",
    ]
    body = [
        [
            r["run"],
            r["optimizer"],
            f"{r['status']}@{r['last_step']}",
            fmt(r["final_val"]),
            fmt(r["best_p_ood"]),
            fmt(r["pc1_pct"], 1),
            fmt(r["pc1_normalized_pct"], 1),
            fmt(r["k95"]),
            fmt(r["k99"]),
            fmt(r["drift"], 2),
            fmt(r["update_abs_C_mean"]),
            fmt(r["null_theory_pc1_pct"], 1),
            fmt(r["null_shuffle_pc1_pct"], 1),
            fmt(r["null_direction_pc1_pct"], 1),
            fmt(r["null_matched_pc1_pct"], 1),
        ]
        for r in rows
    ]
    return format_table(head, body)


# --------------------------------------------------------------------- the controls the paper lacks
# Runs B and C never learn, and their drift is the shrinkage weight decay alone gives
# the initialization, so "SGD PC1 100%" tests weight decay, not the optimizer (SPEC 7). The decisive
# controls:
#   D   SGD + momentum 0.9 at the learning rate of a short sweep (so that it learns), with decoupled
# weight       decay of run A's per-step strength (lr * wd = 1e-3 * 0.5): weight decay alone moves A
# and D alike
#   A0  AdamW, weight decay 0
#   D0  run D with weight decay 0
# Same model, data, seed, 4,000-step schedule, snapshots, window and nulls as Table 8.
NEW_CONTROLS = {
    "D": dict(
        tag="D",
        label="SGD+momentum (swept lr)",
        optimizer="sgd",
        momentum=0.9,
        nesterov=False,
        wd_mode="decoupled",
    ),
    "A0": dict(
        tag="A0",
        label="AdamW, wd 0",
        optimizer="adamw",
        lr=1e-3,
        momentum=0.0,
        nesterov=False,
        weight_decay=0.0,
        wd_mode="decoupled",
    ),
    "D0": dict(
        tag="D0",
        label="SGD+momentum (swept lr), wd 0",
        optimizer="sgd",
        momentum=0.9,
        nesterov=False,
        weight_decay=0.0,
        wd_mode="decoupled",
    ),
}
D_LRS = (0.03, 0.1, 0.3, 1.0, 3.0)  # D's peak learning rates swept (past 1, the old grid's winner)
D_SEEDS = 3                     # D is trained at the sweep's lr at the seed given and the next 2
# paper steps: each sweep run stops here; the lowest validation loss wins
D_SWEEP_STEP = 1000
# peak per-step decay of run A, given to D
D_SHRINK = TABLE8["A"]["lr"] * TABLE8["A"]["weight_decay"]
CONTROLS = {**TABLE8, **NEW_CONTROLS}


def d_seeds(seed: int) -> list[int]:
    """The seeds at which D is trained: `seed` (its sweep's) and the next D_SEEDS - 1."""
    return [seed + i for i in range(D_SEEDS)]


def seed_run(run: str, seed: int, base_seed: int) -> str:
    """The table's name of control `run` at `seed`: `run` at the base seed, else "run@seed"
    (e.g. D@43)."""
    return run if seed == base_seed else f"{run}@{seed}"


def control_of(name: str) -> str:
    """The control (a key of CONTROLS) of a table name made by seed_run."""
    return name.partition("@")[0]


def new_control_config(run: str, given: dict | None = None, lr: float | None = None,
                       sweep: bool = False):
    """Config of a new control: A0; D or D0 at peak learning rate `lr` (D's weight decay D_SHRINK
    / lr, decoupled); with `sweep`, D's sweep run at `lr`: D's config with a stop rule that always
    fires at the sweep step (val > -inf and best p_ood < 2; its status reason "sweep run: stopped at
    step N as planned"), so that the sweep runs are finished runs of D's first steps."""
    if run not in NEW_CONTROLS or (sweep and run != "D"):
        raise UsageError(f"unknown new control {run!r} (choose from {', '.join(NEW_CONTROLS)})")
    if run in ("D", "D0") and not (lr and lr > 0):
        raise UsageError(f"run {run} needs the learning rate of the sweep (D_LRS {list(D_LRS)})")
    given = dict(given or {})
    base = make_config(**given)
    spec = NEW_CONTROLS[run]
    fixed = {k: v for k, v in spec.items() if k not in ("tag", "label")}
    if run != "A0":
        fixed.update(lr=lr, weight_decay=fixed.get("weight_decay", D_SHRINK / lr))
    tag = f"Dsweep_lr{lr:g}" if sweep else spec["tag"]
    fixed.update(name=f"{run_prefix(base.preset)}sgd_{tag}_seed{base.seed}",
                 stop_rule=f"{exp_steps(base.preset, D_SWEEP_STEP)}:-inf:2" if sweep else "")
    return experiment_config(given, fixed, control_schedule(base.preset), why=f"run {run}")


def d_sweep(results: dict) -> dict:
    """The sweep's outcome from {lr: (status, metrics)} of its runs: the validation loss of each at
    the sweep step (None when the run diverged or has no eval there), and the winner (lowest), or
    a reason."""
    rows = []
    for lr, (status, metrics) in sorted(results.items()):
        stopped = status and status.get("status") == "stopped_early"
        step = status["step"] if stopped else None  # the sweep step
        val = next((m["val_loss"] for m in metrics if m["step"] == step), None)
        rows.append(dict(lr=lr, status=status and status.get("status"), step=step, val_loss=val))
    ok = [r for r in rows if r["val_loss"] is not None and math.isfinite(r["val_loss"])]
    best = min(ok, key=lambda r: (r["val_loss"], r["lr"])) if ok else None
    rule = f"lowest validation loss at step {D_SWEEP_STEP} (paper steps) of D's first steps"
    return dict(rows=rows, rule=rule,
                lr=best and best["lr"],
                reason=None if best else "no sweep run reached the sweep step without diverging")


def d_sweep_outcome(given: dict | None = None) -> dict:
    """experiments.d_sweep of D's sweep runs as they are on disk (runs not finished count as
    missing)."""
    results = {}
    for lr in D_LRS:
        info = existing_run(new_control_config("D", given, lr, sweep=True))
        done = info and info["status"] and info["status"]["status"] != "running"
        results[lr] = (info["status"], info["metrics"]) if done else (None, [])
    return d_sweep(results)


# Columns of the new controls' table: Table 9's and the yardsticks of SPEC 6 (trunk, window).
CONTROL_COLUMNS = TABLE9_COLUMNS + [
    "pc1_minus_matched_pct",
    "coherence",
    "cos_vb_theta0",
    "share_e0_final",
    "decay_share_final",
    "pc1_decay_removed_pct",
    "k95_decay_removed",
    "null_matched_decay_removed_pct",
    "matched_walk_abs_C_mean",
    "unigram_val",
    "below_unigram",
]


def control_row(run: str, cfg: dict, metrics: list[dict], status: dict, ws: dict | None,
                unigram: float | None) -> dict:
    """table9_row plus the matched null, coherence and weight-decay decomposition of the window, and
    whether the final validation loss is below the unigram baseline `unigram` (a run above it
    learned nothing)."""
    row = table9_row(run, cfg, metrics, status, ws)
    row.update({c: None for c in CONTROL_COLUMNS if c not in row}, unigram_val=unigram,
               below_unigram=None if unigram is None else bool(row["final_val"] < unigram))
    if ws is not None:
        t = ws["groups"]["trunk"]
        wd = t["weight_decay"]
        row.update(
            pc1_minus_matched_pct=_pct(t["pc1"] - t["null_matched_pc1"]),
            coherence=t["coherence"],
            cos_vb_theta0=t["cos_vb_theta0"],
            share_e0_final=wd["share_e0_final"],
            decay_share_final=wd.get("decay_share_final"),
            pc1_decay_removed_pct=_pct(t["pc1_decay_removed"]),
            k95_decay_removed=t["k95_decay_removed"],
            null_matched_decay_removed_pct=_pct(wd["null_matched_pc1_decay_removed"]),
            matched_walk_abs_C_mean=t["matched_walk_update_abs_C_mean"],
        )
    return row


def format_controls(rows: list[dict]) -> str:
    """Plain-text table of the controls: outcome, PC1 against the matched null, and the weight-decay
    share."""
    head = [
        "run",
        "optimizer",
        "lr",
        "wd",
        "status",
        "final val",
        "< unigram",
        "best p_ood",
        "PC1 %",
        "matched %",
        "coherence",
        "cos(v_b,-e0)",
        "decay share",
        "PC1 -e0 %",
        "matched -e0 %",
        "drift",
        "mean|C|",
        "walk |C|",
    ]
    cells = [
        ("final_val", 3),
        ("below_unigram", 3),
        ("best_p_ood", 3),
        ("pc1_pct", 1),
        ("null_matched_pc1_pct", 1),
        ("coherence", 3),
        ("cos_vb_theta0", 3),
        ("decay_share_final", 3),
        ("pc1_decay_removed_pct", 1),
        ("null_matched_decay_removed_pct", 1),
        ("drift", 2),
        ("update_abs_C_mean", 3),
        ("matched_walk_abs_C_mean", 3),
    ]
    body = [[r["run"], r["optimizer"], fmt(r["lr"], 4), fmt(r["weight_decay"], 4),
             f"{r['status']}@{r['last_step']}", *[fmt(r[k], nd) for k, nd in cells]] for r in rows]
    return format_table(head, body)


def plan(preset: str) -> dict:
    return dict(step_scale=STEP_SCALE[preset], table8=TABLE8, new_controls=NEW_CONTROLS,
                d_lrs=D_LRS, d_seeds=d_seeds(42), d_sweep_step=exp_steps(preset, D_SWEEP_STEP),
                d_shrink=D_SHRINK, window=window(preset), stop_rule=stop_rule(preset),
                control_schedule=control_schedule(preset), beta2_grid=BETA2_GRID,
                reheat_lrs=REHEAT_LRS, reheat=reheat_protocol(preset, 4.0,
                                                              0), reheat_threshold=REHEAT_THRESHOLD)


# --------------------------------------------------------- fine-tuning study (finetune_geometry.py)
FT_EXPERIMENTS = (
    "baseline",
    "lr",
    "full_vs_lora",
    "alignment",
    "subspace",
    "energy",
    "intruders",
    "activity",
    "rank",
    "table",
)
FT_STUDY = dict(proj_full=0.23, proj_lora=0.09, align_lo=0.17, align_hi=0.19)  # the study's numbers


def load_finetune(folder: str) -> dict:
    """{experiment: its JSON record} of a study folder; UsageError when one is missing."""
    out = {}
    for e in FT_EXPERIMENTS:
        p = os.path.join(folder, f"finetune_{e}.json")
        if not os.path.isfile(p):
            raise UsageError(f"{p} not found (run finetune_geometry.py first)")
        out[e] = json.load(open(p))
    return out


def finetune_summary(results_dir: str) -> dict:
    """The numbers a paper section needs, from a study folder's JSONs (never from checkpoints)."""
    try:
        recs = load_finetune(results_dir)
    # a folder from before a study's file existed: absent, as readers of OSError expect
    except UsageError as e:
        raise FileNotFoundError(str(e)) from None
    r = {e: v["results"] for e, v in recs.items()}
    fv, act, rk, al = r["full_vs_lora"], r["activity"], r["rank"], r["alignment"]
    over = al["alignment"]["groups"]["overall"]

    def pick(row, keys):
        return {k: row[k] for k in keys}

    def overall(block):
        return {p: v["groups"]["overall"] for p, v in block.items()}
    return dict(
        base=recs["baseline"]["config"]["base"],
        task=recs["baseline"]["config"]["task"],
        base_p_ood=rk["base_p_ood"],
        target_val_loss=r["baseline"]["target_val_loss"],
        lr_chosen=r["lr"]["chosen"],
        matched_steps=r["baseline"]["matched_steps"],
        reached_target=r["baseline"]["reached_target"],
        proj_abs_mean={m: fv[m]["overall"]["proj_abs_mean"] for m in ("full", "lora")},
        proj_var={m: fv[m]["overall"]["proj_var"] for m in ("full", "lora")},
        cos_over_null={m: fv[m]["overall"]["cos_over_null"] for m in ("full", "lora")},
        ratio_full_over_lora=fv["ratio_full_over_lora"]["overall"],
        alignment=dict(
            pick(over, ("cos", "late_mean", "random_level", "ceiling_final")),
            steps=al["alignment"]["steps"],
            rank=al["rank"],
        ),
        alignment_matched=overall(al["matched"]),
        subspace_matched=overall(r["subspace"]["matched"]),
        energy={n: v["groups"]["overall"] for n, v in r["energy"]["runs"].items()},
        intruders={n: v["counts"]["overall"] for n, v in r["intruders"]["runs"].items()},
        activity=dict(
            full=act["full"]["matched"],
            lora=act["lora"]["matched"],
            centroid_full=act["full"]["centroid"],
            centroid_lora=act["lora"]["centroid"],
            centroid_full_B=act["full_B"]["centroid"],
            centroid_lora_1=act["lora_1"]["centroid"],
        ),
        rank=[
            pick(
                row,
                (
                    "rank",
                    "p_ood",
                    "val_loss",
                    "steps_to_target",
                    "align_late_mean",
                    "align_final",
                    "ceiling_final",
                    "of_ceiling",
                    "subspace_final",
                    "subspace_random",
                    "trainable",
                ),
            )
            for row in rk["rows"]
        ],
        full_p_ood=rk["full"]["p_ood"],
        lr={
            m: [
                pick(
                    row,
                    (
                        "lr",
                        "final_train_loss",
                        "val_loss",
                        "steps_to_target",
                        "grad_norm_var",
                        "p_ood",
                        "diverged_at",
                    ),
                )
                for row in rows
            ]
            for m, rows in r["lr"]["rows"].items()
        },
        table=r["table"],
    )


def main(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", choices=sorted(STEP_SCALE),
                   help="time scale (default paper)")
    print(json.dumps(plan(p.parse_args(argv).preset), indent=1))


if __name__ == "__main__":
    try:
        main()
    except UsageError as e:
        fail(str(e))
