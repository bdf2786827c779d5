"""Every analysis of one trained run folder, in one Python process: the four trajectory analyses
that are not up to date, then the optimizer null and the claims. run_seed.sh calls it after
training.

    python analyse_run.py --run runs/tiny_seed42
    python analyse_run.py --run runs/seed42 --keep -- --device cuda --anchor 200

Each stage runs as its script runs from the command line, `python <stage>.py --run RUN <args>`:
the same arguments, the same output, the same JSON with that command in its provenance, and a
stage that fails ends the whole with its exit code. The stages share one interpreter, so torch,
the project's modules and matplotlib are imported once instead of seven times (about 1.6 s each on
2 CPU cores, a tenth of the tiny pipeline).

Which of the four analyses run: one freshness check for all of them before the first runs (running
one analysis does not change another's freshness; `python runs.py --fresh` says the same): an
analysis is rerun when its JSON was made by another commit (or a dirty tree), from another config
of the run, or on a partial trajectory; --keep keeps every JSON that exists. The optimizer null
(the run's optimizer fed pure noise) uses 5 noise seeds, or 3 seeds on a 256-coordinate sample of
each tensor for a tiny-preset run (a CPU in seconds).
"""
from __future__ import annotations

import argparse
import os
import runpy
import sys

from common import environment
from config import Parser, UsageError, fail
from runs import analysis_freshness, read_record

ROOT = os.path.dirname(os.path.abspath(__file__))
STAGES = ("trajectory_pca_uncentered", "backbone_update_analysis", "backbone_gradient_analysis",
          "backbone_fisher_analysis")


def null_args(run_dir: str) -> list[str]:
    """optimizer_null.py's arguments for this run: fewer noise seeds and a coordinate sample for a
    tiny-preset run (the CPU pipeline), the full null otherwise."""
    rec = read_record(run_dir)
    tiny = rec is not None and rec["config"].get("preset") == "tiny"
    return ["--seeds", "3", "--sample", "256"] if tiny else ["--seeds", "5"]


def run_script(name: str, argv: list[str]):
    """`python <name>.py argv` in this process: the script runs as __main__ with that sys.argv (its
    provenance records that command). A nonzero exit ends this process with the same code."""
    path = os.path.join(ROOT, f"{name}.py")
    saved = sys.argv
    sys.argv = [path, *argv]
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        if e.code not in (None, 0):
            raise
    finally:
        sys.argv = saved
    sys.stdout.flush()


def plan(run_dir: str, keep: bool) -> list[tuple[str, str | None, str]]:
    """(analysis, why it runs or None when it does not, what its line says when it does not) for
    the four analyses, from one freshness check made before any of them runs (one look at the
    code's commit for all four, as `runs.py --fresh` does)."""
    out, env = [], environment()
    for name in STAGES:
        if keep and os.path.exists(os.path.join(run_dir, "analysis", f"{name}.json")):
            out.append((name, None, "kept"))
            continue
        why = analysis_freshness(run_dir, name, env)
        out.append((name, why, "up to date, skipped"))
    return out


def main(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="the trained run folder")
    p.add_argument("--keep", action="store_true",
                   help="keep every analysis JSON that exists, up to date or not")
    p.add_argument("analysis_args", nargs=argparse.REMAINDER,
                   help="after --: arguments for each of the four analyses (--device, --anchor, "
                        "--partial, ...)")
    args = p.parse_args(argv)
    extra = args.analysis_args[1:] if args.analysis_args[:1] == ["--"] else args.analysis_args
    try:
        if not os.path.isdir(args.run):
            raise UsageError(f"run folder not found: {args.run}")
        stages = plan(args.run, args.keep)
    except UsageError as e:
        fail(str(e))
    for name, why, skipped in stages:
        if why is None:
            print(f"== {name}: {skipped}", flush=True)
            continue
        print(f"== {name} ({why})", flush=True)
        run_script(name, ["--run", args.run, *extra])
    print("== optimizer_null", flush=True)
    run_script("optimizer_null", ["--run", args.run, *null_args(args.run)])
    run_script("claims", ["--run", args.run])


if __name__ == "__main__":
    main()
