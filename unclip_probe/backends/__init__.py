"""Stacks behind one protocol (docs/design.md §2): ``base.py`` says what a stack offers;
each backend implements it. ``load_stack(kind, ...)`` is the one loader by name.

Backends import lazily, so naming one does not import another's dependencies.
"""
from __future__ import annotations

from pathlib import Path

from unclip_probe.backends.base import PRIOR_KINDS, Sampling, Stack, StackDefaults
from unclip_probe.errors import bad_input, one_of

STACKS = ("world",)


def load_stack(kind: str, folder: str | Path | None = None, *, device: str = "auto", **kwargs) -> Stack:
    """Load a stack of `kind` from local folders only (nothing here downloads).

    "world": ``folder`` is a world checkpoint folder (``checkpoints/world``); kwargs go to
    ``UnCLIP.from_pretrained`` (``dtype``, ``compile``).
    """
    if kind not in STACKS:
        raise bad_input("kind", one_of(kind, STACKS))
    if folder is None:
        raise bad_input("folder", f"the {kind!r} stack needs its checkpoint folder, e.g. 'checkpoints/world'")
    from unclip_probe.backends.world import UnCLIP

    return UnCLIP.from_pretrained(folder, device=device, **kwargs)


__all__ = ["PRIOR_KINDS", "STACKS", "Sampling", "Stack", "StackDefaults", "load_stack"]
