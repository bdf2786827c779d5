"""Train the paper model with AdamW (or SGD), evaluating and snapshotting the weights as it goes.

    python train.py --seed 42                      # paper run: 10,000 steps, 51 snapshots
    python train.py --preset tiny --seed 42        # CPU run in about a minute

Writes runs/<name>/: config.json (config, corpus identity, environment of the first start and of
every resume), metrics.jsonl, log.txt, codewords.json, status.json, snapshots/step_XXXXXX.safetensors
(fp32 weights of the uncompiled model) and state_latest.pt (model, optimizer, step). Every file is
written to a temp file and renamed. Re-running the same command resumes from state_latest.pt
(and rewrites a snapshot that is missing); a finished run is left as it is. One process writes a
run folder at a time; Ctrl-C stops with one line and the run can be resumed.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from common import check_writable, environment, os_reason, pick_device, pyplot, save_figure, write_json, write_text
from config import Config, UsageError, fail, parse_config, parse_stop_rule
from dataset import corpus_identity, get_batch, load_corpus, make_eval_sets
from model import GPT, losses, param_groups
from runs import (RunLock, check_run_dir, list_snapshots, load_state, read_metrics, read_record, read_status,
                  remove_leftovers, snapshot_path)


class Interrupted(Exception):
    """Ctrl-C during training; the run folder is left resumable."""


# ----------------------------------------------------------------------------- the training step
def autocast(device: torch.device):
    """bf16 autocast on CUDA; full fp32 elsewhere (CPU runs stay bitwise reproducible)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def lr_at(cfg: Config, step: int) -> float:
    """Linear warmup to cfg.lr over cfg.warmup steps, then cosine over the run, clamped at min_lr_frac."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * max(cfg.min_lr_frac, 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: torch.nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    """AdamW or SGD. Decoupled decay: AdamW's own, or (SGD) applied by hand in `optimizer_step`;
    l2: added to the gradient by the optimizer."""
    wd = cfg.weight_decay
    groups = param_groups(model, wd if not (cfg.optimizer == "sgd" and cfg.wd_mode == "decoupled") else 0.0)
    if cfg.optimizer == "adamw":
        cls = torch.optim.AdamW if cfg.wd_mode == "decoupled" else torch.optim.Adam
        fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
        return cls(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, **fused)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, foreach=True)


def optimizer_step(opt: torch.optim.Optimizer, cfg: Config, lr: float):
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    if cfg.optimizer == "sgd" and cfg.wd_mode == "decoupled" and cfg.weight_decay:
        with torch.no_grad():  # SGDW: theta <- (1 - lr_t * wd) theta, after the gradient step
            torch._foreach_mul_(opt.param_groups[0]["params"], 1 - lr * cfg.weight_decay)


def train_step(model, opt, batches, cfg: Config, lr: float, lam: float, fwd=losses):
    """One update theta(t) -> theta(t + 1) on the step's micro-batches: forward/backward of each (the
    gradient is their mean), global-norm clip (grad_clip 0: none), optimizer step, zero grad.
    Returns the detached mean (loss, lm, probe) as a (3,) tensor and the gradient norm (no host sync)."""
    sums = torch.zeros(3, device=batches[0][0].device)
    for x, y, pos in batches:
        with autocast(x.device):
            loss, lm, probe = fwd(model, x, y, pos, lam)
        (loss / cfg.grad_accum).backward()
        sums += torch.stack([loss.detach(), lm.detach(), probe.detach()]) / cfg.grad_accum
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
    optimizer_step(opt, cfg, lr)
    opt.zero_grad(set_to_none=True)
    return sums, grad_norm


def stop_policy(cfg: Config, row: dict, first_val: float, best_ood: float, vocab_size: int) -> tuple[str, str] | None:
    """(status, reason) when training must end at the eval `row`: "diverged" (a loss non-finite or far
    above a uniform guess) or "stopped_early" (cfg.stop_rule); None to go on."""
    limit = max(1.5 * first_val, math.log(vocab_size) + 1)
    now = [v for v in (row["val_loss"], row["lm_loss"]) if v is not None]
    if not all(map(math.isfinite, now)) or max(now) > limit:
        return "diverged", (f"loss non-finite or above {limit:.3g} (max of 1.5x its first value and ln V + 1): "
                            f"{max(now):.4g}")
    if cfg.stop_rule:
        step, max_val, min_ood = parse_stop_rule(cfg.stop_rule)
        if row["step"] == step and row["val_loss"] > max_val and best_ood < min_ood:
            return "stopped_early", f"val {row['val_loss']:.3f} > {max_val} and best p_ood {best_ood:.3f} < {min_ood}"
    return None


@torch.no_grad()
def evaluate(model, ev, device, batch_size: int = 256) -> dict:
    """Validation LM loss on the fixed windows; greedy accuracy at the probe answers (p_in, p_ood)."""
    was_training = model.training
    model.eval()
    out, tot, n = {}, 0.0, 0
    with autocast(device):
        for i in range(0, len(ev.lm_x), batch_size):
            x, y = ev.lm_x[i : i + batch_size].to(device), ev.lm_y[i : i + batch_size].to(device)
            tot += F.cross_entropy(model(x).float().flatten(0, 1), y.flatten(), reduction="sum").item()
            n += y.numel()
        out["val_loss"] = tot / n
        for name, (xs, pos, ans) in ev.probe.items():
            hits = 0
            for i in range(0, len(xs), batch_size):
                logits = model(xs[i : i + batch_size].to(device), positions=pos[i : i + batch_size].to(device))
                hits += (logits.argmax(-1).cpu() == ans[i : i + batch_size]).sum().item()
            out[name] = hits / len(xs)
    model.train(was_training)
    return out


# ----------------------------------------------------------------------------- run-folder files
class SnapshotWriter:
    """Writes fp32 snapshots in background threads; a failed write is kept and raised by `check`."""

    def __init__(self, run_dir: str):
        self.run_dir, self.threads, self.errors = run_dir, [], []
        mask = os.umask(0)
        os.umask(mask)
        self.mode = 0o666 & ~mask  # safetensors creates 0600 temp files; snapshots are shared like any file

    def save(self, model, step: int):
        from safetensors.torch import save_file
        tensors = {k: v.detach().to("cpu", torch.float32).clone() for k, v in model.state_dict().items()}
        path = snapshot_path(self.run_dir, step)

        def write():
            try:
                save_file(tensors, path + ".tmp")
                os.chmod(path + ".tmp", self.mode)
                os.replace(path + ".tmp", path)
            except Exception as e:
                self.errors.append((step, e))
        self.threads = [t for t in self.threads if t.is_alive()] + [threading.Thread(target=write)]
        self.threads[-1].start()

    def check(self):
        if self.errors:
            step, e = self.errors[0]
            why = os_reason(e) if isinstance(e, OSError) else str(e).splitlines()[0][:160]
            raise UsageError(f"snapshot step {step} could not be written ({why}); the run stopped, "
                             f"rerun the same command to resume")

    def join(self):
        for t in self.threads:
            t.join()
        self.check()


def write_run_record(cfg: Config, corpus, device, start: int):
    """config.json: the resolved config and the corpus identity; the environment of the first start
    is kept and each resume is appended."""
    old = read_record(cfg.run_dir) if start else None
    env = dict(environment(device), date=time.strftime("%Y-%m-%d %H:%M:%S %z"))
    rec = dict(config=cfg.to_dict(), corpus=corpus.description, corpus_identity=corpus_identity(cfg),
               env=(old or {}).get("env", env), resumes=(old or {}).get("resumes", []) + ([dict(step=start, env=env)] if start else []))
    write_json(os.path.join(cfg.run_dir, "config.json"), rec)
    write_json(os.path.join(cfg.run_dir, "codewords.json"),
               {"codewords": corpus.tok.codewords, "ids": [int(i) for i in corpus.codeword_ids]}, indent=None)
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


def load_init(model, path: str):
    from safetensors.torch import load_file
    if not os.path.isfile(path):
        raise UsageError(f"init_from snapshot not found: {path}")
    try:
        model.load_state_dict(load_file(path))
    except Exception as e:
        raise UsageError(f"cannot load {path} into this model: {str(e).splitlines()[0][:200]}")


def restore(model, opt, state: dict, path: str):
    """Model, optimizer and RNG from a state file; a file that does not fit this run is one line."""
    try:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if state["train_sum"].shape != (3,):
            raise ValueError("train_sum")
    except Exception as e:
        raise UsageError(f"{path} does not fit this run ({str(e).splitlines()[0][:120]}); remove it to restart the run")


def finished(status: dict | None) -> bool:
    return bool(status) and status["status"] != "running"


# ----------------------------------------------------------------------------- training
class Trainer:
    """The state of one training process on one run folder (under its lock)."""

    def __init__(self, cfg: Config, corpus, device):
        self.cfg, self.run_dir, self.device, self.corpus = cfg, cfg.run_dir, device, corpus
        self.ev = make_eval_sets(corpus, cfg)
        self.model = GPT.from_config(cfg, corpus.vocab_size).to(device)
        if cfg.init_from:
            load_init(self.model, cfg.init_from)
        self.opt = make_optimizer(self.model, cfg, device)
        self.start, self.train_sum, self.n_sum = 0, torch.zeros(3, device=device), 0
        self.grad_norm = torch.zeros((), device=device)
        state_path = os.path.join(self.run_dir, "state_latest.pt")
        self.state = load_state(state_path) if os.path.exists(state_path) else None
        if self.state is not None and self.missing_before(self.state["step"]):
            self.state = None  # a snapshot before the resume point is gone: retrain from 0 (bitwise the same)
        if self.state is not None:
            restore(self.model, self.opt, self.state, state_path)
            self.start = self.state["step"]
            self.train_sum, self.n_sum = self.state["train_sum"].to(device), self.state["n_sum"]
        self.snaps = SnapshotWriter(self.run_dir)
        self.metrics_path = os.path.join(self.run_dir, "metrics.jsonl")

    def missing_before(self, step: int) -> list[int]:
        have = list_snapshots(self.run_dir)
        return [s for s in self.cfg.snapshot_steps() if s < step and s not in have]

    def open_files(self):
        """Metrics past the resume point are dropped (they are redone); the log gets a header line."""
        done = [r for r in read_metrics(self.run_dir) if r["step"] < self.start or (self.state and r["step"] == self.start)]
        write_text(self.metrics_path, "".join(map(_json_line, done)))
        self.best_ood = max([r["p_ood"] for r in done], default=0.0)
        self.first_val = done[0]["val_loss"] if done else None
        env = write_run_record(self.cfg, self.corpus, self.device, self.start)
        self.log = open(os.path.join(self.run_dir, "log.txt"), "a")
        self.log.write(f"# {'resume at step ' + str(self.start) if self.start else 'start'}: {env['device_name']} "
                       f"torch {env['torch']} commit {env['git_commit'][:10]}\n")
        self.t_last, self.step_last = time.perf_counter(), self.start

    def fetch(self, step: int):
        """The step's micro-batches, moved to the device without blocking."""
        pin = self.device.type == "cuda"
        return [tuple(t.pin_memory().to(self.device, non_blocking=True) if pin else t.to(self.device)
                      for t in get_batch(self.corpus, self.cfg, step, m)) for m in range(self.cfg.grad_accum)]

    def eval_row(self, step: int) -> dict:
        cfg, now = self.cfg, time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        tr = (self.train_sum / max(self.n_sum, 1)).tolist() if self.n_sum else [None] * 3
        tokens = (step - self.step_last) * cfg.batch_size * cfg.grad_accum * cfg.ctx
        row = dict(step=step, lr=lr_at(cfg, min(step, cfg.steps - 1)), **{"lambda": cfg.lambda_at(step)},
                   train_loss=tr[0], lm_loss=tr[1], probe_loss=tr[2], **evaluate(self.model, self.ev, self.device),
                   grad_norm=self.grad_norm.item() if self.n_sum else None,
                   tok_per_s=round(tokens / (now - self.t_last)) if step > self.step_last else None)
        with open(self.metrics_path, "a") as f:
            f.write(_json_line(row))
        self.log.write(" | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()) + "\n")
        self.log.flush()
        self.best_ood, self.first_val = max(self.best_ood, row["p_ood"]), self.first_val or row["val_loss"]
        self.train_sum.zero_()
        self.n_sum = 0
        self.t_last, self.step_last = time.perf_counter(), step
        return row

    def save_state(self, step: int):
        self.snaps.join()  # never a resume point past a snapshot that failed
        path = os.path.join(self.run_dir, "state_latest.pt")
        try:
            torch.save({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "step": step,
                        "rng": torch.get_rng_state(), "train_sum": self.train_sum.cpu(), "n_sum": self.n_sum,
                        "config": self.cfg.to_dict()}, path + ".tmp")
            os.replace(path + ".tmp", path)
        except (OSError, RuntimeError) as e:
            raise UsageError(f"cannot write {path}: {str(e).splitlines()[0][:160]}")

    def finish(self, kind: str, step: int, **extra) -> dict:
        self.save_state(step)
        st = dict(status=kind, step=step, **extra)
        write_json(os.path.join(self.run_dir, "status.json"), st)
        plot_metrics(self.run_dir)
        self.log.write(f"# {kind} at step {step}\n")
        return st

    def run(self, stop_after: int | None = None) -> dict:
        cfg, start = self.cfg, self.start
        fwd = torch.compile(losses, dynamic=False) if (cfg.compile and self.device.type == "cuda") else losses
        evals, snaps = set(cfg.eval_steps()), set(cfg.snapshot_steps())
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, initial=start, disable=not cfg.progress, dynamic_ncols=True,
                   desc=os.path.basename(self.run_dir))
        self.model.train()
        batches = self.fetch(start) if start < cfg.steps else None
        try:
            for step in range(start, cfg.steps + 1):
                redo = step > start or self.state is None  # the resume step's eval and snapshot were done before
                if step in snaps and (redo or not os.path.exists(snapshot_path(self.run_dir, step))):
                    self.snaps.save(self.model, step)
                self.snaps.check()
                if step in evals and redo:
                    row = self.eval_row(step)
                    bar.set_postfix(loss=f"{row['train_loss'] or float('nan'):.3f}", val=f"{row['val_loss']:.3f}",
                                    p_ood=f"{row['p_ood']:.2f}", tok_s=row["tok_per_s"])
                    end = stop_policy(cfg, row, self.first_val, self.best_ood, self.corpus.vocab_size)
                    if end:
                        return self.finish(end[0], step, reason=end[1])
                if step > start and step % cfg.state_every == 0 and step < cfg.steps:
                    self.save_state(step)
                if step == cfg.steps or (stop_after is not None and step - start >= stop_after):
                    break
                sums, self.grad_norm = train_step(self.model, self.opt, batches, cfg, lr_at(cfg, step),
                                                  cfg.lambda_at(step), fwd)
                self.train_sum += sums
                self.n_sum += 1
                if step + 1 < cfg.steps:
                    batches = self.fetch(step + 1)  # built on the host while the device works
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
            for t in self.snaps.threads:
                t.join()
            self.log.close()


