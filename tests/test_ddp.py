"""One run on two processes (torchrun, gloo on the CPU) is the one-process run: the same batches, the
gradients summed, the same run folder; a run resumes under torchrun."""
import copy
import os
import subprocess
import sys

import pytest
import torch

import runs
import train
from dataset import get_batch, load_corpus, process_rows
from model import GPT, losses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 8 steps of 2 micro-batches of 4 rows, half of them probe rows (their counts differ between the shares)
RUN = dict(steps=8, warmup=2, eval_every=4, snapshot_every=4, state_every=4, grad_accum=2, p_probe=0.5)


def torchrun(overrides: dict, argv, nproc: int = 2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           os.path.join(ROOT, "train.py"), *argv(overrides)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


def files(run_dir: str) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), run_dir) for d, _, fs in os.walk(run_dir) for f in fs}


def close(a: dict, b: dict, tol: float = 1e-5) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=tol, atol=tol) for k in a)


@pytest.fixture(scope="module")
def one_and_two(micro, micro_cfg, argv, tmp_path_factory):
    """The same run trained by one process (in this one) and by two under torchrun."""
    tmp = tmp_path_factory.mktemp("ddp")
    one = micro_cfg(tmp, **RUN, name="one")
    assert train.train(one)["status"] == "complete"
    r = torchrun(micro(tmp, **RUN, name="two"), argv)
    assert r.returncode == 0, r.stderr[-3000:]
    return one, micro_cfg(tmp, **RUN, name="two"), r


def test_shares_of_the_losses_sum_to_the_whole(micro_cfg, tmp_path):
    cfg = micro_cfg(tmp_path, **RUN)
    corpus = load_corpus(cfg)
    batches = [get_batch(corpus, cfg, 3, m) for m in range(2)]
    x, y, pos = (torch.cat(t) for t in zip(*batches))
    probes = torch.stack([(p >= 0).sum() for _, _, p in batches])
    assert len(set(int((p[process_rows(4, r, 2)] >= 0).sum()) for _, _, p in batches for r in (0, 1))) > 1
    counts = torch.stack([4 * cfg.ctx - probes, probes]).float()
    torch.manual_seed(0)
    model = GPT.from_config(cfg, corpus.vocab_size)
    whole = torch.stack(losses(model, x, y, pos, 2.0, n_micro=2))
    parts = []
    for r in (0, 1):
        share = [tuple(t[process_rows(4, r, 2)] for t in b) for b in batches]
        xs, ys, ps = (torch.cat(t) for t in zip(*share))
        parts.append(torch.stack(losses(model, xs, ys, ps, 2.0, n_micro=2, counts=counts)))
    assert torch.allclose(parts[0] + parts[1], whole, rtol=1e-6)
    assert not torch.allclose(parts[0], whole / 2, rtol=1e-3)  # the shares are not halves of the mean


def test_two_processes_end_with_the_one_process_weights(one_and_two, snapshots):
    one, two, _ = one_and_two
    for step in one.snapshot_steps():
        assert close(snapshots.read(one.run_dir, step), snapshots.read(two.run_dir, step)), step
    moved = snapshots.read(one.run_dir, 8)["blocks.0.mlp.fc.weight"] - snapshots.read(one.run_dir, 0)[
        "blocks.0.mlp.fc.weight"]
    assert moved.abs().max() > 1e-3


def test_two_processes_write_the_same_run_folder(one_and_two):
    one, two, r = one_and_two
    assert files(one.run_dir) == files(two.run_dir)
    m1, m2 = runs.read_metrics(one.run_dir), runs.read_metrics(two.run_dir)
    assert [row["step"] for row in m1] == [row["step"] for row in m2] == [0, 4, 8]
    for a, b in zip(m1, m2):
        for k in ("train_loss", "lm_loss", "probe_loss", "val_loss", "p_in", "p_ood", "grad_norm"):
            if a[k] is None or b[k] is None:  # step 0 has no training loss yet: None in both runs
                assert a[k] is None and b[k] is None, k
            else:
                assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k
        assert (a["train_loss"] is None) == (a["step"] == 0)
    assert runs.read_status(two.run_dir) == runs.read_status(one.run_dir)
    assert runs.read_record(two.run_dir)["env"]["processes"] == 2
    assert r.stdout.count("complete at step 8") == 1  # process 0 alone reports


def test_run_resumes_under_torchrun(one_and_two, micro, micro_cfg, argv, tmp_path, snapshots):
    one = one_and_two[0]
    cfg = micro_cfg(tmp_path, **RUN, name="resumed")
    assert train.train(cfg, stop_after=5)["status"] == "running"  # last resume state at step 4
    r = torchrun(micro(tmp_path, **RUN, name="resumed", fuse_micro=False), argv)  # every process loads it
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resume at step 4" in open(os.path.join(cfg.run_dir, "log.txt")).read()
    assert close(snapshots.read(one.run_dir, 8), snapshots.read(cfg.run_dir, 8))
    state = torch.load(os.path.join(cfg.run_dir, "state_latest.pt"), weights_only=True)
    assert state["step"] == 8 and close(state["model"], snapshots.read(one.run_dir, 8))


def test_a_batch_that_does_not_split_is_one_line_and_creates_nothing(micro, argv, tmp_path):
    r = torchrun(micro(tmp_path, **RUN, batch_size=5), argv)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode != 0 and errors == ["error: batch_size 5 does not split into 2 equal shares, one per "
                                            "process"]
    assert not os.path.exists(tmp_path / "runs")
