"""Time the project's training step beside a plain reference step, and a real stretch of
the training loop.

    python bench.py  # paper preset, both vocabularies (about 1.5 min on an H200)
    python bench.py --variant fused_ce=off --variant gpt2:fused_ce=liger --stretch --profile \\
        --out results/v2/bench/bench.json    # notes/speed.md: the fused loss on and off (4 min)
    python bench.py --preset tiny --bench-steps 2 --vocab corpus   # quick look on a CPU

Rows, per vocabulary: `project` is train.train_step with the config's settings (a `--variant` row:
the same with overrides, "field=value,..." optionally prefixed "corpus:" or "gpt2:"); `reference` is
the plain GPT of the same shape written below: bf16 autocast, torch.compile of the whole module,
fused AdamW, cross-entropy on the logits, the config's micro-batches (batch_size x grad_accum)
accumulated. Random tokens, the peak learning rate, lambda 2; ms/step from device events over
--bench-steps steps after --warmup-steps steps.

MFU = model FLOPs per second / the device's dense bf16 peak (H100, H200: 989 TFLOP/s). `MFU mm`
divides by the rate one 8192^3 bf16 matrix product reaches on this device instead (the ceiling
a matmul-bound step could reach). Model FLOPs per token = 6 * (trunk matmul parameters + vocabulary
* d_model for the tied head) + 12 * n_layer * d_model * ctx (attention scores and values, forward
and backward, the causal mask not discounted), with the real vocabulary (padding rows not counted).
speedup = reference ms / the row's ms.

--stretch: train.py's own loop (prefetched data, step, eval, snapshot) for --stretch-steps steps of
the real corpus (--stretch-stories training stories) in a temporary run folder: step-time
percentiles, the share of time the device waited for the host (gaps between the steps' device
events), eval and snapshot costs, and eager against compiled evaluation. --profile: the top-15
device kernels by time over 3 project steps.

    # the step on 4 GPUs
    torchrun --standalone --nproc_per_node 4 bench.py --vocab corpus --no-reference

Under torchrun every process takes its share of the rows of each micro-batch (the step's batch is
the same) and the project rows sum the gradients over the processes as train.py does; a reference
row is one GPU's share with no communication. ms/step is the slowest process's; tok/s counts
the whole step's tokens (all GPUs), tok/s/GPU is that over the number of processes, and TFLOP/s and
MFU are per GPU. Process 0 prints and writes; --stretch runs in one process only.
"""
from __future__ import annotations

import argparse
import gc
import math
import os
import tempfile
import time
from contextlib import contextmanager

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from common import (autocast, check_writable, fix_kernels, format_table, join_processes, launched,
                    leave_processes, pick_device, rank, world, write_result)
from config import (SYNTHETIC_VERSION, Parser, UsageError, add_config_args, config_from_args, fail,
                    make_config, trunk_params)
from dataset import WordTokenizer, load_corpus, make_eval_sets, process_rows
from model import (GPT, GPT2_VOCAB, Evaluator, fused_ce_library, make_optimizer, padded_vocab,
                   set_attention_backend, training_loss)
from train import train, train_step

PEAK_BF16 = {
    "H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12
}


def device_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return device.type, None
    name = torch.cuda.get_device_name(device)
    return name, next((v for k, v in PEAK_BF16.items() if k in name), None)


def flops_per_token(cfg, vocab: int) -> float:
    return 6 * (trunk_params(cfg) + vocab * cfg.d_model) + 12 * cfg.n_layer * cfg.d_model * cfg.ctx


