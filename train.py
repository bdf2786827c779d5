"""Train the paper model with AdamW (or SGD), evaluating and snapshotting the weights as it goes.

    python train.py --seed 42                      # paper run: 10,000 steps, 51 snapshots
    python train.py --preset tiny --seed 42        # CPU run in about a minute

Writes runs/<name>/: config.json (config, corpus identity, environment of the first start and of
every resume), metrics.jsonl, log.txt, codewords.json, status.json,
snapshots/step_XXXXXX.safetensors (fp32 weights of the uncompiled model), snapshot_hashes.json (the
sha256 of each snapshot and of the config, checked by every analysis) and state_latest.pt (model,
optimizer, step). Every file is written to a temp file and renamed. Re-running the same command
resumes from state_latest.pt (and rewrites a snapshot that is missing, retraining a finished run if
need be); a finished run with all its snapshots is left as it is. One process writes a run folder at
a time; Ctrl-C stops with one line and the run can be resumed.

Reproducibility: on the CPU a run is bitwise the same for the same number of intra-op threads
(fixed at the start and recorded in config.json's env: a parallel sum's order depends on it). On
CUDA, --deterministic true makes a run repeat itself (PyTorch's deterministic algorithms, a fixed
cuBLAS workspace, deterministic cuDNN) at some cost in speed (bench.py --deterministic true).

    torchrun --standalone --nproc_per_node 4 train.py --seed 42  # one run, 4 GPUs, the same batches

Under torchrun every process trains on its share of the rows of each micro-batch and the gradients
are summed over the processes, so a step sees the same sequences whatever the number of processes;
process 0 alone evaluates and writes the run folder.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing as mp
import os
import sys
import threading
import time
from contextlib import ExitStack, nullcontext

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save
from tqdm import tqdm

from common import (FromRank0, atomic_write, autocast, barrier, check_writable, environment,
                    fix_kernels, from_rank0, join_processes, launched, leave_processes, on_rank0,
                    os_reason, pick_device, pyplot, rank, same_everywhere, save_figure, world,
                    write_json, write_text)
from config import (SYNTHETIC_VERSION, Config, UsageError, fail, lr_at, parse_config,
                    parse_stop_rule)
from dataset import Prefetcher, WordTokenizer, corpus_identity, load_corpus, make_eval_sets
from model import (GPT, Evaluator, losses, make_optimizer, optimizer_step, set_attention_backend,
                   training_loss)
from runs import (RunLock, check_run_dir, finished, list_snapshots, load_state, read_metrics,
                  read_record, read_status, record_hashes, remove_leftovers, snapshot_path,
                  trajectory_state)


class Interrupted(Exception):
    """Ctrl-C during training; the run folder is left resumable."""


def step_counts(batches) -> torch.Tensor:
    """(2, n_micro): the LM-token and probe counts of the step's whole micro-batches, from this
    process's rows and one all-reduce. Every row has ctx targets; a probe row's answer is one of
    them."""
    probes = torch.stack([(pos >= 0).sum() for _, _, pos in batches])
    dist.all_reduce(probes)
    rows, ctx = batches[0][1].shape
    return torch.stack([rows * world() * ctx - probes, probes]).float()


def sum_over_processes(model, sums: torch.Tensor):
    """The gradients of `model` and the loss sums `sums`, summed over the processes in place: one
    all-reduce of one flat buffer after the backward (not overlapped with it, as DDP's buckets would
    be: for the paper model's 27M numbers it costs about a millisecond over NVLink)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None] + [sums]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))


# ----------------------------------------------------------------------------- the training step
_SCALARS: dict = {}


def device_scalar(value, device) -> torch.Tensor:
    """`value` as a cached 0-d fp32 tensor on `device`: a Python float would be baked into the
    compiled loss (a recompile each time lambda changes), a new tensor per step a blocking
    host-to-device copy."""
    if isinstance(value, torch.Tensor):
        return value
    key = (float(value), str(device))
    if key not in _SCALARS:
        _SCALARS[key] = torch.tensor(float(value), dtype=torch.float32, device=device)
    return _SCALARS[key]


def train_step(model, opt, batches, cfg: Config, lr: float, lam, fwd=losses):
    """One update theta(t) -> theta(t + 1) on the step's micro-batches `batches` [(x, y, probe_pos),
    ...]: the gradient of the mean of their losses, global-norm clip (grad_clip 0: none), optimizer
    step, zero grad. cfg.fuse_micro: one forward/backward of all micro-batches stacked (each keeps
    its own normalisation, so the numbers are those of accumulation); else one forward/backward per
    micro-batch, gradients accumulated. Under torchrun `batches` hold this process's rows of each
    micro-batch: its losses are their shares of the whole micro-batches' means (`step_counts`), and
    the gradients and losses are summed over the processes before the clip (`sum_over_processes`):
    every process makes the one-process update of the whole batch, up to the order of float sums.
    Returns the detached mean (loss, lm, probe) as a (3,) tensor and the gradient norm (no host
    sync)."""
    lam = device_scalar(lam, batches[0][0].device)
    n = len(batches)
    counts = step_counts(batches) if world() > 1 else None
    if cfg.fuse_micro:
        x, y, pos = (torch.cat(t) for t in zip(*batches)) if n > 1 else batches[0]
        with autocast(x.device):
            loss, lm, probe = fwd(model, x, y, pos, lam, n, cfg.ce_chunks, *_given(counts))
        loss.backward()
        sums = torch.stack([loss.detach(), lm.detach(), probe.detach()])
    else:
        sums = torch.zeros(3, device=batches[0][0].device)
        for m, (x, y, pos) in enumerate(batches):
            with autocast(x.device):
                loss, lm, probe = fwd(model, x, y, pos, lam, 1, cfg.ce_chunks,
                                      *_given(None if counts is None else counts[:, m : m + 1]))
            (loss / n).backward()
            sums += torch.stack([loss.detach(), lm.detach(), probe.detach()]) / n
    if counts is not None:
        sum_over_processes(model, sums)
    clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer_step(opt, cfg, lr)
    opt.zero_grad(set_to_none=True)
    return sums, grad_norm


def _given(counts) -> tuple:
    """The loss's optional `counts` argument: left out in one process (its call stays as it always
    was)."""
    return () if counts is None else (counts,)


def stop_policy(cfg: Config, row: dict, first_val: float, best_ood: float, vocab_size: int):
    """(status, reason) when training must end at the eval `row`: "diverged" (a loss non-finite or
    far above a uniform guess) or "stopped_early" (cfg.stop_rule); None to go on."""
    # ln V is the loss of a uniform guess: a run above it (or far above where it started) has
    # diverged, whatever its early loss was
    limit = max(1.5 * first_val, math.log(vocab_size) + 1)
    now = [v for v in (row["val_loss"], row["lm_loss"]) if v is not None]
    if not all(map(math.isfinite, now)) or max(now) > limit:
        return "diverged", (f"loss non-finite or above {limit:.3g} (max of 1.5x its first value "
                            f"and ln V + 1): {max(now):.4g}")
    if cfg.stop_rule:
        step, max_val, min_ood = parse_stop_rule(cfg.stop_rule)
        if row["step"] == step and row["val_loss"] > max_val and best_ood < min_ood:
            if max_val == -math.inf and min_ood > 1:  # always fires (p_ood <= 1): a sweep run
                return "stopped_early", f"sweep run: stopped at step {step:,} as planned"
            return "stopped_early", (f"val {row['val_loss']:.3f} > {max_val} and best p_ood "
                                     f"{best_ood:.3f} < {min_ood}")
    return None


# ----------------------------------------------------------------------------- run-folder files
def host_copy(obj):
    """`obj` (tensors in nested dicts and lists) with each tensor copied to the CPU, and a function
    that waits for the copies. On CUDA they go to pinned memory without blocking the host: the
    device makes them in stream order (before any later update of the weights) and only the writer
    thread waits for them."""
    cuda = []

    def copy(o):
        if isinstance(o, torch.Tensor):
            if o.is_cuda:
                cuda.append(o.device)
                pinned = torch.empty(o.shape, dtype=o.dtype, pin_memory=True)
                return pinned.copy_(o.detach(), non_blocking=True)
            return o.detach().to("cpu", copy=True)
        if isinstance(o, dict):
            return {k: copy(v) for k, v in o.items()}
        return type(o)(map(copy, o)) if isinstance(o, (list, tuple)) else o
    out = copy(obj)
    if not cuda:
        return out, lambda: None
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(cuda[0]))
    return out, done.synchronize


