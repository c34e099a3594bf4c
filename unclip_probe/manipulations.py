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

from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from unclip_probe import validate
from unclip_probe.backends.base import Stack, check_stack, unit_norm
from unclip_probe.errors import ProbeInputError, bad_input

NOISES = ("fixed", "inverted")


def slerp(a: Tensor, b: Tensor, theta: float) -> Tensor:
    """Spherical interpolation between unit vectors a and b (..., D) at fraction theta in [0, 1]."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    omega = torch.arccos((a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))  # (..., 1)
    so = torch.sin(omega)
    return F.normalize((torch.sin((1 - theta) * omega) * a + torch.sin(theta * omega) * b) / so, dim=-1)


def _at_norms(z: Tensor, a: Tensor, b: Tensor, theta: float) -> Tensor:
    """slerp's unit vectors z (..., D) at the norm between a's and b's: the world stack takes unit
    embeddings (returned as they are), the real decoders raw ones at CLIP's own scale (paper §2.1)."""
    if unit_norm(a) and unit_norm(b):
        return z
    return z * ((1 - theta) * a.norm(dim=-1, keepdim=True) + theta * b.norm(dim=-1, keepdim=True))


@torch.no_grad()
def invert(stack: Stack, image, steps: int | None = None) -> tuple[Tensor, Tensor]:
    """(x_T (1, *noise_shape), z_i (1, D)): one image's CLIP embedding and its DDIM inversion under it.
    Pass the pair as ``inverted=`` to the functions below to reuse it across calls (a widget)."""
    check_stack(stack)
    steps = validate.steps(steps, "steps")
    with validate.renamed(images="image"):
        image = _one_image(image)
        z = stack.encode_image([image])  # (1, D)
        return stack.invert([image], steps=stack.defaults.inversion.steps if steps is None else steps, z=z), z


def _one_image(image):
    """One image (PIL, path, array or tensor); a list is refused (these functions take one image)."""
    if isinstance(image, (list, tuple)):
        raise bad_input("image", f"expected one image, got a list of {len(image)}")
    return validate.images(image, "image")[0]


def _inverted(stack: Stack, inverted) -> tuple[Tensor, Tensor]:
    """A pair from :func:`invert`, checked: x_T (1, *noise_shape) and z (1, D)."""
    if not (isinstance(inverted, tuple) and len(inverted) == 2):
        raise bad_input("inverted", "expected the (x_T, z) pair that manipulations.invert returns")
    x_T = validate.noise(inverted[0], stack.noise_shape, 1, "inverted")
    return x_T, validate.embeddings(inverted[1], stack.embed_dim, "inverted")


@torch.no_grad()
def variations(stack: Stack, image, n: int = 4, *, eta: float | None = None, seed: int = 0,
               steps: int | None = None, guidance: float | None = None,
               inverted: tuple[Tensor, Tensor] | None = None) -> list[Image.Image]:
    """Paper §3.1: n decodes of the image's CLIP embedding from its inverted x_T with eta > 0.
    eta / steps / guidance None: ``stack.defaults.variations`` (measured to keep the scene)."""
    check_stack(stack)
    n, seed = validate.count(n, "n"), validate.seed(seed)
    eta, steps, guidance = validate.eta(eta), validate.steps(steps), validate.guidance(guidance)
    image = _one_image(image) if inverted is None else None
    d = stack.defaults.variations
    steps = d.steps if steps is None else steps
    x_T, z = invert(stack, image, steps) if inverted is None else _inverted(stack, inverted)
    return stack.decode(z.expand(n, -1), seed=seed, x_T=x_T.expand(n, *x_T.shape[1:]).clone(),
                        eta=d.eta if eta is None else eta, steps=steps, sampler=d.sampler,
                        guidance=d.guidance if guidance is None else guidance)  # DDIM: the inverted sampler


