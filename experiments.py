"""The experiment protocols as data: Table 8 runs, the analysis window, the stop rule, the 4,000-step
control schedule, the beta2 grid, the reheat plan, and the step scaling of `--preset tiny`.

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

from config import Config, Parser, UsageError, fail, make_config

# Experiments state their schedules in paper steps; the tiny preset runs them shrunk by this factor
# (paper 10,000 steps -> tiny 400, like the tiny preset itself).
STEP_SCALE = {"paper": 1.0, "tiny": 0.04}

# Table 8. `tag` names the run folder; every other field except `label` is a Config field the experiment fixes.
TABLE8 = {
    "A": dict(tag="A", label="AdamW", optimizer="adamw", lr=1e-3, momentum=0.0, nesterov=False, weight_decay=0.5,
              wd_mode="decoupled"),
    "B": dict(tag="B", label="SGD", optimizer="sgd", lr=1e-3, momentum=0.0, nesterov=False, weight_decay=0.5,
              wd_mode="l2"),
    "C": dict(tag="C", label="SGD+momentum", optimizer="sgd", lr=1e-2, momentum=0.9, nesterov=False, weight_decay=0.05,
              wd_mode="l2"),
    "C'": dict(tag="Cp", label="SGDW+Nesterov", optimizer="sgd", lr=1e-2, momentum=0.9, nesterov=True,
               weight_decay=0.5, wd_mode="decoupled"),
}
TRAINED_BY_SGD_CONTROL = ("A", "B", "C")  # C' is trained by sgd_nesterov_run.py
WINDOW = (600, 2000)                      # analysis window and anchor of the controls and beta2, paper steps
STOP_RULE = (2000, 5.1, 0.02)             # run C': at step 2,000 stop if val > 5.1 and best p_ood < 0.02
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
    """The 4,000-step schedule of the SGD controls and the beta2 runs: warmup 1,500, lambda 2 throughout,
    eval every 200, snapshots every 200 plus every 50 in [600, 2000] and every 100 after."""
    e = lambda n: exp_steps(preset, n)  # noqa: E731
    return dict(steps=e(4000), warmup=e(1500), lambda_step=e(4000), eval_every=e(200), snapshot_every=e(200),
                snapshot_extra=f"{e(600)}:{e(2000)}:{e(50)},{e(2000)}:{e(4000)}:{e(100)}")


def stop_rule(preset: str) -> str:
    step, max_val, min_ood = STOP_RULE
    return f"{exp_steps(preset, step)}:{max_val}:{min_ood}"


def reheat_protocol(preset: str, lam: float, data_offset: int) -> dict:
    """Config fields of a reheat run: the plan in the preset's steps, `lam` throughout, the data stream
    continued from `data_offset` (the source's steps: fresh batches, not a replay)."""
    e = lambda n: exp_steps(preset, n)  # noqa: E731
    return dict({k: e(v) if k != "min_lr_frac" else v for k, v in REHEAT.items()}, snapshot_extra="",
                lambda_probe=lam, lambda_probe_late=lam, lambda_step=0, stop_rule="", data_offset=data_offset)


def given_overrides(ns: argparse.Namespace) -> dict:
    """The Config fields given on the command line (config.add_config_args options)."""
    return {k[4:]: v for k, v in vars(ns).items() if k.startswith("cfg_") and v is not None}


def experiment_config(given: dict, fixed: dict, defaults: dict | None = None, why: str = "") -> Config:
    """Preset, then `defaults` (the protocol's schedule), then the command line `given`, then `fixed`.
    A `given` field that the experiment fixes is an error (the one override message)."""
    clash = sorted(set(given) & set(fixed))
    if clash:
        k = clash[0]
        raise UsageError(f"--{k} is fixed by the experiment ({why + ': ' if why else ''}{fixed[k]!r}); leave it out")
    return make_config(**{**(defaults or {}), **given, **fixed})


def plan(preset: str) -> dict:
    return dict(step_scale=STEP_SCALE[preset], table8=TABLE8, window=window(preset), stop_rule=stop_rule(preset),
                control_schedule=control_schedule(preset), beta2_grid=BETA2_GRID, reheat_lrs=REHEAT_LRS,
                reheat=reheat_protocol(preset, 4.0, 0), reheat_threshold=REHEAT_THRESHOLD)


def main(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", choices=sorted(STEP_SCALE), help="time scale (default paper)")
    print(json.dumps(plan(p.parse_args(argv).preset), indent=1))


if __name__ == "__main__":
    try:
        main()
    except UsageError as e:
        fail(str(e))
