"""Full fine-tuning vs LoRA: gradient geometry, update alignment and layer-wise activity, on our
own base model or on any GPT-2-family Hugging Face model.

    python finetune_geometry.py --base runs/seed42      # paper: the seed-42 final weights (GPU, ~2 min)
    python finetune_geometry.py --hf_model distilgpt2   # a Hugging Face model whose weights are at hand
    python finetune_geometry.py --preset tiny           # CPU, minutes: from runs/tiny_seed42

Task: the long-gap probe (gaps U{ood_gap_min..ood_gap_max} of the base config, 80-200 in the paper
preset) in a fraction p_task of the sequences, LM text in the others; loss L_LM + lambda_task *
L_probe; metric p_ood on the base run's fixed eval set. Batch t is dataset.get_batch of step
(base steps + t) with the long gaps: a function of (seed, t), the same for every run, and never a
batch the base model trained on. On a Hugging Face model the same stories and probe are mapped to
its vocabulary: each word type is tokenized once by the model's tokenizer (a leading space unless
it is punctuation) and the codewords are 512 single-token uppercase words of it; without a
tokenizer in the model folder the word ids are used as token ids (vocab_size must hold them).

Runs, all from the base weights on the same batches, AdamW (0.9, 0.999), no weight decay, linear
warmup then constant lr, global clip on the trained parameters: full fine-tuning (every parameter)
at lr_full, whose trunk updates dW_full(t) are kept at the alignment steps; LoRA through peft on
the trunk matrices (per block q/k/v, attention output, MLP up, MLP down; B = 0 at the start) at
lr_lora, rank `rank`, scale alpha / rank; the lr sweep of both methods; the rank sweep of LoRA
(alpha = scale * r, so the rank is the only change).

Gradients: full fine-tuning, dL/dW of each trunk matrix; LoRA, the effective weight gradient
scale * (dL/dB A + B dL/dA), the first-order change of W0 + scale * B A that a unit gradient step
on (A, B) makes. Projections on k fixed random unit directions per layer (a layer = one block's
four matrices) and for the whole trunk (one Gaussian draw per matrix, normalized per group).
LoRA's update of a matrix is scale * B A; the alignment is its cosine with dW_full(t) of the same
matrix, step and data, per matrix, per layer and overall; beside it the random-direction level
E|cos| (sqrt(2/(pi D)) at large D) and the rank-r ceiling (the cosine of dW_full(t) with its best
rank-r approximation, the largest any rank-r update can reach).

Writes <out>/finetune_{baseline,lr,full_vs_lora,alignment,activity,rank,table}.json (results
schema: experiment, config, definitions, results, provenance), finetune_table.md and the figures
finetune_{gradients,alignment,activity,lr,rank}.png. <out> defaults to <base>/analysis, where
collect_results.py finds them (runs/hf_<name>/analysis for --hf_model); --results DIR also copies
them there.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import re
import sys
import time
from dataclasses import dataclass, fields

import numpy as np
import torch

from common import (autocast, check_writable, cli, copy_results, exact_fp32, fmt_g, pick_device, pyplot,
                    save_figure, write_result, write_text)
from config import Parser, UsageError, make_config
from model import losses
from experiments import FT_EXPERIMENTS as EXPERIMENTS, FT_STUDY as STUDY, load_finetune as load_results

KINDS = ("qkv", "attn_out", "mlp_up", "mlp_down")          # canonical order of a block's trunk matrices
OURS = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")      # their module names in model.GPT
HF = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # and in Hugging Face GPT-2 blocks
GRAD_KEYS = ("proj_abs_mean", "proj_var", "grad_norm_mean", "grad_norm_var")


# ----------------------------------------------------------------------------- config
@dataclass
class FTConfig:
    preset: str = "paper"        # paper | tiny (CPU)
    steps: int = 300             # fine-tuning steps of every run
    batch_size: int = 32         # sequences per step
    p_task: float = 0.5          # probability that a sequence is a long-gap probe sequence
    lambda_task: float = 1.0     # weight of the probe loss
    lr_full: float = 1e-4        # full fine-tuning learning rate (main run)
    lr_lora: float = 1e-3        # LoRA learning rate (main run and rank sweep)
    warmup: int = 30             # linear warmup steps, then constant
    grad_clip: float = 1.0       # global norm clip of the trained parameters; 0 disables
    rank: int = 8                # LoRA rank of the main run
    alpha: float = 16.0          # LoRA alpha of the main run (scale = alpha / rank)
    lrs: str = "1e-5,3e-5,1e-4,3e-4,1e-3"  # lr sweep of both methods ("" skips it)
    ranks: str = "1,2,4,8,16,64"           # rank sweep ("" skips it)
    n_dirs: int = 8              # k fixed random unit directions
    align_every: int = 20        # alignment and activity every this many steps (and at the end)
    eval_every: int = 100        # val loss, p_in, p_ood every this many steps (and at 0 and the end)
    n_eval_probe: int = 0        # probe sequences per eval set; 0: the base config's
    n_eval_lm: int = 0           # validation LM windows; 0: the base config's
    seed: int = 0                # LoRA init and random directions (the data follow the base seed)
    hf_stories: int = 0          # --hf_model: training stories; 0: 20,000 (tiny: the preset's)
    cache_dir: str = ".cache"    # --hf_model: tokenized corpus cache


PRESETS = {
    "paper": {},
    # seconds a run on a CPU with runs/tiny_seed42 (2 layers, d_model 64)
    "tiny": dict(steps=60, batch_size=8, warmup=6, align_every=10, eval_every=20),
}


def ft_config(**over) -> FTConfig:
    preset = over.get("preset", "paper")
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    ft = FTConfig(**{**PRESETS[preset], **over})
    checks = [(ft.steps > 0 and ft.batch_size > 0, "steps and batch_size must be > 0"),
              (0 <= ft.p_task <= 1 and ft.lambda_task >= 0, "need p_task in [0, 1] and lambda_task >= 0"),
              (ft.lr_full > 0 and ft.lr_lora > 0, "learning rates must be > 0"),
              (ft.rank > 0 and ft.alpha > 0 and ft.n_dirs > 0, "rank, alpha and n_dirs must be > 0"),
              (ft.align_every > 0 and ft.eval_every > 0 and ft.warmup >= 0,
               "need align_every > 0, eval_every > 0 and warmup >= 0")]
    for ok, msg in checks:
        if not ok:
            raise UsageError(msg)
    parse_list(ft.lrs, "lrs", float)
    parse_list(ft.ranks, "ranks", int)
    return ft


def parse_list(s: str, name: str, kind):
    try:
        out = [kind(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--{name}: not a comma-separated list of {kind.__name__}s: {s!r}")
    if any(v <= 0 for v in out):
        raise UsageError(f"--{name}: values must be > 0")
    return out


# ----------------------------------------------------------------------------- math (arrays in, numbers out)
def random_level(D: int) -> float:
    """E|<v, u>| for a fixed unit v and u uniform on the unit sphere of R^D: Gamma(D/2) / (sqrt(pi)
    Gamma((D+1)/2)), which is sqrt(2/(pi D)) at large D (2/pi at D = 2, 1/2 at D = 3)."""
    return math.exp(math.lgamma(D / 2) - math.lgamma((D + 1) / 2)) / math.sqrt(math.pi)


def projection_stats(P: np.ndarray, norms: np.ndarray, D: int) -> dict:
    """Statistics of the signed projections P (T steps x k directions) of gradients whose norms are
    `norms` (T,) on fixed random unit directions of a D-dimensional group."""
    P, norms = np.asarray(P, np.float64), np.asarray(norms, np.float64)
    dd = 1 if len(norms) > 1 else 0
    level, mean, sd = random_level(D), float(norms.mean()), float(norms.std(ddof=dd))
    return dict(
        grad_norm_mean=mean, grad_norm_sd=sd, grad_norm_var=sd ** 2,
        grad_norm_cv=sd / mean if mean > 0 else None,
        proj_abs_mean=float(np.abs(P).mean()), proj_abs_sd=float(np.abs(P).std(ddof=dd)),
        proj_var=float(P.var(0, ddof=dd).mean()), proj_abs_mean_null=mean * level,
        cos_abs_mean=float((np.abs(P) / np.maximum(norms, 1e-30)[:, None]).mean()), cos_null=level, D=int(D))


def group_series(sq: np.ndarray, dots: np.ndarray, znorm2: np.ndarray, idx) -> tuple[np.ndarray, np.ndarray]:
    """Gradient norms (T,) and projections (T, k) of the group of matrices `idx`, from the per-matrix
    squared norms sq (T, M), dots <g_m, z_mj> (T, M, k) and squared direction norms znorm2 (M, k):
    the group's unit direction j is its matrices' z_mj side by side, normalized."""
    idx = list(idx)
    return np.sqrt(sq[:, idx].sum(1)), dots[:, idx].sum(1) / np.sqrt(znorm2[idx].sum(0))


def group_cos(dot: np.ndarray, a_sq: np.ndarray, b_sq: np.ndarray, idx) -> np.ndarray:
    """cos between two updates of the group `idx` from per-matrix <a, b>, ||a||^2, ||b||^2 (..., M)."""
    idx = list(idx)
    den = np.sqrt(a_sq[..., idx].sum(-1) * b_sq[..., idx].sum(-1))
    return np.where(den > 0, dot[..., idx].sum(-1) / np.where(den > 0, den, 1), np.nan)


def rank_ceiling(sv2: list[np.ndarray], r: int, idx) -> float:
    """max cos of a group's update with any update of rank <= r per matrix: sqrt(sum_m sum_{i<r}
    sigma_mi^2 / sum_m sum_i sigma_mi^2) (Eckart-Young); sv2[m] the squared singular values, descending."""
    top = sum(float(sv2[m][:r].sum()) for m in idx)
    tot = sum(float(sv2[m].sum()) for m in idx)
    return math.sqrt(top / tot) if tot > 0 else float("nan")


def depth_centroid(values) -> float:
    """Activity-weighted mean depth in [0, 1] (0 = first layer, 1 = last); 0.5 for a flat profile."""
    v = np.asarray(values, np.float64)
    if not v.sum() > 0:
        return float("nan")
    return float((v * np.arange(len(v))).sum() / v.sum() / max(1, len(v) - 1))


# ----------------------------------------------------------------------------- LoRA through peft
def require(name: str):
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError:
        raise UsageError(f"finetune_geometry.py needs the `{name}` package (pip install {name})")


def add_lora(model, names: list[str], rank: int, alpha: float, fan_in_fan_out: bool, seed: int):
    """peft LoRA on the modules `names` of `model` (modified in place; the PeftModel is returned)."""
    peft = require("peft")
    torch.manual_seed(seed)  # A's init
    cfg = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(names), lora_dropout=0.0, bias="none",
                          fan_in_fan_out=fan_in_fan_out)
    return peft.get_peft_model(model, cfg)


def _lora(layer):
    a = layer.active_adapters[0]
    return layer.lora_A[a].weight, layer.lora_B[a].weight, layer.scaling[a], layer.fan_in_fan_out


def lora_delta(layer) -> torch.Tensor:
    """scale * B A of a peft LoRA layer, in the layout of its base weight."""
    A, B, s, fan = _lora(layer)
    d = s * (B @ A)
    return d.T if fan else d


def lora_grad(layer) -> torch.Tensor:
    """Effective weight gradient scale * (dL/dB A + B dL/dA), in the layout of the base weight."""
    A, B, s, fan = _lora(layer)
    g = s * (B.grad @ A + B @ A.grad)
    return g.T if fan else g


def _weight(layer) -> torch.Tensor:
    return layer.base_layer.weight if hasattr(layer, "base_layer") else layer.weight


# ----------------------------------------------------------------------------- base models and task data
@dataclass
class Base:
    model: torch.nn.Module       # fp32, on the device
    names: list[str]             # trunk matrices (module names), canonical order
    layer: list[int]             # their layer (block) index
    kind: list[str]              # qkv | attn_out | mlp_up | mlp_down
    hf: bool                     # Hugging Face Conv1D layers (weights stored transposed)
    corpus: object               # dataset.Corpus in the model's token ids
    cfg: object                  # config.Config of the task data (seed, ctx, gaps, eval sizes)
    info: dict                   # what the base is, for the records

    @property
    def n_layer(self) -> int:
        return max(self.layer) + 1

    @property
    def numel(self) -> list[int]:
        return [_weight(self.model.get_submodule(n)).numel() for n in self.names]

    def label(self, m: int) -> str:
        return f"layer{self.layer[m]}.{self.kind[m]}"

    def groups(self) -> dict[str, list[int]]:
        g = {f"layer{l}": [i for i, x in enumerate(self.layer) if x == l] for l in range(self.n_layer)}
        g["overall"] = list(range(len(self.names)))
        return g


def our_base(path: str, ft: FTConfig, device) -> Base:
    """The last snapshot of a finished run folder, its corpus (identity checked) and the long-gap task."""
    import runs
    from model import trunk_keys
    runs.run_config(path)  # a missing or unreadable run folder stops here, before anything is built
    require("peft")
    traj, cfg, corpus, state = runs.load_run(path, device=device)
    step = traj.steps[-1]
    model = runs.load_model(traj, cfg, corpus, step)
    names = [k[: -len(".weight")] for k in trunk_keys(cfg.n_layer)]  # blocks.<l>.attn.qkv, ...
    recorded = next((r.get("p_ood") for r in runs.read_metrics(path) if r.get("step") == step), None)
    info = dict(kind="ours", run=path, step=step, snapshot=traj.paths[step], corpus=corpus.description,
                recorded_p_ood=recorded, run_state=state)
    return Base(model, names, [int(n.split(".")[1]) for n in names],
                [KINDS[OURS.index(n.split(".", 2)[2])] for n in names], False, corpus,
                _task_cfg(cfg, ft, cfg.steps + cfg.data_offset), info)


def _task_cfg(cfg, ft: FTConfig, data_offset: int):
    """The config whose get_batch gives the task batches: long gaps, p_task probe sequences, the
    fine-tuning batch size, the data stream continued past the base run's steps."""
    return dataclasses.replace(cfg, p_probe=ft.p_task, gap_min=cfg.ood_gap_min, gap_max=cfg.ood_gap_max,
                               batch_size=ft.batch_size, grad_accum=1, data_offset=data_offset,
                               n_eval_probe=ft.n_eval_probe or cfg.n_eval_probe,
                               n_eval_lm=ft.n_eval_lm or cfg.n_eval_lm)


