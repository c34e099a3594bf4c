"""Sampling scenes, deterministically by (seed, index) (docs/design.md §4).

Scene `i` of stream `seed` depends on nothing else, so any process, worker or
DDP rank that asks for index i gets byte-identical pixels and captions, and a
resumed training run can ask for exactly the batch it stopped at.
"""
from __future__ import annotations

import numpy as np

from .. import validate
from ..errors import bad_input, one_of
from .spec import (
    BACKGROUNDS, CELL_CENTERS, COLORS, MAX_JITTER, MIN_GAP, NOTE_BOX, NOTE_WORDS, OBJECT_SIZES,
    POSITIONS, SHAPES, Note, Obj, Scene, WorldConfig, cell_of,
)

SPLITS = ("all", "train", "heldout")


def scene_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """The generator behind scene `index` of `seed` (stream 1 is used for its caption)."""
    return np.random.default_rng([int(seed), int(index), int(stream)])


def _gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Pixels between two boxes (negative when they overlap)."""
    dx = max(a[0] - b[2], b[0] - a[2])
    dy = max(a[1] - b[3], b[1] - a[3])
    return max(dx, dy)


def _note(rng: np.random.Generator) -> tuple[Note, set[int]]:
    """A world note on one row, covering the left or the right two cells."""
    row, right = int(rng.integers(3)), bool(rng.integers(2))
    w, h = NOTE_BOX
    x0 = 64 - 1 - w if right else 1
    y0 = CELL_CENTERS[row] - h // 2
    word = NOTE_WORDS[int(rng.integers(len(NOTE_WORDS)))]
    blocked = {3 * row + c for c in ((1, 2) if right else (0, 1))}
    return Note(word, (x0, y0, x0 + w, y0 + h)), blocked


def _attributes(rng: np.random.Generator, cfg: WorldConfig, split: str, first: bool) -> tuple[str, str, str]:
    held = set(cfg.holdout)
    if split == "heldout" and first:  # a held-out scene shows at least one held-out pair
        shape, color = cfg.holdout[int(rng.integers(len(cfg.holdout)))]
    else:
        while True:
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            color = tuple(COLORS)[int(rng.integers(len(COLORS)))]
            if split != "train" or (shape, color) not in held:
                break
    return shape, color, OBJECT_SIZES[int(rng.integers(len(OBJECT_SIZES)))]


def sample_scene(seed: int, index: int, config: WorldConfig | None = None, split: str = "all") -> Scene:
    """Scene `index` of the stream `seed`."""
    cfg = config or WorldConfig()
    rng = scene_rng(seed, index)
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    note, blocked = (None, set())
    if rng.random() < cfg.note_prob:
        note, blocked = _note(rng)
    free = [i for i in range(len(POSITIONS)) if i not in blocked]
    cells = rng.choice(free, size=n, replace=False)
    attrs = [_attributes(rng, cfg, split, first=(k == 0)) for k in range(n)]
    objects: list[Obj] = []
    for k, (cell, (shape, color, size)) in enumerate(zip(cells, attrs)):
        for _ in range(20):  # jitter inside the cell, resampled until nothing touches
            off = tuple(int(v) for v in rng.integers(-MAX_JITTER, MAX_JITTER + 1, size=2))
            obj = Obj(shape, color, size, POSITIONS[int(cell)], off)
            others = [o.box for o in objects] + ([note.box] if note else [])
            if all(_gap(obj.box, b) >= MIN_GAP for b in others):
                break
        else:
            obj = Obj(shape, color, size, POSITIONS[int(cell)], (0, 0))
        objects.append(obj)
    objects.sort(key=lambda o: POSITIONS.index(o.position))
    background = cfg.backgrounds[int(rng.integers(len(cfg.backgrounds)))]
    return Scene(tuple(objects), background, note)


def check_config(config: WorldConfig) -> WorldConfig:
    if not 1 <= config.min_objects <= config.max_objects <= 3:
        raise bad_input("config", f"objects per scene must satisfy 1 <= min_objects <= max_objects <= 3, got {config.min_objects}..{config.max_objects}")
    if not 0.0 <= config.note_prob <= 1.0:
        raise bad_input("config", f"note_prob must lie in [0, 1], got {config.note_prob}")
    for shape, color in config.holdout:
        if shape not in SHAPES or color not in COLORS:
            raise bad_input("config", f"held-out pair ({shape!r}, {color!r}) names an unknown shape or colour")
    for bg in config.backgrounds:
        if bg not in BACKGROUNDS:
            raise bad_input("config", f"background {one_of(bg, BACKGROUNDS)}")
    return config


def sample_scenes(n: int, seed: int = 0, config: WorldConfig | None = None, split: str = "all", start: int = 0) -> list[Scene]:
    """`n` scenes of stream `seed` (indices start .. start+n-1).

    split: "all" (anything), "train" (never a held-out (shape, colour) pair) or
    "heldout" (at least one held-out pair in every scene).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise bad_input("n", f"expected an integer >= 1, got {n!r}")
    seed, start = validate.seed(seed), validate.count(start, "start", minimum=0)
    if split not in SPLITS:
        raise bad_input("split", one_of(split, SPLITS))
    cfg = check_config(config or WorldConfig())
    return [sample_scene(seed, start + i, cfg, split) for i in range(int(n))]


