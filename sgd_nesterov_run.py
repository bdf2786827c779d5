"""Run C' of the SGD-family controls: SGD with Nesterov momentum and decoupled weight decay (SGDW).

    python sgd_nesterov_run.py                   # paper preset (GPU)
    python sgd_nesterov_run.py --preset tiny     # CPU, a minute or two

SGD lr 1e-2, Nesterov momentum 0.9 and no weight decay inside the optimizer; after each step
theta <- (1 - lr_t * 0.5) theta for every parameter except LayerNorm (model.optimizer_step).
Model, data, seed, warmup, cosine, clip, batch, evals and snapshots as runs A-C (sgd_control.py).

The early-stop rule (paper): at step 2,000, stop if val > 5.1 and best p_ood < 0.02. In a run
whose length is 2,000 steps the rule could stop nothing: it would only label the last step. As in
the original code, the learning-rate schedule here is that of the 4,000-step runs A-C (cosine
over 4,000 steps, so lr_t is run C's at every step) and the rule decides whether the run goes on:
when it fires, the run ends at step 2,000 (status stopped_early; what the paper reports);
otherwise it continues to step 4,000. The JSON records the rule's inputs, whether it fired, where
the run ended, and C' against run C at step 2,000 when run C exists. The fields the experiment
fixes (see sgd_control.py) cannot be overridden.

Writes <run>/analysis/sgd_nesterov.json (rule, comparison, and the C' row of the table over the
window [600, 2000] if the run reached step 2,000) and a copy in <out_dir>/[tiny_]sgd_control/ (or
--out DIR); for the paper preset, or with --results DIR, also into results/sgd_control/.
sgd_control.py puts C' into its table (from the run folder) the next time it runs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import experiments as ex
import train
from common import cli, copy_results, write_result
from config import Parser, add_config_args, given_overrides
from runs import curves, existing_run


def rule_record(metrics: list[dict], status: dict, rule_step: int, max_val: float,
                min_best_p_ood: float, horizon: int) -> dict:
    """The stop rule evaluated on the metrics: val at `rule_step` > max_val and the best p_ood up to
    it < min."""
    out = dict(step=rule_step, max_val=max_val, min_best_p_ood=min_best_p_ood, horizon=horizon,
               status=status["status"], ended_at=status["step"])
    at = [r for r in metrics if r["step"] == rule_step]
    if not at:
        return dict(
            out,
            evaluated=False,
            fired=False,
            consistent=status["status"] != "stopped_early",
            effect=(
                f"not evaluated: the run ended ({status['status']}) at step {status['step']},"
                f" before step {rule_step}"
            ),
        )
    val, best = at[0]["val_loss"], max(r["p_ood"] for r in metrics if r["step"] <= rule_step)
    fired = bool(val > max_val and best < min_best_p_ood)
    effect = (
        f"fired: run stopped at step {rule_step} of the {horizon}-step schedule"
        if fired
        else (
            f"did not fire: run continued past step {rule_step} (ended {status['status']} at step"
            f" {status['step']})"
        )
    )
    return dict(out, evaluated=True, val=val, best_p_ood=best, fired=fired, effect=effect,
                consistent=fired == (status["status"] == "stopped_early"))


def compare_with_c(metrics_cp: list[dict], metrics_c: list[dict] | None, step: int) -> dict | None:
    """val and p_ood of C' and C at `step` (the paper: val within 0.03, p_ood within about
    0.001)."""
    a = [r for r in metrics_cp if r["step"] == step]
    b = [r for r in (metrics_c or []) if r["step"] == step]
    if not (a and b):
        return None
    a, b = a[0], b[0]
    return dict(
        step=step,
        val_cp=a["val_loss"],
        val_c=b["val_loss"],
        p_ood_cp=a["p_ood"],
        p_ood_c=b["p_ood"],
        val_diff=a["val_loss"] - b["val_loss"],
        p_ood_diff=a["p_ood"] - b["p_ood"],
    )


def run(ns, argv) -> tuple[dict, list[str]]:
    t0 = time.perf_counter()
    given = given_overrides(ns)
    cfg, cfg_c = ex.control_config("C'", given), ex.control_config("C", given)
    existing_run(cfg)
    c = existing_run(cfg_c)  # run C (if present) for the comparison at the rule step
    out, results = ex.output_dirs("sgd_control", cfg, ns.out, ns.results)
    st = train.train(cfg)
    print(f"{cfg.run_dir}: {st['status']} at step {st['step']}")
    info = existing_run(cfg)
    metrics, status = info["metrics"], info["status"]
    step, max_val, min_ood = ex.STOP_RULE
    rule = rule_record(metrics, status, ex.exp_steps(cfg.preset, step), max_val, min_ood, cfg.steps)
    w0, w1 = ex.window(cfg.preset)
    ws = ex.control_window(cfg, w0, w1) if ex.reached(status, w1) else None
    row = ex.table9_row("C'", info["config"].to_dict(), metrics, status, ws)
    config = {
        k: getattr(cfg, k)
        for k in (
            "optimizer",
            "lr",
            "momentum",
            "nesterov",
            "weight_decay",
            "wd_mode",
            "steps",
            "warmup",
            "min_lr_frac",
            "grad_clip",
            "stop_rule",
        )
    }
    definitions = dict(
        sgdw=(
            "weight_decay is not in the optimizer; theta <- (1 - lr_t * weight_decay) theta after "
            "each step, LayerNorm excluded"
        ),
        rule="see the docstring of sgd_nesterov_run.py",
    )
    paths = [
        os.path.join(cfg.run_dir, "analysis", "sgd_nesterov.json"),
        os.path.join(out, "sgd_nesterov.json")
    ]
    for path in paths:
        record = write_result(
            path,
            "sgd_nesterov_run",
            config,
            definitions,
            row,
            t0,
            argv,
            cfg.device,
            __file__,
            preset=cfg.preset,
            seed=cfg.seed,
            run_dir=cfg.run_dir,
            sgdw=definitions["sgdw"],
            rule=rule,
            compare_with_C=compare_with_c(metrics, c and c["metrics"], rule["step"]),
            window=[w0, w1],
            row=row,
            window_summary=ws,
            curves=curves(metrics),
        )
    return record, paths + copy_results(paths[:1], results)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = add_config_args(
        Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
               allow_abbrev=False))
    p.add_argument(
        "--out",
        default=None,
        help="table folder for the copy (default <out_dir>/[tiny_]sgd_control)",
    )
    p.add_argument(
        "--results",
        default=None,
        help="copy the JSON here (default results/sgd_control for the paper preset)",
    )
    record, paths = cli(run, p.parse_args(argv), argv)
    rule, row = record["rule"], record["row"]
    max_val, min_ood = rule["max_val"], rule["min_best_p_ood"]
    print(
        f"stop rule at step {rule['step']} (val > {max_val} and best p_ood < {min_ood}):"
        f" {rule['effect']}"
    )
    if rule.get("evaluated"):
        print(f"  val {rule['val']:.3f}, best p_ood {rule['best_p_ood']:.3f}")
    if record["compare_with_C"]:
        d = record["compare_with_C"]
        print(
            f"  C' - C at step {d['step']}: val {d['val_diff']:+.3f}, p_ood {d['p_ood_diff']:+.3f}"
        )
    print(ex.format_table9([row]))
    print("wrote " + ", ".join(paths) + "  (sgd_control.py adds C' to its table)")


if __name__ == "__main__":
    main()
