"""Held-out prompt wordings: how people type prompts the caption grammar never writes (issue 24).

Every model in `checkpoints/world` learned its text side from `captions.caption`, whose sentences
follow a handful of templates. A researcher types something else: "red circle", "there is a red
circle", "a photo of a green star". This module writes down, once and before any training on
them, wordings that the caption grammar does not produce, for single objects and for pairs:
paraphrases, short forms, other word orders, dropped or added articles, sizes moved or dropped.
They are an evaluation set only: no training recipe may draw from them, and a test checks that
`captions.caption` (and so every stage trained on it) never writes one of these prompts.

Each template is filled from a world scene, so every prompt comes with the scene it asks for and
the oracle can read a generated image against it. Only the objects' shapes and colours are
scored (`eval.pipeline.readings`); a template may also say sizes or a background.

Placeholders: ``{a}`` "a" or "an" for the word after it, ``{c}`` colour, ``{s}`` shape, ``{z}``
size, ``{bg}`` background; ``{c1} {s1} {c2} {s2}`` the two objects of a pair.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import validate
from .captions import article
from .scenes import sample_scenes
from .spec import Scene, WorldConfig

# Fixed before any run that measures them; never edit a template in place (add a new name instead),
# so that a figure measured on these prompts stays comparable across sessions.
SINGLE_TEMPLATES: dict[str, str] = {
    "bare": "{c} {s}",                                  # no article
    "there_is": "there is {a} {c} {s}",
    "photo_of": "a photo of {a} {c} {s}",
    "picture_of_one": "a picture of one {c} {s}",       # count word where the grammar has an article
    "one": "one {c} {s}",
    "definite": "the {c} {s}",
    "that_is": "{a} {s} that is {c}",                   # colour after the noun
    "bare_size": "{z} {c} {s}",
    "colour_before_size": "{a} {c} {z} {s}",           # the grammar says size first
    "photo_of_the_period": "a photo of the {c} {s}.",
    "there_is_one_size": "there is one {z} {c} {s}",
    "the_background": "{a} {c} {s} on the {bg} background",  # the grammar says "on a ... background"
}
PAIR_TEMPLATES: dict[str, str] = {
    "bare": "{c1} {s1} and {c2} {s2}",
    "there_are": "there are two objects: {a1} {c1} {s1} and {a2} {c2} {s2}",
    "photo_of": "a photo of {a1} {c1} {s1} and {a2} {c2} {s2}",
    "that_is": "{a1} {s1} that is {c1} and {a2} {s2} that is {c2}",
    "definite_with": "the {c1} {s1} with the {c2} {s2}",
    "two_comma": "two objects, {a1} {c1} {s1} and {a2} {c2} {s2}",
}
TEMPLATES = {"single": SINGLE_TEMPLATES, "pair": PAIR_TEMPLATES}

# Scene streams of the set: fresh seeds (docs/design.md §4: training draws seed 0 onward; the
# evaluation seeds of eval.common are 777000 + 0 .. 60). In-distribution scenes avoid the held-out
# (shape, colour) pairs; held-out scenes show at least one (WorldConfig.holdout).
WORDING_SEED = 777_070
SINGLE = WorldConfig(max_objects=1, note_prob=0.0)
PAIR = WorldConfig(min_objects=2, max_objects=2, note_prob=0.0)
# Per template: how many in-distribution and how many held-out-pair prompts the set holds.
PER_TEMPLATE = {"single": (20, 5), "pair": (20, 5)}


@dataclass(frozen=True)
class Prompt:
    """One held-out prompt and the scene it asks for."""

    text: str
    scene: Scene
    template: str  # its name in SINGLE_TEMPLATES / PAIR_TEMPLATES


def fill(template: str, scene: Scene) -> str:
    """The template said of `scene` (one object for a single template, two for a pair template)."""
    o = scene.objects
    keys = {"c": o[0].color, "s": o[0].shape, "z": o[0].size, "bg": scene.background}
    if len(o) > 1:
        keys |= {"c1": o[0].color, "s1": o[0].shape, "c2": o[1].color, "s2": o[1].shape}
    for tag in ("{a}", "{a1}", "{a2}"):  # each article agrees with the word after it
        while tag in template:
            after = template.split(tag, 1)[1].split()[0]
            template = template.replace(tag, article(after.format(**keys)), 1)
    return template.format(**keys)


def heldout_prompts(kind: str = "single", seed: int = WORDING_SEED) -> list[Prompt]:
    """The held-out wording set for ``kind`` "single" or "pair": per template, PER_TEMPLATE[kind]
    in-distribution scenes then held-out-pair scenes, each template on scenes of its own. seed:
    WORDING_SEED is the set every figure is measured on; another draws the same templates on
    other scenes, for a check on fresh scenes."""
    kind = validate.choice(kind, tuple(TEMPLATES), "kind")
    validate.seed(seed)
    templates, config = TEMPLATES[kind], SINGLE if kind == "single" else PAIR
    n_in, n_held = PER_TEMPLATE[kind]
    out: list[Prompt] = []
    for t, (name, template) in enumerate(templates.items()):
        stream = seed + (0 if kind == "single" else 100) + t
        for split, n, start in (("train", n_in, 0), ("heldout", n_held, 1000)):
            for scene in sample_scenes(n, seed=stream, config=config, split=split, start=start):
                out.append(Prompt(fill(template, scene), scene, name))
    return out
