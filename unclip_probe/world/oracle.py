"""The oracle: read a scene back from any image, rendered or generated (docs/design.md §4).

It works by analysis by synthesis. Every pixel is explained as a blend of the
background and one palette colour (anti-aliased edges lie on that segment in
RGB, so their blend weight is the shape's coverage); each grid cell is then
explained by the renderer's own sprite — shape, size, sub-cell position — whose
box-filtered coverage best matches, and a note's word by the renderer's own
text. Because every object lies wholly inside its grid cell, cells are read
one at a time, at 64, 32 or 16 px without rescaling the image.
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import bad_input
from .render import downsample, note_patch, sprite, to_uint8
from .spec import (
    BACKGROUNDS, CELL_CENTERS, CELL_EDGES, COLORS, NOTE_PAPER, NOTE_WORDS, OBJECT_SIZES, SHAPES, SIZE,
    SIZE_RADIUS, SIZES, Note, Obj, Scene, position_of,
)

_PALETTE = list(COLORS) + ["white"]
_PALETTE_RGB = np.array([COLORS[c] for c in COLORS] + [NOTE_PAPER], dtype=np.float32)  # (8, 3)
_MIN_T, _MAX_RESIDUAL = 0.25, 45.0  # a pixel belongs to a colour when it is this close to its segment
_SMALLEST_MASS = min(float(sprite(s, z).sum()) for s in SHAPES for z in OBJECT_SIZES)
_SEARCH = 2  # pixels (at 64 px) searched around each template's predicted centre


def as_rgb_array(image, argument: str = "image") -> np.ndarray:
    """Any image the library accepts -> float32 (H, W, 3) in [0, 255].

    PIL images (any mode, converted to RGB), paths to image files, uint8 arrays
    (H, W, 3), float arrays (H, W, 3) in [0, 1], and tensors (3, H, W) in [0, 1].
    """
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise bad_input(argument, f"no image file at {str(path)!r}")
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except Exception as err:  # PIL raises several types for non-images
            raise bad_input(argument, f"{str(path)!r} is not an image PIL can read ({type(err).__name__})") from None
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    if type(image).__module__.startswith("torch"):
        t = image.detach().float().cpu()
        if t.ndim != 3 or t.shape[0] != 3:
            raise bad_input(argument, f"a tensor image must have shape (3, H, W), got {tuple(t.shape)}")
        return np.clip(t.permute(1, 2, 0).numpy() * 255.0, 0, 255)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise bad_input(argument, f"an array image must have shape (H, W, 3), got {image.shape}")
        if image.dtype == np.uint8:
            return image.astype(np.float32)
        return np.clip(image.astype(np.float32) * 255.0, 0, 255)
    raise bad_input(argument, f"expected a PIL image, a path, an (H, W, 3) array or a (3, H, W) tensor, got {type(image).__name__}")


def as_rgb_image(image, argument: str = "image") -> Image.Image:
    """Any image the library accepts (see as_rgb_array) as an RGB PIL image; errors name `argument`."""
    return Image.fromarray(to_uint8(as_rgb_array(image, argument)), "RGB")


def _working_resolution(arr: np.ndarray) -> np.ndarray:
    """Bring the image to 64, 32 or 16 px: box-filter multiples of 64, resample anything else to 64."""
    h, w, _ = arr.shape
    if h != w or h < 16:
        raise bad_input("image", f"expected a square image of at least 16 px, got {w}x{h}")
    if h in SIZES:
        return arr
    if h % SIZE == 0:
        return downsample(arr, SIZE)
    img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8)).resize((SIZE, SIZE), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _background(arr: np.ndarray) -> np.ndarray:
    """The background colour: the commonest (coarsely quantised) colour, refined by a mean."""
    flat = arr.reshape(-1, 3)
    q = (flat // 16).astype(np.int32)
    codes = q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2]
    mode = np.bincount(codes).argmax()
    near = flat[codes == mode]
    return near.mean(axis=0)


def _explain_pixels(arr: np.ndarray, bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label each pixel with the palette colour whose segment from bg it lies on, and its weight.

    Returns labels (S, S) int (-1 = background/unexplained, 0..6 object colours,
    7 = note paper) and alpha (S, S) float, the blend weight along that segment.
    """
    p = arr.reshape(-1, 3) - bg  # (N, 3)
    d = _PALETTE_RGB - bg  # (K, 3)
    t = np.clip((p @ d.T) / (d * d).sum(1), 0.0, 1.0)  # (N, K)
    resid = ((p[:, None, :] - t[..., None] * d[None]) ** 2).sum(-1)  # (N, K)
    resid[t < _MIN_T] = np.inf
    k = resid.argmin(1)
    ok = resid[np.arange(len(k)), k] < _MAX_RESIDUAL ** 2
    labels = np.where(ok, k, -1).reshape(arr.shape[:2])
    alpha = np.where(ok, t[np.arange(len(k)), k], 0.0).reshape(arr.shape[:2]).astype(np.float32)
    return labels, alpha


