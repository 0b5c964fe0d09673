"""Optimizers and learning-rate schedules: the paper's (Adam, warmup, rsqrt decay) and the blog's (AdamW, linear)."""

from __future__ import annotations

import math

import torch
from torch import nn

from src.system.errors import UserError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and embeddings; never biases or norm weights (1-d tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():  # unique tensors: shared weights appear once
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def rsqrt_schedule(warmup_steps: int, hidden_size: int):
    """tensor2tensor's linear_warmup * rsqrt_decay * rsqrt_hidden_size, as a multiplier of the base lr.

    lr(step) = base_lr * min(step / warmup, 1) / sqrt(max(step, warmup)) / sqrt(hidden_size)
    """

    def factor(step: int) -> float:
        step = step + 1
        return min(step / warmup_steps, 1.0) / math.sqrt(max(step, warmup_steps)) / math.sqrt(hidden_size)

    return factor


def linear_schedule(warmup_steps: int, total_steps: int):
    """Linear warmup to the base lr, then linear decay to 0 at `total_steps` (the blog's Seq2SeqTrainer default)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def build_optimizer(
    model: nn.Module,
    *,
    name: str,
    lr: float,
    warmup_steps: int,
    total_steps: int,
    hidden_size: int,
    weight_decay: float = 0.0,
    betas=(0.9, 0.999),
    eps: float = 1e-8,
    fused: bool | None = None,
):
    """Returns (optimizer, LambdaLR scheduler stepped every optimizer step).

    Args:
        fused: one fused kernel for all tensors (True), or torch's multi-tensor `foreach` path (False); None picks
            fused on CPUs and CUDA GPUs, where it is the faster (docs/performance.md, "Precision"), foreach elsewhere. Gradient
            clipping and mixed precision work with both (`src.system.precision.FusedMixedPrecision`).
    """
    groups = param_groups(model, weight_decay)
    if fused is None:
        fused = next(model.parameters()).device.type in ("cpu", "cuda")
    kernel = {"fused": True} if fused else {"foreach": True}
    if name == "adam_rsqrt":
        opt = torch.optim.Adam(groups, lr=lr, betas=tuple(betas), eps=eps, **kernel)
        factor = rsqrt_schedule(warmup_steps, hidden_size)
    elif name == "adamw_linear":
        opt = torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, **kernel)
        factor = linear_schedule(warmup_steps, total_steps)
    else:
        raise UserError(f"unknown optimizer {name!r}. Fix: optimizer=adam_rsqrt or optimizer=adamw_linear.")
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
