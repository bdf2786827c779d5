"""Does a run repeat itself? The same config trained N times with `--deterministic` off and on.

    python determinism.py                        # GPU: control D at lr 1 to step 1,000, 3 runs
                                                 # each way
    python determinism.py --repeats 5 --lr 0.3   # other repeats or learning rate
    python determinism.py --summarize runs/determinism --bench-off B0.json --bench-on B1.json
    python determinism.py --preset tiny --repeats 2 --out /tmp/det   # a CPU look (minutes)

Why control D: two trainings of D (SGD with momentum at peak lr 1) with one config gave validation
losses 3.922 and 4.136 at step 1,000 on the GPU, a spread larger than some of the differences the
controls are read for. Without `--deterministic` the GPU kernels (atomics in the backward of the
embedding and of attention, cuBLAS's split-K choices) add in an order that varies from run to run;
at a learning rate this large the rounding differences grow into different trajectories.

Each run is D's sweep config (experiments.new_control_config, stopped at step 1,000 by its stop
rule) with snapshots only at steps 0 and 1,000, trained by train.py in its own process (PyTorch's
deterministic switch is global to a process). The summary, per setting: the validation loss at each
evaluation step over the runs (min, max, spread = max - min) and how many distinct step-1,000
weights the runs ended with (training's own sha256 of the snapshot file: 1 means bitwise equal).
With `--bench-off/--bench-on` (bench.py JSONs of the same GPU with `--deterministic false/true`),
the cost of the switch in ms per step.

Writes <out>/determinism.{json,md} (default results/v2/determinism).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from common import ROOT, check_writable, format_table, write_result, write_text
from config import Parser, UsageError, fail, make_config, parse_stop_rule
from experiments import new_control_config
from runs import read_metrics, snapshot_hashes

SETTINGS = ("false", "true")


def run_prefix(setting: str) -> str:
    return f"D_det{setting}_"


def run_name(setting: str, i: int) -> str:
    return f"{run_prefix(setting)}{i}"


def train_args(preset: str, lr: float, seed: int, out_dir: str, setting: str, i: int) -> list[str]:
    """train.py's command line for D's sweep run (stopped at step 1,000) with snapshots at its ends:
    every field in which D's sweep config differs from the preset's, then the overrides."""
    given = {"seed": seed} | ({"preset": preset} if preset != "paper" else {})
    cfg, base = new_control_config("D", given, lr, sweep=True), make_config(**given)
    fields = {k: v for k, v in vars(cfg).items() if v != getattr(base, k) and k != "name"}
    fields |= dict(snapshot_every=parse_stop_rule(cfg.stop_rule)[0],  # the stop step: one past 0
                   snapshot_extra="", progress="false", out_dir=out_dir, deterministic=setting,
                   name=run_name(setting, i))
    return ["--preset", preset, "--seed", str(seed)] + [a for k, v in fields.items()
                                                        for a in (f"--{k}", str(v))]


def summarize_runs(folder: str) -> dict:
    """{setting: {runs, val: {step: [losses]}, final_hashes}} from the run folders in `folder`."""
    out = {}
    for setting in SETTINGS:
        runs = sorted(d for d in os.listdir(folder) if d.startswith(run_prefix(setting)))
        val, hashes = {}, []
        for r in runs:
            for row in read_metrics(os.path.join(folder, r)):
                if row.get("val_loss") is not None:
                    val.setdefault(row["step"], []).append(row["val_loss"])
            snaps = snapshot_hashes(os.path.join(folder, r))["snapshots"]
            hashes.append(snaps[max(snaps)])  # the last snapshot (zero-padded names sort by step)
        if runs:
            out[setting] = dict(runs=runs, val={str(k): v for k, v in sorted(val.items())},
                                distinct_final_weights=len(set(hashes)))
    return out


def bench_ms(path: str | None) -> dict | None:
    if not path:
        return None
    with open(path) as f:
        b = json.load(f)
    row = b["rows"][0]
    return dict(ms_per_step=row["ms_per_step"], mfu_pct=row["mfu_pct"], device=b.get("device_name"),
                deterministic=b["config"]["deterministic"], file=os.path.basename(path))


def table(summary: dict, cost: dict) -> str:
    rows = []
    for setting, s in summary.items():
        for step, v in s["val"].items():
            rows.append([setting, step, len(v), f"{min(v):.4f}", f"{max(v):.4f}",
                         f"{max(v) - min(v):.2e}", s["distinct_final_weights"]])
    text = format_table(["deterministic", "step", "runs", "val min", "val max", "spread",
                         "distinct final weights"], rows)
    if cost:
        off, on = cost["off"], cost["on"]
        extra = 100 * (on['ms_per_step'] / off['ms_per_step'] - 1)
        text += (f"\n\nbench.py on {off['device']}: {off['ms_per_step']:.2f} ms/step off, "
                 f"{on['ms_per_step']:.2f} on ({extra:+.1f}%)")
    return text


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", choices=("paper", "tiny"))
    p.add_argument("--lr", type=float, default=1.0, help="D's peak learning rate (default 1)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--repeats", type=int, default=3, help="runs per setting (default 3)")
    p.add_argument("--out_dir", default=os.path.join("runs", "determinism"),
                   help="parent of the runs")
    p.add_argument("--summarize", metavar="FOLDER", help="only summarize the runs in FOLDER")
    p.add_argument("--bench-off", help="bench.py JSON with --deterministic false (same GPU)")
    p.add_argument("--bench-on", help="bench.py JSON with --deterministic true (same GPU)")
    p.add_argument("--out", default=os.path.join("results", "v2", "determinism"),
                   help="results folder")
    args = p.parse_args(argv)
    t0 = time.time()
    try:
        if args.repeats < 2:
            raise UsageError("--repeats must be at least 2 (a spread needs two runs)")
        if bool(args.bench_off) != bool(args.bench_on):
            raise UsageError("--bench-off and --bench-on go together")
        for b in (args.bench_off, args.bench_on):
            if b and not os.path.isfile(b):
                raise UsageError(f"no bench JSON {b}")
        folder = args.summarize or args.out_dir
        if args.summarize and not os.path.isdir(folder):
            raise UsageError(f"--summarize {folder}: no such folder")
        check_writable(args.out)
    except UsageError as e:
        fail(str(e))
    if not args.summarize:
        # off and on alternate, so that a change in the machine's load hits both settings alike
        for i in range(1, args.repeats + 1):
            for setting in SETTINGS:
                cmd = [sys.executable, "train.py", *train_args(args.preset, args.lr, args.seed,
                                                                 folder, setting, i)]
                print(f"run {run_name(setting, i)} ...", flush=True)
                if subprocess.run(cmd, cwd=ROOT).returncode:
                    fail(f"training {run_name(setting, i)} failed", code=1)
    summary = summarize_runs(folder)
    if not summary:
        fail(f"no D_det* runs in {folder}")
    cost = {}
    if args.bench_off:
        cost = dict(off=bench_ms(args.bench_off), on=bench_ms(args.bench_on))
        if cost["off"]["deterministic"] or not cost["on"]["deterministic"]:
            fail("--bench-off must be a run with --deterministic false and --bench-on with true")
    text = table(summary, cost)
    definitions = dict(
        spread="max - min over the runs of the validation loss at one evaluation step",
        distinct_final_weights="distinct sha256 of the last snapshot over the runs "
                               "(1: bitwise equal)",
        cost="bench.py ms/step with --deterministic true against false, same GPU, same call")
    config = dict(control="D", lr=args.lr, seed=args.seed, preset=args.preset, repeats=args.repeats,
                  stop="D's sweep stop rule (step 1,000 at the paper preset)")
    os.makedirs(args.out, exist_ok=True)
    write_result(os.path.join(args.out, "determinism.json"), "determinism", config, definitions,
                 dict(runs=summary, cost=cost or None), t0, argv, "cpu", script="determinism.py")
    write_text(os.path.join(args.out, "determinism.md"), text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