class SnapshotWriter:
    """Writes snapshots and the resume state in background threads from host copies (the loop only
    queues the copies); a failed write is kept and raised by `check`."""

    def __init__(self, run_dir: str):
        self.run_dir, self.threads, self.errors = run_dir, [], []

    def start(self, what, write, after_all: bool = False):
        """Run write() in a thread; after_all: first wait for the earlier writes, and skip if one
        failed. what(reason) is the message of a failure."""
        earlier = [t for t in self.threads if t.is_alive()]

        def run():
            try:
                for t in earlier if after_all else []:
                    t.join()
                if not (after_all and self.errors):
                    write()
            except Exception as e:
                self.errors.append((what, e))
        self.threads = earlier + [threading.Thread(target=run)]
        self.threads[-1].start()

    def save(self, model, step: int):
        """The fp32 weights of `model` as snapshot `step`; its sha256 is recorded before the file
        appears. Serialised in memory and written from Python: a full disk is an OSError with its
        errno."""
        tensors, ready = host_copy({k: v.float() for k, v in model.state_dict().items()})
        path = snapshot_path(self.run_dir, step)

        def write():
            ready()
            data = save(tensors)
            record_hashes(self.run_dir, snapshot=path, sha=hashlib.sha256(data).hexdigest())
            atomic_write(path, data)
        self.start(lambda why: f"snapshot step {step} could not be written ({why}); the run "
                               f"stopped, rerun the same command to resume", write)

    def save_state(self, state: dict, path: str):
        """torch.save(state) to `path` once every earlier write is done: never a resume point past a
        snapshot that failed."""
        state, ready = host_copy(state)

        def write():
            ready()
            # torch.save's own file writer reports a full disk as an internal error text
            buf = io.BytesIO()
            torch.save(state, buf)
            atomic_write(path, buf.getbuffer())
        self.start(lambda why: f"cannot write {path}: {why}", write, after_all=True)

    def check(self):
        if self.errors:
            what, e = self.errors[0]
            why = os_reason(e) if isinstance(e, OSError) else str(e).splitlines()[0][:160]
            raise UsageError(what(why))

    def join(self):
        for t in self.threads:
            t.join()
        self.check()


