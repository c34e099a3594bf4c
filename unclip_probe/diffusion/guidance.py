"""Classifier-free guidance with both passes in one batched forward (docs/design.md §6).

Ho & Salimans 2022 ("Classifier-Free Diffusion Guidance", eq. 6), as GLIDE
(Nichol et al. 2022, §2.4) and the unCLIP decoder (Ramesh et al. 2022, §2.1)
use it:

    out = out_uncond + scale * (out_cond - out_uncond)

``scale`` = 1 + w in Ho & Salimans' notation: 1 is the plain conditional model,
0 the unconditional one. Guidance is linear in the model output, so it is the
same whether the model predicts eps, x0 or v (each is affine in the others for
fixed x_t and t).
"""
from __future__ import annotations

import math
from numbers import Real
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from unclip_probe.errors import bad_input

ModelFn = Callable[[Tensor, Tensor, Any], Tensor]
Cond = Any  # a Tensor (B, ...), a tuple/list of them, or a dict of them; None leaves pass through


def _batch_size(c: Cond, name: str) -> int | None:
    """The common dim-0 size of every tensor leaf (None when there are none)."""
    if c is None:
        return None
    if isinstance(c, Tensor):
        if c.ndim < 1:
            raise bad_input(name, "tensors must have a batch dimension (dim 0).")
        return c.shape[0]
    items = c.values() if isinstance(c, Mapping) else c if isinstance(c, (tuple, list)) else None
    if items is None:
        raise bad_input(name, f"expected a tensor, a tuple/list or a dict of tensors, got {type(c).__name__}.")
    sizes = {b for b in (_batch_size(v, name) for v in items) if b is not None}
    if len(sizes) > 1:
        raise bad_input(name, f"has tensors with different batch sizes {sorted(sizes)}.")
    return sizes.pop() if sizes else None


def _concat(cond: Cond, uncond: Cond, path: str = "cond") -> Cond:
    """[cond; uncond] leaf by leaf along dim 0, for identical structures and shapes."""
    if cond is None or uncond is None:
        if cond is not None or uncond is not None:
            raise bad_input("uncond", f"must have the same structure as cond; {path} is None in only one.")
        return None
    if isinstance(cond, Tensor) and isinstance(uncond, Tensor):
        if cond.shape != uncond.shape:
            raise bad_input("uncond", f"{path} has shape {tuple(uncond.shape)}, expected {tuple(cond.shape)} "
                            "as in cond.")
        return torch.cat([cond, uncond])  # (2B, ...)
    if isinstance(cond, Mapping) and isinstance(uncond, Mapping):
        if set(cond) != set(uncond):
            raise bad_input("uncond", f"{path} has keys {sorted(uncond)}, expected {sorted(cond)} as in cond.")
        return {k: _concat(cond[k], uncond[k], f"{path}[{k!r}]") for k in cond}
    if isinstance(cond, (tuple, list)) and isinstance(uncond, (tuple, list)):
        if len(cond) != len(uncond):
            raise bad_input("uncond", f"{path} has {len(uncond)} items, expected {len(cond)} as in cond.")
        return type(cond)(_concat(c, u, f"{path}[{i}]") for i, (c, u) in enumerate(zip(cond, uncond)))
    raise bad_input("uncond", f"must have the same structure as cond; {path} is a {type(cond).__name__} "
                    f"in cond but a {type(uncond).__name__} in uncond.")


def cfg_denoiser(model_fn: ModelFn, cond: Cond, uncond: Cond, scale: float) -> Callable[[Tensor, Tensor], Tensor]:
    """A ``denoiser(x_t, t)`` for the samplers that applies classifier-free guidance.

    model_fn(x (2B, ...), t (2B,), cond_batch) -> (2B, ...), with cond_batch = [cond; uncond]
    concatenated along dim 0 once, here, leaf by leaf (tensors, tuples/lists or dicts of
    tensors (B, ...); None leaves stay None). Each denoiser call makes ONE forward of batch 2B:
    rows :B conditional, B: unconditional. ``scale`` == 1 short-circuits to a single
    conditional forward model_fn(x (B, ...), t (B,), cond). Returns (B, ...).
    """
    if not callable(model_fn):
        raise bad_input("model_fn", f"expected a callable model_fn(x, t, cond), got {type(model_fn).__name__}.")
    if isinstance(scale, bool) or not isinstance(scale, Real) or not math.isfinite(scale) or scale < 0:
        raise bad_input("scale", f"expected a finite guidance scale >= 0 (1: no guidance), got {scale!r}.")
    B = _batch_size(cond, "cond")
    if B is None:
        raise bad_input("cond", "expected at least one tensor with a batch dimension.")
    B_u = _batch_size(uncond, "uncond")
    if B_u != B:
        raise bad_input("uncond", f"has batch size {B_u}, expected {B} as in cond.")

    def check(x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.ndim < 1 or x.shape[0] != B:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise bad_input("x_t", f"has shape {got}, expected batch size {B} as in cond.")

    if scale == 1:
        def conditional(x: Tensor, t: Tensor) -> Tensor:
            check(x)
            return model_fn(x, t, cond)
        return conditional

    both = _concat(cond, uncond)

    def guided(x: Tensor, t: Tensor) -> Tensor:
        check(x)
        out = model_fn(torch.cat([x, x]), torch.cat([t, t]), both)  # (2B, ...)
        out_c, out_u = out.chunk(2)  # (B, ...) each
        return out_u + scale * (out_c - out_u)

    return guided
