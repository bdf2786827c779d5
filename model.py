"""GPT-2-style decoder (pre-LayerNorm, tied head, no linear biases, exact GELU, dropout 0).

The *trunk* is, per block, the q/k/v, attention output, MLP up and MLP down weight matrices.
`trunk_keys` is the one place that defines their canonical order; every flattening of
parameters, directions and gradients in this repository goes through `flatten`. `losses` is the
training objective, shared by training, the benchmark and the gradient analyses;
`training_loss` is the form train.py's step uses. The optimizer (`make_optimizer`,
`optimizer_step`) and the evaluation (`Evaluator`: validation loss, probe accuracy) live here too,
so that the benchmark and the fine-tuning study use what training uses without importing train.py.
"""
from __future__ import annotations

import functools
import importlib.util

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import autocast
from config import Config, UsageError

GPT2_VOCAB = 50_257


def padded_vocab(vocab_size: int, multiple: int = 64) -> int:
    return (vocab_size + multiple - 1) // multiple * multiple


def set_attention_backend(name: str = "auto"):
    """The kernels F.scaled_dot_product_attention may use on CUDA: "auto" (all, PyTorch chooses), or
    only "flash", "cudnn" or "efficient" (an error if that one cannot run a shape). The same
    attention; the kernels differ in speed and in bf16 rounding. A compiled function takes
    the choice at compile time."""
    on = {"flash", "cudnn", "efficient", "math"} if name == "auto" else {name}
    torch.backends.cuda.enable_flash_sdp("flash" in on)
    torch.backends.cuda.enable_cudnn_sdp("cudnn" in on)
    torch.backends.cuda.enable_mem_efficient_sdp("efficient" in on)
    torch.backends.cuda.enable_math_sdp("math" in on)


class Attention(nn.Module):
    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)  # rows: q, k, v
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, nh, T, hs)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff, bias=False)    # up
        self.proj = nn.Linear(d_ff, d_model, bias=False)  # down

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))  # exact (erf) GELU


class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int, d_ff: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_head)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, d_ff)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, n_layer=8, d_model=512, n_head=16, d_ff=2048, ctx=256):
        super().__init__()
        self.vocab_size, self.ctx, self.n_layer = vocab_size, ctx, n_layer
        self.wte = nn.Embedding(padded_vocab(vocab_size), d_model)  # also the LM head (tied)
        self.wpe = nn.Embedding(ctx, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_head, d_ff) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)

    @classmethod
    def from_config(cls, cfg, vocab_size: int) -> "GPT":
        return cls(vocab_size, cfg.n_layer, cfg.d_model, cfg.n_head, cfg.d_ff, cfg.ctx)

    def hidden(self, idx):
        T = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def forward(self, idx, positions=None):
        """Logits (B, T, V) over the real vocabulary; with `positions` (B,) only at those positions
        (B, V)."""
        h = self.hidden(idx)
        if positions is not None:
            h = h[torch.arange(h.size(0), device=h.device), positions]
        return self.head(h)

    def head(self, h):
        """Logits over the real vocabulary. Compiled, the product runs over all padded rows so that
        the logits' rows have an aligned length (50,257 columns would not: slower matrix kernels)
        and the pad columns are dropped inside the fused loss; eagerly that slice would cost copies,
        so only the real rows are multiplied. The same logits either way, up to rounding."""
        if torch.compiler.is_compiling():
            return F.linear(h, self.wte.weight)[..., : self.vocab_size]
        return F.linear(h, self.wte.weight[: self.vocab_size])


def trunk_keys(n_layer: int, block: int | None = None) -> list[str]:
    """Canonical order of trunk tensors: per block q/k/v (one fused matrix, rows q|k|v),
    attention output, MLP up, MLP down; blocks in order. `block` selects one block."""
    blocks = range(n_layer) if block is None else [block]
    return [
        f"blocks.{l}.{name}.weight" for l in blocks
        for name in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
    ]


