"""Captions: a small grammar with several templates and orderings (docs/design.md §4).

Varying the sentence shape keeps the world CLIP's text tower from memorising
one template; every caption still names every object and the note, so the
oracle can check a generated image against it (see `parse.py`).
"""
from __future__ import annotations

import re

import numpy as np

from .. import validate
from ..errors import bad_input
from .scenes import relations
from .spec import BACKGROUNDS, COLORS, NOTE_WORDS, OBJECT_SIZES, POSITIONS, SHAPES, Obj, Scene

# How each grid position is said after an object ("a red circle in the top left").
POSITION_PHRASES = {
    "top left": "in the top left", "top": "at the top", "top right": "in the top right",
    "left": "on the left", "center": "in the center", "right": "on the right",
    "bottom left": "in the bottom left", "bottom": "at the bottom", "bottom right": "in the bottom right",
}
RELATION_PHRASES = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
COUNT_WORDS = {1: "one", 2: "two", 3: "three"}
TEMPLATES = ("list", "positions", "relation", "count", "picture")
# Tokens a caption may take in the world CLIP's text tower, sot and eot included (the longest
# `caption` is 40); train/recipes/clip.py builds the tower with this context.
CONTEXT = 48


def article(word: str) -> str:
    """'an' before a vowel, else 'a': the indefinite article every caption and prompt template uses."""
    return "an" if word[0] in "aeiou" else "a"


def _note_phrase(scene: Scene, rng: np.random.Generator) -> str:
    """' and a note that says "w"' or ', with a note that says "w"' (one draw); '' without a note."""
    if scene.note is None:
        return ""
    glue = " and a note that says" if rng.random() < 0.5 else ", with a note that says"
    return f'{glue} "{scene.note.word}"'


def object_phrase(obj: Obj, rng: np.random.Generator | None = None, *, size: bool | None = None, position: bool = False) -> str:
    """'a [size] colour shape [position]' for one object."""
    with_size = size if size is not None else (rng is None or rng.random() < 0.75)
    words = ([obj.size] if with_size else []) + [obj.color, obj.shape]
    words.insert(0, article(words[0]))
    if position:
        words.append(POSITION_PHRASES[obj.position])
    return " ".join(words)


