"""The results plan through submitit: independent stages at once, in dependency order, a failure skipping only
its dependents, reruns resuming from the markers; the Slurm job parameters (no cluster here)."""
import os
import stat
import sys

import pytest

import executors
import make_results as mr

pytest.importorskip("submitit")


def stage(name, log, needs=(), rc=0, meet=None, alone=False):
    """A stage that appends 'start NAME' and 'end NAME' to `log`; meet: first waits (up to 30 s) until that
    stage has started, which only a concurrent run lets happen."""
    wait = (f"import time\nt = time.time()\nwhile 'start {meet}' not in open(L).read():\n"
            f"    assert time.time() - t < 30, 'never met {meet}'\n    time.sleep(0.05)\n") if meet else ""
    code = (f"L = {str(log)!r}\nopen(L, 'a').write('start {name}\\n')\n{wait}"
            f"open(L, 'a').write('end {name}\\n')\nraise SystemExit({rc})")
    return mr.Stage(name, ["-c", code], 1, needs=list(needs), alone=alone)


def fake_plan(tmp_path, fail_c=True):
    """a and b must run at once; c (needs a) fails when asked and d needs c; e needs b; f and g share a part."""
    log = tmp_path / "log.txt"
    log.touch()
    return log, [stage("p1.a", log, meet="p2.b"), stage("p2.b", log, meet="p1.a"),
                 stage("p3.c", log, needs=["p1.a"], rc=3 if fail_c else 0), stage("p3.d", log, needs=["p3.c"]),
                 stage("p4.e", log, needs=["p2.b"]), stage("p5.f", log), stage("p5.g", log)]


def run_plan(monkeypatch, tmp_path, plan, *args):
    monkeypatch.setattr(mr, "build_plan", lambda *a, **k: plan)
    monkeypatch.setattr(mr, "collect", lambda *a, **k: [])
    monkeypatch.setitem(executors.POLL_S, "local", 0.1)
    return mr.main(["--out_dir", str(tmp_path / "runs"), "--executor", "local", "--gpus", "0", "--slots", "2",
                    *args])


def started(log) -> list[str]:
    return [line.split()[1] for line in log.read_text().splitlines() if line.startswith("start")]


def test_local_executor_runs_independent_stages_at_once_and_skips_only_dependents(monkeypatch, tmp_path,
                                                                                   capsys):
    log, plan = fake_plan(tmp_path)
    assert run_plan(monkeypatch, tmp_path, plan) == 1
    assert sorted(started(log)) == ["p1.a", "p2.b", "p3.c", "p4.e", "p5.f", "p5.g"]  # d skipped
    lines = log.read_text().splitlines()
    f, g = sorted(lines.index(f"{w} p5.{s}") for s in "fg" for w in ("start", "end"))[1:3]
    assert lines[f].startswith("end") and lines[g].startswith("start")  # one part: never both at once
    out = capsys.readouterr().out
    table = out.split("\n\n")[-1]
    for name, state in (("p1.a", "done"), ("p3.c", "failed"), ("p3.d", "skipped"), ("p4.e", "done")):
        assert any(line.startswith(name) and f" {state} " in line for line in table.splitlines()), (name, table)
    assert "needs p3.c" in table and "exit 3" in table and "ETA 0 s" in table

    log.write_text("")
    _, fixed = fake_plan(tmp_path, fail_c=False)
    assert run_plan(monkeypatch, tmp_path, fixed) == 0
    assert started(log) == ["p3.c", "p3.d"]  # the markers of the others: done


def test_group_alone_and_dependency_rule():
    def job(name, part_needs=(), state="todo", alone=False):
        return executors.Job(mr.Stage(name, [], 10, needs=list(part_needs), alone=alone), state)
    jobs = {j.stage.name: j for j in (job("seed42.train"), job("seed42.pca", ["seed42.train"]),
                                      job("bench.bench", alone=True), job("controls.x"), job("table9.y"))}
    names = lambda js: [j.stage.name for j in js]  # noqa: E731
    # controls and table9 share run A: one at a time; the benchmark waits for an empty machine
    assert names(executors.startable(jobs, None)) == ["seed42.train", "controls.x"]
    jobs["seed42.train"].state = "done"
    assert names(executors.startable(jobs, 1)) == ["seed42.pca"]
    assert executors.eta(jobs, 1, 1.0, now=0.0) == 40  # four stages of 10 s left, one slot
    assert executors.eta(jobs, None, 1.0, now=0.0) == 30  # pca beside controls, then bench alone, then table9


def test_train_stage_on_several_gpus_runs_under_torchrun():
    plan = {s.name: s for s in mr.build_plan("paper", "runs", "results/v2", None)}
    train, pca = plan["seed42.train"], plan["seed42.trajectory_pca_uncentered"]
    assert mr.expand(train, "runs", gpus=2)[1:6] == ["-m", "torch.distributed.run", "--standalone",
                                                     "--nproc_per_node=2", "train.py"]
    assert mr.expand(pca, "runs", gpus=2)[1] == "trajectory_pca_uncentered.py"


def test_slurm_job_parameters_reach_the_sbatch_script(tmp_path, monkeypatch):
    import submitit
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("srun", "sbatch"):  # no cluster here: the executor only checks that srun exists
        (bin_dir / tool).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / tool).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    train = next(s for s in mr.build_plan("paper", "runs", "results/v2", None) if s.name == "seed42.train")
    ex = submitit.AutoExecutor(folder=str(tmp_path / "sub"), cluster="slurm")
    ex.update_parameters(**executors.slurm_parameters(train, "gpu", 90, 2))
    script = ex._executor._make_submission_file_text("python -m job", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-node=2",
                 "#SBATCH --job-name=seed42.train", "#SBATCH --ntasks-per-node=1"):
        assert line in script, line


@pytest.mark.parametrize("args, text", [
    (["--executor", "inline", "--slots", "2"], "--slots is not an option of --executor inline"),
    (["--executor", "local", "--partition", "gpu"], "--partition is not an option of --executor local"),
    (["--executor", "local", "--gpus", "-1"], "--gpus must be >= 0"),
    (["--executor", "slurm", "--time_min", "0"], "--time_min must be >= 1"),
    (["--executor", "local", "--gpus", "64"], "64 asked for"),
])
def test_bad_executor_options_are_one_line(args, text, tmp_path, usage_error, monkeypatch):
    monkeypatch.setattr(mr, "collect", lambda *a, **k: [])
    monkeypatch.setattr(mr, "build_plan", lambda *a, **k: [])
    usage_error(mr.main, ["--out_dir", str(tmp_path / "runs"), *args], match=text)
    assert not os.path.exists(tmp_path / "runs")


def test_missing_submitit_is_one_line(tmp_path, usage_error, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    usage_error(mr.main, ["--out_dir", str(tmp_path / "runs"), "--executor", "local"], match="pip install submitit")
