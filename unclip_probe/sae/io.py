"""Saving and loading a TopK SAE: ``<name>.safetensors`` + ``<name>.json`` (SAEConfig), the layout the
trainer writes for the ``sae`` stage (docs/design.md §5)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from unclip_probe.checkpoints import load_config, load_state_into, load_weights, save_config, save_weights
from unclip_probe.device import resolve_device
from unclip_probe.errors import bad_input

from .model import SAEConfig, TopKSAE

NAME = "sae"  # the trainer stage's file stem
UNIT_TOL = 1e-3  # decoder rows further than this from unit norm are renormalised on load, with a warning


def _pair(path: str | os.PathLike, name: str) -> tuple[Path, Path]:
    p = Path(path)
    if p.is_dir():
        return p / f"{name}.safetensors", p / f"{name}.json"
    if p.suffix in (".safetensors", ".json"):
        return p.with_suffix(".safetensors"), p.with_suffix(".json")
    raise bad_input("path", f"expected a folder holding {name}.safetensors and {name}.json, or one of those "
                            f"files, got {str(p)!r}.")


def save_sae(sae: TopKSAE, path: str | os.PathLike, name: str = NAME) -> str:
    """Write ``sae`` as weights + config into the folder ``path`` (or beside the file ``path``); returns
    the weights checksum."""
    if not isinstance(sae, TopKSAE):
        raise bad_input("sae", f"expected a TopKSAE, got {type(sae).__name__}.")
    p = Path(path)
    if not p.suffix:
        p.mkdir(parents=True, exist_ok=True)
    weights, config = _pair(p, name)
    checksum = save_weights(sae.state_dict(), weights, metadata={"stage": name})
    save_config(sae.config, config)
    return checksum


def load_sae(path: str | os.PathLike, *, name: str = NAME, device: str = "cpu") -> TopKSAE:
    """The TopK SAE in the folder ``path`` (``sae.safetensors`` + ``sae.json``, as `unclip-probe train
    sae` writes it) or in the file pair one of whose files ``path`` names; in eval mode on ``device``.

    Its decoder rows are unit norm by construction; weights whose rows are not (an EMA of unit rows
    is shorter than one: a run with --ema-decay > 0) are renormalised, with a warning that says so."""
    weights, config = _pair(path, name)
    cfg = load_config(SAEConfig, config)
    sae = TopKSAE(cfg)
    load_state_into(sae, load_weights(weights), source=str(weights))
    with torch.no_grad():
        off = float((sae.W_dec.norm(dim=1) - 1).abs().max())
    if off > UNIT_TOL:
        warnings.warn(f"{weights}: decoder rows are up to {off:.3g} away from unit norm (trained with an EMA?); "
                      "renormalised them", stacklevel=2)
        sae.normalise_decoder_()
    return sae.to(resolve_device(device)).eval()
