"""Run the stages of the results plan concurrently, in dependency order: on this machine's GPUs
through submitit's LocalExecutor (one stage per GPU at a time), or as Slurm jobs through submitit's
AutoExecutor. make_results.py is the entry point:

    python make_results.py --executor local                       # one stage per visible GPU
    # a CPU machine: two stages at a time
    python make_results.py --executor local --gpus 0 --slots 2
    python make_results.py --executor slurm --partition gpu --time_min 120 --gpus_per_job 1

    python executors.py                     # what this machine offers: GPUs, submitit, Slurm

A stage starts once every stage it needs (among those of the plan) has succeeded, while no other
stage of its group runs (the stages of a group share run or results folders), and, for an `alone`
stage (the benchmark), while nothing else runs. A failed stage is reported and the stages that need
it are skipped; the others go on. The job table (state, where, estimate, time) and the ETA are
printed again whenever a state changes.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import time
from dataclasses import dataclass

from config import Parser, UsageError, fail

POLL_S = {"local": 1.0, "slurm": 20.0}  # seconds between looks at the running jobs
STATES = ("done", "running", "todo", "failed", "skipped")


def import_submitit():
    try:
        import submitit  # optional: only the local and slurm executors need it
    except ImportError:
        raise UsageError("--executor local and slurm need submitit: pip install submitit")
    return submitit


@dataclass
class Job:
    stage: object              # make_results.Stage: name, needs, est_s, group, alone
    state: str = "todo"        # todo | running | done | failed | skipped
    where: str = ""            # its GPU (local) or Slurm job id
    slot: int | None = None
    handle: object = None      # the submitit job
    t0: float = 0.0
    t1: float = 0.0
    note: str = ""


def startable(jobs: dict[str, Job], slots: int | None) -> list[Job]:
    """The todo jobs that may start now, in plan order (slots None: no limit)."""
    running = [j for j in jobs.values() if j.state == "running"]
    if any(j.stage.alone for j in running):
        return []
    busy, out = {j.stage.group for j in running}, []
    for j in jobs.values():
        if slots is not None and len(running) + len(out) >= slots:
            break
        ready = all(jobs[n].state == "done" for n in j.stage.needs if n in jobs)
        if j.state != "todo" or not ready or j.stage.group in busy or (j.stage.alone and
                                                                       (running or out)):
            continue
        out.append(j)
        busy.add(j.stage.group)
        if j.stage.alone:
            break
    return out


def skip_dependents(jobs: dict[str, Job]) -> bool:
    """Mark skipped every todo job that needs a failed or skipped one; True if any was."""
    # noqa: E731
    bad = lambda j: [
        n for n in j.stage.needs if n in jobs and jobs[n].state in ("failed", "skipped")
    ]
    changed = False
    while newly := [j for j in jobs.values() if j.state == "todo" and bad(j)]:
        for j in newly:
            j.state, j.note, changed = "skipped", f"needs {', '.join(bad(j))}", True
    return changed


def eta(jobs: dict[str, Job], slots: int | None, scale: float, now: float) -> float:
    """Seconds until the plan ends if every stage takes its estimate (a running one what is left of
    it), scheduled by the same rule."""
    sim = {n: dataclasses.replace(j) for n, j in jobs.items()}
    ends = {
        n: max(0.0, j.stage.est_s * scale - (now - j.t0))
        for n, j in sim.items() if j.state == "running"
    }
    t = 0.0
    while True:
        for j in startable(sim, slots):
            j.state, ends[j.stage.name] = "running", t + j.stage.est_s * scale
        if not ends:
            return t
        name = min(ends, key=ends.get)
        t = ends.pop(name)
        sim[name].state = "done"


def fmt_s(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


def table(jobs: dict[str, Job], slots: int | None, scale: float) -> str:
    now = time.time()
    lines = [f"{'stage':<38} {'state':<8} {'where':<12} {'est':>8} {'time':>8}  note"]
    for j in jobs.values():
        took = (j.t1 or now) - j.t0 if j.t0 else None
        lines.append(
            f"{j.stage.name:<38} {j.state:<8} {j.where:<12} {fmt_s(j.stage.est_s * scale):>8} "
            f"{fmt_s(took) if took is not None else '-':>8}  {j.note}"
        )
    count = {s: sum(j.state == s for j in jobs.values()) for s in STATES}
    left = fmt_s(eta(jobs, slots, scale, now))
    lines.append(", ".join(f"{v} {k}" for k, v in count.items()) + f"; ETA {left}")
    return "\n".join(lines)


class Scheduler:
    """The plan's jobs and their states; submit(stage, slot) starts one and returns (its submitit
    job, where it runs)."""

    def __init__(self, stages, done: set[str], submit, slots: int | None, scale: float,
                 poll_s: float):
        self.jobs = {s.name: Job(s, "done" if s.name in done else "todo") for s in stages}
        self.submit, self.slots, self.scale, self.poll_s = submit, slots, scale, poll_s

    def finished(self) -> bool:
        """Look at the running jobs; True if one ended."""
        changed = False
        for j in self.jobs.values():
            if j.state != "running" or not j.handle.done():
                continue
            j.t1, changed = time.time(), True
            try:
                rc = j.handle.result()
                j.note = "" if rc == 0 else f"exit {rc}"
            except Exception as e:  # the job itself died: killed, timed out, cancelled
                rc, j.note = (
                    None,
                    f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[-1][:120]}",
                )
            j.state = "done" if rc == 0 else "failed"
        return changed

    def start(self, j: Job):
        taken = {k.slot for k in self.jobs.values() if k.state == "running"}
        j.slot = next(i for i in range(len(self.jobs)) if i not in taken)
        j.handle, j.where = self.submit(j.stage, j.slot)
        j.state, j.t0 = "running", time.time()

    def run(self) -> set[str]:
        """Run every todo job; returns the names of those that failed or were skipped."""
        skip_dependents(self.jobs)
        print(table(self.jobs, self.slots, self.scale), flush=True)
        try:
            while True:
                changed = self.finished()
                changed |= skip_dependents(self.jobs)
                for j in startable(self.jobs, self.slots):
                    self.start(j)
                    changed = True
                if changed:
                    print("\n" + table(self.jobs, self.slots, self.scale), flush=True)
                if not any(j.state == "running" for j in self.jobs.values()):
                    break
                time.sleep(self.poll_s)
        except KeyboardInterrupt:
            for j in self.jobs.values():
                if j.state == "running":
                    j.handle.cancel()
            raise
        return {n for n, j in self.jobs.items() if j.state in ("failed", "skipped")}


# ----------------------------------------------------------------------- the two submitit executors
def visible_gpus() -> list[int]:
    """This machine's GPUs as CUDA_VISIBLE_DEVICES numbers them (all of them when it is unset)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        try:
            return [int(g) for g in env.split(",") if g.strip()]
        except ValueError:
            raise UsageError(
                f"CUDA_VISIBLE_DEVICES={env!r} does not list GPU numbers; give --gpus N instead"
            )
    # only here: make_results.py starts in 0.15 s without torch, whose import takes about 2 s
    import torch
    return list(range(torch.cuda.device_count()))


