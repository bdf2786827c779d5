"""Full fine-tuning vs LoRA: gradient geometry, update subspaces, intruder dimensions and layer-wise
activity, on our own base model or on any GPT-2-family Hugging Face model; every comparison read
against a reference that it can fail.

    python finetune_geometry.py --base runs/seed42  # paper: the seed-42 final weights (GPU, ~6 min)
    # a Hugging Face model whose weights are at hand
    python finetune_geometry.py --hf_model distilgpt2
    python finetune_geometry.py --preset tiny           # CPU, about a minute: from runs/tiny_seed42

Task (one the base model cannot already do): the base corpus in a cipher, a fixed derangement of
`shift_words` word types drawn from the most frequent words (every token of the stories, probes
included, goes through it), and the probe with a new codeword set: `n_codewords` ordinary word
types (outside the cipher and the templates) in place of the codewords the base model learned, at
the base config's long gaps, in a fraction p_task of the sequences. Loss L_LM + lambda_task L_probe.
Target validation loss, fixed before any run: L_in + target_frac (L_task(0) - L_in), L_in the base
model's validation loss on the plain windows and L_task(0) on the same windows in the cipher.
Batch t of data order o is dataset.get_batch of step (base steps + o steps + t) of the task corpus:
a function of (seed, o, t), never a batch the base model trained on. On a Hugging Face model the
same stories and probe are mapped to its vocabulary (each word type tokenized once, a leading space
unless it is punctuation); the cipher then permutes its most frequent alphabetic tokens.

Runs, all from the base weights, AdamW (0.9, 0.999), no weight decay, linear warmup then constant
lr, global clip on the trained parameters: full fine-tuning (every parameter) and LoRA through peft
on the trunk matrices (per block q/k/v, attention output, MLP up, MLP down; B = 0 at the start;
rank `rank`, scale alpha / rank). (1) The lr sweep: both methods over the same `lrs` on data order
0; each method's lr is the one that reaches the target in the fewest steps (ties: the lower final
validation loss; none reaching it: the lowest final validation loss). (2) At those lrs: full A
(order 0), full B (order 1), LoRA 0 (order 0, init seed 0), LoRA 1 (order 0, init seed 1). Each
run's update dW is kept at its matched step: the first evaluation at or below the target (the end
when it never gets there). (3) The rank sweep of LoRA at its lr (alpha = scale r: only the rank
changes).

Statistics (definitions in the JSONs): projections of the per-step gradient on fixed random unit
directions, normalised by ||g|| (E|<g, z>| = ||g|| sqrt(2/(pi D)) for any g); cos(dW_full,
dW_LoRA) over the run and at matched loss; subspace similarity of the top-r singular subspaces;
the share of each per-step gradient's energy in the top-k singular subspace of dW of full A,
against k/d; intruder dimensions; ||dW|| / ||W|| per layer. Pairs: LoRA 0 vs full A, against
full A vs full B (two data orders) and LoRA 0 vs LoRA 1 (two seeds).

Writes <out>/finetune_{baseline,lr,full_vs_lora,alignment,subspace,energy,intruders,activity,rank,
table}.json (results schema: experiment, config, definitions, results, provenance),
finetune_table.md, finetune_table.csv and the figures finetune_{gradients,alignment,subspace,
activity,lr,rank}.png. <out> defaults to <base>/analysis, where collect_results.py finds them
(runs/hf_<name>/analysis for --hf_model); --results DIR also copies them there.
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import importlib
import io
import math
import os
import re
import socket
import sys
import time
from dataclasses import dataclass, fields
from types import SimpleNamespace

import numpy as np
import torch
from tqdm import tqdm

import runs
from common import (autocast, check_writable, cli, copy_results, exact_fp32, fmt_g, pick_device,
                    pyplot, save_figure, write_result, write_text)
from config import Parser, UsageError, make_config
from dataset import Corpus, EvalSets, get_batch, load_corpus, make_eval_sets
from model import Evaluator, evaluate, losses, trunk_keys
from experiments import (
    FT_EXPERIMENTS as EXPERIMENTS,
    FT_STUDY as STUDY,
    load_finetune as load_results,
)

# canonical order of a block's trunk matrices
KINDS = ("qkv", "attn_out", "mlp_up", "mlp_down")
OURS = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")      # their module names in model.GPT
HF = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # and in Hugging Face GPT-2 blocks
GRAD_KEYS = ("proj_abs_mean", "proj_var", "grad_norm_mean", "grad_norm_var", "grad_sq_mean")
MAIN = ("full_A", "full_B", "lora_0", "lora_1")            # the runs at the chosen lrs
PAIRS = {  # pair -> (run, run): the comparison and its two references
    "lora_vs_full": ("lora_0", "full_A"), "full_vs_full": ("full_A", "full_B"),
    "lora_vs_lora": ("lora_0", "lora_1")}


# ----------------------------------------------------------------------------- config
@dataclass
class FTConfig:
    preset: str = "paper"        # paper | tiny (CPU)
    steps: int = 300             # fine-tuning steps of every run
    batch_size: int = 32         # sequences per step
    p_task: float = 0.5          # probability that a sequence is a probe sequence (new codewords)
    lambda_task: float = 1.0     # weight of the probe loss
    shift_words: int = 64        # word types in the cipher (0: the plain stories)
    shift_pool: int = 1000       # the cipher's words are drawn from this many most frequent words
    new_codewords: bool = True   # probe codewords: ordinary words (true) or the base run's (false)
    target_frac: float = 0.5     # target val = L_in + target_frac (L_task(0) - L_in)
    lrs: str = "1e-5,3e-5,1e-4,3e-4,1e-3"  # lr sweep, the same for both methods
    lr_full: float = 0.0         # > 0: this lr instead of the sweep's choice
    lr_lora: float = 0.0         # > 0: this lr instead of the sweep's choice
    warmup: int = 30             # linear warmup steps, then constant
    grad_clip: float = 1.0       # global norm clip of the trained parameters; 0 disables
    rank: int = 8                # LoRA rank of the main runs (and r of the top-r subspaces)
    alpha: float = 16.0          # LoRA alpha of the main runs (scale = alpha / rank)
    ranks: str = "1,2,4,8,16,64"  # rank sweep ("" skips it)
    n_dirs: int = 8              # k fixed random unit directions
    top_k: int = 8               # dimension of dW_full's singular subspace for the energy shares
    # top singular vectors of W + dW examined (Shuttleworth et al. 2024)
    intruder_k: int = 10
    intruder_eps: float = 0.5    # an intruder's |cos| with every singular vector of W is below this
    align_every: int = 20        # cos with full A's update every this many steps (and at the end)
    eval_every: int = 20         # validation loss every this many steps (and at 0 and the end)
    n_eval_probe: int = 0        # probe sequences per eval set; 0: the base config's
    n_eval_lm: int = 0           # validation LM windows; 0: the base config's
    # cipher, codewords, random directions (the data follow the base seed)
    seed: int = 0
    hf_stories: int = 0          # --hf_model: training stories; 0: 20,000 (tiny: the preset's)
    cache_dir: str = ".cache"    # --hf_model: tokenized corpus cache


PRESETS = {
    "paper": {},
    # a smoke test of every stage from runs/tiny_seed42 (2 layers, d_model 64): 10 runs of 30 steps,
    # about a minute on an idle 2-core CPU
    "tiny": dict(steps=30, batch_size=8, warmup=3, align_every=5, eval_every=5, shift_words=32,
                 shift_pool=300, lrs="1e-3,3e-3", ranks="1,16", rank=4, alpha=8.0, top_k=4,
                 n_eval_probe=64, n_eval_lm=32),
}


def ft_config(**over) -> FTConfig:
    preset = over.get("preset", "paper")
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    ft = FTConfig(**{**PRESETS[preset], **over})
    checks = [
        (ft.steps > 0 and ft.batch_size > 0, "steps and batch_size must be > 0"),
        (0 <= ft.p_task <= 1 and ft.lambda_task >= 0, "need p_task in [0, 1] and lambda_task >= 0"),
        (ft.lr_full >= 0 and ft.lr_lora >= 0, "learning rates must be >= 0 (0: the sweep's)"),
        (
            ft.rank > 0 and ft.alpha > 0 and ft.n_dirs > 0 and ft.top_k > 0 and ft.intruder_k > 0,
            "rank, alpha, n_dirs, top_k and intruder_k must be > 0",
        ),
        (0 < ft.intruder_eps <= 1, "intruder_eps must be in (0, 1]"),
        (0 <= ft.target_frac < 1, "target_frac must be in [0, 1)"),
        (
            ft.shift_words >= 0 and ft.shift_words != 1 and ft.shift_pool >= ft.shift_words,
            "shift_words must be 0 or >= 2 and at most shift_pool",
        ),
        (
            ft.align_every > 0 and ft.eval_every > 0 and ft.warmup >= 0,
            "need align_every > 0, eval_every > 0 and warmup >= 0",
        ),
    ]
    for ok, msg in checks:
        if not ok:
            raise UsageError(msg)
    if not parse_list(ft.lrs, "lrs", float) and not (ft.lr_full > 0 and ft.lr_lora > 0):
        raise UsageError("--lrs is empty: give --lr_full and --lr_lora")
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


# -------------------------------------------------------------------- math (arrays in, numbers out)
def random_level(D: int) -> float:
    """E|<v, u>| for a fixed unit v and u uniform on the unit sphere of R^D: Gamma(D/2) / (sqrt(pi)
    Gamma((D+1)/2)), which is sqrt(2/(pi D)) at large D (2/pi at D = 2, 1/2 at D = 3)."""
    return math.exp(math.lgamma(D / 2) - math.lgamma((D + 1) / 2)) / math.sqrt(math.pi)


def projection_stats(P: np.ndarray, norms: np.ndarray, D: int) -> dict:
    """Statistics of the signed projections P (T steps x k directions) of gradients whose norms are
    `norms` (T,) on fixed random unit directions of a D-dimensional group. For any gradient g,
    E|<g, u>| = ||g|| random_level(D) and E<g, u>^2 = ||g||^2 / D: raw projections measure ||g||, so
    the geometric statistic is cos_abs_mean / cos_null (1: a random direction)."""
    P, norms = np.asarray(P, np.float64), np.asarray(norms, np.float64)
    dd = 1 if len(norms) > 1 else 0
    level, mean, sd = random_level(D), float(norms.mean()), float(norms.std(ddof=dd))
    cos = float((np.abs(P) / np.maximum(norms, 1e-30)[:, None]).mean())
    return dict(grad_norm_mean=mean, grad_norm_sd=sd, grad_norm_var=sd ** 2, grad_sq_mean=float(
        (norms ** 2).mean()), grad_norm_cv=sd / mean if mean > 0 else None,
                proj_abs_mean=float(np.abs(P).mean()), proj_abs_sd=float(np.abs(P).std(ddof=dd)),
                proj_var=float(P.var(0, ddof=dd).mean()), proj_abs_mean_null=mean * level,
                cos_abs_mean=cos, cos_null=level, cos_over_null=cos / level, D=int(D))


def group_series(sq: np.ndarray, dots: np.ndarray, znorm2: np.ndarray,
                 idx) -> tuple[np.ndarray, np.ndarray]:
    """Gradient norms (T,) and projections (T, k) of the group of matrices `idx`, from
    the per-matrix squared norms sq (T, M), dots <g_m, z_mj> (T, M, k) and squared direction norms
    znorm2 (M, k): the group's unit direction j is its matrices' z_mj side by side, normalized."""
    idx = list(idx)
    return np.sqrt(sq[:, idx].sum(1)), dots[:, idx].sum(1) / np.sqrt(znorm2[idx].sum(0))


def group_cos(dot: np.ndarray, a_sq: np.ndarray, b_sq: np.ndarray, idx) -> np.ndarray:
    """cos between two updates of the group `idx` from per-matrix <a, b>, ||a||^2, ||b||^2 (...,
    M)."""
    idx = list(idx)
    den = np.sqrt(a_sq[..., idx].sum(-1) * b_sq[..., idx].sum(-1))
    return np.where(den > 0, dot[..., idx].sum(-1) / np.where(den > 0, den, 1), np.nan)


def rank_ceiling(sv2: list[np.ndarray], r: int, idx) -> float:
    """max cos of a group's update with any update of rank <= r per matrix: sqrt(sum_m sum_{i<r}
    sigma_mi^2 / sum_m sum_i sigma_mi^2) (Eckart-Young); sv2[m] the squared singular values,
    descending."""
    top = sum(float(sv2[m][:r].sum()) for m in idx)
    tot = sum(float(sv2[m].sum()) for m in idx)
    return math.sqrt(top / tot) if tot > 0 else float("nan")


def depth_centroid(values) -> float:
    """Activity-weighted mean depth in [0, 1] (0 = first layer, 1 = last); 0.5 for a flat
    profile."""
    v = np.asarray(values, np.float64)
    if not v.sum() > 0:
        return float("nan")
    return float((v * np.arange(len(v))).sum() / v.sum() / max(1, len(v) - 1))


def top_subspaces(dW: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U_r (d_out x r), V_r (d_in x r), all squared singular values) of dW (d_out x d_in); r is cut
    to the rank of dW (singular values above a relative 1e-6), so an update of rank < r is not
    padded with arbitrary directions."""
    U, S, Vh = torch.linalg.svd(dW.double(), full_matrices=False)
    r = min(r, int((S > S[0] * 1e-6).sum())) if len(S) and S[0] > 0 else 0
    return U[:, :r], Vh[:r].T, S.square()