class Clock:
    """Device time between two marks: CUDA events on CUDA, wall time elsewhere."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self):
        if not self.cuda:
            return time.perf_counter()
        e = torch.cuda.Event(enable_timing=True)
        e.record()
        return e

    def seconds(self, a, b) -> float:
        """Seconds from mark a to mark b (waits for b on CUDA)."""
        if not self.cuda:
            return b - a
        b.synchronize()
        return a.elapsed_time(b) / 1e3

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()


def matmul_ceiling(device: torch.device, n: int = 8192, reps: int = 10) -> float | None:
    """FLOP/s of one n^3 bf16 matrix product on a CUDA device (None elsewhere)."""
    if device.type != "cuda":
        return None
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    clock = Clock(device)
    for _ in range(3):
        a @ b
    t0 = clock.mark()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / clock.seconds(t0, clock.mark())


# ----------------------------------------------------------------------------- the plain reference
class RefBlock(nn.Module):
    def __init__(self, d: int, n_head: int, d_ff: int):
        super().__init__()
        self.n_head, self.ln1, self.ln2 = n_head, nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.up, self.down = nn.Linear(d, d_ff, bias=False), nn.Linear(d_ff, d, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.n_head,
                                             C // self.n_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class RefGPT(nn.Module):
    """What a competent user writes: a GPT-2 block stack with a tied head over a vocabulary padded
    to 64."""

    def __init__(self, cfg, vocab: int):
        super().__init__()
        self.wte = nn.Embedding(padded_vocab(vocab), cfg.d_model)
        self.wpe = nn.Embedding(cfg.ctx, cfg.d_model)
        self.blocks = nn.ModuleList(
            RefBlock(cfg.d_model, cfg.n_head, cfg.d_ff) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def reference_step(cfg, vocab: int, device: torch.device, batches, compiled: bool):
    torch.manual_seed(0)
    model = RefGPT(cfg, vocab).to(device)
    groups = [
        dict(params=[p for p in model.parameters() if p.dim() >= 2], weight_decay=cfg.weight_decay),
        dict(params=[p for p in model.parameters() if p.dim() < 2], weight_decay=0.0)
    ]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            fused=device.type == "cuda")
    run = torch.compile(model) if compiled else model

    def step():
        for x, y, _ in batches:
            with autocast(device):
                loss = run(x, y)
            (loss / len(batches)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model, step


def project_step(cfg, vocab: int, device: torch.device, batches, compiled: bool):
    torch.manual_seed(0)
    model = GPT.from_config(cfg, vocab).to(device)
    opt = make_optimizer(model, cfg, device)
    fwd = training_loss(cfg, device)
    return model, lambda: train_step(model, opt, batches, cfg, cfg.lr, 2.0, fwd)


def random_batches(cfg, vocab: int, device: torch.device):
    """The config's micro-batches of random tokens; a probe position in every tenth row."""
    g = torch.Generator().manual_seed(0)
    shape = (cfg.batch_size, cfg.ctx)
    pos = torch.where(torch.arange(cfg.batch_size) % 10 == 0, cfg.ctx - 1, -1)
    return [tuple(t.to(device) for t in (torch.randint(0, vocab, shape, generator=g),
                                         torch.randint(0, vocab, shape, generator=g), pos))
            for _ in range(cfg.grad_accum)]


def my_rows(batches):
    """This process's rows of each micro-batch (all of them in a single process)."""
    if world() == 1:
        return batches
    rows = process_rows(len(batches[0][0]), rank(), world())
    return [tuple(t[rows] for t in b) for b in batches]