def local_parameters(gpu: int | None, timeout_min: float) -> dict:
    """LocalExecutor parameters of a job on GPU `gpu` (None: no GPU, CUDA_VISIBLE_DEVICES empty)."""
    gpus = dict(gpus_per_node=1, visible_gpus=(gpu,)) if gpu is not None else dict(gpus_per_node=0)
    return dict(timeout_min=timeout_min, **gpus)


def slurm_parameters(stage, partition: str | None, time_min: int, gpus_per_job: int) -> dict:
    """AutoExecutor parameters of one stage's Slurm job: one task on one node."""
    return dict(name=stage.name, timeout_min=time_min, nodes=1, tasks_per_node=1,
                gpus_per_node=gpus_per_job, **({"slurm_partition": partition} if partition else {}))


def _importable_jobs():
    """The job processes unpickle make_results' functions: they must find this folder's modules."""
    root = os.path.dirname(os.path.abspath(__file__))
    path = os.environ.get("PYTHONPATH", "")
    if root not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = root + (os.pathsep + path if path else "")


def local_submit(folder: str, gpus: list[int], run):
    """submit(stage, slot) for the LocalExecutor: slot k runs on GPU gpus[k % len(gpus)]."""
    submitit = import_submitit()
    _importable_jobs()
    executor = submitit.LocalExecutor(folder=folder)

    def submit(stage, slot):
        gpu = gpus[slot % len(gpus)] if gpus else None
        executor.update_parameters(**local_parameters(gpu, timeout_min=24 * 60))
        return executor.submit(run, stage), f"gpu {gpu}" if gpu is not None else "cpu"
    return submit


def slurm_submit(folder: str, partition: str | None, time_min: int, gpus_per_job: int, run):
    """submit(stage, slot) for Slurm (submitit's AutoExecutor): a job is submitted once it may
    start."""
    submitit = import_submitit()
    _importable_jobs()
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as e:  # no srun/sbatch here
        raise UsageError(f"--executor slurm: {str(e).splitlines()[0]}")

    def submit(stage, slot):
        executor.update_parameters(**slurm_parameters(stage, partition, time_min, gpus_per_job))
        job = executor.submit(run, stage)
        return job, f"slurm {job.job_id}"
    return submit


def main(argv=None):
    Parser(description=__doc__,
           formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    try:
        gpus = visible_gpus()
    except UsageError as e:
        fail(str(e))
    try:
        import submitit
        have = f"submitit {submitit.__version__}"
    except ImportError:
        have = "submitit not installed (pip install submitit)"
    print(
        "GPUs the local executor sees:"
        f" {', '.join(map(str, gpus)) or 'none (the CPU: --gpus 0 --slots N)'}"
    )
    print(f"{have}; Slurm: {'srun found' if shutil.which('srun') else 'no srun on PATH'}")


if __name__ == "__main__":
    main()