def write_run_record(cfg: Config, corpus, device, start: int):
    """config.json: the resolved config and the corpus identity; the environment of the first start
    is kept and each resume is appended."""
    old = read_record(cfg.run_dir) if start else None
    env = dict(environment(device), threads=torch.get_num_threads(),  # CPU sums depend on it
               date=time.strftime("%Y-%m-%d %H:%M:%S %z"))
    if world() > 1:
        env.update(processes=world(), backend=dist.get_backend())
    old = old or {}
    resumes = old.get("resumes", []) + ([dict(step=start, env=env)] if start else [])
    rec = dict(config=cfg.to_dict(), corpus=corpus.description,
               corpus_identity=corpus_identity(cfg), env=old.get("env", env), resumes=resumes)
    # the same at every start: RUNTIME_FIELDS left out
    record_hashes(cfg.run_dir, config=rec["config"])
    write_json(os.path.join(cfg.run_dir, "config.json"), rec)
    write_json(os.path.join(cfg.run_dir, "codewords.json"),
               {"codewords": corpus.tok.codewords, "ids": [int(i) for i in corpus.codeword_ids]},
               indent=None)
    return env


def plot_metrics(run_dir: str) -> str:
    """training_curves.png: validation loss, p_in and p_ood against step."""
    plt = pyplot()
    rows = read_metrics(run_dir)
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(steps, [r["val_loss"] for r in rows], color="k", label="val loss")
    ax.set_xlabel("step"), ax.set_ylabel("validation loss")
    ax2 = ax.twinx()
    ax2.plot(steps, [r["p_in"] for r in rows], color="tab:blue", label="p_in")
    ax2.plot(steps, [r["p_ood"] for r in rows], color="grey", label="p_ood")
    ax2.set_ylim(0, 1), ax2.set_ylabel("probe accuracy")
    fig.legend(loc="upper right", bbox_to_anchor=(0.88, 0.88), fontsize=8)
    ax.set_title(os.path.basename(os.path.normpath(run_dir)), fontsize=9)
    return save_figure(fig, os.path.join(run_dir, "training_curves.png"))


