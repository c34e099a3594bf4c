"""Rendering scenes to pixels (docs/design.md §4).

Shapes are drawn once, 8x supersampled, into anti-aliased alpha sprites; a scene
is then a few numpy blends onto a flat background. That keeps rendering well
above 5,000 images/s on one core, fast enough for an IterableDataset that
renders every training image on the fly. Smaller sizes are box-filtered from
64 px, so a 32 px image is exactly the average of 2x2 blocks of the 64 px one
(the decoder trains on 32 px, the upsampler maps 32 -> 64).
"""
from __future__ import annotations

from functools import lru_cache
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import bad_input, one_of
from .spec import BACKGROUNDS, COLORS, NOTE_INK, NOTE_PAPER, SHAPES, SIZE, SIZE_RADIUS, SIZES, Scene

_SUPERSAMPLE = 8


def _shape_polygon(shape: str, n: float) -> list[tuple[float, float]] | None:
    """Vertices of `shape` inside an n x n box (None for the circle)."""
    c = n / 2
    if shape == "square":
        return [(0, 0), (n, 0), (n, n), (0, n)]
    if shape == "triangle":  # apex up, base on the bottom edge
        return [(c, 0), (n, n), (0, n)]
    if shape == "diamond":
        return [(c, 0), (n, c), (c, n), (0, c)]
    if shape == "cross":  # a plus sign, arms 0.36 of the box wide
        a, b = n * 0.32, n * 0.68
        return [(a, 0), (b, 0), (b, a), (n, a), (n, b), (b, b), (b, n), (a, n), (a, b), (0, b), (0, a), (a, a)]
    if shape == "star":  # five points, inner radius 0.45 of the outer, first point up
        outer, inner, cy = c, c * 0.45, c * 1.08
        pts = []
        for k in range(10):
            rad = outer if k % 2 == 0 else inner
            ang = -math.pi / 2 + k * math.pi / 5
            pts.append((c + rad * math.cos(ang), cy + rad * math.sin(ang)))
        return pts
    return None


@lru_cache(maxsize=None)
def sprite(shape: str, size: str) -> np.ndarray:
    """Anti-aliased coverage of one shape: float32 (2r+1, 2r+1) in [0, 1] at 64 px."""
    n = 2 * SIZE_RADIUS[size] + 1
    big = n * _SUPERSAMPLE
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    poly = _shape_polygon(shape, big)
    if poly is None:
        draw.ellipse([0, 0, big - 1, big - 1], fill=255)
    else:
        draw.polygon(poly, fill=255)
    a = np.asarray(img, dtype=np.float32).reshape(n, _SUPERSAMPLE, n, _SUPERSAMPLE).mean(axis=(1, 3))
    a = a / 255.0
    a.setflags(write=False)
    return a


@lru_cache(maxsize=None)
def _font(px: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=px)


def note_font_size(word: str, width: int, height: int) -> int:
    """Largest font size (<= 10 px) whose rendering of `word` fits the note with a margin."""
    for px in range(10, 3, -1):
        x0, y0, x1, y1 = _font(px).getbbox(word)
        if x1 - x0 <= width - 4 and y1 - y0 <= height - 4:
            return px
    return 4


@lru_cache(maxsize=4096)
def note_patch(word: str, width: int, height: int) -> np.ndarray:
    """A white note with `word` printed in its centre: float32 (height, width, 3)."""
    img = Image.new("RGB", (width, height), NOTE_PAPER)
    font = _font(note_font_size(word, width, height))
    x0, y0, x1, y1 = font.getbbox(word)
    pos = ((width - (x1 - x0)) / 2 - x0, (height - (y1 - y0)) / 2 - y0)
    ImageDraw.Draw(img).text(pos, word, fill=NOTE_INK, font=font)
    a = np.asarray(img, dtype=np.float32)
    a.setflags(write=False)
    return a


def _check_size(size: int) -> int:
    if size not in SIZES:
        raise bad_input("size", f"{one_of(size, [str(s) for s in SIZES])} (the world renders at 64 px and box-filters down)")
    return int(size)


def render_float(scene: Scene) -> np.ndarray:
    """The scene at 64 px as float32 (64, 64, 3) in [0, 255], before rounding."""
    canvas = np.empty((SIZE, SIZE, 3), dtype=np.float32)
    canvas[:] = BACKGROUNDS[scene.background]
    for obj in scene.objects:
        a = sprite(obj.shape, obj.size)[..., None]  # (h, w, 1)
        x0, y0, x1, y1 = obj.box
        region = canvas[y0:y1, x0:x1]
        region += a * (np.asarray(COLORS[obj.color], dtype=np.float32) - region)
    if scene.note is not None:
        x0, y0, x1, y1 = scene.note.box
        canvas[y0:y1, x0:x1] = note_patch(scene.note.word, x1 - x0, y1 - y0)
    return canvas


def downsample(arr: np.ndarray, size: int) -> np.ndarray:
    """Box-filter an (S, S, C) float array to (size, size, C); S must be a multiple of size."""
    f = arr.shape[0] // size
    if f == 1:
        return arr
    # A sum of f*f strided views: several times faster than reshape().mean() for small f.
    out = np.zeros((size, size) + arr.shape[2:], dtype=arr.dtype)
    for dy in range(f):
        for dx in range(f):
            out += arr[dy::f, dx::f]
    return out * (1.0 / (f * f))


def to_uint8(arr: np.ndarray) -> np.ndarray:
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


def render_array(scene: Scene, size: int = SIZE) -> np.ndarray:
    """The scene as uint8 (size, size, 3)."""
    return to_uint8(downsample(render_float(scene), _check_size(size)))


def render(scene: Scene, size: int = SIZE) -> Image.Image:
    """The scene as an RGB PIL image of `size` x `size` (16, 32 or 64)."""
    if not isinstance(scene, Scene):
        raise bad_input("scene", f"expected a world Scene, got {type(scene).__name__}")
    return Image.fromarray(render_array(scene, size), "RGB")


def draw_note(image: Image.Image, word: str, box: tuple[int, int, int, int]) -> Image.Image:
    """A copy of any RGB `image` with a white note saying `word` pasted at `box` (x0, y0, x1, y1)
    in that image's pixels. The typographic-attack probe uses this on world and user images."""
    x0, y0, x1, y1 = (int(v) for v in box)
    w, h = image.size
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h) or x1 - x0 < 6 or y1 - y0 < 6:
        raise bad_input("box", f"{box} must lie inside the {w}x{h} image and be at least 6x6 pixels")
    if not word or not word.isprintable():
        raise bad_input("word", f"expected a printable, non-empty word, got {word!r}")
    out = np.array(image.convert("RGB"), dtype=np.float32)
    out[y0:y1, x0:x1] = note_patch(word, x1 - x0, y1 - y0)
    return Image.fromarray(to_uint8(out), "RGB")


__all__ = ["render", "render_array", "render_float", "draw_note", "sprite", "note_patch", "downsample", "SHAPES"]
