"""Time the real training step (forward, backward, clip, optimizer) and print a table.

    python bench.py                         # paper preset, corpus vocabulary and GPT-2 vocabulary
    python bench.py --preset tiny --bench-steps 5   # quick look on a CPU

MFU = model FLOPs per second / the device's dense bf16 peak. Model FLOPs per token are
6 * (trunk matmul parameters + vocabulary * d_model for the tied head) + 12 * n_layer * d_model * ctx
(attention scores and values, forward and backward, causal mask not discounted).
"""
from __future__ import annotations

import argparse
import time

import torch

from common import pick_device
from config import Parser, UsageError, add_config_args, config_from_args, fail
from model import GPT, GPT2_VOCAB, losses, trunk_keys
from train import make_optimizer, train_step

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12}


def device_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return device.type, None
    name = torch.cuda.get_device_name(device)
    return name, next((v for k, v in PEAK_BF16.items() if k in name), None)


def flops_per_token(model: GPT) -> float:
    d = model.wte.weight.shape[1]
    trunk = sum(model.get_parameter(k).numel() for k in trunk_keys(model.n_layer))
    return 6 * (trunk + model.vocab_size * d) + 12 * model.n_layer * d * model.ctx


def bench(cfg, vocab_size: int, steps: int, warmup: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = GPT.from_config(cfg, vocab_size).to(device)
    opt = make_optimizer(model, cfg, device)
    fwd = torch.compile(losses, dynamic=False) if (cfg.compile and device.type == "cuda") else losses
    g = torch.Generator().manual_seed(0)
    shape = (cfg.batch_size, cfg.ctx)
    # random tokens; one probe position per 10 rows (the loss mask path is exercised)
    batches = [(torch.randint(0, vocab_size, shape, generator=g), torch.randint(0, vocab_size, shape, generator=g),
                torch.where(torch.arange(cfg.batch_size) % 10 == 0, cfg.ctx - 1, -1)) for _ in range(cfg.grad_accum)]
    batches = [tuple(t.to(device) for t in b) for b in batches]

    def step():  # the training step itself (train.train_step), at the peak learning rate and lambda 2
        train_step(model, opt, batches, cfg, cfg.lr, 2.0, fwd)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    dt = (time.perf_counter() - t0) / steps
    tokens = cfg.batch_size * cfg.grad_accum * cfg.ctx
    name, peak = device_peak(device)
    achieved = flops_per_token(model) * tokens / dt
    return dict(vocab=vocab_size, params=sum(p.numel() for p in model.parameters()), ms_per_step=dt * 1e3,
                tok_per_s=tokens / dt, tflops=achieved / 1e12, mfu=achieved / peak if peak else None, device=name,
                mem_gib=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None)


def main(argv=None):
    ap = add_config_args(Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    ap.add_argument("--vocab", choices=["corpus", "gpt2", "both"], default="both", help="vocabulary size(s) to time")
    ap.add_argument("--bench-steps", dest="bench_steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=5, help="untimed steps first (compilation)")
    args = ap.parse_args(argv)
    try:
        cfg = config_from_args(args)
        device = pick_device(cfg.device)
        vocabs = []
        if args.vocab in ("corpus", "both"):
            from dataset import load_corpus
            vocabs.append(load_corpus(cfg).vocab_size)
        if args.vocab in ("gpt2", "both"):
            vocabs.append(GPT2_VOCAB)
    except UsageError as e:
        fail(str(e))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    rows = [bench(cfg, v, args.bench_steps, args.warmup_steps, device) for v in vocabs]
    print(f"preset {cfg.preset}: batch {cfg.batch_size} x {cfg.grad_accum} x {cfg.ctx} tokens, compile={cfg.compile and device.type == 'cuda'}, device {rows[0]['device']}")
    print(f"{'vocab':>7} {'params':>12} {'ms/step':>9} {'tok/s':>11} {'TFLOP/s':>8} {'MFU':>6} {'mem GiB':>8}")
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        mem = f"{r['mem_gib']:.1f}" if r["mem_gib"] is not None else "n/a"
        print(f"{r['vocab']:>7} {r['params']:>12,} {r['ms_per_step']:>9.1f} {r['tok_per_s']:>11,.0f} {r['tflops']:>8.1f} {mfu:>6} {mem:>8}")


if __name__ == "__main__":
    main()