def slowest(seconds: float, device: torch.device) -> float:
    """The largest of the processes' `seconds` (a data-parallel step is as slow as its slowest
    process)."""
    if world() == 1:
        return seconds
    t = torch.tensor(seconds, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


# ----------------------------------------------------------------------------- one table row
def top_kernels(step, device: torch.device, steps: int = 3, top: int = 15) -> list[dict]:
    """The `top` device kernels (CPU ops on a CPU) by total time over `steps` steps, per step."""
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        Clock(device).sync()
    if device.type == "cuda":
        events = [(e.key, e.device_time_total, e.count) for e in prof.key_averages()
                  if e.device_type != DeviceType.CPU]
    else:
        events = [(e.key, e.self_cpu_time_total, e.count) for e in prof.key_averages()]
    total = sum(t for _, t, _ in events) or 1
    events.sort(key=lambda e: -e[1])
    return [
        dict(kernel=k[:90], ms_per_step=t / 1e3 / steps, share=t / total, calls_per_step=c / steps)
        for k, t, c in events[:top]
    ]


def bench_row(kind: str, make, cfg, vocab: int, device: torch.device, args,
              ceiling: float | None) -> dict:
    """Build one step with make(cfg, vocab, device, batches, compiled), time it, free it."""
    torch._dynamo.reset()  # each row compiles afresh and never meets the recompile limit
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    compiled = cfg.compile and device.type == "cuda"
    if device.type == "cuda":
        # the row's own (a variant's sdpa=... must not leak into the next)
        set_attention_backend(cfg.sdpa)
    model, step = make(cfg, vocab, device, my_rows(random_batches(cfg, vocab, device)), compiled)
    clock = Clock(device)
    t0 = time.perf_counter()
    step()
    clock.sync()
    first = time.perf_counter() - t0
    for _ in range(args.warmup_steps):
        step()
    a = clock.mark()
    for _ in range(args.bench_steps):
        step()
    dt = slowest(clock.seconds(a, clock.mark()) / args.bench_steps, device)
    tokens = cfg.batch_size * cfg.grad_accum * cfg.ctx  # the whole step's, over all processes
    flops = flops_per_token(cfg, vocab) * tokens / world() / dt  # per GPU
    name, peak = device_peak(device)
    row = dict(
        kind=kind,
        vocab=vocab,
        params=sum(p.numel() for p in model.parameters()),
        ms_per_step=dt * 1e3,
        tok_per_s=tokens / dt,
        tflops=flops / 1e12,
        mfu=flops / peak if peak else None,
        mfu_matmul=flops / ceiling if ceiling else None,
        first_step_s=first,
        device=name,
        fused_ce=_library(cfg, device) if kind.startswith("project") else None,
        mem_gib=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    )
    if world() > 1:
        row.update(processes=world(), tok_per_s_per_gpu=tokens / world() / dt)
    if args.profile and kind == "project":
        try:
            row["top_kernels"] = top_kernels(step, device)
        except Exception as e:  # the timing above stands
            print(f"profile failed: {_why(e)}")
    return row


def safe_row(kind: str, make, cfg, vocab: int, device, args, ceiling) -> dict:
    """bench_row, or a row holding its error: a failing variant or out-of-memory row does not end
    the run."""
    try:
        return bench_row(kind, make, cfg, vocab, device, args, ceiling)
    except Exception as e:
        print(f"{kind}, vocabulary {vocab}: failed: {_why(e)}")
        return dict(kind=kind, vocab=vocab, error=_why(e, 500))
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


# --------------------------------------------------------------------- the stretch of the real loop
class StepTimer:
    """train.train's timer (train.untimed): host time and device marks around each step (the
    batch fetch is outside); the seconds of each evaluation (after a device sync, so that the
    steps queued before it are not counted) and of queueing each snapshot; the loop's wall time."""

    def __init__(self, device: torch.device):
        self.clock, self.marks, self.evals, self.snaps, self.wall = Clock(device), [], [], [], None

    @contextmanager
    def __call__(self, what: str, step: int):
        if what == "step":
            t, a = time.perf_counter(), self.clock.mark()
            yield
            self.marks.append((step, t, a, self.clock.mark()))
            return
        if what == "eval":
            self.clock.sync()
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        if what == "loop":
            self.wall = dt
        else:
            {"eval": self.evals, "snapshot": self.snaps}[what].append(dt)


def _library(cfg, device: torch.device) -> str:
    """The fused cross-entropy library a project row's loss used ("off": plain PyTorch)."""
    try:
        return fused_ce_library(cfg.fused_ce, device) or "off"
    except ValueError as e:
        return f"failed: {e}"


def _why(e: Exception, n: int = 200) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:n]}"


def _pct(xs: list[float]) -> dict:
    s = sorted(xs)
    at = lambda q: s[min(len(s) - 1, int(q * len(s)))] * 1e3
    return dict(p50=at(0.5), p90=at(0.9), p99=at(0.99), max=s[-1] * 1e3) if s else {}


def eval_costs(cfg, corpus, device: torch.device) -> dict:
    """Seconds of one eager and one compiled evaluation (and the compilation) of the training
    loop's Evaluator on cfg's sets, with a fresh model of the run's shape (the time of an
    evaluation does not depend on the weights)."""
    clock, out = Clock(device), {}
    sets = make_eval_sets(corpus, cfg)
    model = GPT.from_config(cfg, corpus.vocab_size).to(device)
    for name, compiled in (("eager", False), ("compiled", True)):
        if compiled and not (cfg.compile and device.type == "cuda"):
            continue
        ev = Evaluator(sets, device, corpus.vocab_size, compiled)
        times = []
        for _ in range(2):
            clock.sync()
            t0 = time.perf_counter()
            ev(model)
            times.append(time.perf_counter() - t0)
        out[f"{name}_s"], out[f"{name}_first_s"] = times[1], times[0]
    if "compiled_s" in out and out["eager_s"] > out["compiled_s"]:
        # evals after which the compiled evaluation has paid for its compilation
        saved = out["eager_s"] - out["compiled_s"]
        out["break_even_evals"] = (out["compiled_first_s"] - out["compiled_s"]) / saved
    return out


