"""Exponential moving average of a model's weights (the weights every stage ships and samples from).

Diffusion models sample far better from EMA weights than from the raw ones
(docs/design.md §5; improved-diffusion, Nichol & Dhariwal 2021). The EMA is a plain
deep copy of the module, so it can be evaluated, saved and loaded like any
model; it never receives gradients.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``ema = decay * ema + (1 - decay) * weights`` for float parameters and buffers.

    Integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are copied as-is.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        """Move the EMA toward ``model``; ``decay=0`` copies the weights (used before ``ema_start``)."""
        src = dict(model.named_parameters())
        src.update(model.named_buffers())
        for name, t in self.model.named_parameters():
            s = src[name].detach()
            if decay > 0.0:
                t.lerp_(s.to(t.dtype), 1.0 - decay)
            else:
                t.copy_(s)
        for name, t in self.model.named_buffers():
            s = src[name].detach()
            # Buffers are averaged only when finite: a causal mask holds -inf, and
            # lerp(-inf, -inf) is NaN (open_clip's text tower keeps its mask as a buffer).
            if decay > 0.0 and t.is_floating_point() and bool(torch.isfinite(s).all()):
                t.lerp_(s.to(t.dtype), 1.0 - decay)
            else:
                t.copy_(s)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()
