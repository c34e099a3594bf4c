"""ARO (Yuksekgonul et al. 2023, "When and why vision-language models behave like bags-of-words").

Four sets, each read from its release's files and scored as the release scores it
(``mertyg/vision-language-models-are-bows``: ``dataset_zoo/aro_datasets.py`` and its replication
notebook):

- **VG-Relation** and **VG-Attribution**: ``DIR/visual_genome_relation.json`` /
  ``DIR/visual_genome_attribution.json`` (a list of records with ``image_path``, ``bbox_x``,
  ``bbox_y``, ``bbox_w``, ``bbox_h``, ``true_caption``, ``false_caption``, and ``relation_name`` or
  ``attributes``) over ``DIR/images/`` (the release's ``vgr_vga_images.zip``). Each image is cropped
  to its box; the captions are offered as [false, true] and an item is right when argmax picks
  index 1 (a tie is wrong). Figures: VG-Relation, the mean of per-relation accuracies over the
  relations not in the release's ``symmetric`` list; VG-Attribution, the mean over attribute pairs
  ``f"{a0}_{a1}"`` with at least 25 items.
- **COCO-Order** and **Flickr30k-Order**: ``DIR/coco_karpathy_test.json`` (over ``DIR/val2014/``)
  and ``DIR/flickr30k_test.json`` (over ``DIR/flickr30k-images/``), lists of records with ``image``
  (a path relative to DIR) and ``caption`` (a list). Each (image, caption) is an item with five
  options: the caption and its four perturbations (nouns and adjectives shuffled, everything but
  them shuffled, words shuffled within trigrams, trigrams shuffled), each through ``pre_caption``
  (lower case, punctuation to spaces, 30 words); right when argmax picks index 0 (a tie is right).
  Figure: Precision@1.

The order perturbations draw at random, as the release's do (it seeds ``random`` and NumPy once
per run); here they draw from a generator seeded by ``seed``, so a figure reproduces exactly on
one seed and moves by sampling noise between seeds. They need a part-of-speech tagger: spaCy's
``en_core_web_sm`` (Penn tags) and NLTK's ``word_tokenize`` as in the release, or any
``tagger(text) -> [(token, penn_tag), ...]`` and ``tokenize(text) -> [token, ...]`` passed in.
"""
from __future__ import annotations

import os
import random
import re
from typing import Callable, Sequence

import numpy as np

from ..errors import bad_input
from .common import ImageRef, Interner, MatchingSet, check_images_exist, folder_of, need_keys, read_json

# The release's replication notebook drops these relations before its VG-Relation macro-average (the
# maintainers: "we just kept them in the original dataset ... we drop them when computing the results").
SYMMETRIC_RELATIONS = frozenset([
    'adjusting', 'attached to', 'between', 'bigger than', 'biting', 'boarding', 'brushing', 'chewing', 'cleaning',
    'climbing', 'close to', 'coming from', 'coming out of', 'contain', 'crossing', 'dragging', 'draped over',
    'drinking', 'drinking from', 'driving', 'driving down', 'driving on', 'eating from', 'eating in', 'enclosing',
    'exiting', 'facing', 'filled with', 'floating in', 'floating on', 'flying', 'flying above', 'flying in',
    'flying over', 'flying through', 'full of', 'going down', 'going into', 'going through', 'grazing in',
    'growing in', 'growing on', 'guiding', 'hanging from', 'hanging in', 'hanging off', 'hanging over',
    'higher than', 'holding onto', 'hugging', 'in between', 'jumping off', 'jumping on', 'jumping over', 'kept in',
    'larger than', 'leading', 'leaning over', 'leaving', 'licking', 'longer than', 'looking in', 'looking into',
    'looking out', 'looking over', 'looking through', 'lying next to', 'lying on top of', 'making', 'mixed with',
    'mounted on', 'moving', 'on the back of', 'on the edge of', 'on the front of', 'on the other side of',
    'opening', 'painted on', 'parked at', 'parked beside', 'parked by', 'parked in', 'parked in front of',
    'parked near', 'parked next to', 'perched on', 'petting', 'piled on', 'playing', 'playing in', 'playing on',
    'playing with', 'pouring', 'reaching for', 'reading', 'reflected on', 'riding on', 'running in', 'running on',
    'running through', 'seen through', 'sitting behind', 'sitting beside', 'sitting by', 'sitting in front of',
    'sitting near', 'sitting next to', 'sitting under', 'skiing down', 'skiing on', 'sleeping in', 'sleeping on',
    'smiling at', 'sniffing', 'splashing', 'sprinkled on', 'stacked on', 'standing against', 'standing around',
    'standing behind', 'standing beside', 'standing in front of', 'standing near', 'standing next to', 'staring at',
    'stuck in', 'surrounding', 'swimming in', 'swinging', 'talking to', 'topped with', 'touching', 'traveling down',
    'traveling on', 'tying', 'typing on', 'underneath', 'wading in', 'waiting for', 'walking across', 'walking by',
    'walking down', 'walking next to', 'walking through', 'working in', 'working on', 'worn on', 'wrapped around',
    'wrapped in', 'by', 'of', 'near', 'next to', 'with', 'beside', 'on the side of', 'around'])
