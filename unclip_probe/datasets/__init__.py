"""The published benchmarks, read from the user's local copies and scored the published way.

    import unclip_probe as up
    clip = up.load_clip("ViT-B-32-quickgelu", pretrained="/data/openai_vit_b_32.safetensors")
    res = up.datasets.run_benchmark("winoground", clip, "/data/winoground/data")
    res.table          # text / image / group; res.extra_tables: per tag; res.meta: similarities, cache counts

Names (``BENCHMARKS``): winoground, vg-relation, vg-attribution, coco-order, flickr30k-order,
sugarcrepe, rta-100, paint, scam. Layouts and scores: each loader module's docstring; the README
has the table of what each measures, its chance level and the published CLIP ViT-B/32 figures.
Nothing here downloads: a folder that does not match its release's layout is refused in one
sentence that names the expected layout.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from .. import validate
from ..errors import ProbeInputError, bad_input, one_of
from . import aro, score, sugarcrepe, typographic, winoground
from .cache import EmbeddingCache, default_folder
from .common import ClassificationSet, MatchingSet
from .run import similarities


@dataclass(frozen=True)
class Benchmark:
    """A benchmark's loader, its scorer, what it measures and its chance level (per figure)."""

    name: str
    title: str
    load: Callable[..., MatchingSet | ClassificationSet]
    measures: str
    chance: dict


def _vg(name):
    return lambda folder, **kw: aro.load_vg(name, folder, **kw)


def _order(name):
    return lambda folder, **kw: aro.load_order(name, folder, **kw)


def _named(name):
    return lambda folder, **kw: typographic.load_named_files(name, folder, **kw)


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("winoground", "Winoground (Thrush et al. 2022)", winoground.load_winoground,
              "two images, two captions of the same words in another order: pick the right pairing",
              {"text": 0.25, "image": 0.25, "group": 1 / 6}),
    Benchmark("vg-relation", "ARO VG-Relation (Yuksekgonul et al. 2023)", _vg("vg-relation"),
              "a relation's subject and object exchanged ('the horse is eating the grass' vs the reverse)",
              {"macro_accuracy": 0.5}),
    Benchmark("vg-attribution", "ARO VG-Attribution (Yuksekgonul et al. 2023)", _vg("vg-attribution"),
              "two objects' attributes exchanged ('the paved road and the white house' vs the reverse)",
              {"macro_accuracy": 0.5}),
    Benchmark("coco-order", "ARO COCO-Order (Yuksekgonul et al. 2023)", _order("coco-order"),
              "a caption against four word-order shuffles of itself", {"precision_at_1": 0.2}),
    Benchmark("flickr30k-order", "ARO Flickr30k-Order (Yuksekgonul et al. 2023)", _order("flickr30k-order"),
              "a caption against four word-order shuffles of itself", {"precision_at_1": 0.2}),
    Benchmark("sugarcrepe", "SugarCrepe (Hsieh et al. 2023)", sugarcrepe.load_sugarcrepe,
              "a caption against a fluent hard negative: an object, attribute or relation replaced, swapped "
              "or added", {split: 0.5 for split in sugarcrepe.SPLITS}),
    Benchmark("rta-100", "RTA-100 (Azuma & Matsui 2023)", _named("rta-100"),
              "photos of objects with a handwritten word: does the word override the object?",
              {"accuracy": None}),
    Benchmark("paint", "PAINT typographic attacks (Ilharco et al. 2022)", _named("paint"),
              "photos of objects with a handwritten word: does the word override the object?",
              {"accuracy": None}),
    Benchmark("scam", "SCAM (Westerhoff et al. 2025)", typographic.load_scam,
              "photos with a sticky note naming another object (SCAM), the same without (NoSCAM), the note "
              "pasted digitally (SynthSCAM)", {"accuracy": None, "two_way_accuracy": 0.5}),
)}