class HFLM(torch.nn.Module):
    """A Hugging Face causal LM with model.GPT's call: logits (B, T, V), or (B, V) at `positions`."""

    def __init__(self, hf):
        super().__init__()
        self.hf, self.vocab_size = hf, hf.config.vocab_size

    def forward(self, idx, positions=None):
        h = self.hf.base_model(input_ids=idx, use_cache=False).last_hidden_state
        if positions is not None:
            h = h[torch.arange(h.size(0), device=h.device), positions]  # the head only where it is read
        return self.hf.get_output_embeddings()(h)[..., : self.vocab_size]


def hf_base(name: str, ft: FTConfig, device) -> Base:
    _offline_unless_reachable(name)
    transformers = require("transformers")
    require("peft")
    hf = _hf_load(transformers.AutoModelForCausalLM, name)
    try:
        tok = transformers.AutoTokenizer.from_pretrained(name)
    except Exception:
        tok = None
    if tok is not None and len(tok) < 256:
        tok = None  # a bare model folder (transformers may make an empty tokenizer): word ids are token ids
    for m in hf.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0  # dropout off, as in our model: the runs differ only by their parameterization
    model = HFLM(hf.float())
    found = []
    for n, _ in model.named_modules():
        m = re.fullmatch(r".*\bh\.(\d+)\.(" + "|".join(map(re.escape, HF)) + ")", n)
        if m:
            found.append((int(m.group(1)), HF.index(m.group(2)), n))
    if not found:
        raise UsageError(f"{name!r} is not a GPT-2-family model (no h.<l>.attn.c_attn / mlp.c_fc modules)")
    found.sort()
    n_pos = getattr(hf.config, "n_positions", None) or getattr(hf.config, "max_position_embeddings", 1024)
    base = make_config(preset=ft.preset)
    stories = ft.hf_stories or (20_000 if ft.preset == "paper" else base.train_stories)
    cfg = make_config(preset=ft.preset, ctx=min(base.ctx, n_pos), n_train_stories=stories,
                      cache_dir=ft.cache_dir, progress=False)
    corpus = hf_corpus(cfg, tok, hf.config.vocab_size)
    info = dict(kind="hf", model=name, tokenizer=tok is not None, corpus=corpus.description,
                recorded_p_ood=None)
    return Base(model.to(device), [n for _, _, n in found], [l for l, _, _ in found],
                [KINDS[k] for _, k, _ in found], True, corpus, _task_cfg(cfg, ft, 0), info)


