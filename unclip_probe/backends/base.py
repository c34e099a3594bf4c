"""The stack protocol: what probes, manipulations, widgets, the report and the CLI may use of a stack.

A *stack* is one unCLIP model (paper Fig. 2): a CLIP, optionally a prior that turns
text into a CLIP image embedding (§2.2), and a decoder that turns an embedding into
pixels (§2.1, with any upsamplers behind it). The world stack (``backends/world``) is
the first implementation; real stacks (diffusers-based) implement the same members.
Everything above ``backends/`` reaches a stack only through these members (a test
enforces it, docs/design.md §2), so a probe written once runs on every stack.

Shapes: ``D`` = the CLIP embedding width (``embed_dim``); ``B`` = batch; the decoder's
starting noise ``x_T`` has the decoder's own shape ``noise_shape`` = (C, h, w): pixels
for a pixel-space decoder (world: (3, 32, 32)), latents for a latent one.

Embeddings: ``encode_image`` and ``prior`` return what ``decode`` takes, at the scale the
decoder was trained on: unit norm for the world stack and Karlo, the raw CLIP projection for
Kandinsky 2.2 and Stable unCLIP (paper §2.1 feeds the decoder CLIP's embedding as CLIP emits
it). ``clip.encode_image`` / ``encode_text`` are always unit norm (zero-shot, probes).

A stack that lacks a part answers with one sentence naming itself, never an
AttributeError: ``prior`` on a stack without one raises ``ProbeInputError`` from
:func:`missing`; ``decode(prompts=...)`` on a decoder that reads no caption likewise
(``reads_caption`` tells in advance).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import torch
from PIL import Image
from torch import Tensor

from unclip_probe.errors import ProbeInputError, bad_input


@dataclass(frozen=True)
class Sampling:
    """How one operation samples: classifier-free guidance scale, steps, DDIM eta, and the sampler
    (a name in ``diffusion.SAMPLERS``: "ddim", "ddpm", "dpm++2m")."""

    guidance: float
    steps: int
    eta: float = 0.0
    sampler: str = "ddim"


@dataclass(frozen=True)
class StackDefaults:
    """Each operation's sampling defaults; every stack measures and records its own (for the
    world stack: model card, "Tuned sampling defaults").

    decode: a fresh-noise decode (text -> image, probes). prior / ar_prior: the priors
    (``ar_prior.steps`` is unused: the AR prior takes one step per PCA code). inversion:
    DDIM steps of ``invert``. variations / interpolation / text_diff: the manipulations
    of paper §3 (variations' and text diffs' decodes start from an inverted x_T, so they
    share ``inversion.steps``). upsample_steps / upsample_sampler: each upsampler's steps and sampler."""

    decode: Sampling
    prior: Sampling
    ar_prior: Sampling
    inversion: Sampling
    variations: Sampling
    interpolation: Sampling
    text_diff: Sampling
    upsample_steps: int = 10
    upsample_sampler: str = "ddim"


PRIOR_KINDS = ("diffusion", "ar")


@runtime_checkable
class Stack(Protocol):
    """What every stack offers (see the module docstring for shapes)."""

    name: str                   # the stack's kind, as load_stack knows it ("world", ...); errors name it
    clip: "ClipModel"           # noqa: F821  hooks, zero-shot, encoders (unclip_probe.clip.ClipModel)
    device: torch.device
    defaults: StackDefaults

    @property
    def embed_dim(self) -> int: ...          # D

    @property
    def image_size(self) -> int: ...         # side of the images decode returns (with upsampling)

    @property
    def noise_shape(self) -> tuple[int, int, int]: ...  # (C, h, w) of one x_T

    @property
    def prior_kinds(self) -> tuple[str, ...]: ...  # the priors this stack has, among PRIOR_KINDS

    @property
    def reads_caption(self) -> bool: ...     # whether decode(prompts=...) conditions on text

    @property
    def reads_embedding(self) -> bool: ...   # whether the decoder conditions on z at all

    @property
    def checksums(self) -> dict[str, str]: ...  # what a measurement names: weights -> checksum

    def encode_image(self, images) -> Tensor: ...  # images (PIL / paths) -> (B, D): what decode takes

    def encode_text(self, prompts: Sequence[str]) -> Tensor: ...  # (B, D) unit norm

    # sampler: a name in diffusion.SAMPLERS ("ddim", "ddpm", "dpm++2m"); None: the stack's default
    def prior(self, prompts: str | Sequence[str], *, seed: int = 0, kind: str = "diffusion",
              guidance: float | None = None, steps: int | None = None,
              sampler: str | None = None) -> Tensor: ...  # (B, D)

    def decode(self, z: Tensor, *, seed: int = 0, x_T: Tensor | None = None,
               prompts: Sequence[str] | None = None, guidance: float | None = None, steps: int | None = None,
               eta: float = 0.0, upsample: bool = True,
               sampler: str | None = None) -> list[Image.Image]: ...  # z (B, D); x_T (B, *noise_shape)

    def invert(self, images, *, steps: int | None = None, z: Tensor | None = None) -> Tensor: ...  # (B, *noise_shape)

    def noise(self, n: int, seed: int) -> Tensor: ...  # (n, *noise_shape), the x_T decode draws from `seed`

    def with_decoder(self, name: str) -> "Stack": ...  # the same stack with another of its decoders

    def __call__(self, prompts: str | Sequence[str], *, seed: int = 0, prior: str = "diffusion",
                 guidance: float | None = None, steps: int | None = None,
                 sampler: str | None = None) -> list[Image.Image]: ...


# The members above, by name: the seam test checks that code above backends/ uses no other.
PROTOCOL_MEMBERS = frozenset({
    "name", "clip", "device", "defaults", "embed_dim", "image_size", "noise_shape", "prior_kinds",
    "reads_caption", "reads_embedding", "checksums", "encode_image", "encode_text", "prior", "decode",
    "invert", "noise", "with_decoder",
})


def check_stack(value: object, argument: str = "stack") -> "Stack":
    """``value`` if it offers every protocol member (looked up without running properties), else one
    sentence naming the argument; probes, manipulations and widgets call it before any work."""
    from unclip_probe.validate import has_members

    return has_members(value, sorted(PROTOCOL_MEMBERS), argument,
                       "a stack, e.g. up.load_stack('world', 'checkpoints/world')")


def unit_norm(z: Tensor, atol: float = 1e-4) -> bool:
    """Whether every row of z (..., D) is a unit vector: the world stack's and Karlo's embeddings are,
    Kandinsky's and Stable unCLIP's raw projections are not (see the module docstring)."""
    norms = z.norm(dim=-1)
    return bool(torch.allclose(norms, torch.ones_like(norms), atol=atol))


def missing(stack_name: str, what: str, argument: str, hint: str = "") -> ProbeInputError:
    """The error for a part a stack lacks: one sentence naming the stack and the argument."""
    return bad_input(argument, f"the {stack_name!r} stack has no {what}" + (f"; {hint}" if hint else ""))
