"""The whole results plan, resumable: every run and analysis the paper report is built from.

    python make_results.py --list                  # the plan, its ETA and what is done; runs nothing
    python make_results.py                         # run every part in order (one GPU), then collect
    python make_results.py --parts seed42,bench    # only these parts (and nothing they depend on)
    python make_results.py --parts scale           # the 3x model (not run by default; 8x: scale8x)
    python make_results.py --preset tiny           # the same plan shrunk for a CPU (minutes)
    python make_results.py --collect-only --pack results_v2.tar.gz   # copy small outputs, pack them
    python make_results.py --executor local        # independent stages at once, one per visible GPU
    python make_results.py --executor slurm --partition gpu --time_min 120   # each stage a Slurm job

`make results` runs the second line (`make results EXECUTOR=local` the sixth). Each stage is one command
of a script of this repository; a stage is done when it ended with exit code 0 for the same command (a
marker in <out_dir>/.plan/). The scripts themselves resume (train.py from state_latest.pt, the
experiments skip finished runs), so an interrupted plan loses at most the stage in flight. A failed
stage is reported and the stages that need it are skipped; the others go on. After each part its small
outputs (configs, metrics, logs, analysis JSON/CSV/PNG; never snapshots) are copied into
`--results` (default results/v2 for the paper preset).

--executor inline (default) runs the stages one after another in plan order. local and slurm run them
through submitit (executors.py): a stage starts once the stages it needs have succeeded, never beside
another stage of its group (the parts that write one results folder), the benchmark alone. local: one
stage per GPU (--gpus N: the first N visible GPUs; --slots N: stages at once, default one per GPU; on a
CPU machine --gpus 0 --slots N). slurm: one job per stage (--partition, --time_min, --gpus_per_job; a
train.py stage on more than one GPU runs under torchrun); --out_dir must be on a filesystem the nodes
share.

The estimates are wall seconds on one NVIDIA H200 (paper preset); they are printed as the ETA.
The plan does not fit one 10-minute call: `--list` names the parts, each of which does.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field

import executors
from config import Parser, UsageError, fail

ROOT = os.path.dirname(os.path.abspath(__file__))
ANALYSES = ("trajectory_pca_uncentered", "backbone_update_analysis", "backbone_gradient_analysis",
            "backbone_fisher_analysis")
# H200 seconds of each analysis (paper preset): the gradient analysis makes the gradient record (one
# replay of 32 mini-batches at each snapshot), which the Fisher analysis then only reads
ANALYSIS_EST_S = (15, 8, 90, 10)
# the results folder of each part that does not write its own: controls and table9 share run A and sgd_control
FOLDER_OF_PART = {"controls": "sgd_control", "table9": "sgd_control", "reheat": "reheat/seed42",
                  "finetune": "seed42", "scale8x": "scale"}
# Parts run only when named in --parts: the larger models (GPU minutes beyond the plan's budget).
# The determinism check (GPU kernels' run-to-run spread, --deterministic's cost) is not a paper result.
OPTIONAL_PARTS = ("scale", "scale8x", "determinism")
# Scripts of stages that other work provides (the trajectory record, the optimizer's own null):
# their stages fail, and are retried at the next call, until the script is there.
HOOK_SCRIPTS = ("trajectory_record.py", "optimizer_null.py")


@dataclass
class Stage:
    name: str                  # part.stage
    cmd: list[str]
    est_s: float               # H200 wall seconds, paper preset
    needs: list[str] = field(default_factory=list)
    alone: bool = False        # runs with no other stage beside it (a benchmark)

    @property
    def part(self) -> str:
        return self.name.split(".")[0]

    @property
    def group(self) -> str:
        """Stages of one group never run at once: the parts that write one results folder."""
        return FOLDER_OF_PART.get(self.part, self.part)


def seed_stages(seed: int, common: list[str], dev: list[str], prefix: str) -> list[Stage]:
    """Training of one seed, then the four trajectory analyses on it."""
    run = f"{prefix}seed{seed}"
    train = Stage(f"seed{seed}.train", ["train.py", "--seed", str(seed), *common], 200)
    return [train] + [Stage(f"seed{seed}.{a}", [f"{a}.py", "--run", "{out_dir}/" + run, *dev], est,
                            needs=analysis_needs(train.name, f"seed{seed}", a))
                      for a, est in zip(ANALYSES, ANALYSIS_EST_S)]


def analysis_needs(train: str, part: str, analysis: str) -> list[str]:
    """The Fisher analysis reads the gradient record that the gradient analysis makes (one replay
    of the run's batches serves both): run after it, never beside it."""
    fisher, grad = ANALYSES[3], ANALYSES[2]
    return [train] + ([f"{part}.{grad}"] if analysis == fisher else [])


def scale_stages(size: str, common: list[str], dev: list[str], prefix: str,
                 results: str) -> list[Stage]:
    """A larger model (config.SIZES) at seed 42: its learning-rate sweep (recorded), its run
    (snapshots every 200 steps), the four trajectory analyses, the trajectory record and the
    optimizer's null."""
    part, run = "scale" if size == "3x" else f"scale{size}", "{out_dir}/" + f"{prefix}{size}_seed42"
    # wall time against the paper model's: the budget on one H100, 9 min (3x) and 20 (8x) of
    # training against 3.3 (model FLOPs per token 3.2x and 7.3x; larger matmuls run nearer the peak)
    cost = 2.8 if size == "3x" else 6.3
    args = ["--size", size, "--results", os.path.join(results, "scale"), *common]
    sweep = Stage(f"{part}.sweep", ["scale.py", "--sweep-only", *args], 40 * cost)
    train = Stage(f"{part}.train", ["scale.py", *args], 190 * cost + 20, needs=[sweep.name])
    after = [(a, est * cost) for a, est in zip(ANALYSES, ANALYSIS_EST_S)]
    after += [("trajectory_record", 20 * cost), ("optimizer_null", 190 * cost)]
    return [sweep, train] + [Stage(f"{part}.{a}", [f"{a}.py", "--run", run, *dev], est,
                                   needs=analysis_needs(train.name, part, a)) for a, est in after]


def build_plan(preset: str, out_dir: str, results: str, device: str | None) -> list[Stage]:
    dev = ["--device", device] if device else []
    tiny = ["--preset", preset] if preset != "paper" else []
    common = ["--progress", "false", "--out_dir", out_dir, *tiny, *dev]
    prefix = "" if preset == "paper" else f"{preset}_"
    r = lambda sub: os.path.join(results, sub)  # noqa: E731
    # the benchmark first: it also exercises the compiled step, evaluation and snapshots of train.py
    # its variants: the step without the fused cross-entropy (what it bought), and liger-kernel's
    # at the GPT-2 vocabulary (the other library)
    plan = [Stage("bench.bench", ["bench.py", "--out", r("bench/bench.json"), "--stretch",
                                  "--profile", "--variant", "fused_ce=off",
                                  "--variant", "gpt2:fused_ce=liger",
                                  *tiny, *(["--bench-steps", "2"] if tiny else []), *dev],
                  180, alone=True)]
    plan += seed_stages(42, common, dev, prefix)
    src = "{out_dir}/" + f"{prefix}seed42"
    plan += [
        Stage("finetune.finetune", ["finetune_geometry.py", "--base", src, "--progress", "false", *tiny, *dev],
              120, needs=["seed42.train"]),
        # the controls the paper lacks (SPEC 7): run A, D's lr sweep (5 runs of 1,000 steps), D at
        # three seeds, A0, D0; then A against D at matched loss
        Stage("controls.backbone_controls",
              ["backbone_controls.py", "--results", r("sgd_control"), *common], 700),
        Stage("controls.sgd_matched_valloss_D",
              ["sgd_matched_valloss.py", "--against", "D", "--results", r("sgd_control"), *common], 10,
              needs=["controls.backbone_controls"]),
        # the paper's Table 8 runs B and C (A is shared with the controls), C', and Table 10
        Stage("table9.sgd_control", ["sgd_control.py", "--results", r("sgd_control"), *common], 300),
        Stage("table9.sgd_nesterov_run", ["sgd_nesterov_run.py", "--results", r("sgd_control"), *common], 45),
        Stage("table9.sgd_matched_valloss", ["sgd_matched_valloss.py", "--results", r("sgd_control"), *common], 10,
              needs=["table9.sgd_control"]),
        Stage("reheat.reheat", ["reheat.py", "--run", src, "--results", r("reheat/seed42"), *common], 120,
              needs=["seed42.train"]),
        Stage("beta2.beta2", ["beta2_analysis.py", "--results", r("beta2"), *common], 300),
    ]
    plan += seed_stages(271, common, dev, prefix)
    # the twin without weight decay (SPEC 6, the third null): seed 42 at weight decay 0, its trajectory analyses
    twin = f"{prefix}seed42_wd0"
    t = Stage("twin.train", ["train.py", "--seed", "42", "--weight_decay", "0", "--name", twin, *common], 200)
    plan += [t] + [Stage(f"twin.{a}", [f"{a}.py", "--run", "{out_dir}/" + twin, *dev], est, needs=[t.name])
                   for a, est in zip(ANALYSES[:2], (15, 8))]
    for size in ("3x", "8x"):
        plan += scale_stages(size, common, dev, prefix, results)
    # --deterministic off and on: bench's cost of the switch, then control D's spread over 3 runs each
    bench = [Stage(f"determinism.bench_{d}", ["bench.py", "--vocab", "corpus", "--no-reference",
                                              "--deterministic", d, *tiny, *dev,
                                              *(["--bench-steps", "2"] if tiny else []),
                                              "--out", r(f"determinism/bench_det_{d}.json")],
                   40, alone=True) for d in ("false", "true")]
    plan += bench + [Stage("determinism.determinism", [
        "determinism.py", "--out_dir", "{out_dir}/determinism", "--out", r("determinism"), *tiny,
        "--bench-off", r("determinism/bench_det_false.json"),
        "--bench-on", r("determinism/bench_det_true.json")], 270, needs=[b.name for b in bench])]
    return plan


def marker_path(out_dir: str, stage: Stage) -> str:
    return os.path.join(out_dir, ".plan", stage.name + ".json")


def expand(stage: Stage, out_dir: str, gpus: int = 1) -> list[str]:
    """The stage's command line; a train.py stage on `gpus` > 1 GPUs runs under torchrun."""
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
    return [sys.executable, *(launch if gpus > 1 and stage.cmd[0] == "train.py" else []),
            *[a.replace("{out_dir}", out_dir) for a in stage.cmd]]


def read_marker(out_dir: str, stage: Stage) -> dict | None:
    """What run_stage recorded of the stage's last run (command, exit code, wall time, date), or None."""
    try:
        return json.load(open(marker_path(out_dir, stage)))
    except (OSError, ValueError):
        return None


def is_done(stage: Stage, out_dir: str, gpus: int = 1) -> bool:
    rec = read_marker(out_dir, stage)
    return bool(rec) and rec.get("rc") == 0 and rec.get("cmd") == expand(stage, out_dir, gpus)[1:]


def select(plan: list[Stage], parts: str | None) -> list[Stage]:
    """The stages of the parts named (comma-separated), or of every part but OPTIONAL_PARTS."""
    if not parts:
        return [s for s in plan if s.part not in OPTIONAL_PARTS]
    want = [p.strip() for p in parts.split(",") if p.strip()]
    known = list(dict.fromkeys(s.part for s in plan))
    bad = [p for p in want if p not in known]
    if bad:
        raise UsageError(f"unknown part(s) {', '.join(bad)} (choose from {', '.join(known)})")
    return [s for s in plan if s.part in want]


def fmt_s(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


def print_plan(plan: list[Stage], out_dir: str, scale: float):
    print(f"{'part':<10} {'stage':<28} {'est':>8}  status   command")
    todo = 0.0
    for s in plan:
        done = is_done(s, out_dir)
        todo += 0 if done else s.est_s * scale
        print(f"{s.part:<10} {s.name.split('.', 1)[1]:<28} {fmt_s(s.est_s * scale):>8}  {'done' if done else 'todo':<7}  "
              f"{shlex.join(expand(s, out_dir)[1:])}")
    parts = {}
    for s in plan:
        parts[s.part] = parts.get(s.part, 0) + s.est_s * scale
    print("parts: " + ", ".join(f"{p} {fmt_s(t)}" for p, t in parts.items()))
    print(f"ETA of what is left: {fmt_s(todo)}")


def run_stage(stage: Stage, out_dir: str, log_dir: str, gpus: int = 1) -> int:
    """Run one stage (its log in log_dir, its marker beside); its exit code. Also the job of an executor."""
    cmd = expand(stage, out_dir, gpus)
    os.makedirs(log_dir, exist_ok=True)
    t0 = time.time()
    with open(os.path.join(log_dir, stage.name + ".log"), "w") as log:
        log.write(f"$ {shlex.join(cmd[1:])}\n")
        log.flush()
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.time() - t0
    os.makedirs(os.path.dirname(marker_path(out_dir, stage)), exist_ok=True)
    with open(marker_path(out_dir, stage), "w") as f:
        json.dump(dict(cmd=cmd[1:], rc=rc, wall_s=round(wall, 1), date=time.strftime("%Y-%m-%d %H:%M:%S")), f)
    return rc


def stage_records(plan: list[Stage], out_dir: str) -> dict:
    """{results folder: [{command, wall_s}]} from the stage markers, for the provenance of each folder."""
    out: dict[str, list] = {}
    for s in plan:
        rec = read_marker(out_dir, s)
        if rec is None:
            continue
        out.setdefault(s.group, []).append(dict(command="python " + shlex.join(rec["cmd"]), wall_s=rec["wall_s"],
                                               rc=rec["rc"], date=rec["date"]))
    return out


def collect(plan: list[Stage], out_dir: str, results: str) -> list[str]:
    """Copy the small files of every finished run into `results` (results/<version>) by collect_results.py,
    with the stages' commands and wall times as their provenance; returns what it printed."""
    os.makedirs(os.path.join(out_dir, ".plan"), exist_ok=True)
    stages = os.path.join(out_dir, ".plan", "stages.json")
    with open(stages, "w") as f:
        json.dump(stage_records(plan, out_dir), f, indent=1)
    root, version = os.path.split(os.path.normpath(results))
    cmd = [sys.executable, "collect_results.py", "--runs", out_dir, "--results", root or ".", "--version", version,
           "--date", time.strftime("%Y-%m-%d"), "--stages", stages]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        why = r.stderr.strip().removeprefix("error: ")
        raise UsageError(f"collecting into {results} failed: {why}")
    return r.stdout.split()


def pack(results: str, path: str, log_dir: str | None):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(results, arcname=os.path.relpath(results, ROOT) if results.startswith(ROOT) else os.path.basename(results))
        if log_dir and os.path.isdir(log_dir):
            tar.add(log_dir, arcname="plan_logs")
    print(f"packed {path} ({os.path.getsize(path) / 2**20:.1f} MiB)")


def run_inline(plan: list[Stage], out_dir: str, log_dir: str, scale: float) -> set[str]:
    """Every stage not done, one after another in plan order; the names of the failed and skipped ones."""
    failed: set[str] = set()
    left = sum(s.est_s * scale for s in plan if not is_done(s, out_dir))
    for i, s in enumerate(plan, 1):
        if is_done(s, out_dir):
            continue
        missing = [n for n in s.needs if n in failed]
        if missing:
            print(f"[{i}/{len(plan)}] {s.name}: skipped, needs {', '.join(missing)} which failed", flush=True)
            failed.add(s.name)
            continue
        print(f"[{i}/{len(plan)}] {s.name} (est {fmt_s(s.est_s * scale)}, ETA of the rest {fmt_s(left)}) ...",
              flush=True)
        t0 = time.time()
        rc = run_stage(s, out_dir, log_dir)
        left = max(0.0, left - s.est_s * scale)
        state = "done" if rc == 0 else f"FAILED (exit {rc}; log {os.path.join(log_dir, s.name + '.log')})"
        print(f"[{i}/{len(plan)}] {s.name}: {state} in {fmt_s(time.time() - t0)}", flush=True)
        if rc:
            failed.add(s.name)
    return failed


def run_concurrently(plan: list[Stage], args, log_dir: str, scale: float) -> set[str]:
    """The stages not done through submitit (executors.py); the names of those that failed or were skipped."""
    gpus = args.gpus_per_job if args.executor == "slurm" else 1
    done = {s.name for s in plan if is_done(s, args.out_dir, gpus)}
    folder = os.path.join(args.out_dir, ".plan", "submitit")
    run = functools.partial(run_stage, out_dir=args.out_dir, log_dir=log_dir, gpus=gpus)
    if args.executor == "local":
        visible = executors.visible_gpus() if args.gpus != 0 else []
        if args.gpus is not None and args.gpus > len(visible):
            raise UsageError(f"--gpus {args.gpus} asked for, but {len(visible)} GPU(s) are visible")
        use = visible[: args.gpus] if args.gpus is not None else visible
        slots = args.slots or max(1, len(use))
        submit = executors.local_submit(folder, use, run)
    else:
        slots = args.slots
        submit = executors.slurm_submit(folder, args.partition, args.time_min, args.gpus_per_job, run)
    return executors.Scheduler(plan, done, submit, slots, scale, executors.POLL_S[args.executor]).run()


def check_executor_options(args):
    """Options of another executor, or numbers out of range, are errors; local and slurm need submitit."""
    given = lambda *names: [n for n in names if getattr(args, n) is not None]  # noqa: E731
    wrong = (given("gpus") if args.executor != "local" else []) + (
        given("partition", "time_min", "gpus_per_job") if args.executor != "slurm" else []) + (
        given("slots") if args.executor == "inline" else [])
    if wrong:
        raise UsageError(f"--{wrong[0]} is not an option of --executor {args.executor}")
    for name, least in (("slots", 1), ("gpus", 0), ("time_min", 1), ("gpus_per_job", 1)):
        if getattr(args, name) is not None and getattr(args, name) < least:
            raise UsageError(f"--{name} must be >= {least}")
    args.time_min, args.gpus_per_job = args.time_min or 120, args.gpus_per_job or 1
    if args.executor != "inline" and not (args.list or args.collect_only):
        executors.import_submitit()


def main(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="paper", choices=("paper", "tiny"), help="time scale of every run (default paper)")
    p.add_argument("--parts", default=None, help="comma-separated parts to run (default: all, in plan order)")
    p.add_argument("--out_dir", "--out-dir", default="runs", help="parent folder of the run folders (default runs)")
    p.add_argument("--results", default=None, help="where small outputs are collected, <root>/v<N> (default results/v2; tiny: <out_dir>/tiny_results/v2)")
    p.add_argument("--device", default=None, help="device for every script (default: each script's auto)")
    p.add_argument("--list", action="store_true", help="print the plan and what is done; run nothing")
    p.add_argument("--collect-only", action="store_true", help="only copy the small outputs into --results")
    p.add_argument("--pack", default=None, metavar="PATH", help="pack --results (and the plan logs) into this .tar.gz")
    p.add_argument("--executor", default="inline", choices=("inline", "local", "slurm"),
                   help="inline: one stage after another; local: through submitit on this machine's GPUs; "
                        "slurm: one Slurm job per stage")
    p.add_argument("--slots", type=int, default=None,
                   help="local/slurm: stages at once (local default: one per GPU; slurm: no limit)")
    p.add_argument("--gpus", type=int, default=None, help="local: use the first N visible GPUs (0: the CPU)")
    p.add_argument("--partition", default=None, help="slurm: the partition")
    p.add_argument("--time_min", "--time-min", type=int, default=None,
                   help="slurm: time limit of a job, minutes (120)")
    p.add_argument("--gpus_per_job", "--gpus-per-job", type=int, default=None,
                   help="slurm: GPUs of a job (1); train.py stages use them through torchrun")
    args = p.parse_args(argv)
    try:
        check_executor_options(args)
        results = args.results or (os.path.join("results", "v2") if args.preset == "paper"
                                   else os.path.join(args.out_dir, f"{args.preset}_results", "v2"))
        plan = select(build_plan(args.preset, args.out_dir, results, args.device), args.parts)
        if os.path.exists(results) and not os.path.isdir(results):  # found before any stage runs
            raise UsageError(f"--results {results} is a file, not a folder")
    except UsageError as e:
        fail(str(e))
    scale = 1.0 if args.preset == "paper" else 0.2
    log_dir = os.path.join(args.out_dir, ".plan", "logs")
    print_plan(plan, args.out_dir, scale)
    if args.list:
        return 0
    failed: set[str] = set()
    if not args.collect_only:
        t_start = time.time()
        if args.executor == "inline":
            failed = run_inline(plan, args.out_dir, log_dir, scale)
        else:
            try:
                failed = run_concurrently(plan, args, log_dir, scale)
            except UsageError as e:
                fail(str(e))
            except KeyboardInterrupt:
                fail("interrupted: the running stages were cancelled; rerun the same command to resume",
                     code=130)
        print(f"plan finished in {fmt_s(time.time() - t_start)}; failed: {', '.join(sorted(failed)) or 'none'}")
    if os.path.isdir(args.out_dir):
        try:
            print("collected: " + ", ".join(collect(plan, args.out_dir, results)))
        except UsageError as e:
            fail(str(e))
    if args.pack:
        pack(results, args.pack, log_dir)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