def shows_held_out_pair(scene: Scene, config: WorldConfig | None = None) -> bool:
    """Whether `scene` shows a (shape, colour) pair that no `split="train"` scene shows (config.holdout)."""
    held = set((config or WorldConfig()).holdout)
    return any((o.shape, o.color) in held for o in scene.objects)


def relations(scene: Scene) -> list[tuple[int, str, int]]:
    """Every true (i, relation, j) among the scene's objects, from their grid cells."""
    out = []
    for i, a in enumerate(scene.objects):
        for j, b in enumerate(scene.objects):
            if i == j:
                continue
            (ra, ca), (rb, cb) = cell_of(a.position), cell_of(b.position)
            if ca < cb:
                out.append((i, "left of", j))
            if ca > cb:
                out.append((i, "right of", j))
            if ra < rb:
                out.append((i, "above", j))
            if ra > rb:
                out.append((i, "below", j))
    return out


def moved_twin(scene: Scene, rng: np.random.Generator) -> Scene:
    """The same objects (and note) in other free grid cells: a hard negative that only
    position tells apart. Objects keep their attributes; jitter is reset to zero."""
    blocked = set()
    if scene.note is not None:
        x0, y0, x1, y1 = scene.note.box
        row = CELL_CENTERS.index(y0 + (y1 - y0) // 2) if (y0 + (y1 - y0) // 2) in CELL_CENTERS else None
        if row is not None:
            blocked = {3 * row + c for c in ((1, 2) if x0 > 10 else (0, 1))}
    free = [i for i in range(len(POSITIONS)) if i not in blocked]
    old = sorted(POSITIONS.index(o.position) for o in scene.objects)
    for _ in range(10):
        cells = [int(c) for c in rng.choice(free, size=len(scene.objects), replace=False)]
        if sorted(cells) != old:
            break
    objs = [Obj(o.shape, o.color, o.size, POSITIONS[c]) for o, c in zip(scene.objects, cells)]
    objs.sort(key=lambda o: POSITIONS.index(o.position))
    return Scene(tuple(objs), scene.background, scene.note)


def swapped_twin(scene: Scene) -> Scene | None:
    """The scene with the first two objects' colours exchanged (attribute-binding hard negative);
    None when there are fewer than two objects or their colours are equal."""
    if len(scene.objects) < 2 or scene.objects[0].color == scene.objects[1].color:
        return None
    a, b = scene.objects[0], scene.objects[1]
    objs = (Obj(a.shape, b.color, a.size, a.position, a.offset), Obj(b.shape, a.color, b.size, b.position, b.offset))
    return Scene(objs + scene.objects[2:], scene.background, scene.note)
