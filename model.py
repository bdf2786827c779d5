"""GPT-2-style decoder (pre-LayerNorm, tied head, no linear biases, exact GELU, dropout 0).

The *trunk* is, per block, the q/k/v, attention output, MLP up and MLP down weight matrices.
`trunk_keys` is the one place that defines their canonical order; every flattening of
parameters, directions and gradients in this repository goes through `flatten`. `losses` is the
training objective, shared by training, the benchmark and the gradient analyses.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

GPT2_VOCAB = 50_257


def padded_vocab(vocab_size: int, multiple: int = 64) -> int:
    return (vocab_size + multiple - 1) // multiple * multiple


class Attention(nn.Module):
    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)  # rows: q, k, v
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
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
        """Logits (B, T, V) over the real vocabulary; with `positions` (B,) only at those positions (B, V)."""
        h = self.hidden(idx)
        if positions is not None:
            h = h[torch.arange(h.size(0), device=h.device), positions]
        return F.linear(h, self.wte.weight[: self.vocab_size])


def trunk_keys(n_layer: int, block: int | None = None) -> list[str]:
    """Canonical order of trunk tensors: per block q/k/v (one fused matrix, rows q|k|v),
    attention output, MLP up, MLP down; blocks in order. `block` selects one block."""
    blocks = range(n_layer) if block is None else [block]
    return [f"blocks.{l}.{name}.weight" for l in blocks for name in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")]


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


def losses(model, x, y, probe_pos, lam: float):
    """(L_LM + lam * L_probe, L_LM, L_probe): probe loss at the answer positions, LM loss elsewhere."""
    logits = model(x)
    ce = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none").view_as(y)
    mask = torch.arange(y.size(1), device=y.device)[None, :] == probe_pos[:, None]  # probe_pos -1: no probe
    lm = (ce * ~mask).sum() / (~mask).sum()
    probe = (ce * mask).sum() / mask.sum().clamp(min=1)
    return lm + lam * probe, lm, probe