def load_benchmark(name: str, folder: str | os.PathLike, **options) -> MatchingSet | ClassificationSet:
    """A benchmark's items from a local copy (options: ``images=`` for SugarCrepe, ``variant=`` for
    SCAM, ``seed=`` / ``tagger=`` / ``tokenize=`` for the ARO order sets)."""
    if name not in BENCHMARKS:
        raise bad_input("name", one_of(name, BENCHMARKS))
    return BENCHMARKS[name].load(folder, **options)


def run_benchmark(name: str, clip, folder: str | os.PathLike, *, cache: str | os.PathLike | None | bool = True,
                  batch_size: int = 64, progress: bool = True, **options):
    """Score any ClipModel on a benchmark read from ``folder``; returns a ProbeResult.

    table: the headline figures (one row; SCAM: one per variant present); extra_tables: per-group
    accuracy (tags, relations, attribute pairs, splits); meta: the similarity arrays, the cache's
    counters, chance levels. cache: True for the default folder ($UNCLIP_PROBE_CACHE or
    ~/.cache/unclip-probe/embeddings), a folder, or False / None for none. Images are embedded in
    batches of ``batch_size`` on the CLIP's device; a second run reads only the files not cached."""
    from ..probes.result import ProbeResult

    validate.clip(clip, needs=("encode_image", "encode_text"))
    batch_size = validate.count(batch_size, "batch_size")
    if name not in BENCHMARKS:
        raise bad_input("name", one_of(name, BENCHMARKS))
    bench = BENCHMARKS[name]
    folder_arg = default_folder() if cache is True else (cache or None)
    store = EmbeddingCache(clip, folder_arg)
    if name == "scam":
        variants = [options.pop("variant")] if "variant" in options else list(typographic.SCAM_VARIANTS)
        loaded = [typographic.load_scam(folder, v, **options) for v in variants]
        loaded = [d for d in loaded if len(d)] or loaded[:1]  # variants absent from the copy are left out
    else:
        loaded = [bench.load(folder, **options)]
    rows, extra, sims = [], {}, {}
    for data in loaded:
        s = similarities(data, store, batch_size, progress)
        figures, groups = _score(name, data, s, store, batch_size)
        rows.append({"benchmark": data.name, **figures})
        extra[f"{data.name}: per {groups.index.name}"] = groups
        sims[data.name] = s
    table = pd.DataFrame(rows).set_index("benchmark")
    return ProbeResult(bench.title, table, meta={"similarities": sims, "cache": store.stats(), "chance": bench.chance,
                                                 "clip": repr(clip), "folder": str(folder)},
                       extra_tables=extra)


def _score(name: str, data, s: np.ndarray, store: EmbeddingCache, batch_size: int):
    if name == "winoground":
        return score.winoground(s, data.groups)
    if name == "vg-relation":
        return score.vg_relation(s, data.groups)
    if name == "vg-attribution":
        return score.vg_attribution(s, data.groups)
    if name in ("coco-order", "flickr30k-order"):
        return score.order(s)
    if name == "sugarcrepe":
        return score.sugarcrepe(s, data.groups, data.meta["splits"])
    classes = {c: i for i, c in enumerate(data.classes)}
    true_index = [classes[t] for t in data.true_labels]
    attack_index = [classes[w] for w in data.attack_words]
    two_way = None
    if name == "scam":  # SCAM's own protocol: its 32 templates, object label against attack word
        try:
            two_way = similarities(ClassificationSet(data.name, data.images, data.true_labels, data.attack_words,
                                                     data.classes, data.groups, data.ids, typographic.SCAM_TEMPLATES),
                                   store, batch_size, progress=False)
        except ProbeInputError as e:  # a CLIP whose tokenizer cannot read SCAM's templates (the world CLIP)
            warnings.warn(f"SCAM's two-way protocol not scored: its templates cannot be read ({e})", stacklevel=3)
    return score.typographic(s, true_index, attack_index, two_way)


__all__ = ["BENCHMARKS", "Benchmark", "ClassificationSet", "EmbeddingCache", "MatchingSet", "load_benchmark",
           "run_benchmark", "similarities"]
