"""Rendering training batches in parallel, one step ahead (shared by every stage's recipe).

A batch is a pure function of (seed, step, rank): global batch `step` holds
stream indices step*B .. step*B + B - 1 and each rank renders its slice. Worker
processes render while the model trains on the previous batch; because the
content depends only on the indices, resuming at step N gets exactly batch N.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any

import numpy as np

from .. import validate
from ..world.dataset import CAPTION_STYLES, restyled_captions, scene_and_caption
from ..world.render import downsample, render_float, to_uint8
from ..world.spec import WorldConfig


def render_items(args: tuple) -> tuple[np.ndarray, list[str], list]:
    """Worker: uint8 images (n, 3, S, S) for each size in `sizes`, captions and scenes of indices lo..hi-1."""
    seed, lo, hi, sizes, config, split = args
    imgs = {s: [] for s in sizes}
    caps, scenes = [], []
    for i in range(lo, hi):
        scene, text = scene_and_caption(seed, i, config, split)
        full = render_float(scene)
        for s in sizes:
            imgs[s].append(to_uint8(downsample(full, s)).transpose(2, 0, 1))
        caps.append(text)
        scenes.append(scene)
    return {s: np.stack(v) for s, v in imgs.items()}, caps, scenes


class BatchRenderer:
    """Renders world batches with a process pool, prefetching the next step.

    get(step, lo, hi) returns ({size: uint8 (n, 3, S, S)}, captions, scenes) for
    the stream indices step*batch_size + lo .. step*batch_size + hi - 1. captions: the style the
    captions are said in (world.dataset.restyled_captions; "wide" for issue 24's wider wordings),
    fixed by the stream position like everything else, so a resumed run sees the same ones.
    """

    def __init__(self, seed: int, batch_size: int, sizes: tuple[int, ...], config: WorldConfig | None = None,
                 split: str = "train", workers: int | None = None, captions: str = "grammar"):
        self.captions = validate.choice(captions, CAPTION_STYLES, "captions")  # before any rendering
        self.seed, self.batch_size, self.sizes = seed, batch_size, tuple(sizes)
        self.config, self.split = config or WorldConfig(), split
        self.workers = workers if workers is not None else max(1, min(16, (os.cpu_count() or 2)))
        self._pool = None
        self._pending: dict[tuple, Any] = {}
        if self.workers > 1:  # fork now, before the trainer initialises CUDA in this process
            self._pool = mp.get_context("fork").Pool(self.workers)

    def _jobs(self, step: int, lo: int, hi: int) -> list[tuple]:
        base = step * self.batch_size
        n = hi - lo
        chunks = max(1, min(self.workers * 2, n // 16))
        edges = np.linspace(lo, hi, chunks + 1).astype(int)
        return [(self.seed, base + a, base + b, self.sizes, self.config, self.split) for a, b in zip(edges[:-1], edges[1:]) if b > a]

    def _submit(self, key: tuple) -> None:
        if self._pool is None:
            self._pool = mp.get_context("fork").Pool(self.workers)
        self._pending[key] = self._pool.map_async(render_items, self._jobs(*key))

    def get(self, step: int, lo: int, hi: int) -> tuple[dict, list[str], list]:
        if self.workers <= 1:
            parts = [render_items(j) for j in self._jobs(step, lo, hi)]
        else:
            key = (step, lo, hi)
            if key not in self._pending:
                self._submit(key)
            parts = self._pending.pop(key).get()
            nxt = (step + 1, lo, hi)
            if nxt not in self._pending:
                self._pending.clear()  # a jump (resume) invalidates stale prefetches
                self._submit(nxt)
        imgs = {s: np.concatenate([p[0][s] for p in parts]) for s in self.sizes}
        caps = [c for p in parts for c in p[1]]
        scenes = [sc for p in parts for sc in p[2]]
        return imgs, restyled_captions(scenes, caps, self.captions, self.seed, step * self.batch_size + lo), scenes

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    def __getstate__(self):  # pools do not travel between processes
        d = dict(self.__dict__)
        d["_pool"], d["_pending"] = None, {}
        return d
