"""Winoground (Thrush et al. 2022): 400 items of two images and two captions with the same words.

Layout of the release (the Hugging Face dataset ``facebook/winoground``, its ``data/`` folder with
``images.zip`` unpacked)::

    DIR/examples.jsonl      one JSON object per line: id, image_0, image_1, caption_0, caption_1,
                            tag, secondary_tag, num_main_preds, collapsed_tag
    DIR/images/ex_0_img_0.png ...   image_0 / image_1 name the file without its extension

``DIR`` may also be the dataset's root, holding ``data/``. Scores: text, image and group
(``metrics.winoground_scores``), overall and per ``collapsed_tag`` (Object, Relation, Both).
"""
from __future__ import annotations

import os

import numpy as np

from .common import ImageRef, Interner, MatchingSet, check_images_exist, folder_of, need_keys, read_json

LAYOUT = ("a folder with examples.jsonl (id, image_0, image_1, caption_0, caption_1, tag, collapsed_tag per line) "
          "and images/ holding <image_0>.png, as in the release's data/ folder")
KEYS = ("id", "image_0", "image_1", "caption_0", "caption_1")


def load_winoground(folder: str | os.PathLike, argument: str = "folder") -> MatchingSet:
    """The items of a local Winoground copy (see the module docstring for the layout)."""
    root = folder_of(folder, argument, "Winoground", LAYOUT)
    if not (root / "examples.jsonl").is_file() and (root / "data" / "examples.jsonl").is_file():
        root = root / "data"
    lines = read_json(root / "examples.jsonl", argument, "Winoground", LAYOUT, lines=True)
    images, captions = Interner(), Interner()
    rows_i, rows_c, groups, ids = [], [], [], []
    for n, item in enumerate(lines):
        need_keys(item, KEYS, f"line {n + 1} of {str(root / 'examples.jsonl')!r}", argument)
        refs = [ImageRef(_image_file(root / "images", item[k])) for k in ("image_0", "image_1")]
        rows_i.append([images(r) for r in refs])
        rows_c.append([captions(item["caption_0"]), captions(item["caption_1"])])
        groups.append(str(item.get("collapsed_tag") or item.get("tag") or "all"))
        ids.append(str(item["id"]))
    check_images_exist(images.values, argument, "Winoground")
    return MatchingSet("winoground", images.values, captions.values, np.array(rows_i, int).reshape(-1, 2),
                       np.array(rows_c, int).reshape(-1, 2), groups, ids, answer=None,
                       meta={"examples": str(root / "examples.jsonl")})


def _image_file(folder, stem: str):
    """<stem>.png as released; another extension when only that one is on disk."""
    png = folder / f"{stem}.png"
    if png.is_file():
        return png
    others = sorted(folder.glob(f"{stem}.*")) if folder.is_dir() else []
    return others[0] if others else png