def check_init(cfg: Config, vocab_size: int):
    """cfg.init_from loaded into a model without storage: a missing or unfit file stops before the
    run folder is made."""
    if cfg.init_from:
        with torch.device("meta"):
            model = GPT.from_config(cfg, vocab_size)
        # assign: no copy into storage that does not exist
        load_init(model, cfg.init_from, assign=True)


def load_init(model, path: str, assign: bool = False):
    if not os.path.isfile(path):
        raise UsageError(f"init_from snapshot not found: {path}")
    try:
        model.load_state_dict(load_file(path), assign=assign)
    except Exception as e:
        why = str(e).strip().splitlines() or [type(e).__name__]
        raise UsageError(f"cannot load {path} into this model: {why[-1].strip()[:200]}")


def restore(model, opt, state: dict, path: str):
    """Model, optimizer and RNG from a state file; a file that does not fit this run is one line."""
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if state["train_sum"].shape != (3,):
            raise ValueError("train_sum")
    except Exception as e:
        raise UsageError(f"{path} does not fit this run ({str(e).splitlines()[0][:120]}); "
                         f"remove it to restart the run")


# ----------------------------------------------------------------------------- training
def untimed(what: str, step: int):
    """The loop's default timer: `timer(what, step)` is a context around each "step" (the update
    alone, not the batch fetch), "eval", "snapshot" (queueing it) and the whole "loop"; bench.py
    passes one that times them."""
    return nullcontext()