def _hf_load(auto, name: str):
    try:
        return auto.from_pretrained(name)
    except Exception as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        why = "not a model folder, not in the local cache, and the hub cannot be reached" if offline \
            else str(e).splitlines()[0][:160] if str(e) else ""
        raise UsageError(f"cannot load the Hugging Face model {name!r}: {why} ({type(e).__name__})")


def _offline_unless_reachable(name: str):
    """No network: the hub client would retry for a minute; switch it to the local cache at once."""
    import socket
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not offline and not os.path.isdir(name):
        try:
            socket.create_connection(("huggingface.co", 443), timeout=3).close()
        except OSError:
            offline = True
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"  # read when huggingface_hub is imported ...
        if "huggingface_hub.constants" in sys.modules:  # ... or, imported already, the switch it read
            sys.modules["huggingface_hub.constants"].HF_HUB_OFFLINE = True


def hf_corpus(cfg, tok, V: int):
    """Our stories and probe in the token ids of a Hugging Face model (see the module docstring)."""
    from types import SimpleNamespace
    from dataset import Corpus, load_corpus
    words = load_corpus(cfg)
    if tok is None:
        if V < words.vocab_size:
            raise UsageError(f"the model has no tokenizer and its vocabulary ({V}) cannot hold the corpus's "
                             f"{words.vocab_size} word ids")
        return words
    table = [tok.encode(w if not w[0].isalnum() else " " + w, add_special_tokens=False)
             for w in words.tok.itos]
    eot = tok.eos_token_id if tok.eos_token_id is not None else V - 1
    table[words.tok.eot] = [eot]
    lens = np.array([len(t) for t in table])
    flat = np.array([i for t in table for i in t], np.int64)
    start = np.concatenate([[0], np.cumsum(lens)[:-1]])

    def remap(stream):  # token ids of each word, concatenated
        s = np.asarray(stream, np.int64)
        n = lens[s]
        return flat[np.repeat(start[s] - np.concatenate([[0], np.cumsum(n)[:-1]]), n) + np.arange(n.sum())]

    def is_code(i):  # a single-token uppercase word (space-prefixed, 3+ letters)
        s = tok.decode([i])
        return s.startswith(" ") and s[1:].isalpha() and s[1:].isupper() and len(s) >= 4
    cands = [i for i in range(V) if is_code(i)]
    if len(cands) < cfg.n_codewords:
        raise UsageError(f"the tokenizer has {len(cands)} single-token uppercase words, the probe needs "
                         f"{cfg.n_codewords}")
    codes = sorted(np.random.default_rng(cfg.seed).choice(cands, cfg.n_codewords, replace=False).tolist())
    templates = [tuple([u for t in part for u in ([-1] if t == -1 else table[t])] for part in pair)
                 for pair in words.templates]
    hft = SimpleNamespace(vocab_size=V, codeword_ids=codes, eot=eot, name="hf")
    return Corpus(remap(words.train), remap(words.val), hft, templates,
                  f"{words.description}, re-tokenized by the model's tokenizer")


