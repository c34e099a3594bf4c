"""Scoring any ClipModel on a loaded benchmark: embed (batched, cached), build similarities, score.

The path from files to a figure, for every benchmark:

1. a loader (``winoground.py``, ``aro.py``, ``sugarcrepe.py``, ``typographic.py``) reads the
   user's copy into a ``MatchingSet`` or ``ClassificationSet``;
2. ``similarities`` embeds each unique image and caption once (through the ``EmbeddingCache``),
   on the CLIP's device, and returns cosine similarities: (N, n_captions, n_images) for a matching
   set, (N, n_classes) for a classification set;
3. the benchmark's scorer reduces them with ``unclip_probe.metrics`` exactly as its paper does.

Step 3 alone is what a user calls to re-score published per-example similarities.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .cache import EmbeddingCache
from .common import ClassificationSet, MatchingSet


def _bar(total: int, desc: str) -> Callable:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="img", leave=False)

    def step(n: int) -> None:
        bar.update(n)
        if bar.n >= total:
            bar.close()
    return step


@torch.no_grad()
def similarities(data: MatchingSet | ClassificationSet, cache: EmbeddingCache, batch_size: int = 64,
                 progress: bool = True) -> np.ndarray:
    """Cosine similarities of a loaded set under the cache's CLIP.

    MatchingSet -> (N, n_captions, n_images) indexed [item, caption, image];
    ClassificationSet -> (N, n_classes) with classes in ``data.classes`` order, each class the
    renormalised mean of its embeddings over ``data.templates``."""
    if isinstance(data, ClassificationSet) and (len(data) == 0 or not data.classes):
        return np.zeros((len(data), len(data.classes)))
    # texts first: a caption the tokenizer refuses stops the run before any image is read
    if isinstance(data, ClassificationSet):
        k = len(data.templates)
        t = cache.texts([tpl.format(c) for c in data.classes for tpl in data.templates])  # (n_classes * k, D)
        t = F.normalize(t.view(len(data.classes), k, -1).mean(1), dim=-1)  # (n_classes, D): the template mean
    else:
        t = cache.texts(data.captions)  # (n_captions, D)
    bar = (lambda total: _bar(total, data.name)) if progress else None  # counts the images not cached
    v = cache.images(data.images, batch_size, bar)  # (n_images, D), unit norm
    if isinstance(data, ClassificationSet):
        return (v @ t.T).numpy().astype(np.float64)  # images are one per item, in item order
    if len(data) == 0:
        return np.zeros((0,) + (data.caption_index.shape[1], data.image_index.shape[1]))
    sims = t @ v.T  # (n_captions, n_images)
    ci, ii = torch.as_tensor(data.caption_index), torch.as_tensor(data.image_index)  # (N, C), (N, I)
    return sims[ci[:, :, None], ii[:, None, :]].numpy().astype(np.float64)  # (N, C, I)