def subspace_similarity(Ua: torch.Tensor, Ub: torch.Tensor) -> float:
    """||Ua^T Ub||_F^2 / min(ra, rb) for orthonormal columns Ua (d x ra), Ub (d x rb): the mean
    squared cosine of their principal angles; 1 when one subspace contains the other. For
    independent uniformly random subspaces its expectation is max(ra, rb) / d
    (subspace_random_level)."""
    r = min(Ua.shape[1], Ub.shape[1])
    return float((Ua.T.double() @ Ub.double()).square().sum() / r) if r else float("nan")


def subspace_random_level(ra: int, rb: int, d: int) -> float:
    """E ||Ua^T Ub||_F^2 / min(ra, rb) = ra rb / d / min(ra, rb) for independent random
    subspaces."""
    return min(1.0, max(ra, rb) / d) if min(ra, rb) else float("nan")


def principal_cosines(Ua: torch.Tensor, Ub: torch.Tensor) -> list[float]:
    """Cosines of the principal angles between two subspaces (descending): singular values of Ua^T
    Ub."""
    return torch.linalg.svdvals(Ua.T.double() @ Ub.double()).tolist()


def energy_share(G: torch.Tensor, U: torch.Tensor,
                 V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(||U^T G||^2, ||G V||^2) of a gradient G (d_out x d_in): its energy in the column space U
    (d_out x k) and the row space V (d_in x k) of a reference update; over ||G||^2 these are shares
    whose expectation for a random G is k / d_out and k / d_in."""
    return (U.T @ G).square().sum(), (G @ V).square().sum()


def intruders(W0: torch.Tensor, W1: torch.Tensor, k: int, eps: float) -> tuple[int, list[float]]:
    """Intruder dimensions (Shuttleworth et al. 2024, "LoRA vs full fine-tuning: an illusion of
    equivalence"): among the top-k left singular vectors of the fine-tuned W1, those whose largest
    |cos| with every left singular vector of W0 is below eps. Returns the count and the k largest
    |cos|."""
    U0 = torch.linalg.svd(W0.double(), full_matrices=False)[0]
    U1 = torch.linalg.svd(W1.double(), full_matrices=False)[0][:, :k]
    best = (U1.T @ U0).abs().max(1).values
    return int((best < eps).sum()), best.tolist()


def first_at_or_below(evals: list[dict], target: float) -> int | None:
    """The first evaluated step whose validation loss is at or below `target` (None: never)."""
    return next((e["step"] for e in evals if e["val_loss"] <= target), None)


def pick_lr(rows: list[dict]) -> tuple[float, str]:
    """The lr that reaches the target in the fewest steps (ties: the lower final validation loss);
    when none reaches it, the lowest final validation loss. rows: lr, steps_to_target, val_loss,
    diverged_at."""
    ok = [r for r in rows if r["diverged_at"] is None and r["val_loss"] is not None
          and math.isfinite(r["val_loss"])]
    if not ok:
        raise UsageError("every run of the lr sweep diverged: give lower --lrs")
    hit = [r for r in ok if r["steps_to_target"] is not None]
    if hit:
        return min(hit, key=lambda r:
                   (r["steps_to_target"], r["val_loss"]))["lr"], "fewest steps to target"
    return min(ok, key=lambda r: r["val_loss"])["lr"], "target not reached: lowest final val loss"
# ----------------------------------------------------------------------------- LoRA through peft
def require(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise UsageError(f"finetune_geometry.py needs the `{name}` package (pip install {name})")


def add_lora(model, names: list[str], rank: int, alpha: float, fan_in_fan_out: bool, seed: int):
    """peft LoRA on the modules `names` of `model` (modified in place; the PeftModel is
    returned)."""
    peft = require("peft")
    torch.manual_seed(seed)  # A's init
    cfg = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(names), lora_dropout=0.0,
                          bias="none", fan_in_fan_out=fan_in_fan_out)
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


# ------------------------------------------------------------------------ base models and task data
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

    def shape(self, m: int) -> tuple[int, int]:
        """(d_out, d_in) of trunk matrix m."""
        return tuple(_canon(_weight(self.model.get_submodule(self.names[m])), self.hf).shape)

    def groups(self) -> dict[str, list[int]]:
        g = {
            f"layer{l}": [i for i, x in enumerate(self.layer) if x == l]
            for l in range(self.n_layer)
        }
        g["overall"] = list(range(len(self.names)))
        return g


def our_base(path: str, ft: FTConfig, device) -> Base:
    """The last snapshot of a finished run folder, its corpus (identity checked) and the long-gap
    task."""
    runs.run_config(path)  # a missing or unreadable run folder stops here, before anything is built
    require("peft")
    traj, cfg, corpus, state = runs.load_run(path, device=device)
    step = traj.steps[-1]
    model = runs.load_model(traj, cfg, corpus, step)
    names = [k[: -len(".weight")] for k in trunk_keys(cfg.n_layer)]  # blocks.<l>.attn.qkv, ...
    recorded = next((r.get("p_ood") for r in runs.read_metrics(path) if r.get("step") == step),
                    None)
    info = dict(kind="ours", run=path, step=step, snapshot=traj.paths[step],
                corpus=corpus.description, recorded_p_ood=recorded, run_state=state)
    return Base(model, names, [int(n.split(".")[1]) for n in names],
                [KINDS[OURS.index(n.split(".", 2)[2])] for n in names], False, corpus,
                _task_cfg(cfg, ft, cfg.steps + cfg.data_offset), info)


def _task_cfg(cfg, ft: FTConfig, data_offset: int):
    """The config whose get_batch gives the task batches: long gaps, p_task probe sequences, the
    fine-tuning batch size, the data stream continued past the base run's steps."""
    return dataclasses.replace(cfg, p_probe=ft.p_task, gap_min=cfg.ood_gap_min,
                               gap_max=cfg.ood_gap_max, batch_size=ft.batch_size, grad_accum=1,
                               data_offset=data_offset, n_eval_probe=ft.n_eval_probe or
                               cfg.n_eval_probe, n_eval_lm=ft.n_eval_lm or cfg.n_eval_lm)


class HFLM(torch.nn.Module):
    """A Hugging Face causal LM with model.GPT's call: logits (B, T, V), or (B, V) at
    `positions`."""

    def __init__(self, hf):
        super().__init__()
        self.hf, self.vocab_size = hf, hf.config.vocab_size

    def forward(self, idx, positions=None):
        h = self.hf.base_model(input_ids=idx, use_cache=False).last_hidden_state
        if positions is not None:
            # the head only where it is read
            h = h[torch.arange(h.size(0), device=h.device), positions]
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
        # a bare model folder (transformers may make an empty tokenizer): word ids are token ids
        tok = None
    for m in hf.modules():
        if isinstance(m, torch.nn.Dropout):
            # dropout off, as in our model: the runs differ only by their parameterization
            m.p = 0.0
    model = HFLM(hf.float())
    found = []
    for n, _ in model.named_modules():
        m = re.fullmatch(r".*\bh\.(\d+)\.(" + "|".join(map(re.escape, HF)) + ")", n)
        if m:
            found.append((int(m.group(1)), HF.index(m.group(2)), n))
    if not found:
        raise UsageError(
            f"{name!r} is not a GPT-2-family model (no h.<l>.attn.c_attn / mlp.c_fc modules)"
        )
    found.sort()
    n_pos = getattr(hf.config, "n_positions", None) or getattr(hf.config, "max_position_embeddings",
                                                               1024)
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
        why = (
            "not a model folder, not in the local cache, and the hub cannot be reached"
            if offline
            else str(e).splitlines()[0][:160] if str(e) else ""
        )
        raise UsageError(f"cannot load the Hugging Face model {name!r}: {why} ({type(e).__name__})")


def _offline_unless_reachable(name: str):
    """No network: the hub client would retry for a minute; switch it to the local cache at once."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not offline and not os.path.isdir(name):
        try:
            socket.create_connection(("huggingface.co", 443), timeout=3).close()
        except OSError:
            offline = True
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"  # read when huggingface_hub is imported ...
        # ... or, imported already, the switch it read
        if "huggingface_hub.constants" in sys.modules:
            sys.modules["huggingface_hub.constants"].HF_HUB_OFFLINE = True


def hf_corpus(cfg, tok, V: int):
    """Our stories and probe in the token ids of a Hugging Face model (see the module docstring)."""
    words = load_corpus(cfg)
    if tok is None:
        if V < words.vocab_size:
            raise UsageError(
                f"the model has no tokenizer and its vocabulary ({V}) cannot hold the corpus's "
                f"{words.vocab_size} word ids"
            )
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
        return flat[np.repeat(start[s] - np.concatenate([[0], np.cumsum(n)[:-1]]), n) +
                    np.arange(n.sum())]

    def is_code(i):  # a single-token uppercase word (space-prefixed, 3+ letters)
        s = tok.decode([i])
        return s.startswith(" ") and s[1:].isalpha() and s[1:].isupper() and len(s) >= 4
    cands = [i for i in range(V) if is_code(i)]
    if len(cands) < cfg.n_codewords:
        raise UsageError(
            f"the tokenizer has {len(cands)} single-token uppercase words, the probe needs "
            f"{cfg.n_codewords}"
        )
    codes = sorted(
        np.random.default_rng(cfg.seed).choice(cands, cfg.n_codewords, replace=False).tolist())
    templates = [tuple([u for t in part for u in ([-1] if t == -1 else table[t])] for part in pair)
                 for pair in words.templates]
    words_ = [
        i for i in range(V)
        if re.fullmatch(r" ?[A-Za-z]+", tok.decode([i])) and i not in set(codes) and i != eot
    ]
    hft = SimpleNamespace(vocab_size=V, codeword_ids=codes, eot=eot, name="hf", word_ids=words_)
    return Corpus(remap(words.train), remap(words.val), hft, templates,
                  f"{words.description}, re-tokenized by the model's tokenizer")




def _canon(t: torch.Tensor, hf: bool) -> torch.Tensor:
    """A trunk matrix (or its update or gradient) as (d_out, d_in): Hugging Face Conv1D stores
    (d_in, d_out)."""
    return t.T if hf else t


# ----------------------------------------------------------------------------- the task
@dataclass
class Task:
    corpus: object               # the base corpus with the task's codewords
    # (V,) token map: word i of `words` -> word i + 1 (cyclic), identity elsewhere
    cipher: torch.Tensor
    words: list[int]             # the cipher's token ids
    codewords: list[int]         # the probe's codewords


def word_ids(corpus) -> list[int]:
    """Token ids of ordinary words (alphabetic; not end of text, not a codeword) of a corpus's
    tokenizer."""
    tok = corpus.tok
    if hasattr(tok, "word_ids"):
        return list(tok.word_ids)
    strings = tok.itos if hasattr(tok,
                                  "itos") else [tok.decode([i]) for i in range(corpus.vocab_size)]
    skip = set(corpus.codeword_ids.tolist()) | {tok.eot}
    return [i for i, s in enumerate(strings) if s.strip().isalpha() and i not in skip]


def make_task(corpus, seed: int, ft: FTConfig) -> Task:
    """The cipher and the new codewords (module docstring), drawn from the word types seen in
    the first 5M training tokens; template words stay out of both so that the probe's sentences stay
    readable."""
    V = corpus.vocab_size
    counts = np.bincount(np.asarray(corpus.train[:5_000_000], np.int64), minlength=V)
    in_templates = {t for pair in corpus.templates for part in pair for t in part if t >= 0}
    seen = [i for i in word_ids(corpus) if counts[i] > 0 and i not in in_templates]
    rng = np.random.default_rng([seed, ft.seed, 23])
    pool = sorted(seen, key=lambda i: (-counts[i], i))[: ft.shift_pool]
    if len(pool) < ft.shift_words:
        raise UsageError(f"the corpus has {len(pool)} word types for a cipher of {ft.shift_words}")
    words = [int(w)
             for w in rng.choice(pool, ft.shift_words, replace=False)] if ft.shift_words else []
    cipher = torch.arange(V)
    for a, b in zip(words, words[1:] + words[:1]):
        cipher[a] = b
    codes = corpus.codeword_ids.tolist()
    if ft.new_codewords:
        rest = sorted(set(seen) - set(words))
        if len(rest) < len(codes):
            raise UsageError(
                f"the corpus has {len(rest)} word types for {len(codes)} new codewords"
            )
        codes = sorted(int(c) for c in rng.choice(rest, len(codes), replace=False))
    tok = SimpleNamespace(vocab_size=V, codeword_ids=codes, eot=corpus.tok.eot,
                          name=corpus.tok.name)
    return Task(
        dataclasses.replace(corpus, tok=tok, description=corpus.description + ", task codewords"),
        cipher, words, codes)


def task_batches(base: Base, task: Task, ft: FTConfig, order: int, device):
    """The batches of data order `order` (steps x B x ctx on the device), in the cipher."""
    cfg = dataclasses.replace(base.cfg, data_offset=base.cfg.data_offset + order * ft.steps)
    xs, ys, ps = zip(*(get_batch(task.corpus, cfg, t, 0) for t in range(ft.steps)))
    return (task.cipher[torch.stack(xs)].to(device), task.cipher[torch.stack(ys)].to(device),
            torch.stack(ps).to(device))


def task_eval_sets(base: Base, task: Task):
    """(plain, task) eval sets on the same validation windows: the base corpus and codewords in
    plain text; the task's codewords and the cipher (probe answers included)."""
    plain, ev = make_eval_sets(base.corpus, base.cfg), make_eval_sets(task.corpus, base.cfg)
    c = task.cipher
    probe = {k: (c[x], pos, c[ans]) for k, (x, pos, ans) in ev.probe.items()}
    return plain, EvalSets(c[ev.lm_x], c[ev.lm_y], probe)


def random_dirs(base: Base, k: int, seed: int, device) -> tuple[list[torch.Tensor], np.ndarray]:
    """k Gaussian vectors per trunk matrix (k x numel, CPU-generated so every device gets the same)
    and their squared norms (M x k)."""
    Z = [torch.randn(k, n, generator=torch.Generator().manual_seed(seed * 1_000_003 + i)).to(device)
         for i, n in enumerate(base.numel)]
    return Z, torch.stack([z.square().sum(1) for z in Z]).double().cpu().numpy()


# ----------------------------------------------------------------------------- one fine-tuning run
def finetune(base: Base, data, evaluators, Z, ft: FTConfig, method: str, lr: float, rank: int = 0,
             alpha: float = 0.0, seed: int = 0, target: float | None = None,
             ref: dict | None = None, energy: list | None = None, keep: str = "none", bar=None,
             eval0: dict | None = None) -> dict:
    """One run from the base weights on `data` (x, y, pos). Returns per-step losses and gradient
    statistics (squared norm, energy in `energy`'s subspaces, projections on Z), per alignment step
    the squared norms of the update and its dots with `ref`'s full updates, the evaluations, and
    the matched step (the first evaluation at or below `target`). keep: "none"; "end" the updates
    (d_out x d_in) at the matched step and at the end; "all" also those of every alignment step (for
    later runs to align to)."""
    dev = data[0].device
    lm_eval, full_eval = evaluators
    model = copy.deepcopy(base.model)
    if method == "lora":
        add_lora(model, base.names, rank, alpha, base.hf, seed)
    model.train()
    layers = [model.get_submodule(n) for n in base.names]
    W0 = [_weight(base.model.get_submodule(n)).detach() for n in base.names]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                            **({"fused": True} if dev.type == "cuda" else {"foreach": True}))
    S, M, k = ft.steps, len(layers), Z[0].shape[0]
    align = set(range(ft.align_every, S + 1, ft.align_every)) | {S}
    evals = set(range(ft.eval_every, S + 1, ft.eval_every)) | {S}
    gstat, loss_t = torch.zeros(S, M, 3 + k, device=dev), torch.zeros(S, 3, device=dev)
    out = dict(method=method, lr=lr, rank=rank, alpha=alpha, scale=alpha / rank if rank else None,
               seed=seed, trainable=sum(p.numel() for p in params), align_steps=[], delta_sq=[],
               ref_dot=[], ref_sq=[], deltas={}, sv2=[],
               evals=[dict(step=0, **eval0)] if eval0 else [], diverged_at=None, matched=None)

    def update():  # the trunk updates now, (d_out, d_in)
        return [_canon(lora_delta(l) if method == "lora" else l.weight - w, base.hf).detach()
                for l, w in zip(layers, W0)]
    x, y, pos = data
    for t in range(S):
        with autocast(dev):
            L = losses(model, x[t], y[t], pos[t], ft.lambda_task)
        L[0].backward()
        with torch.no_grad():  # statistics stay on the device: no host sync per step
            loss_t[t] = torch.stack([l.detach().float() for l in L])
            for i, layer in enumerate(layers):
                g = lora_grad(layer) if method == "lora" else layer.weight.grad
                gstat[t, i, 0] = g.square().sum()
                if energy is not None:
                    gstat[t, i, 1], gstat[t, i, 2] = energy_share(_canon(g, base.hf), *energy[i])
                gstat[t, i, 3:] = Z[i] @ g.reshape(-1)
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
            _record(out, s, update(), ref, keep == "all")
        if s in evals:
            e = dict(step=s, **(full_eval if s == S else lm_eval)(model))
            out["evals"].append(e)
            if out["matched"] is None and target is not None and e["val_loss"] <= target:
                out["matched"] = dict(step=s, reached=True,
                                      deltas=update() if keep != "none" else None)
    n = out["diverged_at"] if out["diverged_at"] is not None else S
    if keep != "none":
        out["final_deltas"] = update()
        if out["matched"] is None:  # never at the target: compared at the end, and marked so
            out["matched"] = dict(step=n, reached=False, deltas=out["final_deltas"])
    out["steps_to_target"] = out["matched"][
        "step"] if out["matched"] and out["matched"]["reached"] else None
    out["loss"] = loss_t[:n].cpu().double().numpy()
    g = gstat[:n].cpu().double().numpy()
    out["grad_sq"], out["energy"], out["grad_dots"] = g[:, :, 0], g[:, :, 1:3], g[:, :, 3:]
    for key in ("delta_sq", "ref_dot", "ref_sq"):
        out[key] = torch.stack(out[key]).cpu().double().numpy() if out[key] else np.zeros((0, M))
    out["sv2"] = [np.stack([s[m] for s in out["sv2"]]) for m in range(M)] if out["sv2"] else []
    return out


@torch.no_grad()
def _record(out: dict, s: int, deltas, ref: dict | None, keep: bool):
    out["align_steps"].append(s)
    out["delta_sq"].append(torch.stack([d.square().sum() for d in deltas]))
    if ref is not None and s in ref["deltas"]:
        out["ref_dot"].append(torch.stack([(d * r).sum()
                                           for d, r in zip(deltas, ref["deltas"][s])]))
        out["ref_sq"].append(torch.stack([r.square().sum() for r in ref["deltas"][s]]))
    if keep:
        out["deltas"][s] = [d.clone() for d in deltas]
        out["sv2"].append(
            [torch.linalg.svdvals(d.float()).square().cpu().double().numpy() for d in deltas])


# --------------------------------------------------------------------------- statistics of the runs
def grad_summary(run: dict, base: Base, znorm2: np.ndarray, series: bool = False) -> dict:
    """projection_stats per layer and overall (and, with `series`, the per-step values)."""
    numel, out = base.numel, {}
    for g, idx in base.groups().items():
        norms, P = group_series(run["grad_sq"], run["grad_dots"], znorm2, idx)
        out[g] = projection_stats(P, norms, sum(numel[i] for i in idx)) if len(norms) else None
        if series and g == "overall":
            groups = base.groups()
            layer_norms = [
                group_series(run["grad_sq"], run["grad_dots"], znorm2, groups[f"layer{l}"])[0]
                for l in range(base.n_layer)
            ]
            out["series"] = dict(grad_norm=_round(norms), proj=_round(P),
                                 layer_grad_norm=list(map(_round, layer_norms)))
    return out


def _round(a: np.ndarray) -> list:
    """Per-step series to 5 significant digits (they feed histograms; keeps the JSON small)."""
    return np.vectorize(lambda v: float(f"{v:.5g}"), otypes=[float
                                                             ])(a).tolist() if np.size(a) else []


def _final(c: np.ndarray):
    return float(c[-1]) if len(c) else None


def _mean(v) -> float | None:
    v = [x for x in v if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


def _groups(base: Base, per: list[dict], keys) -> dict:
    """Per layer and overall: the mean over the group's matrices of each key of the per-matrix
    dicts."""
    return {
        g: {k: _mean([per[m][k] for m in idx])
            for k in keys}
        for g, idx in base.groups().items()
    }


def alignment_summary(run: dict, full: dict, base: Base, steps_total: int) -> dict:
    """cos(dW_full(t), dW(t)) at the same step t, per matrix, layer and overall; random level; the
    rank-r ceiling (for a full-rank run: r = min(d_out, d_in), ceiling 1)."""
    numel = base.numel
    steps = run["align_steps"][: len(run["ref_dot"])]
    late = [i for i, s in enumerate(steps) if s > steps_total / 2]
    fidx = [full["align_steps"].index(s) for s in steps]
    dot, f_sq, l_sq = run["ref_dot"], run["ref_sq"], run["delta_sq"][: len(steps)]
    r = run["rank"] or max(max(base.shape(m)) for m in range(len(numel)))
    out = dict(steps=steps, groups={}, matrices={})
    for g, idx in base.groups().items():
        c = group_cos(dot, f_sq, l_sq, idx)
        ceil = [rank_ceiling([full["sv2"][m][j] for m in range(len(numel))], r, idx) for j in fidx]
        out["groups"][g] = dict(cos=c.tolist(),
                                late_mean=float(np.nanmean(c[late])) if late else None,
                                final=_final(c),
                                random_level=random_level(sum(numel[i] for i in idx)), ceiling=ceil,
                                ceiling_final=ceil[-1] if ceil else None)
    for m in range(len(numel)):
        c = group_cos(dot, f_sq, l_sq, [m])
        out["matrices"][base.label(m)] = dict(cos=c.tolist(), final=_final(c),
                                              random_level=random_level(numel[m]))
    return out


def matched_cos(runs: dict, base: Base, r: int) -> dict:
    """cos of the two runs' updates, each at its matched step, per pair of PAIRS; lora_vs_full
    beside the rank-r ceiling of full A's update."""
    numel, M = base.numel, len(base.numel)
    D = {n: runs[n]["matched"]["deltas"] for n in MAIN}
    sv2 = [torch.linalg.svdvals(d.double()).square().cpu().numpy() for d in D["full_A"]]
    out = {}
    for pair, (a, b) in PAIRS.items():
        dot = np.array([float((x.double() * y.double()).sum()) for x, y in zip(D[a], D[b])])
        sa = np.array([float(x.double().square().sum()) for x in D[a]])
        sb = np.array([float(y.double().square().sum()) for y in D[b]])
        groups = {g: dict(cos=float(group_cos(dot, sa, sb, idx)), random_level=random_level(
            sum(numel[i] for i in idx))) for g, idx in base.groups().items()}
        if pair == "lora_vs_full":
            for g, idx in base.groups().items():
                groups[g]["ceiling"] = rank_ceiling(sv2, r, idx)
        out[pair] = dict(
            runs=[a, b], steps=[runs[a]["matched"]["step"],
                                runs[b]["matched"]["step"]], groups=groups,
            matrices={base.label(m): float(group_cos(dot, sa, sb, [m]))
                      for m in range(M)})
    return out


def subspace_summary(runs: dict, base: Base, r: int, which: str = "matched") -> dict:
    """Subspace similarity of the top-r singular subspaces (column space: left; row space: right) of
    the two runs' updates, per pair of PAIRS, per matrix, layer and overall, beside the random
    level."""
    def deltas(n):
        return runs[n]["matched"]["deltas"] if which == "matched" else runs[n]["final_deltas"]
    sub = {n: [top_subspaces(d, r)[:2] for d in deltas(n)] for n in MAIN}
    out = {}
    for pair, (a, b) in PAIRS.items():
        per = []
        for m in range(len(base.names)):
            (Ua, Va), (Ub, Vb) = sub[a][m], sub[b][m]
            d_out, d_in = base.shape(m)
            left, right = subspace_similarity(Ua, Ub), subspace_similarity(Va, Vb)
            lr_, rr_ = (subspace_random_level(Ua.shape[1], Ub.shape[1], d_out),
                        subspace_random_level(Va.shape[1], Vb.shape[1], d_in))
            per.append(
                dict(left=left, right=right, sim=(left + right) / 2, left_random=lr_,
                     right_random=rr_, random=(lr_ + rr_) / 2, dims=[Ua.shape[1], Ub.shape[1]],
                     principal_cos_left=principal_cosines(Ua, Ub)))
        out[pair] = dict(runs=[a, b], groups=_groups(base, per, ("sim", "random", "left", "right")),
                         matrices={base.label(m): p for m, p in enumerate(per)})
    return out


def energy_summary(run: dict, base: Base, dims: list[tuple[int, int]]) -> dict:
    """Mean over steps of each per-step gradient's energy share in full A's top-k column space
    (left) and row space (right), per matrix, layer and overall, beside the random shares k / d_out
    and k / d_in."""
    sq = np.maximum(run["grad_sq"], 1e-300)
    share = run["energy"] / sq[:, :, None]                  # (T, M, 2)
    per = []
    for m in range(len(base.names)):
        (kU, kV), (d_out, d_in) = dims[m], base.shape(m)
        left, right = float(share[:, m, 0].mean()), float(share[:, m, 1].mean())
        per.append(dict(left=left, right=right, share=(left + right) / 2, left_random=kU / d_out,
                        right_random=kV / d_in, random=(kU / d_out + kV / d_in) / 2))
    groups = _groups(base, per, ("share", "random", "left", "right", "left_random", "right_random"))
    for g in groups.values():
        g["over_random"] = g["share"] / g["random"] if g["share"] is not None and g[
            "random"] else None
    return dict(groups=groups, matrices={base.label(m): p for m, p in enumerate(per)},
                steps=len(sq))


def intruder_summary(run: dict, base: Base, ft: FTConfig) -> dict:
    """Intruder dimensions of W0 + dW (at the matched step) per matrix; totals per layer and
    overall."""
    per = []
    for m, n in enumerate(base.names):
        W0 = _canon(_weight(base.model.get_submodule(n)).detach(), base.hf)
        count, best = intruders(W0, W0 + run["matched"]["deltas"][m].to(W0.dtype), ft.intruder_k,
                                ft.intruder_eps)
        per.append(dict(count=count, max_abs_cos=best))
    groups = {g: sum(per[m]["count"] for m in idx) for g, idx in base.groups().items()}
    return dict(step=run["matched"]["step"], counts=groups, examined=ft.intruder_k * len(per),
                matrices={base.label(m): p for m, p in enumerate(per)})


def activity(run: dict, base: Base) -> dict:
    """||dW|| / ||W0|| per layer (block) at every alignment step, at the matched step and at
    the end; shares of ||dW||^2 and the depth centroid at the matched step."""
    w0 = np.array([float(_weight(base.model.get_submodule(n)).detach().double().square().sum())
                   for n in base.names])
    layers = [base.groups()[f"layer{l}"] for l in range(base.n_layer)]

    def ratio(sq):
        return np.array([math.sqrt(sq[i].sum() / w0[i].sum()) for i in layers])
    over = [ratio(d).tolist() for d in run["delta_sq"]]
    out = dict(steps=run["align_steps"], ratio=over, final=over[-1] if over else None)
    if run.get("matched") and run["matched"]["deltas"] is not None:
        sq = np.array([float(d.double().square().sum()) for d in run["matched"]["deltas"]])
        r = ratio(sq)
        out.update(matched=r.tolist(), matched_step=run["matched"]["step"],
                   share=(np.array([sq[i].sum() for i in layers]) / max(sq.sum(), 1e-300)).tolist(),
                   centroid=depth_centroid(r), argmax_layer=int(r.argmax()),
                   overall=math.sqrt(sq.sum() / w0.sum()),
                   per_matrix={base.label(m): math.sqrt(sq[m] / w0[m]) for m in range(len(w0))})
    if over:
        out["centroid_final"] = depth_centroid(over[-1])
    return out


def run_row(run: dict, base: Base, znorm2: np.ndarray) -> dict:
    """The numbers of one run that the lr and rank tables show."""
    n = len(run["loss"])
    tail = run["loss"][max(0, n - max(1, n // 10)):].mean(0) if n else [None] * 3
    ev = run["evals"][-1] if run["evals"] else {}
    gs = grad_summary(run, base, znorm2)["overall"] or {}
    every = max(1, n // 50)
    return dict(
        method=run["method"],
        lr=run["lr"],
        rank=run["rank"] or None,
        alpha=run["alpha"] or None,
        scale=run["scale"],
        seed=run["seed"],
        trainable=run["trainable"],
        diverged_at=run["diverged_at"],
        steps_done=n,
        steps_to_target=run["steps_to_target"],
        final_train_loss=tail[0],
        final_lm_loss=tail[1],
        final_probe_loss=tail[2],
        val_loss=ev.get("val_loss"),
        p_in=ev.get("p_in"),
        p_ood=ev.get("p_ood"),
        **{k: gs.get(k) for k in (*GRAD_KEYS, "grad_norm_cv", "cos_over_null")},
        loss_curve=dict(step=list(range(1, n + 1, every)), loss=run["loss"][::every, 0].tolist()),
        val_curve=dict(
            step=[e["step"] for e in run["evals"]], val_loss=[e["val_loss"] for e in run["evals"]]
        ),
    )


def spearman(a, b) -> float | None:
    ok = [i for i in range(len(a)) if a[i] is not None and b[i] is not None and math.isfinite(b[i])]
    if len(ok) < 3:
        return None
    ra, rb = (np.argsort(np.argsort([v[i] for i in ok])) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _ratio(a: dict | None, b: dict | None, k: str):
    return a[k] / b[k] if a and b and a.get(k) is not None and b.get(k) else None


# ----------------------------------------------------------------------------- the study
def study(base: Base, ft: FTConfig, device, progress: bool) -> tuple[dict, dict, dict]:
    """All runs; returns ({experiment: results}, {experiment: definitions}, the task's record)."""
    task = make_task(base.corpus, base.cfg.seed, ft)
    plain, ev = task_eval_sets(base, task)
    V = base.model.vocab_size
    evaluators = (Evaluator(EvalSets(ev.lm_x, ev.lm_y, {}), device, V, rows=64),
                  Evaluator(ev, device, V, rows=64))
    eval0, plain0 = evaluators[1](base.model), evaluate(base.model, plain, device, batch_size=64)
    target = plain0["val_loss"] + ft.target_frac * (eval0["val_loss"] - plain0["val_loss"])
    task_rec = dict(cipher_words=len(task.words), new_codewords=ft.new_codewords,
                    target_val_loss=target, base_val_loss_plain=plain0["val_loss"],
                    base_eval_plain=plain0, base_eval_task=eval0, target_frac=ft.target_frac,
                    cipher=task.words, codewords=task.codewords)
    Z, znorm2 = random_dirs(base, ft.n_dirs, ft.seed, device)
    lrs, ranks = parse_list(ft.lrs, "lrs", float), parse_list(ft.ranks, "ranks", int)
    n_runs = 2 * len(lrs) + len(MAIN) + len([r for r in ranks if r != ft.rank])
    bar = tqdm(total=n_runs * ft.steps, disable=not progress, dynamic_ncols=True,
               desc="fine-tuning")
    t0 = time.perf_counter()
    data = {o: task_batches(base, task, ft, o, device) for o in (0, 1)}
    kw = dict(evaluators=evaluators, Z=Z, ft=ft, target=target, bar=bar, eval0=eval0)
    lora_kw = dict(rank=ft.rank, alpha=ft.alpha)

    def run(method, lr, order=0, **more):
        bar.set_description(f"{method} lr {lr:g}" +
                            (f" r {more['rank']}" if "rank" in more else ""))
        return finetune(base, data[order], method=method, lr=lr, **kw, **more)
    sweep = {"full": [run_row(run("full", lr), base, znorm2) for lr in lrs],
             "lora": [run_row(run("lora", lr, **lora_kw), base, znorm2) for lr in lrs]}
    chosen = {}
    for m, given in (("full", ft.lr_full), ("lora", ft.lr_lora)):
        chosen[m] = (given, "given on the command line") if given > 0 else pick_lr(sweep[m])
    lr_f, lr_l = chosen["full"][0], chosen["lora"][0]
    runs = {"full_A": run("full", lr_f, keep="all")}
    A = runs["full_A"]
    if A["diverged_at"] is not None:
        raise UsageError(
            f"full fine-tuning at lr {lr_f:g} diverged at step {A['diverged_at']}: lower it"
        )
    sub_A = [
        tuple(t.to(d.dtype) for t in top_subspaces(d, ft.top_k)[:2]) for d in A["matched"]["deltas"]
    ]
    more = dict(ref=A, energy=sub_A, keep="end")
    runs["full_B"] = run("full", lr_f, order=1, **more)
    runs["lora_0"] = run("lora", lr_l, seed=0, **lora_kw, **more)
    runs["lora_1"] = run("lora", lr_l, seed=1, **lora_kw, **more)
    bad = [n for n in MAIN if runs[n]["diverged_at"] is not None]
    if bad:
        raise UsageError(f"{', '.join(bad)} diverged at the chosen lr: give lower --lrs")
    dims = [(U.shape[1], Vv.shape[1]) for U, Vv in sub_A]
    rank_rows = []
    for r in ranks:
        rr = (
            runs["lora_0"]
            if r == ft.rank
            else run("lora", lr_l, rank=r, alpha=ft.alpha / ft.rank * r, ref=A, keep="end")
        )
        rank_rows.append(rank_row(rr, A, base, znorm2))
    bar.close()
    wall = round(time.perf_counter() - t0, 1)
    res = dict(
        base_eval=eval0,
        steps=ft.steps,
        target_val_loss=target,
        wall_runs_s=wall,
        lr_full=lr_f,
        lr_lora=lr_l,
        matched_steps={n: runs[n]["matched"]["step"] for n in MAIN},
        reached_target={n: runs[n]["matched"]["reached"] for n in MAIN},
    )
    gs = {n: grad_summary(runs[n], base, znorm2, series=n in ("full_A", "lora_0")) for n in MAIN}
    out = dict(baseline=dict(res, full=gs["full_A"]))
    fv = dict(res, full=gs["full_A"], lora=gs["lora_0"], full_B=gs["full_B"], lora_1=gs["lora_1"])
    fv["ratio_full_over_lora"] = {
        g: {k: _ratio(gs["full_A"][g], gs["lora_0"][g], k)
            for k in GRAD_KEYS}
        for g in base.groups()
    }
    fv["random_sampling_rel_se"] = dict(proj_abs_mean=_abs_mean_rel_se(ft),
                                        proj_var=_var_rel_se(ft))
    out["full_vs_lora"] = fv
    out["lr"] = dict(
        res,
        lrs=lrs,
        rows=sweep,
        chosen={m: dict(lr=v[0], rule=v[1]) for m, v in chosen.items()},
        spearman_lr_grad_norm_var={
            m: spearman(lrs, [r["grad_norm_var"] for r in sweep[m]]) for m in sweep
        },
    )
    out["alignment"] = dict(
        res,
        rank=ft.rank,
        alignment=alignment_summary(runs["lora_0"], A, base, ft.steps),
        full_B=alignment_summary(runs["full_B"], A, base, ft.steps),
        lora_1=alignment_summary(runs["lora_1"], A, base, ft.steps),
        matched=matched_cos(runs, base, ft.rank),
    )
    out["subspace"] = dict(res, rank=ft.rank, matched=subspace_summary(runs, base, ft.rank),
                           final=subspace_summary(runs, base, ft.rank, "final"))
    out["energy"] = dict(
        res,
        top_k=ft.top_k,
        reference="full_A",
        reference_step=A["matched"]["step"],
        runs={n: energy_summary(runs[n], base, dims) for n in MAIN if n != "full_A"},
    )
    out["intruders"] = dict(res, k=ft.intruder_k, eps=ft.intruder_eps,
                            runs={n: intruder_summary(runs[n], base, ft) for n in MAIN})
    acts = {n: activity(runs[n], base) for n in MAIN}
    out["activity"] = dict(res, full=acts["full_A"], lora=acts["lora_0"], full_B=acts["full_B"],
                           lora_1=acts["lora_1"])
    out["rank"] = dict(res, ranks=ranks, rows=rank_rows, full=run_row(A, base, znorm2),
                       base_p_ood=eval0["p_ood"])
    out["table"] = comparison(out, ft)
    return out, definitions(), task_rec


def rank_row(run: dict, A: dict, base: Base, znorm2: np.ndarray) -> dict:
    """A LoRA run of the rank sweep against full A: cos at the same steps and its rank-r ceiling,
    the subspace similarity of the two updates' top-r subspaces at the end, beside its random
    level."""
    al = alignment_summary(run, A, base, len(A["loss"]))["groups"]["overall"]
    sims, rand = [], []
    for m, (d, f) in enumerate(zip(run["final_deltas"], A["final_deltas"])):
        (Ua, Va), (Ub, Vb) = top_subspaces(d, run["rank"])[:2], top_subspaces(f, run["rank"])[:2]
        d_out, d_in = base.shape(m)
        sims.append((subspace_similarity(Ua, Ub) + subspace_similarity(Va, Vb)) / 2)
        rand.append((subspace_random_level(Ua.shape[1], Ub.shape[1], d_out)
                     + subspace_random_level(Va.shape[1], Vb.shape[1], d_in)) / 2)
    c, ceil = al["final"], al["ceiling_final"]
    return dict(run_row(run, base, znorm2), align_late_mean=al["late_mean"], align_final=c,
                ceiling_final=ceil, of_ceiling=c / ceil if c is not None and ceil else None,
                subspace_final=_mean(sims), subspace_random=_mean(rand),
                activity_centroid=activity(run, base).get("centroid"))


def _abs_mean_rel_se(ft: FTConfig) -> float:
    """Relative standard error of a ratio of two mean |<g, u>| over T steps x k directions when <g,
    u> is Gaussian with sd ||g|| / sqrt(D) (a random direction): sqrt((pi/2 - 1) / (T k)) each."""
    n = ft.steps * ft.n_dirs
    return math.sqrt(2 * (math.pi / 2 - 1) / n)


def _var_rel_se(ft: FTConfig) -> float:
    """Relative standard error of a ratio of two variances over T steps, averaged over k directions,
    of Gaussian projections: sqrt(2 / ((T - 1) k)) each."""
    return math.sqrt(2 * 2 / (max(1, ft.steps - 1) * ft.n_dirs))


# ----------------------------------------------------------------------------- the table
def _cmp(a: float, b: float, tol: float = 0.0) -> str:
    """'above' / 'below' / 'at' of a against b; 'at' within a relative tolerance `tol` (given
    a priori)."""
    if abs(a - b) <= tol * abs(b):
        return "at"
    return "above" if a > b else "below"


def _step(s, reached: bool, steps: int) -> str:
    return (
        f"reaches the target at step {s}" if reached else f"does not reach it within {steps} steps"
    )


def comparison(out: dict, ft: FTConfig) -> dict:
    """The study's numbers (DistilGPT-2) beside ours, each row with its reference and a sentence
    made from the numbers. Raw projections depend on the model and the loss, so only ratios, cosines
    and shares compare across models."""
    fv, act, al, sub = out["full_vs_lora"], out["activity"], out["alignment"], out["subspace"][
        "matched"]
    f, l = fv["full"]["overall"], fv["lora"]["overall"]
    ratio, se = fv["ratio_full_over_lora"]["overall"], fv["random_sampling_rel_se"]
    r, k, T = ft.rank, ft.top_k, ft.steps
    rows = []

    def row(quantity, study, ours, reference, reference_is, reading):
        rows.append(dict(quantity=quantity, study=study, ours=ours, reference=reference,
                         reference_is=reference_is, reading=reading))

    # (1) mean |projection|: by E|<g, z>| = ||g|| sqrt(2/(pi D)) a ratio of gradient norms
    g_ratio = ratio["grad_norm_mean"]
    p_ratio = ratio["proj_abs_mean"]
    row(
        "mean |projection| on random directions, ratio full / LoRA",
        STUDY["proj_full"] / STUDY["proj_lora"],
        p_ratio,
        g_ratio,
        "ratio of mean ||g|| (E|<g, z>| = ||g|| sqrt(2/(pi D)))",
        f"Ours {p_ratio:.3g} is {_cmp(p_ratio, g_ratio, 3 * se['proj_abs_mean'])} the gradient-norm"
        f" ratio {g_ratio:.3g} (3 standard errors of random-direction sampling:"
        f" {3 * se['proj_abs_mean']:.1%}): it measures the gradients' size, not their direction."
        f" Normalised by ||g||, full FT projects at {f['cos_over_null']:.3g} and LoRA at"
        f" {l['cos_over_null']:.3g} times the random level sqrt(2/(pi D)).",
    )
    v_ratio, sq_ratio = ratio["proj_var"], ratio["grad_sq_mean"]
    reason = ('its smaller gradient' if _cmp(v_ratio, sq_ratio, 3 * se['proj_var']) == 'at'
              else 'more than its smaller gradient')
    row(
        "variance of projections over steps, ratio full / LoRA",
        "high vs substantially lower",
        v_ratio,
        sq_ratio,
        "ratio of mean ||g||^2 (E<g, z>^2 = ||g||^2 / D)",
        f"Ours {v_ratio:.3g} is {_cmp(v_ratio, sq_ratio, 3 * se['proj_var'])} the ratio of mean"
        " squared "
        f"gradient norms {sq_ratio:.3g} (3 standard errors: {3 * se['proj_var']:.1%}): the lower "
        "dispersion of LoRA's projections is"
        f" {reason}.",
    )

    # (2) alignment at matched loss against full vs full and LoRA vs LoRA
    mc = al["matched"]
    c, ff, ll = (mc[p]["groups"]["overall"]["cos"]
                 for p in ("lora_vs_full", "full_vs_full", "lora_vs_lora"))
    ceil, rnd = (
        mc["lora_vs_full"]["groups"]["overall"]["ceiling"],
        mc["lora_vs_full"]["groups"]["overall"]["random_level"],
    )
    inside = STUDY["align_lo"] <= c <= STUDY["align_hi"]
    row(
        f"cos(dW_full, dW_LoRA) at matched loss (rank {r})",
        f"{STUDY['align_lo']}-{STUDY['align_hi']}",
        c,
        ff,
        f"cos of two full runs (two data orders); LoRA seeds {fmt_g(ll)}; rank-{r} ceiling "
        f"{fmt_g(ceil)}; random {fmt_g(rnd, 2)}",
        f"LoRA's update has cos {c:.3g} with full FT's ({c / ceil:.0%} of the rank-{r} ceiling"
        f" {ceil:.3g}; {'inside' if inside else 'outside'} the study's range), {_cmp(c, ff)} the"
        f" {ff:.3g} of two full runs on different data orders; two LoRA seeds agree at {ll:.3g}; a"
        f" random direction gives {rnd:.2g}.",
    )
    ov = al["alignment"]["groups"]["overall"]
    ovB = al["full_B"]["groups"]["overall"]
    row(
        f"cos(dW_full, dW_LoRA) at the same step, mean after step {T // 2}",
        f"{STUDY['align_lo']}-{STUDY['align_hi']}",
        ov["late_mean"],
        ovB["late_mean"],
        "the same for full B (other data order) against full A",
        f"At equal steps (not equal loss) LoRA's update has cos {fmt_g(ov['late_mean'])} with full"
        f" A's in the second half of the run, {_cmp(ov['late_mean'], ovB['late_mean'])} a second"
        f" full run's {fmt_g(ovB['late_mean'])}; rank-{r} ceiling at the end"
        f" {fmt_g(ov['ceiling_final'])}.",
    )

    # (3) subspaces of the updates
    s_lf, s_ff, s_ll = (sub[p]["groups"]["overall"]
                        for p in ("lora_vs_full", "full_vs_full", "lora_vs_lora"))
    row(
        f"subspace similarity of top-{r} singular subspaces at matched loss (mean over matrices)",
        "partial alignment (not measured)",
        s_lf["sim"],
        s_ff["sim"],
        f"full vs full (two data orders); LoRA vs LoRA {fmt_g(s_ll['sim'])}; random"
        f" {fmt_g(s_lf['random'], 2)}",
        f"LoRA's update shares {s_lf['sim']:.3g} of its top-{r} subspace with full FT's "
        f"({s_lf['sim'] / s_lf['random']:.3g} times random), {_cmp(s_lf['sim'], s_ff['sim'])} the "
        f"{s_ff['sim']:.3g} two full runs share; two LoRA seeds share {s_ll['sim']:.3g}.",
    )
    en = out["energy"]["runs"]
    e_l, e_b = en["lora_0"]["groups"]["overall"], en["full_B"]["groups"]["overall"]
    row(
        f"share of each step's gradient energy in the top-{k} subspace of dW_full (mean of column"
        " and row spaces)",
        "preserves dominant directions (not measured)",
        e_l["share"],
        e_l["random"],
        f"random share k/d; full B (other data order) {fmt_g(e_b['share'])}",
        f"Per step LoRA's effective gradient puts {e_l['share']:.3g} of its energy in full A's"
        f" top-{k} subspace ({e_l['over_random']:.3g} times the random share {e_l['random']:.2g});"
        f" the gradient of a full run on other data puts {e_b['share']:.3g}"
        f" ({e_b['over_random']:.3g} times).",
    )
    it = out["intruders"]["runs"]
    n_l, n_l1, n_a, n_b = (it[n]["counts"]["overall"]
                           for n in ("lora_0", "lora_1", "full_A", "full_B"))
    more = ('more than' if min(n_l, n_l1) > max(n_a, n_b)
            else 'fewer than' if max(n_l, n_l1) < min(n_a, n_b) else 'as many as')
    row(
        f"intruder dimensions (top {ft.intruder_k} singular vectors, |cos| < {ft.intruder_eps}),"
        " all matrices",
        "not measured",
        n_l,
        n_a,
        f"full FT at matched loss (full B {n_b}; LoRA seed 1 {n_l1})",
        f"W + dW_LoRA has {n_l} intruder dimensions among {it['lora_0']['examined']} top singular"
        f" vectors (seed 1: {n_l1}); W + dW_full has {n_a} (other data order: {n_b}): LoRA makes"
        f" {more}"
        " full FT (more or fewer: beyond the range of both pairs of runs).",
    )

    # (4) layer-wise activity
    cl, cf, cb, cl1 = (act[n]["centroid"] for n in ("lora", "full", "full_B", "lora_1"))
    spread = max(abs(cf - cb), abs(cl - cl1))
    where = "shallower" if cl < cf else "deeper"
    row(
        "activity centroid ||dW|| / ||W|| over depth (0 first layer, 1 last), LoRA",
        "shallow and middle layers",
        cl,
        cf,
        f"full FT; spread of two runs: data orders {fmt_g(abs(cf - cb))}, LoRA seeds "
        f"{fmt_g(abs(cl - cl1))}",
        f"LoRA's activity centroid is {cl:.3g} (most active layer {act['lora']['argmax_layer']})"
        f" and full FT's {cf:.3g} (most active layer {act['full']['argmax_layer']}): LoRA is"
        f" {where} by {abs(cl - cf):.3g}, {'beyond' if abs(cl - cf) > spread else 'within'} the"
        f" run-to-run spread {spread:.3g}.",
    )

    # (5) rank sweep, speed, lr sensitivity
    rk = out["rank"]["rows"]
    if rk:
        a, b = rk[0], rk[-1]
        row(
            "rank sweep: cos with dW_full at the end as a fraction of the Eckart-Young ceiling,"
            f" rank {a['rank']} -> {b['rank']}",
            "future work",
            f"{fmt_g(a['of_ceiling'])} -> {fmt_g(b['of_ceiling'])}",
            f"{fmt_g(a['ceiling_final'])} -> {fmt_g(b['ceiling_final'])}",
            "rank-r ceiling",
            f"From rank {a['rank']} to {b['rank']} the ceiling goes {fmt_g(a['ceiling_final'])} -> "
            f"{fmt_g(b['ceiling_final'])} and LoRA's cos {fmt_g(a['align_final'])} -> "
            f"{fmt_g(b['align_final'])}, subspace similarity {fmt_g(a['subspace_final'])} -> "
            f"{fmt_g(b['subspace_final'])} (random {fmt_g(a['subspace_random'], 2)} -> "
            f"{fmt_g(b['subspace_random'], 2)}).",
        )
    res, lr = out["baseline"], out["lr"]
    sf, sl = (lr_steps(out, n) for n in ("full_A", "lora_0"))
    row(
        "steps to the target validation loss at the swept lr, LoRA",
        "not measured",
        sl[0] if sl[1] else None,
        sf[0] if sf[1] else None,
        "full FT at its swept lr (-: not reached)",
        f"With each lr chosen by the same sweep (full {res['lr_full']:g}, LoRA {res['lr_lora']:g})"
        f" and the target {res['target_val_loss']:.3g}, full FT {_step(sf[0], sf[1], T)} and LoRA"
        f" {_step(sl[0], sl[1], T)}.",
    )
    rho = lr["spearman_lr_grad_norm_var"]
    row(
        "Spearman(lr, variance of ||g|| over steps), full FT",
        "higher lr, higher variance",
        rho["full"],
        rho["lora"],
        "the same for LoRA",
        f"Over the lrs {', '.join(f'{x:g}' for x in lr['lrs'])} the rank correlation of lr with the"
        f" variance of the gradient norm is {fmt_g(rho['full'])} for full FT and"
        f" {fmt_g(rho['lora'])} for LoRA.",
    )
    readings = dict(
        projection_ratio_is_norm_ratio=_cmp(p_ratio, g_ratio, 3 * se["proj_abs_mean"]) == "at",
        alignment_in_study_range=inside,
        alignment_above_random=c > rnd,
        alignment_vs_full_vs_full=_cmp(c, ff),
        subspace_vs_full_vs_full=_cmp(s_lf["sim"], s_ff["sim"]),
        energy_share_over_random=e_l["over_random"],
        lora_intruders=n_l,
        full_intruders=n_a,
        centroid_lora_minus_full=cl - cf,
        centroid_spread=spread,
        lora_reached_target=out["baseline"]["reached_target"]["lora_0"],
        full_reached_target=out["baseline"]["reached_target"]["full_A"],
    )
    return dict(rows=rows, readings=readings)


def lr_steps(out: dict, name: str) -> tuple[int, bool]:
    return out["baseline"]["matched_steps"][name], out["baseline"]["reached_target"][name]


def table_markdown(table: dict) -> str:
    lines = [
        "| quantity | study (DistilGPT-2) | ours | reference | what it shows |",
        "|---|---|---|---|---|",
    ]
    for r in table["rows"]:
        cells = [r["quantity"], fmt_g(r["study"]), fmt_g(r["ours"]),
                 f"{fmt_g(r['reference'])} ({r['reference_is']})", r["reading"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    readings = ", ".join(f"{k} = {fmt_g(v)}" for k, v in table["readings"].items())
    lines += ["", f"Readings (computed): {readings}"]
    return "\n".join(lines) + "\n"


def table_csv(table: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["quantity", "study", "ours", "reference", "reference_is", "reading"])
    for r in table["rows"]:
        w.writerow([r["quantity"], fmt_g(r["study"]), fmt_g(r["ours"]), fmt_g(r["reference"]),
                    r["reference_is"], r["reading"]])
    return buf.getvalue()


def definitions() -> dict:
    common = dict(
        layer=(
            "one block's four trunk matrices (q/k/v, attention output, MLP up, MLP down); "
            "overall = all blocks"
        ),
        runs=(
            "full_A: full fine-tuning, data order 0; full_B: the same on data order 1; lora_0,"
            " lora_1: LoRA with init seeds 0 and 1 on data order 0; each method at the lr of the"
            " sweep"
        ),
        target_val_loss=(
            "L_in + target_frac (L_task(0) - L_in): L_in the base model's validation loss on the "
            "plain windows, L_task(0) on the same windows in the cipher; fixed before any run"
        ),
        matched_step="the first evaluation step at or below the target (reached = false: the end)",
        full_gradient=(
            "dL/dW of each trunk matrix at each step, before clipping "
            "(L = L_LM + lambda_task L_probe)"
        ),
        lora_gradient=(
            "effective weight gradient scale (dL/dB A + B dL/dA): the first-order change of "
            "W0 + scale B A per unit gradient step on (A, B)"
        ),
        projection=(
            "<g_t, u_j>, u_j (j < k) fixed random unit directions of the group (Gaussian per "
            "matrix, normalized over the group)"
        ),
        projection_identity=(
            "for any g and u uniform on the unit sphere of R^D: E|<g, u>| = ||g|| "
            "random_level(D) ~ ||g|| sqrt(2/(pi D)) and E<g, u>^2 = ||g||^2 / D; raw "
            "projections therefore measure ||g||, and only cos_over_null is geometric"
        ),
        proj_abs_mean="mean over steps and directions of |<g_t, u_j>|",
        proj_var="mean over directions of the variance over steps of <g_t, u_j>",
        proj_abs_mean_null=(
            "mean_t ||g_t|| x random_level(D): what a random direction gives for these norms"
        ),
        cos_abs_mean=(
            "mean |<g_t, u_j>| / ||g_t||; cos_null = random_level(D); cos_over_null their ratio"
        ),
        random_level=(
            "E|cos| of a fixed vector with a uniformly random direction in R^D = "
            "Gamma(D/2) / (sqrt(pi) Gamma((D+1)/2)) ~ sqrt(2/(pi D))"
        ),
        grad_norm_cv="sd / mean of ||g_t|| over steps",
    )
    return dict(
        baseline=dict(
            common, experiment="(1) gradient norms and random projections of full fine-tuning"
        ),
        lr=dict(
            common,
            experiment="(2) the lr sweep of both methods, to the same target",
            steps_to_target=(
                "first evaluation step at or below the target validation loss (None: never)"
            ),
            chosen=(
                "the lr with the fewest steps to the target (ties: lower final val loss); none "
                "reaching it: the lowest final val loss"
            ),
            final_train_loss="mean training loss over the last 10% of the steps",
            p_ood="greedy accuracy on the long-gap probe set (task codewords, cipher) at the end",
            spearman_lr_grad_norm_var=(
                "rank correlation of lr with the variance over steps of the overall gradient norm"
            ),
            diverged_at="first step with a non-finite loss (the run stops there), None if none",
        ),
        full_vs_lora=dict(
            common,
            experiment="(3) gradient magnitude and dispersion, full vs LoRA, measured the same way",
            random_sampling_rel_se=(
                "relative standard error of a ratio of two runs' "
                "proj_abs_mean (proj_var) when projections are Gaussian with "
                "sd ||g|| / sqrt(D): the tolerance (x 3) of 'at'"
            ),
        ),
        alignment=dict(
            common,
            experiment="(4) alignment of LoRA's update with full fine-tuning's",
            cos=(
                "cos(dW_full_A(t), dW(t)) of the same matrix / layer / trunk at the same step t "
                "(alignment: lora_0; full_B and lora_1 beside it)"
            ),
            matched=(
                "cos of the two runs' updates each at its matched step, per pair: "
                "lora_vs_full (lora_0, full_A), full_vs_full (full_A, full_B), "
                "lora_vs_lora (lora_0, lora_1)"
            ),
            late_mean="mean of cos over the alignment steps after half the run",
            ceiling=(
                "cos of dW_full with its best rank-r approximation per matrix "
                "(Eckart-Young): the largest cos any rank-r update reaches"
            ),
        ),
        subspace=dict(
            common,
            experiment="(4b) subspaces of the updates",
            sim=(
                "||Ua^T Ub||_F^2 / min(ra, rb) of the top-r left (column) and right (row) singular "
                "vectors of the two updates (mean of cos^2 of the principal angles), averaged over "
                "left and right; 1: one contains the other"
            ),
            random="max(ra, rb) / d, its expectation for independent random subspaces",
            principal_cos_left="cosines of the principal angles of the column spaces",
        ),
        energy=dict(
            common,
            experiment="(4c) gradients in the subspace of full fine-tuning's update",
            share=(
                "mean over steps of ||U_k^T G_t||^2 / ||G_t||^2 (left) and ||G_t V_k||^2 / "
                "||G_t||^2 (right), U_k, V_k the top-k singular vectors of full A's update at its "
                "matched step, G_t a run's per-step gradient (full_B, lora_0, lora_1: runs that "
                "did not build that update)"
            ),
            random="k / d_out (left), k / d_in (right): the expected share of a random gradient",
        ),
        intruders=dict(
            common,
            experiment="(4d) intruder dimensions (Shuttleworth et al. 2024)",
            count=(
                "top-k left singular vectors of W0 + dW (matched step) whose largest |cos| with "
                "every left singular vector of W0 is below eps"
            ),
        ),
        activity=dict(
            common,
            experiment="(5) layer-wise activity",
            ratio="||dW_l|| / ||W0_l|| per layer at each alignment step",
            matched="the ratio at the run's matched step; final: at the end",
            share="||dW_l||^2 / sum_l ||dW_l||^2 at the matched step",
            centroid="ratio-weighted mean depth in [0, 1] at the matched step (0.5: flat)",
        ),
        rank=dict(
            common,
            experiment="rank sweep of LoRA (alpha = scale r) at LoRA's lr",
            align_final="cos with full A's update at the end",
            ceiling_final="rank-r ceiling then",
            of_ceiling="align_final / ceiling_final",
            subspace_final=(
                "subspace similarity of the top-r subspaces of the two updates at the end"
            ),
        ),
        table=dict(
            experiment="our numbers beside the study's",
            reading="a sentence per row, generated from the numbers",
            readings="computed from the rows, never typed",
        ),
    )


# ----------------------------------------------------------------------------- figures
def plot_all(folder: str) -> list[str]:
    """The figures, drawn from the JSONs of `folder` (the sweep figures only when the sweeps
    ran)."""
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
        n = np.maximum(np.asarray(s["grad_norm"])[:, None], 1e-30)
        ax[1].hist(np.ravel(np.asarray(s["proj"]) / n / fv[m]["overall"]["cos_null"]), bins=40,
                   alpha=0.6, color=c, label=m)
        L = len(s["layer_grad_norm"])
        ax[2].plot([fv[m][f"layer{l}"]["cos_over_null"] for l in range(L)], "o-", color=c, label=m)
    ax[0].set(title="gradient norm per step (trunk)", xlabel="||g||")
    ax[1].set(title="<g, u> / (||g|| sqrt(2/(pi D)))", xlabel="normalised projection")
    ax[2].axhline(1, color="gray", ls="--", label="random direction")
    ax[2].set(title="mean |cos(g, u)| / random level per layer", xlabel="layer")
    for a in ax:
        a.legend()
    save(fig, "gradients")

    al = r["alignment"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, name, c in (("alignment", "LoRA 0 vs full A", "k"),
                         ("lora_1", "LoRA 1 vs full A", "C1"), ("full_B", "full B vs full A",
                                                                "C0")):
        o = al[key]["groups"]["overall"]
        ax.plot(al[key]["steps"], o["cos"], "-", color=c, lw=2 if key == "alignment" else 1,
                label=name)
    o = al["alignment"]["groups"]["overall"]
    ax.plot(al["alignment"]["steps"], o["ceiling"], "k:", label=f"rank-{al['rank']} ceiling")
    ax.axhline(o["random_level"], color="gray", ls="--", label="random level")
    ax.axhspan(STUDY["align_lo"], STUDY["align_hi"], color="C3", alpha=0.15,
               label="study 0.17-0.19")
    ax.set(xlabel="fine-tuning step", ylabel="cos with full A's update",
           title="updates at the same step")
    ax.legend(fontsize=7, ncol=2)
    save(fig, "alignment")

    sub, en = r["subspace"]["matched"], r["energy"]["runs"]
    L = len([g for g in sub["lora_vs_full"]["groups"] if g != "overall"])
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
    w = 0.27
    for j, (p, c) in enumerate(
        (("lora_vs_full", "k"), ("full_vs_full", "C0"), ("lora_vs_lora", "C1"))):
        ax[0].bar(
            np.arange(L) + (j - 1) * w,
            [sub[p]["groups"][f"layer{l}"]["sim"] for l in range(L)],
            w,
            color=c,
            label=p.replace("_", " "),
        )
    ax[0].plot(
        np.arange(L),
        [sub["lora_vs_full"]["groups"][f"layer{l}"]["random"] for l in range(L)],
        "_",
        color="C3",
        ms=14,
        mew=2,
        label="random",
    )
    ax[0].set(
        xlabel="layer",
        ylabel="subspace similarity",
        title=f"top-{r['subspace']['rank']} subspaces at matched loss",
        xticks=range(L),
        ylim=(0, 1.02),
    )
    for j, (n, c) in enumerate((("full_B", "C0"), ("lora_0", "k"), ("lora_1", "C1"))):
        ax[1].bar(
            np.arange(L) + (j - 1) * w, [en[n]["groups"][f"layer{l}"]["share"] for l in range(L)],
            w, color=c, label=n)
    ax[1].plot(np.arange(L), [en["lora_0"]["groups"][f"layer{l}"]["random"] for l in range(L)], "_",
               color="C3", ms=14, mew=2, label="random k/d")
    ax[1].set(
        xlabel="layer",
        ylabel="energy share",
        title=f"gradient energy in full A's top-{r['energy']['top_k']}",
        xticks=range(L),
        yscale="log",
    )
    for a in ax:
        a.legend(fontsize=7)
    save(fig, "subspace")

    act = r["activity"]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    L = len(act["full"]["matched"])
    for j, (n, c) in enumerate(
        (("full", "C0"), ("full_B", "C2"), ("lora", "C1"), ("lora_1", "C3"))):
        ax.bar(np.arange(L) + (j - 1.5) * 0.2, act[n]["matched"], 0.2, color=c,
               label=f"{n} (centroid {fmt_g(act[n]['centroid'], 2)})")
    ax.set(xlabel="layer", ylabel="||dW|| / ||W0||", title="layer-wise activity at matched loss",
           xticks=range(L))
    ax.legend(fontsize=7)
    save(fig, "activity")

    lr = r["lr"]
    if lr["lrs"]:
        fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
        for a, m in zip(ax, ("full", "lora")):
            for j, row in enumerate(lr["rows"][m]):
                a.plot(
                    row["val_curve"]["step"],
                    row["val_curve"]["val_loss"],
                    color=f"C{j}",
                    lw=2 if row["lr"] == lr["chosen"][m]["lr"] else 0.8,
                    label=f"lr {row['lr']:g}",
                )
            a.axhline(lr["target_val_loss"], color="k", ls="--", label="target")
            a.set(xlabel="step", ylabel="validation loss (task)", title=f"{m}: lr sweep")
            a.legend(fontsize=7)
        save(fig, "lr")

    rk = r["rank"]
    if rk["ranks"]:
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        ax[0].plot(rk["ranks"], [x["align_final"] for x in rk["rows"]], "o-",
                   label="cos with full A")
        ax[0].plot(rk["ranks"], [x["ceiling_final"] for x in rk["rows"]], "k:",
                   label="rank-r ceiling")
        ax[0].plot(rk["ranks"], [x["subspace_final"] for x in rk["rows"]], "s-",
                   label="subspace similarity")
        ax[0].plot(rk["ranks"], [x["subspace_random"] for x in rk["rows"]], "--", color="gray",
                   label="random subspaces")
        ax[0].set(xscale="log", xlabel="rank r", title="LoRA vs full fine-tuning at the end",
                  ylim=(0, 1.02))
        ax[1].plot(rk["ranks"], [x["val_loss"] for x in rk["rows"]], "o-", label="LoRA")
        ax[1].axhline(rk["full"]["val_loss"], color="C0", ls="--", label="full FT")
        ax[1].axhline(rk["target_val_loss"], color="k", ls=":", label="target")
        ax[1].set(xscale="log", xlabel="rank r", ylabel="validation loss (task)",
                  title="task at the end")
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
    p.add_argument("--progress", default="true", choices=("true", "false"),
                   help="tqdm bar (default true)")
    tiny = ", ".join(f"{k} {v}" for k, v in PRESETS["tiny"].items())
    g = p.add_argument_group(f"study settings (paper preset defaults; tiny: {tiny})")
    for f in fields(FTConfig):
        kind = type(f.default)
        conv = _bool if kind is bool else kind
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        g.add_argument(
            *names,
            dest=f"ft_{f.name}",
            type=conv,
            default=None,
            metavar=kind.__name__.upper(),
            help=f"(default {f.default!r})",
        )
    return p


def _bool(s: str) -> bool:
    if s.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expects true or false, got {s!r}")
    return s.lower() == "true"


def run(ns, argv) -> list[str]:
    """The study of the parsed command line; returns the files written."""
    t0 = time.perf_counter()
    ft = ft_config(
        **{k[3:]: v
           for k, v in vars(ns).items() if k.startswith("ft_") and v is not None})
    device = pick_device(ns.device)
    # the statistics' fp32 matmuls stay exact; the model runs under bf16 autocast on CUDA
    exact_fp32()
    if ns.hf_model:
        tag = "hf_" + re.sub(r"[^A-Za-z0-9_.-]+", "_",
                             os.path.basename(os.path.normpath(ns.hf_model)))
        out = ns.out or os.path.join("runs", tag, "analysis")
        check_writable(out)
        base = hf_base(ns.hf_model, ft, device)
    else:
        path = os.path.normpath(ns.base or
                                ("runs/seed42" if ft.preset == "paper" else "runs/tiny_seed42"))
        out = ns.out or os.path.join(path, "analysis")
        check_writable(out)
        base = our_base(path, ft, device)
    print(
        f"base: {base.info.get('run') or base.info.get('model')} ({len(base.names)} trunk matrices,"
        f" {base.n_layer} layers) on {device}"
    )
    res, defs, task = study(base, ft, device, ns.progress == "true")
    tc = base.cfg
    config = dict(
        ft=dataclasses.asdict(ft),
        base={k: v for k, v in base.info.items() if k != "run_state"},
        task=dict(
            task,
            gaps=[tc.gap_min, tc.gap_max],
            p_task=ft.p_task,
            lambda_task=ft.lambda_task,
            ctx=tc.ctx,
            seed=tc.seed,
            data_offset=tc.data_offset,
            n_eval_probe=tc.n_eval_probe,
            n_eval_lm=tc.n_eval_lm,
        ),
        optimizer=(
            "AdamW betas (0.9, 0.999), eps 1e-8, weight decay 0, linear warmup then constant lr"
        ),
        lora=(
            "peft LoraConfig(r, lora_alpha, target_modules = the trunk matrices, lora_dropout 0, "
            "bias none); B = 0 at the start"
        ),
        trunk_numel=int(sum(base.numel)),
    )
    extra = {"run_state": base.info["run_state"]} if "run_state" in base.info else {}
    files = []
    for e in EXPERIMENTS:
        files.append(os.path.join(out, f"finetune_{e}.json"))
        write_result(files[-1], f"finetune_{e}", config, defs[e], res[e], t0, argv, device,
                     __file__, **extra)
    for name, text in (("finetune_table.md", table_markdown(res["table"])),
                       ("finetune_table.csv", table_csv(res["table"]))):
        files.append(os.path.join(out, name))
        write_text(files[-1], text)
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