def stretch(cfg, args, device: torch.device) -> dict:
    """train.py's loop (train.train) for args.stretch_steps steps of the real corpus in a
    temporary run folder."""
    torch._dynamo.reset()
    with tempfile.TemporaryDirectory() as tmp:
        scfg = make_config(
            **{
                **cfg.to_dict(),
                "n_train_stories": args.stretch_stories,
                "out_dir": tmp,
                "name": "stretch",
                "progress": False,
            }
        )
        t0 = time.perf_counter()
        corpus = load_corpus(scfg)
        t_corpus = time.perf_counter() - t0
        timer = StepTimer(device)
        train(scfg, stop_after=args.stretch_steps, timer=timer, corpus=corpus)
        costs = eval_costs(scfg, corpus, device)
    m, clock, evals, snaps, wall = timer.marks, timer.clock, timer.evals, timer.snaps, timer.wall
    steady = m[1:]  # the first step compiles
    busy = [clock.seconds(a, b) for _, _, a, b in steady]
    gaps = [clock.seconds(p[3], q[2]) for p, q in zip(steady, steady[1:])]
    span = clock.seconds(steady[0][2], steady[-1][3]) if steady else 0.0
    tokens = scfg.batch_size * scfg.grad_accum * scfg.ctx
    host = [q[1] - p[1] for p, q in zip(steady, steady[1:])]
    return dict(steps=len(m), corpus_s=t_corpus, loop_wall_s=wall,
                first_step_s=m[1][1] - m[0][1] if len(m) > 1 else None, device_step_ms=_pct(busy),
                device_gap_ms=_pct(gaps), host_step_ms=_pct(host),
                device_wait_share=sum(gaps) / span if span else None,
                tok_per_s=tokens * len(steady) / span if span else None, eval_s=evals,
                snapshot_queue_s=snaps, eval_costs=costs, train_stories=scfg.train_stories)


# ----------------------------------------------------------------------------- command line
def parse_variant(cfg, spec: str) -> tuple[str | None, str, object]:
    """"[corpus:|gpt2:]field=value,..." -> (vocabulary or None for both, label, config with
    the overrides)."""
    only, _, body = spec.partition(":") if spec.split(":", 1)[0] in ("corpus",
                                                                     "gpt2") else (None, "", spec)
    argv = []
    for part in filter(None, body.split(",")):
        k, sep, v = part.partition("=")
        if not sep:
            raise UsageError(f"--variant {spec!r}: expected field=value[,field=value]")
        argv += [f"--{k.strip()}", v.strip()]
    ns = add_config_args(Parser(prog="--variant")).parse_args(argv)
    over = {k[4:]: v for k, v in vars(ns).items() if k.startswith("cfg_") and v is not None}
    return only or None, body, make_config(**{**cfg.to_dict(), **over})


def vocabularies(cfg, which: str) -> list[tuple[str, int]]:
    out = []
    if which in ("corpus", "both"):
        # the word tokenizer's size, without generating the corpus
        if cfg.data in SYNTHETIC_VERSION:
            out.append(("corpus", WordTokenizer(cfg.n_codewords,
                                                SYNTHETIC_VERSION[cfg.data]).vocab_size))
        else:
            out.append(("corpus", load_corpus(cfg).vocab_size))
    if which in ("gpt2", "both"):
        out.append(("gpt2", GPT2_VOCAB))
    return out


