"""The shape world: scenes, renderer, captions, prompt parser, oracle, datasets (docs/design.md §4)."""
from .spec import (
    BACKGROUNDS, COLORS, NOTE_WORDS, OBJECT_SIZES, POSITIONS, RELATIONS, SHAPES, SIZES, Note, Obj, Scene, WorldConfig,
)
from .scenes import relations, sample_scene, sample_scenes, shows_held_out_pair
from .render import draw_note, render, render_array
from .captions import caption, vocabulary
from .parse import ObjSpec, SceneSpec, parse_caption
from .oracle import detect
from .dataset import WorldDataset

__all__ = [
    "BACKGROUNDS", "COLORS", "NOTE_WORDS", "OBJECT_SIZES", "POSITIONS", "RELATIONS", "SHAPES", "SIZES",
    "Note", "Obj", "Scene", "WorldConfig", "relations", "sample_scene", "sample_scenes", "shows_held_out_pair", "draw_note", "render",
    "render_array", "caption", "vocabulary", "ObjSpec", "SceneSpec", "parse_caption", "detect", "WorldDataset",
]
