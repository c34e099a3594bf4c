"""A captioned grid of images: the quickest way to look at the world or at samples."""
from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw, ImageFont


def captioned_grid(images: list[Image.Image], captions: list[str], cols: int = 4, scale: int = 3, width_chars: int = 30) -> Image.Image:
    """Images (any equal size) upscaled `scale`x with nearest neighbour, each with its caption below."""
    if not images:
        raise ValueError("images: expected at least one image")
    w, h = images[0].size
    cell_w = w * scale
    font = ImageFont.load_default(size=11)
    wrapped = [textwrap.wrap(c, width=width_chars) or [""] for c in captions]
    text_h = 14 * max(len(t) for t in wrapped) + 6
    cols = min(cols, len(images))
    rows = -(-len(images) // cols)
    pad = 8
    out = Image.new("RGB", (cols * (cell_w + pad) + pad, rows * (h * scale + text_h + pad) + pad), "white")
    draw = ImageDraw.Draw(out)
    for k, (img, lines) in enumerate(zip(images, wrapped)):
        r, c = divmod(k, cols)
        x, y = pad + c * (cell_w + pad), pad + r * (h * scale + text_h + pad)
        out.paste(img.convert("RGB").resize((cell_w, h * scale), Image.NEAREST), (x, y))
        for i, line in enumerate(lines):
            draw.text((x, y + h * scale + 3 + 14 * i), line, fill="black", font=font)
    return out