@torch.no_grad()
def interpolate(stack: Stack, a, b, n: int = 8, *, seed: int = 0, noise: str = "fixed", steps: int | None = None,
                guidance: float | None = None) -> list[Image.Image]:
    """Paper §3.2: n frames slerping between the images' embeddings (both ends included); x_T fixed
    (drawn from `seed`), or slerped between the images' inversions. guidance None: the stack's
    ``defaults.interpolation.guidance`` for inverted noise (so each end is the input's round trip),
    its fresh-noise ``defaults.decode.guidance`` for fixed noise."""
    check_stack(stack)
    n, seed = validate.count(n, "n", minimum=2), validate.seed(seed)
    noise = validate.choice(noise, NOISES, "noise")
    steps, guidance = validate.steps(steps), validate.guidance(guidance)
    with validate.renamed(image="a"):
        a = _one_image(a)
    with validate.renamed(image="b"):
        b = _one_image(b)
    steps = stack.defaults.interpolation.steps if steps is None else steps
    thetas = torch.linspace(0, 1, n).tolist()
    if noise == "inverted":
        with validate.renamed(image="a"):
            xa, za = invert(stack, a, steps)
        with validate.renamed(image="b"):
            xb, zb = invert(stack, b, steps)
        # slerp the flattened noises and keep a's norm: x_T stays on the Gaussian's shell
        x_T = torch.cat([slerp(xa.flatten(1), xb.flatten(1), t).view_as(xa) * xa.flatten(1).norm() for t in thetas])
    else:
        with validate.renamed(images="a"):
            za = stack.encode_image([a])
        with validate.renamed(images="b"):
            zb = stack.encode_image([b])
        x_T = stack.noise(1, seed).expand(n, *stack.noise_shape).clone()
    z = torch.cat([_at_norms(slerp(za, zb, t), za, zb, t) for t in thetas])
    if guidance is None:
        guidance = stack.defaults.interpolation.guidance if noise == "inverted" else stack.defaults.decode.guidance
    return stack.decode(z, seed=seed, x_T=x_T, steps=steps, guidance=guidance,
                        sampler=stack.defaults.interpolation.sampler)


@torch.no_grad()
def text_diff(stack: Stack, image, src: str, dst: str, thetas: Sequence[float] = (0.0, 0.25, 0.5, 0.75), *,
              seed: int = 0, steps: int | None = None, guidance: float | None = None,
              inverted: tuple[Tensor, Tensor] | None = None, caption: str | None = None) -> list[Image.Image]:
    """Paper §3.3: decode slerp(z_i, z_d, theta) for each theta from the image's inverted x_T, where
    z_d = normalise(z_t(dst) - z_t(src)) in the stack's own text tower.
    caption: a caption the decoder also reads for every frame (its text tokens, paper §2.1), e.g.
    `dst`; None decodes from the embedding alone. steps / guidance None: ``stack.defaults.text_diff``."""
    # every check, the texts' encoding included, before the inversion: the call's slow part
    check_stack(stack)
    thetas = validate.number_list(thetas, "thetas", minimum=0.0, maximum=1.0, what="angles as fractions")
    seed, steps, guidance = validate.seed(seed), validate.steps(steps), validate.guidance(guidance)
    texts = (("src", src), ("dst", dst)) + ((("caption", caption),) if caption is not None else ())
    for name, text in texts:
        validate.prompt(text, name)
    try:
        z_t = stack.encode_text([src, dst])
        if caption is not None:
            stack.encode_text([caption])  # the decoder reads it at the end; a bad one fails now
    except ProbeInputError:
        for name, text in texts:  # which of them: encode each alone, its error naming it
            with validate.renamed(prompts=name, texts=name):
                stack.encode_text([text])
        raise
    image = _one_image(image) if inverted is None else None
    d = stack.defaults.text_diff
    steps = d.steps if steps is None else steps
    x_T, z_i = invert(stack, image, steps) if inverted is None else _inverted(stack, inverted)
    z_d = F.normalize(z_t[1] - z_t[0], dim=-1)[None]
    z = torch.cat([_at_norms(slerp(z_i, z_d, t), z_i, z_i, t) for t in thetas])  # at z_i's norm
    return stack.decode(z, seed=seed, x_T=x_T.expand(len(thetas), *x_T.shape[1:]).clone(), steps=steps,
                        guidance=d.guidance if guidance is None else guidance, sampler=d.sampler,
                        prompts=None if caption is None else [caption] * len(thetas))
