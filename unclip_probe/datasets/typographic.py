"""Typographic attack sets: photographs of objects with a word written on them.

- **RTA-100** (Azuma & Matsui 2023, "Defense-Prefix for preventing typographic attacks on CLIP"):
  the release's ``rta100.zip`` unpacked, a flat folder of files named ``label=<object>_text=<word>.png``.
- **PAINT** (Ilharco et al. 2022, "Patching open-vocabulary models by interpolating weights"): its
  ``typographic_attack_data.zip`` unpacked, files named the same way (the folder, or the one
  folder inside it that holds them).
- **SCAM** (Westerhoff et al. 2025): the Hugging Face dataset ``BLISS-e-V/SCAM`` as downloaded, its
  Parquet files (``data/*.parquet`` or anywhere under DIR) with columns ``image``, ``type``
  (SCAM / SynthSCAM / NoSCAM), ``object_label``, ``attack_word`` and ``id``; one variant per run.

Score, the same for all (Defense-Prefix's protocol, which the issue of record asks for): top-1
zero-shot accuracy on the true label with the classes the union of the set's true labels and
attack words and the prompt "a photo of a {}.", beside the share of predictions that name the
written word (this project's OCA and TCR). SCAM's own protocol is reported too: a two-way choice
per image between its object label and its attack word, each embedded as the mean over SCAM's
32 templates (``SCAM_TEMPLATES``, from its ``main_vlm_openclip.py``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from .. import validate
from ..errors import bad_input, one_of
from ..imaging import IMAGE_SUFFIXES
from .common import ClassificationSet, ImageRef, check_images_exist, folder_of

NAME = re.compile(r"^label=(?P<label>.+?)_text=(?P<text>.+)\.[A-Za-z0-9]+$")
TEMPLATE = ("a photo of a {}.",)
SCAM_VARIANTS = ("SCAM", "NoSCAM", "SynthSCAM")
SCAM_COLUMNS = ("image", "type", "object_label", "attack_word")
SCAM_TEMPLATES = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.")


def union_classes(true_labels, attack_words, classes: Sequence[str] | None = None, where: Sequence[str] = ()) -> list[str]:
    """The zero-shot classes of a typographic set: every true label and attack word, once, sorted;
    or the caller's ``classes``, which must hold them all (one sentence naming the first missing)."""
    if classes is None:
        return sorted(set(true_labels) | {w for w in attack_words if w is not None})
    classes = validate.labels(classes, "classes")
    known = set(classes)
    for i, (label, word) in enumerate(zip(true_labels, attack_words)):
        for kind, value in (("label", label), ("attack word", word)):
            if value is not None and value not in known:
                item = f" of {where[i]!r}" if where else ""
                raise bad_input("classes", f"the {kind} {value!r}{item} is not among the {len(classes)} classes given")
    return list(classes)


def load_named_files(name: str, folder: str | os.PathLike, argument: str = "folder",
                     classes: Sequence[str] | None = None) -> ClassificationSet:
    """RTA-100 or PAINT ("rta-100" / "paint"): image files named label=<object>_text=<word>.<ext>.
    classes: the label list to choose from (default: the union of the files' labels and words)."""
    layout = ("a folder of images named label=<object>_text=<word>.png (the release's zip unpacked; for PAINT, "
              "the folder inside it is found too)")
    root = folder_of(folder, argument, name, layout)
    files = _named_images(root)
    if not files:
        subs = [d for d in sorted(root.iterdir()) if d.is_dir() and _named_images(d)]
        if len(subs) != 1:
            raise bad_input(argument, f"{str(root)!r} holds no images named label=<object>_text=<word>.png; {name} "
                                      f"expects {layout}")
        root, files = subs[0], _named_images(subs[0])
    labels, words = [], []
    for f in files:
        m = NAME.match(f.name)
        if m is None:
            raise bad_input(argument, f"{str(f)!r} is not named label=<object>_text=<word>.<ext> as {name}'s files are")
        labels.append(m["label"])
        words.append(m["text"])
    return ClassificationSet(name, [ImageRef(f) for f in files], labels, words,
                             union_classes(labels, words, classes, [f.name for f in files]),
                             [name] * len(files), [f.name for f in files], TEMPLATE, meta={"folder": str(root)})


def _named_images(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                  and f.name.startswith("label="))


def load_scam(folder: str | os.PathLike, variant: str = "SCAM", argument: str = "folder",
              classes: Sequence[str] | None = None) -> ClassificationSet:
    """One variant (SCAM, NoSCAM or SynthSCAM) of a local copy of the Hugging Face dataset BLISS-e-V/SCAM.
    classes: the label list to choose from (default: the union of the variant's labels and words)."""
    import pandas as pd
    import pyarrow.parquet as pq

    if variant not in SCAM_VARIANTS:
        raise bad_input("variant", one_of(variant, SCAM_VARIANTS))
    layout = ("the Hugging Face dataset BLISS-e-V/SCAM as downloaded: Parquet files (data/*.parquet) with columns "
              + ", ".join(SCAM_COLUMNS))
    root = folder_of(folder, argument, "SCAM", layout)
    files = sorted(root.rglob("*.parquet"))
    if not files:
        raise bad_input(argument, f"{str(root)!r} holds no .parquet files; SCAM expects {layout}")
    refs, labels, words, ids = [], [], [], []
    for f in files:
        columns = pq.read_schema(f).names
        missing = [c for c in SCAM_COLUMNS if c not in columns]
        if missing:
            raise bad_input(argument, f"{str(f)!r} lacks the column(s) {', '.join(map(repr, missing))} SCAM's release "
                                      f"has (it has {', '.join(map(repr, columns))})")
        table = pd.read_parquet(f, columns=[c for c in columns if c != "image"])  # the images are read when embedded
        for row, rec in enumerate(table.to_dict("records")):
            if rec["type"] != variant:
                continue
            refs.append(ImageRef(f, row=row))
            labels.append(str(rec["object_label"]))
            words.append(str(rec["attack_word"]))
            ids.append(str(rec.get("id", f"{f.name}:{row}")))
    check_images_exist(refs, argument, "SCAM")
    return ClassificationSet(f"scam/{variant}", refs, labels, words, union_classes(labels, words, classes, ids),
                             [variant] * len(refs), ids, TEMPLATE,
                             meta={"files": [str(f) for f in files], "variant": variant})
