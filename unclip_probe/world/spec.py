"""The shape world's vocabulary and scene dataclasses (docs/design.md §4).

Everything here is data: names, palettes and the frozen dataclasses that the
renderer draws, the captioner describes and the oracle reads back. Changing a
value here changes the world, so every shipped checkpoint would be stale;
treat these like a committed noise schedule (docs/design.md §8).
"""
from __future__ import annotations

from dataclasses import dataclass

SIZE = 64  # native resolution; every other size is derived from it by box filtering
SIZES = (16, 32, 64)  # sizes `render` and `detect` work at natively

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
COLORS = {  # object colours; white is reserved for notes
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (235, 215, 40),
    "purple": (145, 60, 195),
    "orange": (245, 135, 25),
    "cyan": (40, 205, 215),
}
BACKGROUNDS = {  # neutral: far from every object colour and from the white note
    "gray": (128, 128, 128),
    "dark": (40, 40, 46),
    "beige": (196, 186, 166),
}
NOTE_PAPER = (250, 250, 250)
NOTE_INK = (15, 15, 15)
SIZE_RADIUS = {"small": 5, "large": 8}  # half-width of the object's box at 64 px
OBJECT_SIZES = tuple(SIZE_RADIUS)

# A 3x3 grid of cells; an object's position is the cell of its centre.
POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
CELL_CENTERS = (10, 32, 53)  # pixel centre of each row / column at 64 px
# Cell boundaries at 64 px. With MAX_JITTER and the largest radius every object
# lies wholly inside its cell, so the oracle can read the grid cell by cell.
CELL_EDGES = (0, 21, 43, 64)
MAX_JITTER = 2  # pixels an object's centre may move inside its cell
MIN_GAP = 2  # pixels between any two boxes (objects, note): shapes never touch

DISTRACTOR_WORDS = ("apple", "dog", "car", "tree", "cat", "ipod", "house", "fish")
NOTE_WORDS = SHAPES + tuple(COLORS) + DISTRACTOR_WORDS
NOTE_BOX = (40, 14)  # width, height of a world note at 64 px

RELATIONS = ("left of", "right of", "above", "below")


def position_of(row: int, col: int) -> str:
    return POSITIONS[3 * row + col]


def cell_of(position: str) -> tuple[int, int]:
    """(row, col) of a position name."""
    i = POSITIONS.index(position)
    return divmod(i, 3)


@dataclass(frozen=True)
class Obj:
    """One object. `offset` is the pixel jitter (dx, dy) inside its cell at 64 px;
    it is part of the rendering, not of the scene's meaning, so the oracle ignores it."""

    shape: str
    color: str
    size: str
    position: str
    offset: tuple[int, int] = (0, 0)

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What the oracle must get right: shape, colour, size, position."""
        return (self.shape, self.color, self.size, self.position)

    @property
    def center(self) -> tuple[int, int]:
        """(x, y) pixel centre at 64 px."""
        row, col = cell_of(self.position)
        return CELL_CENTERS[col] + self.offset[0], CELL_CENTERS[row] + self.offset[1]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) at 64 px, x1/y1 exclusive."""
        r = SIZE_RADIUS[self.size]
        x, y = self.center
        return x - r, y - r, x + r + 1, y + r + 1


@dataclass(frozen=True)
class Note:
    """A white note with a printed word; `box` is (x0, y0, x1, y1) at 64 px, exclusive."""

    word: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    background: str = "gray"
    note: Note | None = None

    @property
    def key(self) -> tuple:
        """Order-free identity of the scene's meaning (count, and each object's attributes)."""
        return tuple(sorted(o.key for o in self.objects))

    def same_objects(self, other: "Scene") -> bool:
        return self.key == other.key


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the world sampler. `holdout` lists (shape, colour) pairs that the
    training split never shows (compositional generalisation tests, model card)."""

    min_objects: int = 1
    max_objects: int = 3
    note_prob: float = 0.25
    holdout: tuple[tuple[str, str], ...] = (("star", "red"), ("triangle", "blue"), ("circle", "yellow"))
    backgrounds: tuple[str, ...] = tuple(BACKGROUNDS)