def task_data(base: Base, ft: FTConfig, device):
    """Every run's batches (steps x B x ctx on the device) and the fixed eval sets."""
    from dataset import get_batch, make_eval_sets
    xs, ys, ps = zip(*(get_batch(base.corpus, base.cfg, t, 0) for t in range(ft.steps)))
    return (torch.stack(xs).to(device), torch.stack(ys).to(device), torch.stack(ps).to(device),
            make_eval_sets(base.corpus, base.cfg))


def random_dirs(base: Base, k: int, seed: int, device) -> tuple[list[torch.Tensor], np.ndarray]:
    """k Gaussian vectors per trunk matrix (k x numel, CPU-generated so every device gets the same)
    and their squared norms (M x k)."""
    Z = [torch.randn(k, n, generator=torch.Generator().manual_seed(seed * 1_000_003 + i)).to(device)
         for i, n in enumerate(base.numel)]
    return Z, torch.stack([z.square().sum(1) for z in Z]).double().cpu().numpy()


# ----------------------------------------------------------------------------- one fine-tuning run
def finetune(base: Base, data, Z, ft: FTConfig, method: str, lr: float, rank: int = 0, alpha: float = 0.0,
             ref: dict | None = None, keep: bool = False, bar=None, eval0: dict | None = None) -> dict:
    """One run from the base weights. Returns per-step losses and gradient statistics, per alignment
    step the squared norms of the updates, their dots with `ref`'s full updates, and the evals;
    `keep` also returns the updates (and their squared singular values) for later runs to align to."""
    import train
    dev = data[0].device
    model = copy.deepcopy(base.model)
    if method == "lora":
        add_lora(model, base.names, rank, alpha, base.hf, ft.seed)
    model.train()
    layers = [model.get_submodule(n) for n in base.names]
    W0 = [_weight(base.model.get_submodule(n)).detach() for n in base.names]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                            **({"fused": True} if dev.type == "cuda" else {"foreach": True}))
    S, M, k = ft.steps, len(layers), Z[0].shape[0]
    align = set(range(ft.align_every, S + 1, ft.align_every)) | {S}
    evals = set(range(ft.eval_every, S + 1, ft.eval_every)) | {S}
    gstat, loss_t = torch.zeros(S, M, 1 + k, device=dev), torch.zeros(S, 3, device=dev)
    out = dict(method=method, lr=lr, rank=rank, alpha=alpha, scale=alpha / rank if rank else None,
               trainable=sum(p.numel() for p in params), align_steps=[], delta_sq=[], ref_dot=[], ref_sq=[],
               deltas={}, sv2=[], evals=[dict(step=0, **eval0)] if eval0 else [], diverged_at=None)
    x, y, pos, ev = data
    for t in range(S):
        with autocast(dev):
            L = losses(model, x[t], y[t], pos[t], ft.lambda_task)
        L[0].backward()
        with torch.no_grad():  # statistics stay on the device: no host sync per step
            loss_t[t] = torch.stack([l.detach().float() for l in L])
            for i, layer in enumerate(layers):
                g = (lora_grad(layer) if method == "lora" else layer.weight.grad).reshape(-1)
                gstat[t, i, 0] = g.square().sum()
                gstat[t, i, 1:] = Z[i] @ g
        if ft.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, ft.grad_clip)
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (t + 1) / ft.warmup) if ft.warmup else lr
        opt.step()
        opt.zero_grad(set_to_none=True)
        if bar is not None:
            bar.update(1)
        s = t + 1
        if s in align or s in evals:
            bad = (~torch.isfinite(loss_t[:s]).all(1)).nonzero()  # a host sync, only at these steps
            if len(bad):
                out["diverged_at"] = int(bad[0])
                break
        if s in align:
            _record(out, s, layers, W0, method, ref, keep)
        if s in evals:
            out["evals"].append(dict(step=s, **train.evaluate(model, ev, dev, batch_size=64)))
    n = out["diverged_at"] if out["diverged_at"] is not None else S
    out["loss"] = loss_t[:n].cpu().double().numpy()
    out["grad_sq"] = gstat[:n, :, 0].cpu().double().numpy()
    out["grad_dots"] = gstat[:n, :, 1:].cpu().double().numpy()
    for key in ("delta_sq", "ref_dot", "ref_sq"):
        out[key] = torch.stack(out[key]).cpu().double().numpy() if out[key] else np.zeros((0, M))
    out["sv2"] = [np.stack([s[m] for s in out["sv2"]]) for m in range(M)] if out["sv2"] else []
    return out