def print_report(cfg, rows, ceiling, st, device):
    ok = [r for r in rows if "error" not in r]
    print(
        f"preset {cfg.preset}: {cfg.batch_size * cfg.grad_accum} x {cfg.ctx} tokens a step (project"
        f" fuse_micro={cfg.fuse_micro}, reference {cfg.grad_accum} x {cfg.batch_size} accumulated),"
        f" compile={cfg.compile and device.type == 'cuda'}, device"
        f" {ok[0]['device'] if ok else device}, torch {torch.__version__}"
        + (f", 8192^3 bf16 matmul {ceiling / 1e12:.0f} TFLOP/s" if ceiling else "")
    )
    pct = lambda v: f"{100 * v:.1f}%" if v is not None else "-"
    body = [
        (
            [
                r["kind"],
                r["vocab"],
                r["fused_ce"] or "-",
                f"{r['params']:,}",
                f"{r['ms_per_step']:.2f}",
                f"{r['tok_per_s']:,.0f}",
                f"{r['tflops']:.1f}",
                pct(r["mfu"]),
                pct(r["mfu_matmul"]),
                f"{r['mem_gib']:.1f}" if r["mem_gib"] is not None else "-",
                f"{r['first_step_s']:.1f}",
                (
                    f"{r['speedup_vs_reference']:.2f}x"
                    if math.isfinite(r["speedup_vs_reference"])
                    else "-"
                ),
            ]
            if "error" not in r
            else [r["kind"], r["vocab"], "-", "failed"] + ["-"] * 8
        )
        for r in rows
    ]
    print(format_table(["step", "vocab", "fused CE", "params", "ms/step", "tok/s", "TFLOP/s", "MFU",
                        "MFU mm", "mem GiB",
                        "first s", "speedup"], body))
    if world() > 1:
        per_gpu = ", ".join(f"{r['kind']} {r['vocab']} {r['tok_per_s_per_gpu']:,.0f}" for r in ok)
        print(f"{world()} processes (one GPU each): tok/s is the total, TFLOP/s and MFU per GPU; "
              f"tok/s per GPU: {per_gpu}")
    for r in rows:
        if "top_kernels" in r:
            print(
                f"\ntop kernels of the project step, vocabulary {r['vocab']} (ms a step, share of"
                " time):"
            )
            print(format_table(["kernel", "ms", "share", "calls"],
                               [[k["kernel"][:80], f"{k['ms_per_step']:.3f}", pct(k["share"]),
                                 f"{k['calls_per_step']:g}"] for k in r["top_kernels"]]))
    if st and "error" not in st:
        f = lambda d: " ".join(f"{k} {v:.2f}" for k, v in d.items())
        print(
            f"\nstretch: {st['steps']} steps of train.py's loop, {st['train_stories']:,} training"
            f" stories (corpus {st['corpus_s']:.1f} s), loop wall {st['loop_wall_s']:.1f} s, first"
            f" step {st['first_step_s'] or 0:.1f} s"
        )
        print(
            f"  device ms/step {f(st['device_step_ms'])} | gaps between steps ms"
            f" {f(st['device_gap_ms'])}"
        )
        print(
            f"  host ms/step {f(st['host_step_ms'])} | device waited {pct(st['device_wait_share'])}"
            f" of the time, {st['tok_per_s'] or 0:,.0f} tok/s"
        )
        print("  evals s " + ", ".join(f"{t:.2f}" for t in st["eval_s"]) + " | snapshot queueing s "
              + ", ".join(f"{t:.3f}" for t in st["snapshot_queue_s"]))
        print("  eval costs: " + ", ".join(f"{k} {v:.2f}" for k, v in st["eval_costs"].items()))


def summary(cfg, rows, device) -> dict:
    """The earlier bench.json's top-level fields (its readers keep working): the project rows, each
    with its vocabulary's reference ms/step and MFU beside it; the device's name."""
    project = [r for r in rows if r["kind"] == "project" and "error" not in r]
    ref = {r["vocab"]: r for r in rows if r["kind"] == "reference" and "error" not in r}
    pct = lambda v: round(100 * v, 1) if v is not None else None  # noqa: E731
    keep = lambda r: dict(
        vocab=r["vocab"],
        params=r["params"],
        ms_per_step=round(r["ms_per_step"], 2),
        tok_per_s=round(r["tok_per_s"]),
        tflops=round(r["tflops"], 1),
        mfu_pct=pct(r["mfu"]),
        mem_gib=round(r["mem_gib"], 1) if r["mem_gib"] is not None else None,
        fused_ce=r["fused_ce"],
        reference_ms_per_step=(
            round(ref[r["vocab"]]["ms_per_step"], 2) if r["vocab"] in ref else None
        ),
        reference_mfu_pct=pct(ref[r["vocab"]]["mfu"]) if r["vocab"] in ref else None,
        speedup_vs_reference=r.get("speedup_vs_reference"),
        **{k: r[k] for k in ("processes", "tok_per_s_per_gpu") if k in r},
    )
    return dict(preset=cfg.preset, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                ctx=cfg.ctx, compile=cfg.compile and device.type == "cuda",
                device_name=device_peak(device)[0], rows=[keep(r) for r in project])


