"""Captions: a small grammar with several templates and orderings (docs/design.md §4).

Varying the sentence shape keeps the world CLIP's text tower from memorising
one template; every caption still names every object and the note, so the
oracle can check a generated image against it (see `parse.py`).
"""
from __future__ import annotations

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


def object_phrase(obj: Obj, rng: np.random.Generator | None = None, *, size: bool | None = None, position: bool = False) -> str:
    """'a [size] colour shape [position]' for one object."""
    with_size = size if size is not None else (rng is None or rng.random() < 0.75)
    words = ([obj.size] if with_size else []) + [obj.color, obj.shape]
    words.insert(0, "an" if words[0][0] in "aeiou" else "a")
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
    if scene.note is not None:
        glue = " and a note that says" if rng.random() < 0.5 else ", with a note that says"
        text += f'{glue} "{scene.note.word}"'
    return text


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