def _find_note(labels: np.ndarray, alpha: np.ndarray, f: int) -> tuple[int, int, int, int] | None:
    """The note's box at 64 px, from the largest blob of paper-white pixels."""
    white = labels == len(_PALETTE) - 1
    if white.sum() * f * f < 120:
        return None
    comp, n = ndimage.label(ndimage.binary_dilation(white), structure=np.ones((3, 3)))
    sizes = ndimage.sum(white, comp, index=np.arange(1, n + 1))
    best = int(np.argmax(sizes)) + 1
    if sizes[best - 1] * f * f < 120:
        return None
    paper = white & (comp == best)
    # Rows and columns mostly made of paper bound the note; stray noisy pixels do not.
    cols, rows = paper.sum(0), paper.sum(1)
    xs, ys = np.nonzero(cols >= 0.3 * cols.max())[0], np.nonzero(rows >= 0.3 * rows.max())[0]
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    # Partly covered edge pixels say where, inside them, the paper starts.
    a = np.where(white, alpha, 0.0)
    cov = lambda sl: float(np.median(np.clip(a[sl], 0, 1))) if a[sl].size else 1.0
    ex0 = (x0 + 1 - cov((slice(y0 + 1, y1), x0))) * f
    ex1 = (x1 + cov((slice(y0 + 1, y1), x1))) * f
    ey0 = (y0 + 1 - cov((y0, slice(x0 + 1, x1)))) * f
    ey1 = (y1 + cov((y1, slice(x0 + 1, x1)))) * f
    return int(round(ex0)), int(round(ey0)), int(round(ex1)), int(round(ey1))