class Trainer:
    """The state of one training process on one run folder (under its lock). Under torchrun the
    process 0 (`rank0`) alone evaluates, snapshots and writes the folder; every process loads the
    resume state."""

    def __init__(self, cfg: Config, corpus, device, timer=None):
        self.cfg, self.run_dir, self.device, self.corpus = cfg, cfg.run_dir, device, corpus
        self.rank0, self.log = rank() == 0, None
        self.ev = make_eval_sets(corpus, cfg) if self.rank0 else None
        self.model = GPT.from_config(cfg, corpus.vocab_size).to(device)
        if cfg.init_from:
            load_init(self.model, cfg.init_from)
        self.opt = make_optimizer(self.model, cfg, device)
        self.start, self.train_sum, self.n_sum = 0, torch.zeros(3, device=device), 0
        self.grad_norm = torch.zeros((), device=device)
        state_path = os.path.join(self.run_dir, "state_latest.pt")
        self.state = load_state(state_path) if os.path.exists(state_path) else None
        if self.state is not None and self.missing_before(self.state["step"]):
            # a snapshot before the resume point is gone: retrain from 0 (bitwise the same)
            self.state = None
        if self.state is not None:
            restore(self.model, self.opt, self.state, state_path)
            self.start = self.state["step"]
            self.train_sum, self.n_sum = self.state["train_sum"].to(device), self.state["n_sum"]
        self.snaps = SnapshotWriter(self.run_dir)
        self.metrics_path = os.path.join(self.run_dir, "metrics.jsonl")
        compiled = cfg.compile_eval and device.type == "cuda"
        self.evaluate = (Evaluator(self.ev, device, corpus.vocab_size, compiled=compiled)
                         if self.rank0 else None)
        self.timer = timer or untimed

    def missing_before(self, step: int) -> list[int]:
        have = list_snapshots(self.run_dir)
        return [s for s in self.cfg.snapshot_steps() if s < step and s not in have]

    def open_files(self):
        """Metrics past the resume point are dropped (they are redone); the log gets a header
        line."""
        if not self.rank0:
            return
        # the resume step's own row is kept only when resuming (its eval is not redone)
        def keep(s):
            return s < self.start or (self.state is not None and s == self.start)
        done = [r for r in read_metrics(self.run_dir) if keep(r["step"])]
        write_text(self.metrics_path, "".join(map(_json_line, done)))
        self.best_ood = max([r["p_ood"] for r in done], default=0.0)
        self.first_val = done[0]["val_loss"] if done else None
        env = write_run_record(self.cfg, self.corpus, self.device, self.start)
        self.log = open(os.path.join(self.run_dir, "log.txt"), "a")
        what = f"resume at step {self.start}" if self.start else "start"
        procs = f" x {world()} processes" if world() > 1 else ""
        self.log.write(f"# {what}: {env['device_name']}{procs} "
                       f"torch {env['torch']} commit {env['git_commit'][:10]}\n")
        self.t_last, self.step_last = time.perf_counter(), self.start

    def log_first_step(self, t0: float):
        """The first step's wall time (compilation included): the one host sync outside the
        evals."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.log.write(f"# first step {time.perf_counter() - t0:.1f} s (compilation included)\n")

    def eval_row(self, step: int) -> dict:
        cfg = self.cfg
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        tr = (self.train_sum / max(self.n_sum, 1)).tolist() if self.n_sum else [None] * 3
        tokens = (step - self.step_last) * cfg.batch_size * cfg.grad_accum * cfg.ctx
        # the last eval (step == cfg.steps) follows the last update: it reports that update's lr
        row = dict(step=step, lr=lr_at(cfg, min(step, cfg.steps - 1)),
                   **{"lambda": cfg.lambda_at(step)},
                   train_loss=tr[0], lm_loss=tr[1], probe_loss=tr[2], **self.evaluate(self.model),
                   grad_norm=self.grad_norm.item() if self.n_sum else None,
                   tok_per_s=round(tokens / (now - self.t_last)) if step > self.step_last else None)
        with open(self.metrics_path, "a") as f:
            f.write(_json_line(row))
        cell = lambda k, v: f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"  # noqa: E731
        self.log.write(" | ".join(cell(k, v) for k, v in row.items()) + "\n")
        self.log.flush()
        self.best_ood = max(self.best_ood, row["p_ood"])
        self.first_val = self.first_val or row["val_loss"]
        self.train_sum.zero_()
        self.n_sum = 0
        self.t_last, self.step_last = time.perf_counter(), step
        return row

    def save_state(self, step: int):
        """state_latest.pt, written in the background (`snaps.join` waits for it)."""
        # the RNG state and the running train-loss sums too: a resumed run continues bitwise as
        # the uninterrupted one would (its next metrics row averages the same steps)
        state = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "step": step,
                 "rng": torch.get_rng_state(), "train_sum": self.train_sum, "n_sum": self.n_sum,
                 "config": self.cfg.to_dict()}
        self.snaps.save_state(state, os.path.join(self.run_dir, "state_latest.pt"))

    def finish(self, kind: str, step: int, **extra) -> dict:
        st = dict(status=kind, step=step, **extra)
        if self.rank0:
            self.save_state(step)
            self.snaps.join()
            write_json(os.path.join(self.run_dir, "status.json"), st)
            plot_metrics(self.run_dir)
            self.log.write(f"# {kind} at step {step}\n")
        barrier()  # the other processes end once the run folder is complete
        return st

    def eval_step(self, step: int, bar) -> tuple[str, str] | None:
        """Evaluate (process 0): the metrics row, and the stop policy's decision."""
        with self.timer("eval", step):
            row = self.eval_row(step)
        bar.set_postfix(loss=f"{row['train_loss'] or float('nan'):.3f}",
                        val=f"{row['val_loss']:.3f}", p_ood=f"{row['p_ood']:.2f}",
                        tok_s=row["tok_per_s"])
        return stop_policy(self.cfg, row, self.first_val, self.best_ood, self.corpus.vocab_size)

    def run(self, stop_after: int | None = None) -> dict:
        cfg, start = self.cfg, self.start
        fwd = training_loss(cfg, self.device)
        evals, snaps = set(cfg.eval_steps()), set(cfg.snapshot_steps())
        bar = tqdm(total=cfg.steps, initial=start, disable=not (cfg.progress and self.rank0),
                   dynamic_ncols=True, desc=os.path.basename(self.run_dir))
        self.model.train()
        feed = Prefetcher(self.corpus, cfg, self.device, start, cfg.steps, shard=(rank(), world()))
        try:
            for step in range(start, cfg.steps + 1):
                # the resume step's eval and snapshot are done
                redo = step > start or self.state is None
                if self.rank0:
                    if step in snaps and (redo or not os.path.exists(snapshot_path(self.run_dir,
                                                                                   step))):
                        with self.timer("snapshot", step):
                            self.snaps.save(self.model, step)
                    self.snaps.check()
                if step in evals and redo:
                    # all stop together
                    end = from_rank0(self.eval_step(step, bar) if self.rank0 else None)
                    if end:
                        return self.finish(end[0], step, reason=end[1])
                if self.rank0 and step > start and step % cfg.state_every == 0 and step < cfg.steps:
                    self.save_state(step)
                # the last step is evaluated and snapshotted above but makes no update: theta(T)
                # is the weights after T updates
                if step == cfg.steps or (stop_after is not None and step - start >= stop_after):
                    break
                t0 = time.perf_counter()
                batches = feed.get(step)
                with self.timer("step", step):
                    sums, self.grad_norm = train_step(self.model, self.opt, batches, cfg,
                                                      lr_at(cfg, step), cfg.lambda_at(step), fwd)
                self.train_sum += sums
                self.n_sum += 1
                if step == start and self.rank0:
                    self.log_first_step(t0)
                bar.update(1)
            bar.close()
            if step < cfg.steps:  # stopped by stop_after: leave the run resumable, as a kill would
                self.snaps.join()
                return dict(status="running", step=step)
            return self.finish("complete", step)
        except KeyboardInterrupt:
            raise Interrupted(step)
        finally:
            bar.close()
            feed.close()
            for t in self.snaps.threads:
                t.join()
            if self.log:
                self.log.close()