def flatten(tensors, keys: list[str]) -> torch.Tensor:
    """Concatenate `tensors[k]` for k in `keys`, each flattened row-major: THE flattening."""
    missing = [k for k in keys if k not in tensors]
    if missing:
        raise KeyError(f"missing tensors: {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    return torch.cat([tensors[k].reshape(-1) for k in keys])


def param_groups(model: nn.Module, weight_decay: float):
    """Weight decay on every parameter except LayerNorm weights and biases."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


# ----------------------------------------------------------------------------- the optimizer
def make_optimizer(model: nn.Module, cfg: Config, device: torch.device) -> torch.optim.Optimizer:
    """AdamW or SGD. Decoupled decay: AdamW's own, or (SGD) applied by hand in `optimizer_step`;
    l2: added to the gradient by the optimizer."""
    # SGD with decoupled decay gets no decay from torch.optim.SGD (whose weight_decay is L2):
    # optimizer_step shrinks the weights itself
    sgdw = cfg.optimizer == "sgd" and cfg.wd_mode == "decoupled"
    groups = param_groups(model, 0.0 if sgdw else cfg.weight_decay)
    if cfg.optimizer == "adamw":
        # Adam's weight_decay is L2 (added to the gradient), AdamW's the decoupled one
        cls = torch.optim.AdamW if cfg.wd_mode == "decoupled" else torch.optim.Adam
        # fused: one kernel for all parameters on CUDA; foreach is what runs on a CPU
        fused = {"fused": True} if device.type == "cuda" else {"foreach": True}
        return cls(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, **fused)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           foreach=True)


def optimizer_step(opt: torch.optim.Optimizer, cfg: Config, lr: float):
    """One step of `opt` at learning rate `lr` (the schedule's value for this step)."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    if cfg.optimizer == "sgd" and cfg.wd_mode == "decoupled" and cfg.weight_decay:
        # SGDW: theta <- (1 - lr_t * wd) theta, after the gradient step; group 0 is the decayed
        # group of param_groups (LayerNorm weights and biases are never decayed)
        with torch.no_grad():
            torch._foreach_mul_(opt.param_groups[0]["params"], 1 - lr * cfg.weight_decay)


def losses(model, x, y, probe_pos, lam, n_micro: int = 1, ce_chunks: int = 0, counts=None,
           probe_rows: bool = False, fused_ce: str | None = None):
    """(L_LM + lam * L_probe, L_LM, L_probe): probe loss at the answer positions, LM loss elsewhere.

    The rows of x are `n_micro` equal micro-batches stacked: each loss is the mean over
    micro-batches of that micro-batch's own mean, so one forward of all of them gives the numbers
    (and gradient) of gradient accumulation over them. `lam` may be a 0-d tensor (a compiled loss is
    then not specialised to its value). ce_chunks > 0: the cross-entropy is computed `ce_chunks`
    token chunks at a time without keeping the logits (`chunked_head_ce`); L_LM and L_probe are then
    detached (only the total has a gradient). counts (2, n_micro): the LM-token and probe counts of
    the whole micro-batches when x holds only some of their rows (one process of several);
    the losses are then those rows' shares of the means, which sum over the processes to the losses
    of the whole micro-batches.
    probe_rows: L_probe is computed from the head at the answer positions alone (a product of one
                row per
    sequence), so that its backward skips the full logits: the same value up to rounding, and
    the separate gradients of L_LM and L_probe of one forward cost one full backward, not two (the
    analyses).
    fused_ce: a library of FUSED_CE ("cce", "liger") computes the head and the per-token
    cross-entropy in fused kernels (`fused_head_ce`: the logits are never kept); None: plain
    PyTorch. The same numbers up to rounding; ce_chunks and probe_rows take precedence (the CPU and
    analysis paths)."""
    # probe_pos -1: no probe
    mask = torch.arange(y.size(1), device=y.device)[None, :] == probe_pos[:, None]
    mask = mask.view(n_micro, -1)
    if counts is None:
        n_lm, n_probe = (~mask).sum(1, keepdim=True), mask.sum(1, keepdim=True)
    else:
        n_lm, n_probe = counts[0, :, None], counts[1, :, None]
    # weight of each token in its micro-batch's LM mean
    lm_w = ~mask / n_lm
    probe_w = mask / n_probe.clamp(min=1)
    if ce_chunks > 0:
        w = (lm_w + lam * probe_w).flatten() / n_micro
        loss, ce = chunked_head_ce(model.hidden(x).flatten(0, 1), model.wte.weight, y.flatten(), w,
                                   model.vocab_size, ce_chunks)
        ce = ce.view(n_micro, -1)
        return loss, (ce * lm_w).sum(1).mean(), (ce * probe_w).sum(1).mean()
    if fused_ce and not probe_rows:
        h = model.hidden(x).flatten(0, 1)
        ce = fused_head_ce(h, model.wte.weight[: model.vocab_size], y.flatten(), fused_ce)
        ce = ce.view(n_micro, -1)
        lm, probe = (ce * lm_w).sum(1).mean(), (ce * probe_w).sum(1).mean()
        return lm + lam * probe, lm, probe
    if not probe_rows:
        ce = F.cross_entropy(model(x).float().flatten(0, 1), y.flatten(),
                             reduction="none").view(n_micro, -1)
        lm, probe = (ce * lm_w).sum(1).mean(), (ce * probe_w).sum(1).mean()
        return lm + lam * probe, lm, probe
    h = model.hidden(x)
    ce = F.cross_entropy(model.head(h).float().flatten(0, 1), y.flatten(),
                         reduction="none").view(n_micro, -1)
    rows = (probe_pos >= 0).nonzero().squeeze(1)
    at = probe_pos[rows]
    ce_probe = F.cross_entropy(model.head(h[rows, at]).float(), y[rows, at], reduction="none")
    lm = (ce * lm_w).sum(1).mean()
    probe = (ce_probe * probe_w.view(y.shape)[rows, at]).sum() / n_micro
    return lm + lam * probe, lm, probe


class _ChunkedHeadCE(torch.autograd.Function):
    """sum_i w_i CE(h_i W^T, t_i) and the per-token CE, chunk by chunk over tokens. The weights are
    known in the forward, so the forward also computes the gradients with respect to h and W chunk
    by chunk (as fused linear + cross-entropy kernels do); the backward only scales them. Neither
    fp32 nor full-size logits are ever kept: at most one chunk's, in the autocast dtype, then fp32
    for its softmax."""

    @staticmethod
    def forward(ctx, h, weight, targets, w, vocab_size: int, chunks: int):
        n = h.size(0)
        ce = torch.empty(n, device=h.device, dtype=torch.float32)
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros_like(weight, dtype=torch.float32)
        # padded rows of the tied matrix
        pad = torch.arange(weight.size(0), device=h.device) >= vocab_size
        size = -(-n // chunks)
        for a in range(0, n, size):
            hc, t = h[a : a + size], targets[a : a + size, None]
            # (chunk, V_pad), autocast dtype
            logits = F.linear(hc, weight)
            z = logits.float().masked_fill(pad, float("-inf"))
            lse = torch.logsumexp(z, dim=1, keepdim=True)
            ce[a : a + size] = (lse - z.gather(1, t)).squeeze(1)
            # softmax - one-hot
            g = torch.exp(z - lse).scatter_add(1, t, torch.full_like(lse, -1.0))
            g = (g * w[a : a + size, None]).to(logits.dtype)
            grad_h[a : a + size] = g @ weight.to(g.dtype)
            grad_w += g.t() @ hc.to(g.dtype)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.mark_non_differentiable(ce)
        return (ce * w).sum(), ce

    @staticmethod
    def backward(ctx, grad_loss, grad_ce):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_loss, grad_w * grad_loss, None, None, None, None


def chunked_head_ce(h, weight, targets, w, vocab_size: int, chunks: int):
    """(sum_i w_i CE_i, CE (N,) detached) of the tied head on h (N, d) against targets (N,), token
    weights w (N,) without a gradient; the real vocabulary is the first `vocab_size` rows of
    `weight`."""
    return _ChunkedHeadCE.apply(h, weight, targets, w.detach().float(), vocab_size, chunks)


# --------------------------------------------------------------------- fused head + cross-entropy
# Libraries whose kernels compute the tied head's logits and their cross-entropy together, never
# writing the (tokens x vocabulary) logits: the loss's log-softmax passes over them were 22% of the
# step at the GPT-2 vocabulary (notes/speed.md). Both run Triton kernels, so CUDA only.
FUSED_CE = {"cce": "cut_cross_entropy", "liger": "liger_kernel"}


def installed(library: str) -> bool:
    return importlib.util.find_spec(FUSED_CE[library]) is not None


def _eager_where_installed(fn):
    """torch.compiler.disable(fn) (library kernels: a compiled loss runs them eagerly between its
    two graphs) where a fused library is installed, else fn itself, which then never runs: the
    decorator imports torch._dynamo, 1.4 s of every script's start on a machine without them."""
    return torch.compiler.disable(fn) if any(map(installed, FUSED_CE)) else fn


@_eager_where_installed
def fused_head_ce(h, weight, targets, library: str):
    """Per-token cross-entropy (N,) of the logits h @ weight^T (h (N, d); weight (V, d), the real
    vocabulary's rows) against targets (N,), by `library`'s fused kernels in the autocast dtype
    (fp32 sums). Its backward takes any per-token gradient (the loss's token weights); no logits
    are kept."""
    on = torch.is_autocast_enabled(h.device.type)
    dtype = torch.get_autocast_dtype(h.device.type) if on else h.dtype
    h, weight = h.to(dtype), weight.to(dtype)
    if library == "cce":
        # optional CUDA libraries, imported only when chosen (fused_ce_library checked them)
        from cut_cross_entropy import linear_cross_entropy
        # filter_eps None: the exact gradient (the default skips softmax entries below bf16's eps)
        return linear_cross_entropy(h, weight, targets, reduction="none", filter_eps=None)
    if library == "liger":
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy
        # reduction "none": its backward recomputes each chunk's logits, token gradients folded in
        return liger_fused_linear_cross_entropy(h, weight, targets, reduction="none")
    raise ValueError(f"unknown fused cross-entropy library {library!r}")


def plain_head_ce(h, weight, targets):
    """fused_head_ce in plain PyTorch: the logits in the autocast dtype, their softmax in fp32."""
    return F.cross_entropy(F.linear(h, weight).float(), targets, reduction="none")


@functools.cache
def fused_ce_works(library: str, device_index: int) -> str:
    """"" when `library` runs on this CUDA device and agrees with plain_head_ce on a small problem
    (values and gradients under bf16 autocast, token weights as the loss has them); else why not.
    Once per process: a library built for another torch or Triton fails here, not inside a run."""
    device = torch.device("cuda", device_index)
    try:
        g = torch.Generator(device=device).manual_seed(0)
        n, d, v = 512, 64, 1000
        h = torch.randn(n, d, device=device, generator=g).requires_grad_()
        w = (0.1 * torch.randn(v, d, device=device, generator=g)).requires_grad_()
        t = torch.randint(0, v, (n,), device=device, generator=g)
        tw = torch.rand(n, device=device, generator=g)
        out = []
        for fn in (lambda: fused_head_ce(h, w, t, library), lambda: plain_head_ce(h, w, t)):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                ce = fn()
            gh, gw = torch.autograd.grad((ce * tw).sum(), (h, w))
            out.append((ce.float(), gh, gw))
        for a, b in zip(*out):
            err = ((a - b).norm() / b.norm()).item()
            if not err < 2e-2:  # bf16 logits (plain) against fp32-accumulated: about 1e-3 apart
                return f"differs from the plain loss (relative error {err:.2g})"
        return ""
    except Exception as e:  # an import or kernel failure: the plain path runs instead
        return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}"


def fused_ce_library(choice: str, device: torch.device) -> str | None:
    """The library of the training loss for choice (Config.fused_ce) on `device`; None: plain.
    "off": None. Off CUDA: None (Triton kernels; the plain path is what a CPU runs). "auto":
    cut-cross-entropy when installed and fused_ce_works passes, else None (liger-kernel only when
    named: with per-token weights its backward recomputes the forward's chunks). A library named
    explicitly must be installed and pass the check (ValueError otherwise)."""
    if choice == "off" or device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    for library in (["cce"] if choice == "auto" else [choice]):
        why = fused_ce_works(library, index) if installed(library) else "not installed"
        if not why:
            return library
        if choice != "auto":
            raise ValueError(f"fused_ce={library}: {why}")
        print(f"fused cross-entropy: {library} not used ({why})")
    return None


def training_loss(cfg: Config, device: torch.device):
    """The training loss: `losses` with the fused head cross-entropy of cfg.fused_ce where it runs
    (fused_ce_library; plain PyTorch on a CPU), compiled for fixed shapes on CUDA when
    cfg.compile. train.py's step and bench.py's project rows both take it from here."""
    try:
        library = fused_ce_library(cfg.fused_ce, device)
    except ValueError as e:  # a library named explicitly that does not run here
        raise UsageError(str(e))
    fwd = functools.partial(losses, fused_ce=library) if library else losses
    # dynamic=False: every step has the same shapes, and a dynamic-shape graph would be slower
    return torch.compile(fwd, dynamic=False) if (cfg.compile and device.type == "cuda") else fwd


# ----------------------------------------------------------------------------- evaluation
def _lm_loss_sum(model, x, y, valid):
    """Summed token cross-entropy of the valid rows of one batch of validation windows."""
    ce = F.cross_entropy(model(x).float().flatten(0, 1), y.flatten(), reduction="none").view_as(y)
    return (ce.sum(1) * valid).sum()


def _probe_hits(model, x, pos, ans, valid):
    """Valid rows of one probe batch whose greedy prediction at the answer position is the
    answer."""
    return ((model(x, positions=pos).argmax(-1) == ans) & valid).sum()


class Evaluator:
    """Validation LM loss on the fixed windows; greedy accuracy at the probe answers (p_in, p_ood).

    The sets are moved to the device once, in equal batches (the last one padded with masked rows,
    so every batch has one shape), summed on the device and read with one sync. Probe sequences are
    cut after the last answer position of their set: attention is causal, so the logits there do
    not depend on later tokens. compiled: the batch functions are compiled for those fixed shapes
    (CUDA)."""

    def __init__(self, ev, device, vocab_size: int, compiled: bool = False, rows: int = 512):
        self.device = device
        # a batch's logits <= 1 GiB in bf16: the GPT-2 vocabulary would otherwise take tens of GiB
        logits_cap = 2**29 // (ev.lm_x.size(1) * padded_vocab(vocab_size))
        lm_rows = max(1, min(rows, logits_cap))
        self.lm = self._batches((ev.lm_x, ev.lm_y), lm_rows)
        self.probe = {}
        for name, (xs, pos, ans) in ev.probe.items():
            xs = xs[:, : int(pos.max()) + 1]
            self.probe[name] = (len(xs), self._batches((xs, pos, ans), rows))
        self.n_lm_tokens = ev.lm_y.numel()
        compile_ = (lambda f: torch.compile(f, dynamic=False)) if compiled else (lambda f: f)
        self.lm_fn, self.probe_fn = compile_(_lm_loss_sum), compile_(_probe_hits)

    def _batches(self, tensors, cap: int):
        """Equal batches of at most `cap` rows (under one padded row per batch) with their valid-row
        masks."""
        n = len(tensors[0])
        nb = -(-n // cap)
        rows = -(-n // nb)
        pad = nb * rows - n
        valid = torch.arange(nb * rows) < n
        # padding repeats row 0 (any real row: its result is masked out), keeping one shape
        padded = [torch.cat([t, t[:1].expand(pad, *t.shape[1:])]) if pad else t for t in tensors]
        return [tuple(t[i : i + rows].to(self.device) for t in (*padded, valid))
                for i in range(0, nb * rows, rows)]

    @torch.no_grad()
    def __call__(self, model) -> dict:
        was_training = model.training
        model.eval()
        with autocast(self.device):
            sums = [sum(self.lm_fn(model, *b) for b in self.lm)]
            sums += [sum(self.probe_fn(model, *b) for b in batches)
                     for _, batches in self.probe.values()]
        model.train(was_training)
        vals = torch.stack([s.float() for s in sums]).tolist()  # the one host sync
        out = dict(val_loss=vals[0] / self.n_lm_tokens)
        out.update({name: v / n for (name, (n, _)), v in zip(self.probe.items(), vals[1:])})
        return out


def evaluate(model, ev, device, batch_size: int = 512) -> dict:
    """One evaluation of `model` (a GPT, or any module with its call and `vocab_size`) on the sets
    `ev`; a loop that evaluates often keeps one Evaluator instead (its sets stay on the device)."""
    return Evaluator(ev, device, model.vocab_size, rows=batch_size)(model)
