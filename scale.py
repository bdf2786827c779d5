"""Model size: the learning-rate sweep of one size (Config.size), then its run of the paper recipe.

    python scale.py --size 3x                  # paper preset (GPU): the sweep, then the run
    python scale.py --size 8x --sweep-only     # only the sweep (and its record)
    python scale.py --preset tiny --size 3x    # CPU, a few minutes

The run is the paper recipe (corpus v2, probe, schedule shape, batch 128 x 256, 10,000 steps,
snapshots every 200 steps, weight decay 0.5) with the size's model (config.SIZES: 3x is 12 blocks of
width 768, 8x 16 of width 1024, head size 64), at the largest learning rate of SWEEP_LRS = 1e-3,
6e-4, 3e-4 that trains stably: the paper's 1e-3 if it does. A sweep run is the run's first 2,000
steps (its schedule: the 1,500 warmup steps and 500 near the peak; a stop rule ends it there, "sweep
run: stopped at step 2,000 as planned"); it is stable when it got there without train.py's
divergence rule firing (a loss non-finite or above max(1.5 x its first value, ln V + 1)). The
learning rates are tried from the largest down and the sweep stops at the first stable one, so a
size at which 1e-3 trains costs one sweep run. The weight decay's timescale 1 / (lr * wd) moves with
the learning rate.

Runs: <out_dir>/<size>_lrsweep_lr<lr>_seed<seed> (tiny preset: tiny_...) and the run itself,
<out_dir>/<size>_seed<seed> (Config.run_dir). Any Config field can be given except lr, name and
stop_rule, which the experiment fixes. A finished run is reused; an interrupted one resumes.

Writes <out_dir>/[tiny_]scale/scale_sweep_<size>_seed<seed>.json (or --out DIR): each learning rate
tried, its outcome, its validation curve, the rule and the chosen rate; for the paper preset, or
with --results DIR, copies it there.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import experiments as ex
import train as tr
from common import cli, copy_results, fmt, write_result
from config import Parser, add_config_args, given_overrides, make_config, trunk_params
from runs import curves, existing_run

SWEEP_LRS = (1e-3, 6e-4, 3e-4)  # the paper's first, then the fallbacks, largest first
SWEEP_STEP = 2000               # paper steps: each sweep run stops here (past the 1,500 of warmup)


def sweep_config(given: dict, lr: float):
    """The sweep run at `lr`: the run's config, stopped at the sweep step by a rule that always
    fires."""
    base = make_config(**given)
    step = ex.exp_steps(base.preset, SWEEP_STEP)
    name = f"{ex.run_prefix(base.preset)}{base.size}_lrsweep_lr{lr:g}_seed{base.seed}"
    return ex.experiment_config(given, dict(lr=lr, name=name, stop_rule=f"{step}:-inf:2"),
                                why="the scale sweep")


def run_config(given: dict, lr: float):
    """The size's run at the sweep's learning rate (its folder name from Config.run_dir)."""
    return ex.experiment_config(given, dict(lr=lr, stop_rule=""), why="the scale run")


def stable(status: dict | None) -> bool:
    """A sweep run that reached the sweep step without diverging (its stop rule fired there)."""
    return bool(status) and status["status"] == "stopped_early"


def pick_lr(outcomes: dict) -> float | None:
    """The largest learning rate whose sweep run was stable ({lr: status or None}); None if none
    was."""
    return max((lr for lr, st in outcomes.items() if stable(st)), default=None)


def sweep(given: dict, train: bool) -> dict:
    """The sweep's record: the learning rates tried (largest first, up to the first stable one),
    their outcomes and validation curves, and the chosen rate. Trains the unfinished ones if
    `train`."""
    rows, outcomes = [], {}
    for lr in SWEEP_LRS:
        cfg = sweep_config(given, lr)
        if train:
            st = tr.train(cfg)
            print(f"{cfg.run_dir}: {st.get('reason') or st['status']} (lr {lr:g})")
        info = existing_run(cfg)
        done = info and info["status"] and info["status"]["status"] != "running"
        status = info["status"] if done else None
        outcomes[lr] = status
        metrics = info["metrics"] if info else []
        rows.append(dict(lr=lr, run_dir=cfg.run_dir, status=status and status["status"],
                         step=status and status["step"], reason=status and status.get("reason"),
                         val_loss=metrics[-1]["val_loss"] if status and metrics else None,
                         stable=stable(status), curves=curves(metrics)))
        if stable(status) or status is None:
            break  # a stable rate ends the sweep; an unfinished run decides nothing yet
    lr = pick_lr(outcomes)
    why = None if lr else "no learning rate of the sweep trained stably"
    return dict(rows=rows, lr=lr, reason=why)


def run(ns, argv) -> tuple[dict, list[str]]:
    t0 = time.perf_counter()
    given = given_overrides(ns)
    cfgs = [sweep_config(given, lr) for lr in SWEEP_LRS]  # every config error before any training
    for c in cfgs:
        existing_run(c)
    base = cfgs[0]
    dirs = ex.output_dirs("scale", base, ns.out, ns.results)
    rec = sweep(given, train=True)
    step = ex.exp_steps(base.preset, SWEEP_STEP)
    config = dict(preset=base.preset, seed=base.seed, size=base.size, n_layer=base.n_layer,
                  d_model=base.d_model, n_head=base.n_head, d_ff=base.d_ff,
                  trunk_params=trunk_params(base),
                  sweep_lrs=list(SWEEP_LRS), sweep_step=step, weight_decay=base.weight_decay)
    definitions = dict(
        stable=f"the sweep run reached step {step} (its stop rule) without train.py's divergence "
               "rule firing (a loss non-finite or above max(1.5 x its first value, ln V + 1))",
        rule="the largest stable learning rate of sweep_lrs, tried largest first; the sweep stops "
             "at the first stable one",
        decay_timescale_steps="1 / (lr * weight_decay): the steps over which weight decay alone "
                              "shrinks the weights by a factor e at the peak learning rate")
    rec["decay_timescale_steps"] = 1 / (rec["lr"] * base.weight_decay) if rec["lr"] else None
    path = os.path.join(dirs[0], f"scale_sweep_{base.size}_seed{base.seed}.json")
    if rec["lr"] is not None and not ns.sweep_only:
        cfg = run_config(given, rec["lr"])
        existing_run(cfg)
        st = tr.train(cfg)
        print(f"{cfg.run_dir}: {st['status']} at step {st['step']} (lr {rec['lr']:g})")
        rec["run_dir"] = cfg.run_dir
    record = write_result(path, "scale_sweep", config, definitions, rec, t0, argv, base.device,
                          __file__)
    return record, [path] + copy_results([path], dirs[1])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    fmt_class = argparse.RawDescriptionHelpFormatter
    p = add_config_args(Parser(description=__doc__, formatter_class=fmt_class, allow_abbrev=False))
    p.add_argument("--sweep-only", "--sweep_only", dest="sweep_only", action="store_true",
                   help="run the sweep and write its record, not the run")
    p.add_argument("--out", default=None, help="record folder (default <out_dir>/[tiny_]scale)")
    p.add_argument("--results", default=None,
                   help="copy the record here (default results/scale for the paper preset)")
    record, paths = cli(run, p.parse_args(argv), argv)
    r = record["results"]
    tried = ", ".join(f"lr {row['lr']:g}: {row['status']} at {row['step']} "
                      f"(val {fmt(row['val_loss'])})" for row in r["rows"])
    if r["lr"] is None:
        raise SystemExit(f"error: {r['reason']} ({tried})")
    print(f"sweep of size {record['config']['size']}: {tried} -> lr {r['lr']:g}")
    print("wrote " + ", ".join(paths))


if __name__ == "__main__":
    main()
