"""What every published benchmark loads into: image references, matching sets and classification sets.

A loader reads a user's local copy in its release's layout and returns one of two records:

- ``MatchingSet``: items of images and captions (Winoground: 2 x 2; ARO and SugarCrepe: one
  image and its true and false captions). Unique images and captions are stored once and items
  index them, so each is embedded once: ``caption_index`` (N, n_captions) and ``image_index``
  (N, n_images) into ``captions`` and ``images``. Scoring turns them into similarities
  (N, n_captions, n_images), which ``unclip_probe.metrics`` reduces exactly as each paper does.
- ``ClassificationSet``: images with a true label and, for typographic sets, the attack word
  written on them; zero-shot over ``classes``.

Nothing is opened at load time except the annotation files: every listed image is checked to
exist (one sentence naming the first missing one and how many are missing), and read only when
its embedding is not already cached.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import bad_input


@dataclass(frozen=True)
class ImageRef:
    """One image file of a benchmark, optionally cropped (ARO's VG sets crop to the relation's box).

    crop: (left, top, right, bottom) in pixels, PIL's order."""

    path: Path
    crop: tuple[float, float, float, float] | None = None
    row: int | None = None  # a row of a Parquet file's ``image`` column (Hugging Face datasets' layout)

    def key(self) -> str:
        """The cache key: the file (absolute path, size, modification time), the row and the crop."""
        st = self.path.stat()
        return f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.row}|{self.crop}"

    def open(self):
        """The image as RGB PIL (cropped when a box is set)."""
        import io

        from PIL import Image

        source = self.path if self.row is None else io.BytesIO(_parquet_images(self.path)[self.row])
        with Image.open(source) as im:
            im = im.convert("RGB")
        return im.crop(tuple(int(round(v)) for v in self.crop)) if self.crop is not None else im


_PARQUET: dict = {}  # path -> the image bytes of its rows: one file's column held while its rows are read


def _parquet_images(path: Path) -> list[bytes]:
    if path not in _PARQUET:
        import pandas as pd

        _PARQUET.clear()  # keep one file's images in memory, not a data set's
        column = pd.read_parquet(path, columns=["image"])["image"]
        _PARQUET[path] = [v["bytes"] if isinstance(v, dict) else v for v in column]
    return _PARQUET[path]


@dataclass
class MatchingSet:
    """Image-caption matching items (see the module docstring). ``answer`` is the index of the true
    caption in each row of caption_index, as the release orders them (None for Winoground, whose
    caption j belongs to image j). ``groups`` names each item's group for per-group tables (a
    Winoground tag, an ARO relation or attribute pair, a SugarCrepe split)."""

    name: str
    images: list[ImageRef]
    captions: list[str]
    image_index: np.ndarray  # (N, n_images) int
    caption_index: np.ndarray  # (N, n_captions) int
    groups: list[str]
    ids: list[str]
    answer: int | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class ClassificationSet:
    """Zero-shot classification items: one image, its true label and (typographic sets) the word
    written on it (None for a clean image). ``classes`` is the label list the model chooses from; a
class's text embedding is the renormalised mean over ``templates`` (the CLIP paper's recipe)."""

    name: str
    images: list[ImageRef]
    true_labels: list[str]
    attack_words: list[str | None]
    classes: list[str]
    groups: list[str]
    ids: list[str]
    templates: tuple[str, ...] = ("a photo of a {}.",)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


class Interner:
    """Unique values in first-seen order and the index of each value given: images and captions
    shared between items are embedded once."""

    def __init__(self) -> None:
        self.values: list = []
        self._index: dict = {}

    def __call__(self, value) -> int:
        if value not in self._index:
            self._index[value] = len(self.values)
            self.values.append(value)
        return self._index[value]


# ---------------------------------------------------------------------------- reading the user's files
def folder_of(path: object, argument: str, benchmark: str, layout: str) -> Path:
    """The benchmark's root folder, refused with the expected layout when it is not a folder."""
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_dir():
        raise bad_input(argument, f"{str(path)!r} is not a folder; {benchmark} expects {layout}")
    return Path(path)


def read_json(path: Path, argument: str, benchmark: str, layout: str, *, lines: bool = False):
    """A JSON (or JSON Lines) annotation file; one sentence naming the file when it is absent or unreadable."""
    if not path.is_file():
        raise bad_input(argument, f"{str(path)!r} not found; {benchmark} expects {layout}")
    try:
        text = path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()] if lines else json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad_input(argument, f"{str(path)!r} is not valid JSON{' Lines' if lines else ''} ({e}); "
                                  f"{benchmark} expects {layout}") from None


def need_keys(item: object, keys: Sequence[str], where: str, argument: str) -> dict:
    """One annotation record with the keys its release writes; one sentence naming the first missing key."""
    if not isinstance(item, dict):
        raise bad_input(argument, f"{where} is a {type(item).__name__}, expected a JSON object")
    missing = [k for k in keys if k not in item]
    if missing:
        raise bad_input(argument, f"{where} lacks the key(s) {', '.join(map(repr, missing))} its release writes "
                                  f"(it has {', '.join(map(repr, list(item)[:8]))})")
    return item


def check_images_exist(images: Sequence[ImageRef], argument: str, benchmark: str) -> None:
    """Every listed image is on disk: one sentence naming the first missing file and how many are missing."""
    missing = [im.path for im in images if not im.path.is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise bad_input(argument, f"{benchmark} lists {str(missing[0])!r}{more}, not found; is the image folder "
                                  "complete (and in the release's place)?")