DEFINITIONS = {
    "ms_per_step": (
        "device time of one training step (forward, backward, clip, optimizer), bench_steps mean"
    ),
    "mfu": (
        "model FLOPs per second / the device's dense bf16 peak; model FLOPs per token = 6 * (trunk"
        " matmul parameters + vocab * d_model) + 12 * n_layer * d_model * ctx, real vocabulary"
    ),
    "mfu_matmul": "the same FLOPs / the rate of one 8192^3 bf16 matmul on this device",
    "speedup_vs_reference": "reference ms/step / this row's ms/step, same vocabulary",
    "fused_ce": (
        "the library whose fused kernels computed the project step's head and "
        "cross-entropy (model.fused_ce_library; 'off': plain PyTorch); a variant "
        "fused_ce=off: the step without it"
    ),
    "reference": (
        "plain GPT of the same shape: bf16 autocast, torch.compile(module), fused AdamW, CE on the "
        "logits, grad_accum micro-batches of batch_size accumulated"
    ),
    "device_wait_share": (
        "stretch: sum of the device gaps between consecutive steps / their device span"
    ),
}
TORCHRUN_DEFINITIONS = {
    "tok_per_s": (
        "tokens of the whole step (every process's share) / ms_per_step, the slowest process's"
    ),
    "tok_per_s_per_gpu": "tok_per_s / processes; tflops and mfu are per GPU too",
}


def main(argv=None):
    ap = add_config_args(
        Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--vocab", choices=["corpus", "gpt2", "both"], default="both",
                    help="vocabularies")
    ap.add_argument("--bench-steps", dest="bench_steps", type=int, default=20,
                    help="timed steps per row")
    ap.add_argument("--warmup-steps", type=int, default=None,
                    help="untimed steps after the first (default 5 compiled on CUDA, else 1)")
    ap.add_argument("--variant", action="append", default=[],
                    help="an extra project row: [corpus:|gpt2:]field=value,...")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference rows")
    ap.add_argument("--stretch", action="store_true", help="also time a stretch of train.py's loop")
    ap.add_argument("--stretch-steps", type=int, default=200, help="steps of the stretch")
    ap.add_argument("--stretch-stories", type=int, default=20_000,
                    help="training stories of its corpus")
    ap.add_argument("--profile", action="store_true",
                    help="top-15 device kernels of the project step")
    ap.add_argument("--out", "--json", dest="json", default="",
                    help="write the table, definitions and provenance here (JSON)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        counts = (args.bench_steps, args.stretch_steps, args.stretch_stories)
        if min(counts) < 1 or (args.warmup_steps or 0) < 0:
            raise UsageError("--bench-steps, --stretch-steps, --stretch-stories must be >= 1, "
                             "--warmup-steps >= 0")
        cfg = config_from_args(args)
        fix_kernels(cfg)  # --deterministic true: its cost
        variants = [parse_variant(cfg, v) for v in args.variant]
        if args.json:
            check_writable(os.path.dirname(os.path.abspath(args.json)))
        device = join_processes(cfg.device) if launched() else pick_device(cfg.device)
        if world() > 1 and args.stretch:
            raise UsageError(
                "--stretch times train.py's loop in one process: run it without torchrun"
            )
        if cfg.batch_size % world():
            raise UsageError(
                f"batch_size {cfg.batch_size} does not split into {world()} equal shares"
            )
        vocabs = vocabularies(cfg, args.vocab)
        if args.warmup_steps is None:
            args.warmup_steps = 5 if (cfg.compile and device.type == "cuda") else 1
    except UsageError as e:
        fail(str(e))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    ceiling = matmul_ceiling(device)
    rows = []
    for which, vocab in vocabs:
        group = [safe_row("project", project_step, cfg, vocab, device, args, ceiling)]
        group += [safe_row(f"project {label}", project_step, vcfg, vocab, device, args, ceiling)
                  for only, label, vcfg in variants if only in (None, which)]
        if not args.no_reference:
            group.append(safe_row("reference", reference_step, cfg, vocab, device, args, ceiling))
        ref_ms = group[-1].get("ms_per_step", math.nan) if not args.no_reference else math.nan
        for r in group:
            if "ms_per_step" in r:
                r["speedup_vs_reference"] = ref_ms / r["ms_per_step"]
        rows += group
    st = None
    if args.stretch:
        try:
            st = stretch(cfg, args, device)
        except Exception as e:
            print(f"stretch failed: {_why(e)}")
            st = dict(error=_why(e, 500))
    if rank() == 0:
        print_report(cfg, rows, ceiling, st, device)
    if args.json and rank() == 0:
        defs = {**DEFINITIONS, **TORCHRUN_DEFINITIONS} if world() > 1 else DEFINITIONS
        write_result(
            args.json,
            "bench",
            cfg.to_dict(),
            defs,
            dict(rows=rows, matmul_tflops=ceiling / 1e12 if ceiling else None, stretch=st),
            t0,
            argv=argv,
            device=device,
            script="bench.py",
            **summary(cfg, rows, device),
        )
        print(f"wrote {args.json}")
    leave_processes()


if __name__ == "__main__":
    main()