ATTRIBUTE_MIN_COUNT = 25  # VG-Attribution's evaluate_scores skips attribute pairs with fewer items
MAX_WORDS = 30  # the order sets' pre_caption(max_words=30)
NOUNS, ADJECTIVES = ("NN", "NNS", "NNP", "NNPS"), ("JJ", "JJR", "JJS")

VG = {"vg-relation": ("visual_genome_relation.json", "relation_name"),
      "vg-attribution": ("visual_genome_attribution.json", "attributes")}
ORDER = {"coco-order": "coco_karpathy_test.json", "flickr30k-order": "flickr30k_test.json"}
VG_KEYS = ("image_path", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "true_caption", "false_caption")


def _vg_layout(file: str) -> str:
    return (f"a folder with {file} (records with image_path, bbox_x, bbox_y, bbox_w, bbox_h, true_caption, "
            "false_caption) and images/ (the release's vgr_vga_images.zip unpacked)")


def load_vg(name: str, folder: str | os.PathLike, argument: str = "folder") -> MatchingSet:
    """VG-Relation or VG-Attribution (name "vg-relation" / "vg-attribution") from a local copy."""
    file, group_key = VG[name]
    layout = _vg_layout(file)
    root = folder_of(folder, argument, name, layout)
    records = read_json(root / file, argument, name, layout)
    if not isinstance(records, list):
        raise bad_input(argument, f"{str(root / file)!r} holds a {type(records).__name__}; {name} expects a list of records")
    images, captions = Interner(), Interner()
    rows_i, rows_c, groups, ids = [], [], [], []
    for n, item in enumerate(records):
        need_keys(item, VG_KEYS + (group_key,), f"record {n} of {str(root / file)!r}", argument)
        x, y, w, h = (float(item[k]) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
        rows_i.append([images(ImageRef(root / "images" / item["image_path"], (x, y, x + w, y + h)))])
        rows_c.append([captions(item["false_caption"]), captions(item["true_caption"])])  # the release's order
        g = item[group_key]
        groups.append(str(g) if group_key == "relation_name" else f"{g[0]}_{g[1]}")
        ids.append(str(item.get("image_id", n)))
    check_images_exist(images.values, argument, name)
    return MatchingSet(name, images.values, captions.values, np.array(rows_i, int).reshape(-1, 1),
                       np.array(rows_c, int).reshape(-1, 2), groups, ids, answer=1, meta={"annotations": str(root / file)})


# ---------------------------------------------------------------------------- order sets
def pre_caption(caption: str, max_words: int = MAX_WORDS) -> str:
    """The release's caption cleaning: lower case, . ! " ( ) * # : ; ~ to spaces, runs of spaces
    collapsed, stripped, at most max_words words."""
    caption = re.sub(r"([.!\"()*#:;~])", " ", caption.lower())
    caption = re.sub(r"\s{2,}", " ", caption).rstrip("\n").strip(" ")
    words = caption.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else caption


def _trigrams(tokens: Sequence[str]) -> list[list[str]]:
    return [list(tokens[i:i + 3]) for i in range(0, len(tokens), 3)]


class Perturber:
    """The release's four order perturbations (its ``TextShuffler``), on a seeded generator.

    tagger(text) -> [(token, penn_tag), ...] (spaCy's tokens and ``tag_``); tokenize(text) ->
    tokens (NLTK's ``word_tokenize``). Defaults load spaCy ``en_core_web_sm`` and NLTK."""

    def __init__(self, seed: int = 1, tagger: Callable | None = None, tokenize: Callable | None = None) -> None:
        self.tagger, self.tokenize = tagger or _spacy_tagger(), tokenize or _nltk_tokenize()
        self.np_rng, self.py_rng = np.random.RandomState(seed), random.Random(seed)

    def _tagged(self, text: str) -> tuple[np.ndarray, list[str]]:
        pairs = list(self.tagger(text))
        return np.array([t for t, _ in pairs], dtype=object), [tag for _, tag in pairs]

    def nouns_and_adjectives(self, text: str) -> str:
        """Nouns shuffled among themselves, then adjectives among themselves."""
        words, tags = self._tagged(text)
        for kind in (NOUNS, ADJECTIVES):
            idx = [i for i, tag in enumerate(tags) if tag in kind]
            words[idx] = self.np_rng.permutation(words[idx])
        return " ".join(words)

    def all_but_nouns_and_adjectives(self, text: str) -> str:
        """Every word that is neither noun nor adjective shuffled among the others."""
        words, tags = self._tagged(text)
        rest = np.array([tag not in NOUNS + ADJECTIVES for tag in tags], dtype=bool)
        words[rest] = self.np_rng.permutation(words[rest])
        return " ".join(words)

    def within_trigrams(self, text: str) -> str:
        """The words of each consecutive trigram shuffled in place."""
        grams = _trigrams(self.tokenize(text))
        for g in grams:
            self.py_rng.shuffle(g)
        return " ".join(" ".join(g) for g in grams)

    def trigrams(self, text: str) -> str:
        """The trigrams shuffled as blocks."""
        grams = _trigrams(self.tokenize(text))
        self.py_rng.shuffle(grams)
        return " ".join(" ".join(g) for g in grams)

    def options(self, caption: str) -> list[str]:
        """[the caption, its four perturbations], each through pre_caption: the release's order."""
        made = [f(caption) for f in (self.nouns_and_adjectives, self.all_but_nouns_and_adjectives,
                                     self.within_trigrams, self.trigrams)]
        return [pre_caption(c) for c in [caption] + made]


def _spacy_tagger() -> Callable:
    try:
        import spacy

        nlp = spacy.load("en_core_web_sm")
    except (ImportError, OSError):
        raise bad_input("tagger", "the order sets' perturbations need a part-of-speech tagger: install spaCy and its "
                                  "en_core_web_sm model (as ARO's release does), or pass tagger=") from None
    return lambda text: [(t.text, t.tag_) for t in nlp(text)]


def _nltk_tokenize() -> Callable:
    try:
        import nltk

        nltk.word_tokenize("a test")
    except (ImportError, LookupError):
        raise bad_input("tokenize", "the order sets' trigram perturbations need NLTK's word_tokenize with its punkt "
                                    "data (as ARO's release does), or pass tokenize=") from None
    return nltk.word_tokenize


def load_order(name: str, folder: str | os.PathLike, argument: str = "folder", *, seed: int = 1,
               tagger: Callable | None = None, tokenize: Callable | None = None) -> MatchingSet:
    """COCO-Order or Flickr30k-Order ("coco-order" / "flickr30k-order") from a local copy."""
    file = ORDER[name]
    images_dir = "val2014/" if name == "coco-order" else "flickr30k-images/"
    layout = f"a folder with {file} (records with image, a path under the folder, and caption, a list) and {images_dir}"
    root = folder_of(folder, argument, name, layout)
    records = read_json(root / file, argument, name, layout)
    if not isinstance(records, list):
        raise bad_input(argument, f"{str(root / file)!r} holds a {type(records).__name__}; {name} expects a list of records")
    for n, item in enumerate(records):  # every record checked before the tagger loads
        need_keys(item, ("image", "caption"), f"record {n} of {str(root / file)!r}", argument)
    perturb = Perturber(seed, tagger, tokenize)
    images, captions = Interner(), Interner()
    rows_i, rows_c, ids = [], [], []
    for n, item in enumerate(records):
        ref = images(ImageRef(root / item["image"]))
        caps = item["caption"] if isinstance(item["caption"], list) else [item["caption"]]
        for k, cap in enumerate(caps):
            rows_i.append([ref])
            rows_c.append([captions(c) for c in perturb.options(cap)])
            ids.append(f"{n}:{k}")
    check_images_exist(images.values, argument, name)
    return MatchingSet(name, images.values, captions.values, np.array(rows_i, int).reshape(-1, 1),
                       np.array(rows_c, int).reshape(-1, 5), ["all"] * len(ids), ids, answer=0,
                       meta={"annotations": str(root / file), "seed": seed})

