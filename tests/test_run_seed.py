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


def _strip(doc):
    """An analysis JSON without what differs between two runs of one computation (times, memory, command)."""
    return {k: v for k, v in doc.items() if k not in ("provenance",)}


def test_analyse_run_writes_what_each_script_writes_alone(tmp_path, micro, argv):
    """The stages share one process: each must still record its own command and compute what it computes
    as its own process (no state left by an earlier stage), the gradient replay included."""
    over = micro(tmp_path, steps=40)
    env = {**os.environ, "SOURCE_COMMIT": "c0ffee", "SOURCE_DIRTY": "0"}
    run = os.path.join(over["out_dir"], "micro")
    py = lambda *a: subprocess.run([sys.executable, *a], cwd=ROOT, env=env, capture_output=True,  # noqa: E731
                                   text=True, timeout=600)
    r = py("train.py", *argv({**over, "name": "micro"}))
    assert r.returncode == 0, r.stderr[-2000:]
    r = py("analyse_run.py", "--run", run)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [l for l in r.stdout.splitlines() if l.startswith("== ")] == [
        *(f"== {s} (not made yet)" for s in STAGES), "== optimizer_null"]
    together = {s: json.load(open(os.path.join(run, "analysis", f"{s}.json"))) for s in STAGES}
    for s, doc in together.items():
        assert doc["provenance"]["command"] == f"python {s}.py --run {run}"
    os.remove(os.path.join(run, "analysis", "gradient_record.safetensors"))  # replayed again alone
    for s in STAGES:
        alone = str(tmp_path / f"{s}.json")
        r = py(f"{s}.py", "--run", run, "--out", alone)
        assert r.returncode == 0, r.stderr[-2000:]
        assert _strip(json.load(open(alone))) == _strip(together[s]), s


def test_analyse_run_stops_at_a_failing_stage_with_its_exit_code(tmp_path, micro, argv):
    over = micro(tmp_path, steps=40)
    run = os.path.join(over["out_dir"], "micro")
    r = subprocess.run([sys.executable, "train.py", *argv({**over, "name": "micro"})], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "analyse_run.py", "--run", run, "--", "--anchor", "7"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and r.stderr.strip().startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert [l for l in r.stdout.splitlines() if l.startswith("== ")] == [f"== {STAGES[0]} (not made yet)"]
    assert not os.path.exists(os.path.join(run, "analysis", f"{STAGES[0]}.json"))
