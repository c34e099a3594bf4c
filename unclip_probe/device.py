"""Choosing the torch device, one rule for the whole package (DESIGN.md §6, §7)."""
from __future__ import annotations

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
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise bad_input("device", f"{device!r} was requested but this machine has no CUDA device; "
                                  "use device='cpu' or 'auto'")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise bad_input("device", f"{device!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return dev