def _json_line(row: dict) -> str:
    return json.dumps(row) + "\n"


def already_done(cfg: Config, locked: bool = False) -> dict | None:
    """The status of a finished run (its training curves redrawn if a kill left them missing or
    empty). A finished run that lacks a snapshot of its schedule is not done: it is retrained
    (bitwise the same) to rewrite it; `locked` (the folder's lock held): its status.json is removed
    first, so that the run reads as unfinished until it is done again."""
    status = read_status(cfg.run_dir)
    if not finished(status):
        return None
    missing = trajectory_state(cfg.run_dir, cfg)["missing"]
    if missing:
        if locked:
            print(f"{cfg.run_dir}: {status['status']} at step {status['step']} but snapshot step "
                  f"{missing[0]} is missing: training again to rewrite it")
            os.remove(os.path.join(cfg.run_dir, "status.json"))
        return None
    png = os.path.join(cfg.run_dir, "training_curves.png")
    if not os.path.exists(png) or os.path.getsize(png) == 0:
        plot_metrics(cfg.run_dir)
    print(f"{cfg.run_dir}: already {status['status']} at step {status['step']}; nothing to do")
    return status


def _build_corpus(cfg: Config):
    """Child process: fill the corpus cache. An error is reported by the parent's own
    load_corpus."""
    try:
        load_corpus(cfg)
    except BaseException:
        os._exit(1)


def warm_compile(cfg: Config, vocab_size: int, device: torch.device):
    """One training step of a throwaway model on a batch of zeros: its compilation fills the compile
    caches on disk, so the run's own compilation of the same graph is a cache hit. Called before the
    run's seed is set, so the run's random numbers are untouched."""
    model = GPT.from_config(cfg, vocab_size).to(device)
    # x and y must not alias
    zeros = lambda *shape: torch.zeros(shape, dtype=torch.long, device=device)
    batches = [(zeros(cfg.batch_size, cfg.ctx), zeros(cfg.batch_size, cfg.ctx),
                zeros(cfg.batch_size) - 1) for _ in range(cfg.grad_accum)]
    train_step(model, make_optimizer(model, cfg, device), batches, cfg, lr_at(cfg, 0),
               cfg.lambda_at(0), training_loss(cfg, device))
    torch.cuda.synchronize()
    del model
    torch._dynamo.reset()
    torch.cuda.empty_cache()


