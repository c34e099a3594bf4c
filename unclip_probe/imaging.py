"""The one conversion between pictures and the diffusion models' pixel range (docs/design.md §2).

Diffusion models here see pixels in [-1, 1] (improved-diffusion's convention); CLIP,
the oracle and the user see PIL images or uint8 arrays. Every stage, evaluation and
training recipe converts through these functions, so the rounding is the same
everywhere (the byte-identical figures of docs/design.md §5 depend on it).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1], clamped."""
    return ((x + 1) / 2).clamp(0, 1)


def uint8_to_signed(x: Tensor | np.ndarray) -> Tensor:
    """uint8 pixels (..., 3, H, W) -> float32 in [-1, 1], same shape."""
    return torch.as_tensor(x).float().div(127.5).sub(1.0)


def pil_to_signed(images: Sequence[Image.Image]) -> Tensor:
    """RGB PIL images of one size -> (B, 3, H, W) float32 in [-1, 1]."""
    return uint8_to_signed(torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images]))


def signed_to_pil(x: Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] -> RGB PIL images (rounded to the nearest level)."""
    arr = (to_unit(x.float()).permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return [Image.fromarray(a) for a in arr]


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def image_files(folder, argument: str = "images") -> list:
    """The image files directly in `folder` (by suffix, sorted by name); one sentence when there are none."""
    from pathlib import Path

    from unclip_probe.errors import bad_input

    path = Path(folder)
    if not path.is_dir():
        raise bad_input(argument, f"{str(path)!r} is not a folder of images")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise bad_input(argument, f"{str(path)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def squares(images, size: int | None = None, argument: str = "images", stacklevel: int = 3) -> list[Image.Image]:
    """Images (PIL, paths, arrays) as RGB squares, each change said in a warning (docs/design.md §7):
    transparency dropped, the centre square of a non-square image (as CLIP's preprocessing crops);
    resized (bicubic) to `size` when one is given."""
    import warnings

    from unclip_probe import validate
    from unclip_probe.world.oracle import as_rgb_image

    out = []
    for image in validate.images(images, argument):  # paths opened; a bad one fails before any work
        if isinstance(image, Image.Image) and ("A" in image.mode or "transparency" in image.info):
            warnings.warn(f"image: mode {image.mode} converted to RGB; transparency is dropped (not composited)",
                          stacklevel=stacklevel)
        pil = as_rgb_image(image, argument)
        W, H = pil.size
        if H != W:
            k = min(H, W)
            pil = pil.crop(((W - k) // 2, (H - k) // 2, (W - k) // 2 + k, (H - k) // 2 + k))
            warnings.warn(f"image: {W}x{H} is not square; its centre {k}x{k} is used", stacklevel=stacklevel)
        out.append(pil if size is None or pil.size == (size, size) else pil.resize((size, size), Image.BICUBIC))
    return out
