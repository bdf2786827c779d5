"""run_seed.sh trains, runs the four analyses, and on a rerun skips what is up to date (one freshness check)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("trajectory_pca_uncentered", "backbone_update_analysis", "backbone_gradient_analysis",
          "backbone_fisher_analysis")


def test_run_seed_runs_each_analysis_then_skips_the_up_to_date_ones(tmp_path, micro, argv):
    over = {k: v for k, v in micro(tmp_path, steps=40).items() if k != "preset"}
    cmd = ["bash", "run_seed.sh", "3", "--preset", "tiny", *argv(over)]
    # a clean tree at a fixed commit
    env = {**os.environ, "SOURCE_COMMIT": "c0ffee", "SOURCE_DIRTY": "0",
           # this environment's python (run_seed.sh would take python3 on the PATH)
           "PYTHON": sys.executable}

    def stages(*extra, env=env):
        r = subprocess.run([*cmd, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        return {line.split()[1].rstrip(":"): line for line in r.stdout.splitlines()
                if line.startswith("== ") and line.split()[1].rstrip(":") in STAGES}

    first = stages()
    assert list(first) == list(STAGES) and all("(not made yet)" in line for line in first.values())
    run = os.path.join(over["out_dir"], "tiny_seed3")
    for s in STAGES:
        rec = json.load(open(os.path.join(run, "analysis", f"{s}.json")))
        assert rec["provenance"]["git_commit"] == "c0ffee" and not rec["run_state"]["partial"]
    again = stages()
    assert len(again) == 4 and all(line.endswith("up to date, skipped") for line in again.values())
    # at another commit every analysis is stale (one check, a line each), unless kept
    r = subprocess.run([sys.executable, "runs.py", "--run", run, "--fresh", *STAGES], cwd=ROOT,
                       env={**env, "SOURCE_COMMIT": "beef"}, capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout.splitlines() == [f"{s}: made by commit c0ffee, code is beef" for s in STAGES]
    kept = stages("--keep", env={**env, "SOURCE_COMMIT": "beef"})
    assert len(kept) == 4 and all(line.endswith(": kept") for line in kept.values())
