"""An embedding cache: a second run, or a second metric over the same files, reads no image twice.

Embeddings are unit-norm ``clip.encode_image`` / ``clip.encode_text`` outputs (D,), stored as
safetensors under ``<folder>/<model key>/images.safetensors`` and ``texts.safetensors``, one tensor
per entry named by a hash of the entry's key. The model key hashes the weights' checksum (computed
once per model when the loader recorded none) with the preprocessing (input size, mean, std), so
two models, or one model with two preprocessings, never share entries. An image's key is its file
(absolute path, size, modification time) and crop: an edited file is embedded again.

Counters (``images_read``, ``image_hits``, ``texts_encoded``, ``text_hits``) are what tests check:
counted, never timed (docs/design.md §6).
"""
from __future__ import annotations

import hashlib
import os
import warnings
import weakref
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from .. import checkpoints as ckpt
from ..errors import ProbeInputError
from .common import ImageRef

_KEYS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # clip -> (its module, key): hashed once


def default_folder() -> Path:
    """$UNCLIP_PROBE_CACHE, else ~/.cache/unclip-probe/embeddings."""
    return Path(os.environ.get("UNCLIP_PROBE_CACHE") or Path.home() / ".cache" / "unclip-probe" / "embeddings")


def model_key(clip) -> str:
    """16 hex characters naming a CLIP's embeddings: its weights' checksum and its preprocessing."""
    held = _KEYS.get(clip)
    if held is not None and held[0] is clip.model:
        return held[1]
    checksum = getattr(clip, "checksum", None) or ckpt.weights_checksum(clip.model.state_dict())
    pre = [checksum, type(clip).__name__, list(clip.image_size),
           [round(float(v), 8) for v in clip.preprocess_tensor(torch.zeros(1, 3, *clip.image_size))[0, :, 0, 0]]]
    key = hashlib.sha256(repr(pre).encode()).hexdigest()[:16]  # zeros through the preprocessing: -mean / std
    _KEYS[clip] = (clip.model, key)
    return key


def _name(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class EmbeddingCache:
    """Image and text embeddings of one CLIP, kept in memory and (with a folder) on disk.

    folder None keeps them for this object's life only."""

    def __init__(self, clip, folder: str | os.PathLike | None = None) -> None:
        self.clip = clip
        self.root = Path(folder) / model_key(clip) if folder is not None else None
        self.images_read = self.image_hits = self.texts_encoded = self.text_hits = 0
        self._store = {kind: self._load(kind) for kind in ("images", "texts")}

    def _path(self, kind: str) -> Path | None:
        return self.root / f"{kind}.safetensors" if self.root is not None else None

    def _load(self, kind: str) -> dict[str, Tensor]:
        path = self._path(kind)
        if path is None or not path.is_file():
            return {}
        try:
            return ckpt.load_weights(path)
        except ProbeInputError as e:  # a damaged cache is rebuilt, not fatal
            warnings.warn(f"embedding cache {str(path)!r} is unreadable ({e}); embedding again", stacklevel=3)
            return {}

    def _save(self, kind: str) -> None:
        path = self._path(kind)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            ckpt.save_weights(self._store[kind], path, metadata={"model_key": self.root.name, "kind": kind})

    def _fill(self, kind: str, keys: list[str], items: list, encode: Callable[[list], Tensor], batch_size: int,
              progress: Callable | None) -> Tensor:
        """Embeddings (n, D) of items, encoding only those whose key is not stored."""
        store = self._store[kind]
        names = [_name(k) for k in keys]
        todo, seen = [], set()  # the first item of each key not stored yet
        for i, n in enumerate(names):
            if n not in store and n not in seen:
                seen.add(n)
                todo.append(i)
        step = progress(len(todo)) if progress is not None and todo else None
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            z = encode([items[i] for i in chunk]).float().cpu()  # (b, D)
            for i, row in zip(chunk, z):
                store[names[i]] = row.clone()
            if step is not None:
                step(len(chunk))
        if todo:
            self._save(kind)
        return torch.stack([store[n] for n in names]) if names else torch.zeros(0, self.clip.embed_dim)

    def images(self, refs: Sequence[ImageRef], batch_size: int = 64, progress: Callable | None = None) -> Tensor:
        """Unit-norm image embeddings (n, D), one row per ref; only uncached files are opened.

        progress: called with the number of images to read, returns a function called with each
        batch's size (a progress bar), or None."""
        keys = [r.key() for r in refs]
        before = len(self._store["images"])

        def encode(chunk: list[ImageRef]) -> Tensor:
            pixels = [r.open() for r in chunk]
            self.images_read += len(chunk)
            return self.clip.encode_image(pixels)
        out = self._fill("images", keys, list(refs), encode, batch_size, progress)
        self.image_hits += len(set(map(_name, keys))) - (len(self._store["images"]) - before)
        return out

    def texts(self, texts: Sequence[str], batch_size: int = 256) -> Tensor:
        """Unit-norm text embeddings (n, D), one row per text; only uncached texts are encoded."""
        before = len(self._store["texts"])

        def encode(chunk: list[str]) -> Tensor:
            z = self.clip.encode_text(chunk)
            self.texts_encoded += len(chunk)
            return z
        out = self._fill("texts", list(texts), list(texts), encode, batch_size, None)
        self.text_hits += len(set(texts)) - (len(self._store["texts"]) - before)
        return out

    def stats(self) -> dict[str, int]:
        return {"images_read": self.images_read, "image_hits": self.image_hits,
                "texts_encoded": self.texts_encoded, "text_hits": self.text_hits}