def _json_line(row: dict) -> str:
    return json.dumps(row) + "\n"


def already_done(cfg: Config) -> dict | None:
    """The status of a finished run (its training curves redrawn if a kill left them missing or empty)."""
    status = read_status(cfg.run_dir)
    if not finished(status):
        return None
    png = os.path.join(cfg.run_dir, "training_curves.png")
    if not os.path.exists(png) or os.path.getsize(png) == 0:
        plot_metrics(cfg.run_dir)
    print(f"{cfg.run_dir}: already {status['status']} at step {status['step']}; nothing to do")
    return status


def train(cfg: Config, stop_after: int | None = None) -> dict:
    """Train (or resume) the run of `cfg`. Returns its status dict. `stop_after` ends the process
    loop after that many updates without finishing (used to test resume)."""
    check_writable(cfg.run_dir)
    check_run_dir(cfg)  # a foreign folder stops before the data is loaded
    done = already_done(cfg)
    if done:
        return done
    device = pick_device(cfg.device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for the few fp32 matmuls outside autocast
    corpus = load_corpus(cfg)
    os.makedirs(os.path.join(cfg.run_dir, "snapshots"), exist_ok=True)
    with RunLock(cfg.run_dir):
        check_run_dir(cfg)  # again under the lock: another process may have started it meanwhile
        done = already_done(cfg)
        if done:
            return done
        remove_leftovers(cfg.run_dir)
        torch.manual_seed(cfg.seed)
        trainer = Trainer(cfg, corpus, device)
        trainer.open_files()
        return trainer.run(stop_after)


def main(argv=None):
    cfg = parse_config(argv, description=__doc__)
    try:
        st = train(cfg)
    except UsageError as e:
        fail(str(e))
    except Interrupted as e:
        fail(f"interrupted at step {e.args[0]}; run the same command to resume", code=130)
    print(f"{cfg.run_dir}: {st['status']} at step {st['step']}")


if __name__ == "__main__":
    main()