def _read_note(arr: np.ndarray, box: tuple[int, int, int, int], f: int, words: tuple[str, ...]) -> str:
    """The word on the note: the vocabulary word whose rendering matches the pixels best."""
    x0, y0, x1, y1 = box
    S = arr.shape[0]
    # Native pixels wholly inside the note, and the same window at 64 px.
    nx0, ny0, nx1, ny1 = -(-x0 // f), -(-y0 // f), x1 // f, y1 // f
    if nx1 - nx0 < 3 or ny1 - ny0 < 3 or x1 - x0 < 6 or y1 - y0 < 6:
        return ""
    # Both sides lightly smoothed: generated or blurred text differs from crisp glyphs
    # mostly in stroke sharpness, which says nothing about which word it is.
    seen = ndimage.gaussian_filter(arr[ny0:ny1, nx0:nx1].mean(-1), 0.7)
    best, best_err = "", np.inf
    for word in words:
        canvas = np.zeros((S * f, S * f), dtype=np.float32)
        canvas[y0:y1, x0:x1] = note_patch(word, x1 - x0, y1 - y0).mean(-1)
        win = canvas[ny0 * f:ny1 * f, nx0 * f:nx1 * f]
        tmpl = win.reshape(ny1 - ny0, f, nx1 - nx0, f).mean(axis=(1, 3))
        err = float(((seen - ndimage.gaussian_filter(tmpl, 0.7)) ** 2).mean())
        if err < best_err:
            best, best_err = word, err
    return best


@lru_cache(maxsize=None)
def _centroid(shape: str, size: str) -> tuple[float, float]:
    """Coverage centroid of a sprite relative to its box centre, (dx, dy) in 64 px."""
    a = sprite(shape, size)
    r = SIZE_RADIUS[size]
    ys, xs = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    return float((a * xs).sum() / a.sum() - r), float((a * ys).sum() / a.sum() - r)


def _placed(shape: str, size: str, cx: int, cy: int, region: tuple[int, int, int, int], f: int) -> np.ndarray:
    """Box-filtered coverage of a sprite centred at (cx, cy) (64 px), cut to a native-pixel region."""
    rx0, ry0, rx1, ry1 = region
    canvas = np.zeros(((ry1 - ry0) * f, (rx1 - rx0) * f), dtype=np.float32)
    a = sprite(shape, size)
    r = SIZE_RADIUS[size]
    ox, oy = cx - r - rx0 * f, cy - r - ry0 * f
    sx0, sy0 = max(0, -ox), max(0, -oy)
    sx1, sy1 = min(a.shape[1], canvas.shape[1] - ox), min(a.shape[0], canvas.shape[0] - oy)
    if sx1 > sx0 and sy1 > sy0:
        canvas[oy + sy0:oy + sy1, ox + sx0:ox + sx1] = a[sy0:sy1, sx0:sx1]
    if f == 1:
        return canvas
    return canvas.reshape(ry1 - ry0, f, rx1 - rx0, f).mean(axis=(1, 3))


def _fit(cov: np.ndarray, region: tuple[int, int, int, int], f: int) -> tuple[str, str, int, int]:
    """Shape, size and centre (64 px) of the sprite that best explains coverage map `cov`."""
    rx0, ry0, _, _ = region
    ys, xs = np.mgrid[0:cov.shape[0], 0:cov.shape[1]]
    mass = cov.sum()
    mx = ((xs + rx0 + 0.5) * f * cov).sum() / mass - 0.5  # coverage centroid in 64 px pixel units
    my = ((ys + ry0 + 0.5) * f * cov).sum() / mass - 0.5
    best, best_err = None, np.inf
    for shape in SHAPES:
        for size in OBJECT_SIZES:
            dx, dy = _centroid(shape, size)
            px, py = int(round(mx - dx)), int(round(my - dy))
            for cy in range(py - _SEARCH, py + _SEARCH + 1):
                for cx in range(px - _SEARCH, px + _SEARCH + 1):
                    err = float(((cov - _placed(shape, size, cx, cy, region, f)) ** 2).sum())
                    if err < best_err:
                        best, best_err = (shape, size, cx, cy), err
    return best


def _native(edge0: int, edge1: int, f: int, S: int, pad: int) -> tuple[int, int]:
    """Native pixel range of a cell: pixels whose centres lie in [edge0, edge1) at 64 px, padded."""
    lo = int(np.ceil(edge0 / f - 0.5))
    hi = int(np.ceil(edge1 / f - 0.5))
    return max(0, lo - pad), min(S, hi + pad)


def _interior(edge0: int, edge1: int, f: int) -> tuple[int, int]:
    """Native pixels lying wholly inside [edge0, edge1) at 64 px (a cell's own pixels)."""
    return -(-edge0 // f), edge1 // f


def detect(image, words: tuple[str, ...] = NOTE_WORDS) -> Scene:
    """The oracle's reading of `image`: objects (shape, colour, size, grid position), note and background.

    image: PIL image, path, (H, W, 3) array or (3, H, W) tensor in [0, 1]; square;
    64, 32 and 16 px are read natively, other sizes are resampled to 64 px.
    words: the vocabulary a note's word is read from.
    """
    if isinstance(image, Image.Image) and ("A" in image.mode or "transparency" in image.info):
        warnings.warn(f"image: mode {image.mode} read as RGB; transparency is dropped (not composited)", stacklevel=2)
    arr = as_rgb_array(image)
    if arr.shape[0] == arr.shape[1] and arr.shape[0] not in SIZES and arr.shape[0] % SIZE:
        warnings.warn(f"image: {arr.shape[0]}x{arr.shape[0]} resampled to {SIZE}x{SIZE} (bicubic) for the oracle, "
                      f"which reads {', '.join(map(str, SIZES))} px natively", stacklevel=2)
    arr = _working_resolution(arr)
    S = arr.shape[0]
    f = SIZE // S
    bg = _background(arr)
    labels, alpha = _explain_pixels(arr, bg)
    note_box = _find_note(labels, alpha, f)
    note = None
    if note_box is not None:
        note = Note(_read_note(arr, note_box, f, tuple(words)), note_box)
        x0, y0, x1, y1 = note_box
        alpha[max(0, y0 // f - 1):y1 // f + 2, max(0, x0 // f - 1):x1 // f + 2] = 0.0
    min_mass = 0.4 * _SMALLEST_MASS / (f * f)
    # Blobs: connected pixels of one colour at least half covered. Scattered noise
    # pixels rarely pass half coverage, and never form a blob of an object's mass.
    blobs = np.zeros(labels.shape, dtype=np.int32)
    for k in range(len(COLORS)):
        comp, n = ndimage.label((labels == k) & (alpha > 0.5), structure=np.ones((3, 3)))
        blobs[comp > 0] = comp[comp > 0] + k * 1000
    objects = []
    for row in range(3):
        iy = _interior(CELL_EDGES[row], CELL_EDGES[row + 1], f)
        for col in range(3):
            ix = _interior(CELL_EDGES[col], CELL_EDGES[col + 1], f)
            cell_blobs = blobs[iy[0]:iy[1], ix[0]:ix[1]]
            cell_alpha = alpha[iy[0]:iy[1], ix[0]:ix[1]]
            ids = [b for b in np.unique(cell_blobs) if b > 0]
            if not ids:
                continue
            masses = [float(cell_alpha[cell_blobs == b].sum()) for b in ids]
            blob = ids[int(np.argmax(masses))]
            if max(masses) < min_mass:
                continue
            k = blob // 1000
            # Fit on the cell padded by a pixel (box filtering spreads edges across the
            # boundary), using this colour's pixels near the blob only.
            py, px = _native(CELL_EDGES[row], CELL_EDGES[row + 1], f, S, 1), _native(CELL_EDGES[col], CELL_EDGES[col + 1], f, S, 1)
            region = (px[0], py[0], px[1], py[1])
            near = ndimage.binary_dilation(blobs == blob, iterations=2)[py[0]:py[1], px[0]:px[1]]
            sub_labels = labels[py[0]:py[1], px[0]:px[1]]
            cov = np.where(near & (sub_labels == k), alpha[py[0]:py[1], px[0]:px[1]], 0.0)
            shape, size, cx, cy = _fit(cov, region, f)
            color = list(COLORS)[k]
            objects.append(Obj(shape, color, size, position_of(row, col), (cx - CELL_CENTERS[col], cy - CELL_CENTERS[row])))
    background = min(BACKGROUNDS, key=lambda b: float(((np.array(BACKGROUNDS[b]) - bg) ** 2).sum()))
    return Scene(tuple(objects), background, note)