@torch.no_grad()
def _record(out: dict, s: int, layers, W0, method: str, ref: dict | None, keep: bool):
    deltas = [lora_delta(l) if method == "lora" else l.weight - w for l, w in zip(layers, W0)]
    out["align_steps"].append(s)
    out["delta_sq"].append(torch.stack([d.square().sum() for d in deltas]))
    if ref is not None and s in ref["deltas"]:
        out["ref_dot"].append(torch.stack([(d * r).sum() for d, r in zip(deltas, ref["deltas"][s])]))
        out["ref_sq"].append(torch.stack([r.square().sum() for r in ref["deltas"][s]]))
    if keep:
        out["deltas"][s] = [d.detach().clone() for d in deltas]
        out["sv2"].append([torch.linalg.svdvals(d.float()).square().cpu().double().numpy() for d in deltas])


# ----------------------------------------------------------------------------- experiments from the runs
def grad_summary(run: dict, base: Base, znorm2: np.ndarray, series: bool = False) -> dict:
    """projection_stats per layer and overall (and, with `series`, the per-step values)."""
    numel, out = base.numel, {}
    for g, idx in base.groups().items():
        norms, P = group_series(run["grad_sq"], run["grad_dots"], znorm2, idx)
        out[g] = projection_stats(P, norms, sum(numel[i] for i in idx)) if len(norms) else None
        if series and g == "overall":
            groups = base.groups()
            layer_norms = [group_series(run["grad_sq"], run["grad_dots"], znorm2, groups[f"layer{l}"])[0]
                           for l in range(base.n_layer)]
            out["series"] = dict(grad_norm=_round(norms), proj=_round(P),
                                 layer_grad_norm=list(map(_round, layer_norms)))
    return out


def _round(a: np.ndarray) -> list:
    """Per-step series to 5 significant digits (they feed histograms; keeps the JSON small)."""
    return np.vectorize(lambda v: float(f"{v:.5g}"), otypes=[float])(a).tolist() if np.size(a) else []


def _final(c: np.ndarray):
    return float(c[-1]) if len(c) else None


def alignment_summary(run: dict, full: dict, base: Base, steps_total: int) -> dict:
    """cos(dW_full(t), scale B A(t)) per matrix, layer and overall; random level; rank-r ceiling."""
    numel = base.numel
    steps = run["align_steps"][: len(run["ref_dot"])]
    late = [i for i, s in enumerate(steps) if s > steps_total / 2]
    fidx = [full["align_steps"].index(s) for s in steps]
    dot, f_sq, l_sq = run["ref_dot"], run["ref_sq"], run["delta_sq"][: len(steps)]
    out = dict(steps=steps, groups={}, matrices={})
    for g, idx in base.groups().items():
        c = group_cos(dot, f_sq, l_sq, idx)
        ceil = [rank_ceiling([full["sv2"][m][j] for m in range(len(numel))], run["rank"], idx) for j in fidx]
        out["groups"][g] = dict(cos=c.tolist(), late_mean=float(np.nanmean(c[late])) if late else None,
                                final=_final(c), random_level=random_level(sum(numel[i] for i in idx)),
                                ceiling=ceil, ceiling_final=ceil[-1] if ceil else None)
    for m in range(len(numel)):
        c = group_cos(dot, f_sq, l_sq, [m])
        out["matrices"][base.label(m)] = dict(cos=c.tolist(), final=_final(c),
                                              random_level=random_level(numel[m]))
    return out


def activity(run: dict, base: Base) -> dict:
    """||dW|| / ||W0|| per layer (block) at every alignment step, shares of ||dW||^2, the depth centroid."""
    w0 = np.array([float(_weight(base.model.get_submodule(n)).detach().double().square().sum())
                   for n in base.names])
    layers = [base.groups()[f"layer{l}"] for l in range(base.n_layer)]
    ratio = np.array([[math.sqrt(d[i].sum() / w0[i].sum()) for i in layers] for d in run["delta_sq"]])
    if not len(ratio):
        return dict(steps=[], ratio=[], final=None, share=None, centroid=None, argmax_layer=None)
    last = run["delta_sq"][-1]
    share = np.array([last[i].sum() for i in layers]) / max(last.sum(), 1e-300)
    return dict(steps=run["align_steps"], ratio=ratio.tolist(), final=ratio[-1].tolist(),
                share=share.tolist(),
                centroid=depth_centroid(ratio[-1]), argmax_layer=int(ratio[-1].argmax()),
                overall=math.sqrt(last.sum() / w0.sum()),
                per_matrix={base.label(m): math.sqrt(last[m] / w0[m]) for m in range(len(w0))})


