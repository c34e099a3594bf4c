"""One training loop shared by every stage; each stage supplies a Recipe (docs/design.md §5).

The names below are resolved on first access (PEP 562), so importing
``unclip_probe.train.cli`` to build the command's parser does not import torch.
"""
import importlib as _importlib

_LAZY = {
    "machine_description": "unclip_probe.train.distributed",
    "resolve_device": "unclip_probe.train.distributed",
    "EMA": "unclip_probe.train.ema",
    "Recipe": "unclip_probe.train.trainer",
    "TrainConfig": "unclip_probe.train.trainer",
    "TrainSummary": "unclip_probe.train.trainer",
    "lr_at": "unclip_probe.train.trainer",
    "rank_slice": "unclip_probe.train.trainer",
    "train": "unclip_probe.train.trainer",
}

__all__ = ["EMA", "Recipe", "TrainConfig", "TrainSummary", "lr_at", "machine_description", "rank_slice",
           "resolve_device", "train"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
