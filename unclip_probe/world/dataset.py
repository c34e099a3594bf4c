"""Torch datasets that render the world on the fly (docs/design.md §4): no dataset files.

Item `i` of a stream is a pure function of (seed, i), so the stream can be
split across DataLoader workers and DDP ranks without duplicates, and a
resumed run can start at any index.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .. import validate
from ..errors import bad_input, one_of
from .captions import caption, wide_caption
from .render import downsample, render_float, to_uint8
from .scenes import SPLITS, check_config, sample_scene, scene_rng
from .spec import SIZE, SIZES, WorldConfig


def scene_and_caption(seed: int, index: int, config: WorldConfig | None = None, split: str = "all"):
    """(Scene, caption) of example `index` of stream `seed`: the one definition every loader uses."""
    scene = sample_scene(seed, index, config, split)
    return scene, caption(scene, int(scene_rng(seed, index, stream=1).integers(2**31)))


CAPTION_STYLES = ("grammar", "wide")  # captions.caption; captions.wide_caption (issue 24)


def restyled_captions(scenes, captions: list[str], style: str, seed: int, start: int) -> list[str]:
    """The captions a recipe trains on: `captions` as rendered ("grammar"), or each scene re-said by
    `wide_caption` ("wide") with a seed fixed by (seed, its stream position start + k), so a
    resumed run sees the same captions."""
    if validate.choice(style, CAPTION_STYLES, "captions") == "grammar":
        return list(captions)
    return [wide_caption(sc, int(scene_rng(seed, start + k, stream=2).integers(2**31))) for k, sc in enumerate(scenes)]


def world_item(seed: int, index: int, size: int = SIZE, config: WorldConfig | None = None, split: str = "all") -> dict:
    """One example: {"image": uint8 tensor (3, size, size), "caption": str, "index": int}."""
    scene, text = scene_and_caption(seed, index, config, split)
    img = to_uint8(downsample(render_float(scene), size))
    return {"image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), "caption": text, "index": int(index)}


def world_batch(seed: int, indices, size: int = SIZE, config: WorldConfig | None = None, split: str = "all") -> tuple[torch.Tensor, list[str]]:
    """Images uint8 (B, 3, size, size) and captions for the given stream indices."""
    items = [world_item(seed, int(i), size, config, split) for i in indices]
    return torch.stack([it["image"] for it in items]), [it["caption"] for it in items]


class WorldDataset(IterableDataset):
    """An endless (or `length`-long) stream of rendered world examples.

    Each DataLoader worker w of W (and DDP rank r of R) takes indices
    start + (r * W + w) + k * R * W, so workers never repeat each other.
    """

    def __init__(self, seed: int = 0, size: int = SIZE, split: str = "train", config: WorldConfig | None = None,
                 start: int = 0, length: int | None = None, rank: int = 0, world_size: int = 1):
        if size not in SIZES:
            raise bad_input("size", one_of(size, [str(s) for s in SIZES]))
        if split not in SPLITS:
            raise bad_input("split", one_of(split, SPLITS))
        if length is not None and length < 1:
            raise bad_input("length", f"expected None (endless) or an integer >= 1, got {length!r}")
        self.seed, self.size, self.split, self.start, self.length = seed, size, split, start, length
        self.config = check_config(config or WorldConfig())
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        w, W = (info.id, info.num_workers) if info is not None else (0, 1)
        shard, stride = self.rank * W + w, self.world_size * W
        stop = None if self.length is None else self.start + self.length
        i = self.start + shard
        while stop is None or i < stop:
            yield world_item(self.seed, i, self.size, self.config, self.split)
            i += stride
