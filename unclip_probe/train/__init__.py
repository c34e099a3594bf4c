"""One training loop shared by every stage; each stage supplies a Recipe (DESIGN.md §5)."""
from unclip_probe.train.distributed import machine_description, resolve_device
from unclip_probe.train.ema import EMA
from unclip_probe.train.trainer import Recipe, TrainConfig, TrainSummary, lr_at, rank_slice, train

__all__ = ["EMA", "Recipe", "TrainConfig", "TrainSummary", "lr_at", "machine_description", "rank_slice",
           "resolve_device", "train"]