def load_corpus_while_compiling(cfg: Config, device: torch.device, wait: float = 2.0):
    """load_corpus(cfg). On CUDA with compile, a synthetic corpus that is not cached yet is
    generated by a child process (forked before any compile thread exists) while the training step
    compiles (warm_compile), instead of one after the other."""
    if not (cfg.compile and device.type == "cuda" and cfg.data in SYNTHETIC_VERSION):
        return load_corpus(cfg)
    child = mp.get_context("fork").Process(target=_build_corpus, args=(cfg,))
    child.start()
    child.join(timeout=wait)
    if child.is_alive():  # generating, not read from the cache
        try:
            warm_compile(cfg,
                         WordTokenizer(cfg.n_codewords, SYNTHETIC_VERSION[cfg.data]).vocab_size,
                         device)
        except Exception:
            pass  # only a head start: the run compiles (and reports a real failure) itself
        child.join()
    return load_corpus(cfg)


def _before_start(cfg: Config) -> dict | None:
    """The status of a finished run, else None once the folder is known to be this run's or new."""
    check_writable(cfg.run_dir)
    check_run_dir(cfg)  # a foreign folder stops before the data is loaded
    if cfg.batch_size % world():
        raise UsageError(f"batch_size {cfg.batch_size} does not split into {world()} equal "
                         f"shares, one per process")
    return already_done(cfg)


def _take_folder(cfg: Config, held: ExitStack) -> dict | None:
    """The run folder's lock taken into `held`; then as `_before_start`, the folder made ready."""
    held.enter_context(RunLock(cfg.run_dir))
    check_run_dir(cfg)  # again under the lock: another process may have started it meanwhile
    done = already_done(cfg, locked=True)
    if not done:
        os.makedirs(os.path.join(cfg.run_dir, "snapshots"), exist_ok=True)
        remove_leftovers(cfg.run_dir)
    return done


def load_corpus_in_turn(cfg: Config, device: torch.device):
    """The corpus; under torchrun process 0 loads it first (filling the cache), then the others
    read it."""
    if world() == 1:
        return load_corpus_while_compiling(cfg, device)
    first = []
    on_rank0(lambda: first.append(load_corpus(cfg)))
    return first[0] if first else load_corpus(cfg)


def train(cfg: Config, stop_after: int | None = None, timer=None, corpus=None) -> dict:
    """Train (or resume) the run of `cfg`. Returns its status dict. `stop_after` ends the process
    loop after that many updates without finishing (used to test resume). `timer`: see `untimed`.
    `corpus`: cfg's corpus when the caller has loaded it already (bench.py times its loading).
    Under torchrun process 0 makes the checks, holds the run folder's lock and writes the folder;
    every process trains."""
    fix_kernels(cfg)
    # process 0's checks reach every process
    device = join_processes(cfg.device) if launched() else None
    done = on_rank0(_before_start, cfg)
    if done:
        return done
    device = device if device is not None else pick_device(cfg.device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for the few fp32 matmuls outside autocast
        set_attention_backend(cfg.sdpa)
    if corpus is None:
        corpus = load_corpus_in_turn(cfg, device)
    on_rank0(check_init, cfg, corpus.vocab_size)
    with ExitStack() as held:
        done = on_rank0(_take_folder, cfg, held)
        if done:
            return done
        # seeded here, after everything that may draw torch random numbers (warm_compile's
        # throwaway model), just before the model's init: a fresh run and a retrained one draw the
        # same theta(0); a resume then overwrites the weights and RNG state from state_latest.pt
        torch.manual_seed(cfg.seed)
        trainer = Trainer(cfg, corpus, device, timer)
        # and none writes before all have read
        same_everywhere(trainer.start, "the step to resume from")
        trainer.open_files()
        with trainer.timer("loop", trainer.start):
            return trainer.run(stop_after)


def main(argv=None):
    cfg = parse_config(argv, description=__doc__)
    rank0 = int(os.environ.get("RANK", 0)) == 0 if launched() else True
    try:
        st = train(cfg)
    except FromRank0:
        sys.exit(2)  # process 0 says why
    except UsageError as e:
        fail(str(e) if rank0 else f"process {rank()}: {e}")
    except Interrupted as e:
        if not rank0:
            sys.exit(130)
        fail(f"interrupted at step {e.args[0]}; run the same command to resume", code=130)
    finally:
        leave_processes()
    if rank0:
        print(f"{cfg.run_dir}: {st['status']} at step {st['step']}")


if __name__ == "__main__":
    main()