def run_row(run: dict, base: Base, znorm2: np.ndarray) -> dict:
    """The numbers of one run that the lr and rank tables show."""
    n = len(run["loss"])
    tail = run["loss"][max(0, n - max(1, n // 10)):].mean(0) if n else [None] * 3
    ev = run["evals"][-1] if run["evals"] else {}
    gs = grad_summary(run, base, znorm2)["overall"] or {}
    every = max(1, n // 50)
    return dict(method=run["method"], lr=run["lr"], rank=run["rank"] or None, alpha=run["alpha"] or None,
                scale=run["scale"], trainable=run["trainable"], diverged_at=run["diverged_at"], steps_done=n,
                final_train_loss=tail[0], final_lm_loss=tail[1], final_probe_loss=tail[2],
                val_loss=ev.get("val_loss"), p_in=ev.get("p_in"), p_ood=ev.get("p_ood"),
                best_p_ood=max((e["p_ood"] for e in run["evals"]), default=None),
                **{k: gs.get(k) for k in (*GRAD_KEYS, "grad_norm_cv")},
                loss_curve=dict(step=list(range(1, n + 1, every)), loss=run["loss"][::every, 0].tolist()),
                evals=run["evals"])


def spearman(a, b) -> float | None:
    ok = [i for i in range(len(a)) if a[i] is not None and b[i] is not None and math.isfinite(b[i])]
    if len(ok) < 3:
        return None
    ra, rb = (np.argsort(np.argsort([v[i] for i in ok])) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _ratio(a: dict | None, b: dict | None, k: str):
    return a[k] / b[k] if a and b and a.get(k) is not None and b.get(k) else None


# ----------------------------------------------------------------------------- the study
def study(base: Base, ft: FTConfig, device, progress: bool) -> tuple[dict, dict]:
    """All runs; returns ({experiment: results}, {experiment: definitions})."""
    import train
    from tqdm import tqdm
    data = task_data(base, ft, device)
    Z, znorm2 = random_dirs(base, ft.n_dirs, ft.seed, device)
    eval0 = train.evaluate(base.model, data[3], device, batch_size=64)
    lrs, ranks = parse_list(ft.lrs, "lrs", float), parse_list(ft.ranks, "ranks", int)
    main_full, main_lora = ("full", ft.lr_full, 0), ("lora", ft.lr_lora, ft.rank)
    plan = [main_full, main_lora, *[("full", lr, 0) for lr in lrs], *[("lora", lr, ft.rank) for lr in lrs],
            *[("lora", ft.lr_lora, r) for r in ranks]]
    todo = list(dict.fromkeys(plan))  # each (method, lr, rank) once; the main full run first
    bar = tqdm(total=len(todo) * ft.steps, disable=not progress, dynamic_ncols=True, desc="fine-tuning")
    runs, t0 = {}, time.perf_counter()
    for method, lr, r in todo:
        bar.set_description(f"{method} lr {lr:g}" + (f" r {r}" if r else ""))
        runs[(method, lr, r)] = finetune(base, data, Z, ft, method, lr, r, ft.alpha / ft.rank * r,
                                         ref=runs.get(main_full), keep=not runs, bar=bar, eval0=eval0)
    bar.close()
    full, lora = runs[main_full], runs[main_lora]
    res = dict(base_eval=eval0, steps=ft.steps, wall_runs_s=round(time.perf_counter() - t0, 1))
    out = dict(baseline=dict(res, full=grad_summary(full, base, znorm2, series=True)))
    fv = dict(res, full=out["baseline"]["full"], lora=grad_summary(lora, base, znorm2, series=True))
    fv["ratio_full_over_lora"] = {g: {k: _ratio(fv["full"][g], fv["lora"][g], k) for k in GRAD_KEYS}
                                  for g in base.groups()}
    out["full_vs_lora"] = fv
    rows = {m: [run_row(runs[(m, lr, ft.rank if m == "lora" else 0)], base, znorm2) for lr in lrs]
            for m in ("full", "lora")}
    out["lr"] = dict(res, lrs=lrs, rows=rows, spearman_lr_grad_norm_var={
        m: spearman(lrs, [r["grad_norm_var"] for r in rows[m]]) for m in rows})
    out["alignment"] = dict(res, rank=ft.rank, alignment=alignment_summary(lora, full, base, ft.steps))
    out["activity"] = dict(res, full=activity(full, base), lora=activity(lora, base))
    rank_rows = []
    for r in ranks:
        run = runs[("lora", ft.lr_lora, r)]
        al = alignment_summary(run, full, base, ft.steps)["groups"]["overall"]
        rank_rows.append(dict(run_row(run, base, znorm2), align_late_mean=al["late_mean"],
                              align_final=al["final"], ceiling_final=al["ceiling_final"],
                              activity_centroid=activity(run, base)["centroid"]))
    out["rank"] = dict(res, ranks=ranks, rows=rank_rows, full=run_row(full, base, znorm2),
                       base_p_ood=eval0["p_ood"])
    out["table"] = comparison(out)
    return out, definitions()


def comparison(out: dict) -> dict:
    """Our numbers beside the study's (its DistilGPT-2 numbers; raw projections depend on the model and
    the loss, so only ratios and cosines compare across models)."""
    fv, act, lr = out["full_vs_lora"], out["activity"], out["lr"]
    al, rank = out["alignment"]["alignment"]["groups"]["overall"], out["alignment"]["rank"]
    f, l, ratio = fv["full"]["overall"], fv["lora"]["overall"], fv["ratio_full_over_lora"]["overall"]
    null = "mean ||g|| x E|cos| of a random direction"
    rho = lr["spearman_lr_grad_norm_var"]

    def row(quantity, study, ours, reference, reference_is):
        return dict(quantity=quantity, study=study, ours=ours, reference=reference, reference_is=reference_is)
    rows = [
        row("mean |projection|, full FT", STUDY["proj_full"], f["proj_abs_mean"], f["proj_abs_mean_null"],
            null),
        row("mean |projection|, LoRA", STUDY["proj_lora"], l["proj_abs_mean"], l["proj_abs_mean_null"], null),
        row("ratio full / LoRA of mean |projection|", STUDY["proj_full"] / STUDY["proj_lora"],
            ratio["proj_abs_mean"], 1.0, "equal magnitudes"),
        row("ratio full / LoRA of projection variance over steps", "high vs substantially lower",
            ratio["proj_var"], 1.0, "equal dispersion"),
        row(f"alignment cos(dW_full, scale B A), mean after step {out['alignment']['steps'] // 2} "
            f"(rank {rank})",
            f"{STUDY['align_lo']}-{STUDY['align_hi']}", al["late_mean"], al["random_level"],
            f"random-direction level; rank-{rank} ceiling {fmt_g(al['ceiling_final'])}"),
        row("LoRA activity centroid depth (0 first layer, 1 last)", "shallow and middle layers",
            act["lora"]["centroid"], act["full"]["centroid"], "full FT centroid (flat profile: 0.5)"),
        row("LoRA most active layer", "shallow / middle", act["lora"]["argmax_layer"],
            act["full"]["argmax_layer"], "full FT most active layer"),
        row("Spearman(lr, grad-norm variance), full FT", "higher lr, higher variance", rho["full"],
            rho["lora"], "the same for LoRA"),
    ]
    readings = dict(
        lora_projections_smaller=_lt(l["proj_abs_mean"], f["proj_abs_mean"]),
        lora_dispersion_smaller=_lt(l["proj_var"], f["proj_var"]),
        alignment_above_random=_lt(al["random_level"], al["late_mean"]),
        alignment_in_study_range=None if al["late_mean"] is None
        else STUDY["align_lo"] <= al["late_mean"] <= STUDY["align_hi"],
        centroid_lora_minus_full=_sub(act["lora"]["centroid"], act["full"]["centroid"]))
    return dict(rows=rows, readings=readings)


def _sub(a, b):
    return None if a is None or b is None else a - b


def _lt(a, b):
    return None if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) else bool(a < b)


def table_markdown(table: dict) -> str:
    lines = ["| quantity | study (DistilGPT-2) | ours | reference |", "|---|---|---|---|"]
    for r in table["rows"]:
        lines.append(f"| {r['quantity']} | {fmt_g(r['study'])} | {fmt_g(r['ours'])} | "
                     f"{fmt_g(r['reference'])} ({r['reference_is']}) |")
    readings = ", ".join(f"{k} = {fmt_g(v)}" for k, v in table["readings"].items())
    lines += ["", f"Readings (computed): {readings}"]
    return "\n".join(lines) + "\n"


def definitions() -> dict:
    common = dict(
        layer="one block's four trunk matrices (q/k/v, attention output, MLP up, MLP down); "
              "overall = all blocks",
        full_gradient="dL/dW of each trunk matrix at each step, before clipping "
                      "(L = L_LM + lambda_task L_probe)",
        lora_gradient="effective weight gradient scale (dL/dB A + B dL/dA): the first-order change of "
                      "W0 + scale B A per unit gradient step on (A, B)",
        projection="<g_t, u_j>, u_j (j < k) fixed random unit directions of the group (Gaussian per matrix, "
                   "normalized over the group)",
        proj_abs_mean="mean over steps and directions of |<g_t, u_j>|",
        proj_var="mean over directions of the variance over steps of <g_t, u_j>",
        proj_abs_mean_null="mean_t ||g_t|| x random_level(D): what a random direction gives for these norms",
        cos_abs_mean="mean |<g_t, u_j>| / ||g_t||; cos_null = random_level(D)",
        random_level="E|cos| of a fixed vector with a uniformly random direction in R^D = "
                     "Gamma(D/2) / (sqrt(pi) Gamma((D+1)/2)) ~ sqrt(2/(pi D))",
        grad_norm_cv="sd / mean of ||g_t|| over steps")
    return dict(
        baseline=dict(common, experiment="(1) gradient norms and random projections of full fine-tuning"),
        lr=dict(common, experiment="(2) learning-rate sensitivity of both methods",
                final_train_loss="mean training loss over the last 10% of the steps",
                p_ood="greedy accuracy on the long-gap eval set at the end",
                spearman_lr_grad_norm_var="rank correlation of lr with the variance over steps of the "
                                          "overall gradient norm",
                diverged_at="first step with a non-finite loss (the run stops there), None if none"),
        full_vs_lora=dict(common, experiment="(3) gradient magnitude and dispersion, full vs LoRA, measured "
                                             "the same way"),
        alignment=dict(common, experiment="(4) alignment of LoRA's update with full fine-tuning's",
                       cos="cos(dW_full(t), scale B A(t)) of the same matrix / layer / trunk; same start, "
                           "data and step",
                       late_mean="mean of cos over the alignment steps after half the run",
                       ceiling="cos of dW_full(t) with its best rank-r approximation per matrix "
                               "(Eckart-Young): the largest cos any rank-r update reaches"),
        activity=dict(common, experiment="(5) layer-wise activity",
                      ratio="||dW_l|| / ||W0_l|| per layer at each alignment step",
                      share="||dW_l||^2 / sum_l ||dW_l||^2 at the end",
                      centroid="ratio-weighted mean depth in [0, 1] (0.5: flat)"),
        rank=dict(common, experiment="rank sweep of LoRA (alpha = scale r), task metric p_ood",
                  align_late_mean="alignment late_mean of this rank, overall",
                  ceiling_final="rank-r ceiling at the end, overall"),
        table=dict(experiment="our numbers beside the study's",
                   readings="computed from the rows, never typed: booleans and the centroid difference"))


# ----------------------------------------------------------------------------- reading and figures
def plot_all(folder: str) -> list[str]:
    """The figures, drawn from the JSONs of `folder` (the sweep figures only when the sweeps ran)."""
    plt = pyplot()
    r = {e: v["results"] for e, v in load_results(folder).items()}
    paths = []

    def save(fig, name):
        paths.append(save_figure(fig, os.path.join(folder, f"finetune_{name}.png")))

    fv = r["full_vs_lora"]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    for m, c in (("full", "C0"), ("lora", "C1")):
        s = fv[m]["series"]
        ax[0].hist(s["grad_norm"], bins=30, alpha=0.6, color=c, label=m)
        ax[1].hist(np.ravel(s["proj"]), bins=40, alpha=0.6, color=c, label=m)
        L = len(s["layer_grad_norm"])
        ax[2].plot([fv[m][f"layer{l}"]["grad_norm_mean"] for l in range(L)], "o-", color=c, label=m)
    ax[0].set(title="gradient norm per step (trunk)", xlabel="||g||")
    ax[1].set(title="projections on random unit directions", xlabel="<g, u>")
    ax[2].set(title="mean gradient norm per layer", xlabel="layer", yscale="log")
    for a in ax:
        a.legend()
    save(fig, "gradients")

    al = r["alignment"]["alignment"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for g, v in al["groups"].items():
        if g != "overall":
            ax.plot(al["steps"], v["cos"], lw=0.8, alpha=0.6, label=g)
    o = al["groups"]["overall"]
    ax.plot(al["steps"], o["cos"], "k-", lw=2, label="overall")
    ax.plot(al["steps"], o["ceiling"], "k:", label=f"rank-{r['alignment']['rank']} ceiling")
    ax.axhline(o["random_level"], color="gray", ls="--", label="random level")
    ax.axhspan(STUDY["align_lo"], STUDY["align_hi"], color="C3", alpha=0.15, label="study 0.17-0.19")
    ax.set(xlabel="fine-tuning step", ylabel="cos(dW_full, scale B A)",
           title="LoRA vs full fine-tuning updates")
    ax.legend(fontsize=7, ncol=2)
    save(fig, "alignment")

    act = r["activity"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
    L, w = len(act["full"]["final"] or []), 0.4
    for m, off in (("full", -w / 2), ("lora", w / 2)):
        v = np.array(act[m]["final"] or [], float)
        lab = f"{m} (centroid {fmt_g(act[m]['centroid'], 2)})"
        ax[0].bar(np.arange(L) + off, v, w, label=lab)
        ax[1].bar(np.arange(L) + off, v / v.sum() if v.sum() > 0 else v, w, label=lab)
    ax[0].set(xlabel="layer", ylabel="||dW|| / ||W0||", title="layer-wise activity at the end",
              xticks=range(L))
    ax[1].axhline(1 / max(L, 1), color="gray", ls="--", label="flat profile")
    ax[1].set(xlabel="layer", ylabel="share of the summed ratios", title="activity profile", xticks=range(L))
    for a in ax:
        a.legend(fontsize=8)
    save(fig, "activity")

    lr = r["lr"]
    if lr["lrs"]:
        fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
        for m, c in (("full", "C0"), ("lora", "C1")):
            for a, key in zip(ax, ("final_train_loss", "grad_norm_var", "p_ood")):
                a.plot(lr["lrs"], [x[key] for x in lr["rows"][m]], "o-", color=c, label=m)
        ax[0].set(xscale="log", xlabel="lr", title="final training loss")
        ax[1].set(xscale="log", yscale="log", xlabel="lr", title="variance of ||g|| over steps")
        ax[2].set(xscale="log", xlabel="lr", title="p_ood at the end", ylim=(-0.02, 1.02))
        for a in ax:
            a.legend()
        save(fig, "lr")

    rk = r["rank"]
    if rk["ranks"]:
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        ax[0].plot(rk["ranks"], [x["p_ood"] for x in rk["rows"]], "o-", label="LoRA")
        full_p = rk["full"]["p_ood"]
        ax[0].axhline(np.nan if full_p is None else full_p, color="C0", ls="--", label="full FT")
        ax[0].axhline(rk["base_p_ood"], color="gray", ls=":", label="base model")
        ax[0].set(xscale="log", xlabel="rank r", ylabel="p_ood", title="task metric at the end",
                  ylim=(-0.02, 1.02))
        ax[1].plot(rk["ranks"], [x["align_late_mean"] for x in rk["rows"]], "o-",
                   label="cos after half the run")
        ax[1].plot(rk["ranks"], [x["ceiling_final"] for x in rk["rows"]], "k:", label="rank-r ceiling")
        ax[1].axhspan(STUDY["align_lo"], STUDY["align_hi"], color="C3", alpha=0.15, label="study")
        ax[1].set(xscale="log", xlabel="rank r", ylabel="cos", title="alignment with full fine-tuning")
        for a in ax:
            a.legend(fontsize=8)
        save(fig, "rank")
    return paths


# ----------------------------------------------------------------------------- main
def parser() -> argparse.ArgumentParser:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--base", default=None,
                     help="base run folder (default runs/seed42; tiny: runs/tiny_seed42)")
    src.add_argument("--hf_model", "--hf-model", default=None,
                     help="a GPT-2-family Hugging Face model name or folder")
    p.add_argument("--out", default=None,
                   help="output folder (default <base>/analysis, runs/hf_<name>/analysis)")
    p.add_argument("--results", default=None, help="also copy the outputs here (default: nowhere)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--progress", default="true", choices=("true", "false"), help="tqdm bar (default true)")
    tiny = ", ".join(f"{k} {v}" for k, v in PRESETS["tiny"].items())
    g = p.add_argument_group(f"study settings (paper preset defaults; tiny: {tiny})")
    for f in fields(FTConfig):
        kind = type(f.default)
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        g.add_argument(*names, dest=f"ft_{f.name}", type=kind, default=None, metavar=kind.__name__.upper(),
                       help=f"(default {f.default!r})")
    return p


def run(ns, argv) -> list[str]:
    """The study of the parsed command line; returns the files written."""
    t0 = time.perf_counter()
    ft = ft_config(**{k[3:]: v for k, v in vars(ns).items() if k.startswith("ft_") and v is not None})
    device = pick_device(ns.device)
    exact_fp32()  # the statistics' fp32 matmuls stay exact; the model runs under bf16 autocast on CUDA
    if ns.hf_model:
        tag = "hf_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(os.path.normpath(ns.hf_model)))
        out = ns.out or os.path.join("runs", tag, "analysis")
        check_writable(out)
        base = hf_base(ns.hf_model, ft, device)
    else:
        path = os.path.normpath(ns.base or ("runs/seed42" if ft.preset == "paper" else "runs/tiny_seed42"))
        out = ns.out or os.path.join(path, "analysis")
        check_writable(out)
        base = our_base(path, ft, device)
    print(f"base: {base.info.get('run') or base.info.get('model')} ({len(base.names)} trunk matrices, "
          f"{base.n_layer} layers) on {device}")
    res, defs = study(base, ft, device, ns.progress == "true")
    tc = base.cfg
    config = dict(
        ft=dataclasses.asdict(ft), base={k: v for k, v in base.info.items() if k != "run_state"},
        task=dict(gaps=[tc.gap_min, tc.gap_max], p_task=ft.p_task, lambda_task=ft.lambda_task, ctx=tc.ctx,
                  seed=tc.seed, data_offset=tc.data_offset, n_eval_probe=tc.n_eval_probe,
                  n_eval_lm=tc.n_eval_lm),
        optimizer="AdamW betas (0.9, 0.999), eps 1e-8, weight decay 0, linear warmup then constant lr",
        lora="peft LoraConfig(r, lora_alpha, target_modules = the trunk matrices, lora_dropout 0, "
             "bias none); "
             "B = 0 at the start",
        trunk_numel=int(sum(base.numel)))
    extra = {"run_state": base.info["run_state"]} if "run_state" in base.info else {}
    files = []
    for e in EXPERIMENTS:
        files.append(os.path.join(out, f"finetune_{e}.json"))
        write_result(files[-1], f"finetune_{e}", config, defs[e], res[e], t0, argv, device, __file__, **extra)
    files.append(os.path.join(out, "finetune_table.md"))
    write_text(files[-1], table_markdown(res["table"]))
    files += plot_all(out)
    print(table_markdown(res["table"]), end="")
    print(f"runs took {res['baseline']['wall_runs_s']} s")
    return files + copy_results(files, ns.results)


def main(argv=None):
    ns = parser().parse_args(argv)
    files = cli(run, ns, argv)
    print("wrote " + ", ".join(files))


if __name__ == "__main__":
    main()
