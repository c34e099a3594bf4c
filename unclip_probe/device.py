"""Choosing the torch device, one rule for the whole package (docs/design.md §6, §7)."""
from __future__ import annotations

import contextlib
import functools

import torch

from .errors import bad_input


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> cuda when available else cpu; a CUDA request without CUDA is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise bad_input("device", f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise bad_input("device", f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise bad_input("device", f"{device!r} was requested but this machine has no CUDA device; "
                                  "use device='cpu' or 'auto'")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise bad_input("device", f"{device!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for sampling, or None for plain fp32 (docs/design.md §6).

    ``"auto"``: bf16 on a CUDA device that supports it, else fp16 on CUDA, fp32 on the CPU
    (CPU autocast is slower than fp32 for these small convolutions). Weights stay fp32.
    """
    if dtype == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dtype not in DTYPES:
        raise bad_input("dtype", f"expected 'auto', 'fp32', 'bf16' or 'fp16', got {dtype!r}")
    if dtype == "fp16" and device.type != "cuda":
        raise bad_input("dtype", "'fp16' autocast needs a CUDA device; use 'bf16' or 'fp32' on the CPU")
    return DTYPES[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for a resolved dtype; a no-op context for fp32."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def sampling(method):
    """No autograd, and the stack's autocast dtype (``self.device``, ``self.amp_dtype``), around a
    stack's sampling method: every stack samples under the same rule."""
    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        with torch.no_grad(), autocast(self.device, self.amp_dtype):
            return method(self, *args, **kwargs)
    return wrapped