def join_phrases(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(scene: Scene, seed: int = 0, template: str | None = None) -> str:
    """A caption of `scene`; `seed` picks the template, the object order and which sizes are said.

    template: one of TEMPLATES to force a sentence shape (the property tests use it).
    """
    if not isinstance(scene, Scene) or not scene.objects:
        raise bad_input("scene", "expected a world Scene with at least one object")
    rng = np.random.default_rng(validate.seed(seed))
    if template is None:
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    if template not in TEMPLATES:
        raise bad_input("template", f"expected one of {TEMPLATES}, got {template!r}")
    order = [int(i) for i in rng.permutation(len(scene.objects))]
    objs = [scene.objects[i] for i in order]
    rels = relations(scene)
    if template == "relation" and rels:
        i, rel, j = rels[int(rng.integers(len(rels)))]
        text = f"{object_phrase(scene.objects[i], rng)} {RELATION_PHRASES[rel]} {object_phrase(scene.objects[j], rng)}"
        rest = [object_phrase(o, rng) for k, o in enumerate(scene.objects) if k not in (i, j)]
        text = join_phrases([text] + rest)
    elif template == "positions":
        text = join_phrases([object_phrase(o, rng, position=True) for o in objs])
    elif template == "count":
        noun = "object" if len(objs) == 1 else "objects"
        text = f"{COUNT_WORDS[len(objs)]} {noun}: " + join_phrases([object_phrase(o, rng) for o in objs])
    elif template == "picture":
        text = "a picture of " + join_phrases([object_phrase(o, rng) for o in objs])
    else:  # "list", and "relation" for a single object
        text = join_phrases([object_phrase(o, rng) for o in objs])
    if rng.random() < 0.5:
        text += f" on a {scene.background} background"
    return text + _note_phrase(scene, rng)


def vocabulary() -> list[str]:
    """Every word and punctuation mark a caption can contain, in a fixed order.

    The world CLIP's word-level tokenizer is built from this list, so captions
    and the prompts a user types for the world stack must stay inside it.
    """
    words: list[str] = []
    fixed = ["a", "an", "the", "and", "of", "to", "in", "on", "at", "with", "that", "says", "note",
             "picture", "photo", "background", "object", "objects", "one", "two", "three", "left", "right",
             "top", "bottom", "center", "middle", "above", "below", "there", "is", "are", "word", "written"]
    for group in (fixed, list(SHAPES), list(COLORS), list(OBJECT_SIZES), list(BACKGROUNDS), list(NOTE_WORDS),
                  ['"', ",", ":", "."]):
        for w in group:
            if w not in words:
                words.append(w)
    return words


assert all(p.split()[-1] in vocabulary() for p in POSITIONS)


# ---------------------------------------------------------------------------- the widened grammar
# Issue 24: users type prompts in other wordings than `caption` writes. `wide_caption` writes more
# of them for training (prefixes, definite and dropped articles, the colour after the noun, other
# connectives and background phrases, a final period), under one rule that keeps the held-out
# wordings of `wordings.py` out of training: a caption in any non-standard form always says a
# position, a background or a note. No held-out prompt says any of the three (and none says
# "on the ... background", which `wide_caption` never writes), so no training caption is one of them.
WIDE_PREFIXES = ("a picture with ", "a photo with ", "there is ", "a picture of ")
WIDE_BACKGROUNDS = ("on a {} background", "with a {} background")
WIDE_CONTEXT = CONTEXT - 2  # words and marks a wide caption may hold: the context less sot and eot


def _wide_object(obj: Obj, rng: np.random.Generator, position: bool) -> str:
    """One object in one of four forms: 'a [size] red circle', 'the ...', '[size] red circle',
    'a [size] circle that is red'; then its position when asked."""
    size = [obj.size] if rng.random() < 0.5 else []
    form = int(rng.integers(4))
    if form == 3:
        words = size + [obj.shape, "that", "is", obj.color]
    else:
        words = size + [obj.color, obj.shape]
    if form in (0, 3):
        words.insert(0, article(words[0]))
    elif form == 1:
        words.insert(0, "the")
    text = " ".join(words)
    if position:
        text += " " + ("in the middle" if obj.position == "center" and rng.random() < 0.5 else POSITION_PHRASES[obj.position])
    return text


def wide_caption(scene: Scene, seed: int = 0, wide: bool | None = None) -> str:
    """A caption of `scene` in the widened grammar (see the comment above); `seed` picks every choice.

    Half the captions are `caption`'s own (so training keeps seeing today's grammar); the rest use
    the wider forms, and always say a position, the background or the note. wide: force one half
    (True: the wider forms; False: `caption`'s), as the tests do."""
    if not isinstance(scene, Scene) or not scene.objects:
        raise bad_input("scene", "expected a world Scene with at least one object")
    rng = np.random.default_rng(validate.seed(seed))
    coin = rng.random() >= 0.5
    if not (coin if wide is None else wide):
        return caption(scene, seed=int(rng.integers(2**31)))
    order = [int(i) for i in rng.permutation(len(scene.objects))]
    say_bg = rng.random() < 0.6
    positions = rng.random() < 0.5 or (not say_bg and scene.note is None)  # the rule: something is always said
    parts = [_wide_object(scene.objects[i], rng, positions) for i in order]
    if len(parts) == 1:
        text = parts[0]
    else:
        glue = (" and ", ", ", " with ")[int(rng.integers(3))]
        text = glue.join(parts) if glue != ", " else join_phrases(parts)
    if rng.random() < 0.4:
        text = WIDE_PREFIXES[int(rng.integers(len(WIDE_PREFIXES)))] + text
    if say_bg:
        text += " " + WIDE_BACKGROUNDS[int(rng.integers(len(WIDE_BACKGROUNDS)))].format(scene.background)
    text += _note_phrase(scene, rng)
    if rng.random() < 0.2:
        text += "."
    if len(re.findall(r'[a-z0-9]+|[",:.]', text)) > WIDE_CONTEXT:
        return caption(scene, seed=int(rng.integers(2**31)))
    return text
