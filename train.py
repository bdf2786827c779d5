"""Train the paper model with AdamW (or SGD), evaluating and snapshotting the weights as it goes.

    python train.py --seed 42                      # paper run: 10,000 steps, 51 snapshots
    python train.py --preset tiny --seed 42        # CPU run in about a minute

Writes runs/<name>/: config.json, metrics.jsonl, log.txt, codewords.json, status.json,
snapshots/step_XXXXXX.safetensors (fp32 weights of the uncompiled model) and state_latest.pt
(model, optimizer, step; written atomically). Re-running the same command resumes from
state_latest.pt; a finished run is left as it is.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import threading
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from config import Config, UsageError, config_from_dict, diff_configs, fail, parse_config
from dataset import get_batch, load_corpus, make_eval_sets
from model import GPT, param_groups


# ----------------------------------------------------------------------------- helpers
def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but CUDA is not available")
    return torch.device(name)


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


def losses(model, x, y, probe_pos, lam: float):
    """(L_LM + lam * L_probe, L_LM, L_probe): probe loss at the answer positions, LM loss elsewhere."""
    logits = model(x)
    ce = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view_as(y)
    mask = torch.arange(y.size(1), device=y.device)[None, :] == probe_pos[:, None]  # probe_pos -1: no probe
    lm = (ce * ~mask).sum() / (~mask).sum()
    probe = (ce * mask).sum() / mask.sum().clamp(min=1)
    return lm + lam * probe, lm, probe


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


def environment(device: torch.device) -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                                  cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
        except Exception:
            return ""
    return dict(git_commit=git("rev-parse", "HEAD") or "unknown", git_dirty=bool(git("status", "--porcelain", "--untracked-files=no")),
                torch=torch.__version__, cuda=torch.version.cuda, python=platform.python_version(), device=str(device),
                device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or device.type)


def snapshot_path(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, "snapshots", f"step_{step:06d}.safetensors")


def save_snapshot(model, run_dir: str, step: int) -> threading.Thread:
    """fp32 weights of the uncompiled model; the file is written by a background thread."""
    from safetensors.torch import save_file
    tensors = {k: v.detach().to("cpu", torch.float32).clone() for k, v in model.state_dict().items()}
    path = snapshot_path(run_dir, step)

    def write():
        save_file(tensors, path + ".tmp")
        os.replace(path + ".tmp", path)
    t = threading.Thread(target=write)
    t.start()
    return t


def plot_metrics(run_dir: str) -> str:
    """training_curves.png: validation loss, p_in and p_ood against step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl"))]
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
    fig.tight_layout()
    path = os.path.join(run_dir, "training_curves.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def load_state(path: str) -> dict:
    """Load state_latest.pt safely (weights_only: a malicious pickle executes nothing)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not {"model", "optimizer", "step"} <= set(state):
            raise ValueError("missing keys")
        return state
    except Exception as e:
        raise UsageError(f"{path} is corrupt or not a state file ({type(e).__name__}); remove it to restart the run")


def load_init(model, path: str):
    from safetensors.torch import load_file
    if not os.path.isfile(path):
        raise UsageError(f"init_from snapshot not found: {path}")
    try:
        model.load_state_dict(load_file(path))
    except Exception as e:
        raise UsageError(f"cannot load {path} into this model: {str(e).splitlines()[0][:200]}")


def check_run_dir(cfg: Config) -> Config | None:
    """The config that made cfg.run_dir (None when there is no run yet); a folder made with
    another config, or one that is not a run folder, is an error."""
    run_dir = cfg.run_dir
    cfg_path = os.path.join(run_dir, "config.json")
    if not os.path.exists(cfg_path):
        if os.path.isdir(run_dir) and os.listdir(run_dir):
            raise UsageError(f"{run_dir} exists but has no config.json; use another --name or remove the folder")
        return None
    try:
        old = config_from_dict(json.load(open(cfg_path))["config"])
    except Exception:
        raise UsageError(f"{cfg_path} is unreadable; use another --name or remove the folder")
    changed = diff_configs(old, cfg)
    if changed:
        raise UsageError(f"{run_dir} was made with another config (differs in: {', '.join(changed)}); use another --name")
    return old


def prepare_run_dir(cfg: Config) -> tuple[str, dict | None]:
    """Check an existing run folder against cfg; return (run_dir, state or None)."""
    run_dir = cfg.run_dir
    check_run_dir(cfg)
    state_path = os.path.join(run_dir, "state_latest.pt")
    return run_dir, (load_state(state_path) if os.path.exists(state_path) else None)


def read_status(run_dir: str) -> dict | None:
    p = os.path.join(run_dir, "status.json")
    return json.load(open(p)) if os.path.exists(p) else None


# ----------------------------------------------------------------------------- training
def train(cfg: Config, stop_after: int | None = None) -> dict:
    """Train (or resume) the run of `cfg`. Returns its status dict. `stop_after` ends the process
    loop after that many updates without finishing (used to test resume)."""
    run_dir, state = prepare_run_dir(cfg)
    status = read_status(run_dir)
    if status and status["status"] != "running":
        print(f"{run_dir}: already {status['status']} at step {status['step']}; nothing to do")
        return status
    device = pick_device(cfg.device)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for the few fp32 matmuls outside autocast
    torch.manual_seed(cfg.seed)
    corpus = load_corpus(cfg)
    ev = make_eval_sets(corpus, cfg)
    model = GPT.from_config(cfg, corpus.vocab_size).to(device)
    if cfg.init_from:
        load_init(model, cfg.init_from)
    opt = make_optimizer(model, cfg, device)
    start, train_sum, n_sum = 0, torch.zeros(3, device=device), 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start = state["step"]
        train_sum, n_sum = state["train_sum"].to(device), state["n_sum"]

    os.makedirs(os.path.join(run_dir, "snapshots"), exist_ok=True)
    env = environment(device)
    json.dump({"config": cfg.to_dict(), "env": env, "corpus": corpus.description}, open(os.path.join(run_dir, "config.json"), "w"), indent=1)
    json.dump({"codewords": corpus.tok.codewords, "ids": [int(i) for i in corpus.codeword_ids]},
              open(os.path.join(run_dir, "codewords.json"), "w"))
    metrics_path, log_path = os.path.join(run_dir, "metrics.jsonl"), os.path.join(run_dir, "log.txt")
    if os.path.exists(metrics_path):  # drop evals past the resume point (they are redone)
        rows = [r for r in map(json.loads, open(metrics_path)) if r["step"] < start or (state and r["step"] == start)]
        with open(metrics_path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    done = list(map(json.loads, open(metrics_path))) if os.path.exists(metrics_path) else []
    best_ood = max([r["p_ood"] for r in done], default=0.0)
    first_val = done[0]["val_loss"] if done else None
    log = open(log_path, "a")
    log.write(f"# {'resume at step ' + str(start) if start else 'start'}: {env['device_name']} torch {env['torch']} commit {env['git_commit'][:10]}\n")

    fwd = torch.compile(losses, dynamic=False) if (cfg.compile and device.type == "cuda") else losses
    evals, snaps = set(cfg.eval_steps()), set(cfg.snapshot_steps())
    stop = [int(cfg.stop_rule.split(":")[0]), *map(float, cfg.stop_rule.split(":")[1:])] if cfg.stop_rule else None
    tokens_per_step = cfg.batch_size * cfg.grad_accum * cfg.ctx
    writers, grad_norm = [], torch.zeros((), device=device)
    t_last, step_last = time.perf_counter(), start

    def fetch(step):  # the step's micro-batches, moved to the device without blocking
        pin = device.type == "cuda"
        return [tuple(t.pin_memory().to(device, non_blocking=True) if pin else t.to(device) for t in get_batch(corpus, cfg, step, m))
                for m in range(cfg.grad_accum)]

    def save_state(step):
        tmp = os.path.join(run_dir, "state_latest.pt.tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "rng": torch.get_rng_state(), "train_sum": train_sum.cpu(), "n_sum": n_sum, "config": cfg.to_dict()}, tmp)
        os.replace(tmp, os.path.join(run_dir, "state_latest.pt"))

    def finish(kind, step, **extra):
        for w in writers:
            w.join()
        save_state(step)
        st = dict(status=kind, step=step, **extra)
        json.dump(st, open(os.path.join(run_dir, "status.json"), "w"))
        plot_metrics(run_dir)
        log.write(f"# {kind} at step {step}\n")
        log.close()
        return st

    from tqdm import tqdm
    bar = tqdm(total=cfg.steps, initial=start, disable=not cfg.progress, dynamic_ncols=True, desc=os.path.basename(run_dir))
    model.train()
    batches = fetch(start) if start < cfg.steps else None
    for step in range(start, cfg.steps + 1):
        redo = step > start or state is None  # the resume step's eval and snapshot were done before the state was saved
        if step in snaps and (redo or not os.path.exists(snapshot_path(run_dir, step))):
            writers = [w for w in writers if w.is_alive()] + [save_snapshot(model, run_dir, step)]
        if step in evals and redo:
            now = time.perf_counter()
            if device.type == "cuda":
                torch.cuda.synchronize()
            tr = (train_sum / max(n_sum, 1)).tolist()
            row = dict(step=step, lr=lr_at(cfg, min(step, cfg.steps - 1)), **{"lambda": cfg.lambda_at(step)},
                       train_loss=tr[0] if n_sum else None, lm_loss=tr[1] if n_sum else None, probe_loss=tr[2] if n_sum else None,
                       **evaluate(model, ev, device), grad_norm=grad_norm.item() if n_sum else None,
                       tok_per_s=round((step - step_last) * tokens_per_step / (now - t_last)) if step > step_last else None)
            best_ood = max(best_ood, row["p_ood"])
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            log.write(" | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{row['train_loss'] or float('nan'):.3f}", val=f"{row['val_loss']:.3f}", p_ood=f"{row['p_ood']:.2f}",
                            tok_s=row["tok_per_s"])
            train_sum.zero_()
            n_sum = 0
            first_val = first_val or row["val_loss"]
            limit = max(1.5 * first_val, math.log(corpus.vocab_size) + 1)  # well above a uniform guess
            losses_now = [v for v in (row["val_loss"], row["lm_loss"]) if v is not None]
            if not all(map(math.isfinite, losses_now)) or max(losses_now) > limit:
                bar.close()
                return finish("diverged", step, reason=f"loss non-finite or above {limit:.3g} "
                              f"(max of 1.5x its first value and ln V + 1): {max(losses_now):.4g}")
            if stop and step == stop[0] and row["val_loss"] > stop[1] and best_ood < stop[2]:
                bar.close()
                return finish("stopped_early", step, reason=f"val {row['val_loss']:.3f} > {stop[1]} and best p_ood {best_ood:.3f} < {stop[2]}")
            t_last, step_last = time.perf_counter(), step
        if step > start and step % cfg.state_every == 0 and step < cfg.steps:
            save_state(step)
        if step == cfg.steps or (stop_after is not None and step - start >= stop_after):
            break
        # one update: theta(step) -> theta(step + 1) on the batches of `step`
        lr, lam = lr_at(cfg, step), cfg.lambda_at(step)
        for x, y, pos in batches:
            with autocast(device):
                loss, lm, probe = fwd(model, x, y, pos, lam)
            (loss / cfg.grad_accum).backward()
            train_sum += torch.stack([loss.detach(), lm.detach(), probe.detach()]) / cfg.grad_accum
        n_sum += 1
        if step + 1 < cfg.steps:
            batches = fetch(step + 1)  # built on the host while the device works
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        optimizer_step(opt, cfg, lr)
        opt.zero_grad(set_to_none=True)
        bar.update(1)
    bar.close()
    if step < cfg.steps:  # stopped by stop_after: leave the run resumable, as a kill would
        for w in writers:
            w.join()
        log.close()
        return dict(status="running", step=step)
    return finish("complete", step)


def main(argv=None):
    cfg = parse_config(argv, description=__doc__)
    try:
        st = train(cfg)
    except UsageError as e:
        fail(str(e))
    print(f"{cfg.run_dir}: {st['status']} at step {st['step']}")


if __name__ == "__main__":
    main()
