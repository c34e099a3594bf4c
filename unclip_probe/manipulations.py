"""The paper's manipulations (§3) as functions over any stack (``backends/base.py``).

- variations (§3.1): DDIM-invert the image to its x_T under its own CLIP embedding z_i,
  then decode z_i from that x_T with eta > 0: what is kept is what z_i and x_T hold.
- interpolate (§3.2): slerp between two images' embeddings, with x_T fixed or slerped
  between their inversions.
- text_diff (§3.3): z_d = normalise(z_t(dst) - z_t(src)); decode slerp(z_i, z_d, theta)
  from the image's inverted x_T.

Every tuned number (guidance of an inverted decode, variation eta, text-diff guidance,
steps) is the stack's own ``defaults``, so each stack gets these once, at its own settings.
"""
from __future__ import annotations

from numbers import Real
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from unclip_probe.backends.base import Stack
from unclip_probe.errors import bad_input, one_of

NOISES = ("fixed", "inverted")


def slerp(a: Tensor, b: Tensor, theta: float) -> Tensor:
    """Spherical interpolation between unit vectors a and b (..., D) at fraction theta in [0, 1]."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    omega = torch.arccos((a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))  # (..., 1)
    so = torch.sin(omega)
    return F.normalize((torch.sin((1 - theta) * omega) * a + torch.sin(theta * omega) * b) / so, dim=-1)


@torch.no_grad()
def invert(stack: Stack, image, steps: int | None = None) -> tuple[Tensor, Tensor]:
    """(x_T (1, *noise_shape), z_i (1, D)): one image's CLIP embedding and its DDIM inversion under it.
    Pass the pair as ``inverted=`` to the functions below to reuse it across calls (a widget)."""
    z = stack.encode_image([image])  # (1, D); errors name `images`
    return stack.invert([image], steps=stack.defaults.inversion.steps if steps is None else steps, z=z), z


@torch.no_grad()
def variations(stack: Stack, image, n: int = 4, *, eta: float | None = None, seed: int = 0,
               steps: int | None = None, guidance: float | None = None,
               inverted: tuple[Tensor, Tensor] | None = None) -> list[Image.Image]:
    """Paper §3.1: n decodes of the image's CLIP embedding from its inverted x_T with eta > 0.
    eta / steps / guidance None: ``stack.defaults.variations`` (measured to keep the scene)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise bad_input("n", f"expected an integer >= 1, got {n!r}")
    d = stack.defaults.variations
    steps = d.steps if steps is None else steps
    x_T, z = invert(stack, image, steps) if inverted is None else inverted
    return stack.decode(z.expand(n, -1), seed=seed, x_T=x_T.expand(n, *x_T.shape[1:]).clone(),
                        eta=d.eta if eta is None else eta, steps=steps,
                        guidance=d.guidance if guidance is None else guidance)


@torch.no_grad()
def interpolate(stack: Stack, a, b, n: int = 8, *, seed: int = 0, noise: str = "fixed", steps: int | None = None,
                guidance: float | None = None) -> list[Image.Image]:
    """Paper §3.2: n frames slerping between the images' embeddings (both ends included); x_T fixed
    (drawn from `seed`), or slerped between the images' inversions. guidance None: the stack's
    ``defaults.interpolation.guidance`` for inverted noise (so each end is the input's round trip),
    its fresh-noise ``defaults.decode.guidance`` for fixed noise."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise bad_input("n", f"expected an integer >= 2 (the two ends included), got {n!r}")
    if noise not in NOISES:
        raise bad_input("noise", one_of(noise, NOISES))
    steps = stack.defaults.interpolation.steps if steps is None else steps
    thetas = torch.linspace(0, 1, n).tolist()
    if noise == "inverted":
        (xa, za), (xb, zb) = invert(stack, a, steps), invert(stack, b, steps)
        # slerp the flattened noises and keep a's norm: x_T stays on the Gaussian's shell
        x_T = torch.cat([slerp(xa.flatten(1), xb.flatten(1), t).view_as(xa) * xa.flatten(1).norm() for t in thetas])
    else:
        za, zb = stack.encode_image([a]), stack.encode_image([b])
        x_T = stack.noise(1, seed).expand(n, *stack.noise_shape).clone()
    z = torch.cat([slerp(za, zb, t) for t in thetas])
    if guidance is None:
        guidance = stack.defaults.interpolation.guidance if noise == "inverted" else stack.defaults.decode.guidance
    return stack.decode(z, seed=seed, x_T=x_T, steps=steps, guidance=guidance)


@torch.no_grad()
def text_diff(stack: Stack, image, src: str, dst: str, thetas: Sequence[float] = (0.0, 0.25, 0.5, 0.75), *,
              seed: int = 0, steps: int | None = None, guidance: float | None = None,
              inverted: tuple[Tensor, Tensor] | None = None, caption: str | None = None) -> list[Image.Image]:
    """Paper §3.3: decode slerp(z_i, z_d, theta) for each theta from the image's inverted x_T, where
    z_d = normalise(z_t(dst) - z_t(src)) in the stack's own text tower.
    caption: a caption the decoder also reads for every frame (its text tokens, paper §2.1), e.g.
    `dst`; None decodes from the embedding alone. steps / guidance None: ``stack.defaults.text_diff``."""
    if isinstance(thetas, (Real, str)) or not hasattr(thetas, "__iter__"):
        raise bad_input("thetas", f"expected a list of fractions in [0, 1], got {thetas!r}")
    thetas = list(thetas)
    if not thetas or not all(isinstance(t, Real) and not isinstance(t, bool) and 0 <= t <= 1 for t in thetas):
        raise bad_input("thetas", f"expected angles as fractions in [0, 1], got {thetas!r}")
    # checked before the inversion, the call's slow part
    for name, text in (("src", src), ("dst", dst)) + ((("caption", caption),) if caption is not None else ()):
        if not isinstance(text, str) or not text.strip():
            raise bad_input(name, f"expected a non-empty prompt, got {text!r}")
    d = stack.defaults.text_diff
    steps = d.steps if steps is None else steps
    x_T, z_i = invert(stack, image, steps) if inverted is None else inverted
    z_t = stack.encode_text([src, dst])
    z_d = F.normalize(z_t[1] - z_t[0], dim=-1)[None]
    z = torch.cat([slerp(z_i, z_d, t) for t in thetas])
    return stack.decode(z, seed=seed, x_T=x_T.expand(len(thetas), *x_T.shape[1:]).clone(), steps=steps,
                        guidance=d.guidance if guidance is None else guidance,
                        prompts=None if caption is None else [caption] * len(thetas))
