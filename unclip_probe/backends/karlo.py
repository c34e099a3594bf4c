"""Karlo v1 alpha (kakaobrain/karlo-v1-alpha) as a stack, sampled by this package's own samplers.

    z_t, tokens = CLIP ViT-L/14 text tower(prompts)                      (stack.clip, HFClipModel)
    z_i         = prior(z_t, tokens)            DDIM, x0 prediction      (paper §2.2)
    x_64        = decoder(z_i, z_t, tokens)     DDIM, guidance           (paper §2.1)
    x_256       = super_res_first (all steps but the last), super_res_last (the last)

diffusers' Karlo pipelines sample with ``UnCLIPScheduler`` (ancestral DDPM only) and make
"variations" from fresh noise; this stack runs DDIM, so an image can be DDIM-inverted to the
x_T its variations start from (paper §3.1). ``sampler="ddpm"`` in :meth:`Karlo.decode_raw` /
:meth:`Karlo.prior_raw` reproduces the pipelines step for step (tests/unit/test_stack_karlo.py).

Embedding scale. Karlo's decoder reads CLIP image embeddings as CLIP emits them (Karlo's
``CustomizedCLIP.encode_image`` and the diffusers pipelines never normalise), and its prior
emits that scale (x * clip_std + clip_mean). The protocol's z is unit-norm (``encode_image``,
``prior``), so ``decode`` rescales a unit z to ``embedding_norm`` = sqrt(sum(clip_mean^2) +
sum(clip_std^2)): the root-mean-square norm of the embeddings the prior was fitted to
(E|x|^2 = sum_i mean_i^2 + var_i, exactly). ``__call__`` feeds the prior's raw output to the
decoder unchanged, as the pipeline does. ``decode_raw`` takes raw embeddings.

The karlo-v1-alpha folder holds the text tower only; ``image_encoder=`` (the
karlo-v1-alpha-image-variations folder, or its image_encoder/) adds CLIP's vision tower.
"""
from __future__ import annotations

import contextlib
import functools
import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from unclip_probe import validate
from unclip_probe.backends import latent
from unclip_probe.backends.base import PRIOR_KINDS, Sampling, StackDefaults, missing
from unclip_probe.backends.karlo_parts import (Layout, Stage, Text, check_layout, decoder_cond, decoder_uncond,
                                               invert_decoder, sample_decoder, sample_prior, sample_super_res)
from unclip_probe.diffusion import resolve_sampler
from unclip_probe.device import autocast, resolve_device, resolve_dtype
from unclip_probe.errors import bad_input
from unclip_probe.imaging import pil_to_signed, signed_to_pil

NAME = "karlo"
CLIP_NAME = "OpenAI CLIP ViT-L/14"

# Karlo's published sampling settings (README table and karlo/sampler/template.py SAMPLING_CONF), run
# with DDIM over Karlo's own respaced timesteps; none re-measured here (no weights on this machine).
KARLO_DEFAULTS = StackDefaults(
    decode=Sampling(guidance=8.0, steps=25),     # decoder guidance 8 and 25 steps: Karlo's "fast" setting
    prior=Sampling(guidance=4.0, steps=25),      # prior guidance 4, 25 steps: Karlo's setting (both modes)
    ar_prior=Sampling(guidance=1.0, steps=0),    # unused: Karlo has no AR prior
    inversion=Sampling(guidance=1.0, steps=50),  # 50: Karlo's "default" decoder steps; inverting runs unguided
    # decodes from an inverted x_T run unguided, because only an unguided decode retraces the inversion
    # (the world stack's rule); eta 0.5 sits between the round trip (0) and DDPM-like noise (1): unmeasured
    variations=Sampling(guidance=1.0, steps=50, eta=0.5),
    interpolation=Sampling(guidance=1.0, steps=50),  # inverted ends unguided; fixed noise uses decode.guidance
    text_diff=Sampling(guidance=1.0, steps=50),      # unguided, from the inverted x_T: unmeasured
    upsample_steps=7,  # Karlo's SR was fine-tuned for exactly 7 respaced steps (sr_64_256.py asserts "7")
)


class Karlo:
    """Karlo v1 alpha behind the stack protocol (``backends/base.py``); build with :func:`load`."""

    name = NAME
    defaults = KARLO_DEFAULTS

    def __init__(self, clip, prior, text_proj, decoder, super_res_first, super_res_last, stages: dict[str, Stage],
                 device: torch.device, amp_dtype: torch.dtype | None = None, layout: Layout | None = None):
        self.clip, self.prior_net, self.text_proj, self.decoder = clip, prior, text_proj, decoder
        self.super_res_first, self.super_res_last, self.stages = super_res_first, super_res_last, stages
        self.device, self.amp_dtype, self.layout = device, amp_dtype, layout
        with torch.no_grad():  # the RMS norm of the embeddings the prior was fitted to (module docstring)
            mean, std = prior.clip_mean.float(), prior.clip_std.float()
            self.embedding_norm = math.sqrt(float((mean**2).sum() + (std**2).sum()))

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, image_encoder: str | Path | None = None, device: str = "auto",
                        dtype: str = "auto") -> "Karlo":
        """Load from a local karlo-v1-alpha folder (never a download). image_encoder: the
        karlo-v1-alpha-image-variations folder (or its image_encoder/), for encode_image and invert.
        device "auto": CUDA when present; dtype "auto": bf16 (else fp16) autocast on CUDA, fp32 on the CPU."""
        from diffusers import PriorTransformer, UNet2DConditionModel, UNet2DModel
        from diffusers.pipelines.deprecated.unclip import UnCLIPTextProjModel

        from unclip_probe.clip.hf import HFClipModel

        latent.offline()
        for argument, value in (("folder", folder), ("image_encoder", image_encoder)):
            if not isinstance(value, (str, Path)) and not (argument == "image_encoder" and value is None):
                raise bad_input(argument, f"expected a path to a local folder, got {type(value).__name__}")
        layout = check_layout(folder, image_encoder)
        dev = resolve_device(device)
        amp = resolve_dtype(dtype, dev)
        f = layout.folder
        for name in ("vocab.json", "merges.txt"):
            if not (f / "tokenizer" / name).is_file():
                raise bad_input("folder", f"{str(f)!r} has no tokenizer/{name} (the CLIP tokenizer's files)")
        nets = {sub: latent.load_component(kind, f, sub, "folder").to(dev) for sub, kind in (
            ("prior", PriorTransformer), ("text_proj", UnCLIPTextProjModel), ("decoder", UNet2DConditionModel),
            ("super_res_first", UNet2DModel), ("super_res_last", UNet2DModel))}
        latent.require_weights(f, "text_encoder", "folder")
        if layout.image_encoder is not None:
            latent.require_weights(layout.image_encoder.parent, layout.image_encoder.name, "image_encoder")
        with latent.loading(f, "CLIP (text_encoder/, tokenizer/; image_encoder)", "folder"), \
                validate.renamed(text_encoder="folder", tokenizer="folder", image_processor="image_encoder"):
            clip = HFClipModel.from_folders(image_encoder=layout.image_encoder, text_encoder=f / "text_encoder",
                                            tokenizer=f / "tokenizer", image_processor=layout.feature_extractor,
                                            name=NAME, device=dev)
        stages = {k: Stage.from_config(layout.configs[f"{k}_scheduler"]) for k in ("prior", "decoder", "super_res")}
        return cls(clip, nets["prior"], nets["text_proj"], nets["decoder"], nets["super_res_first"],
                   nets["super_res_last"], stages, dev, amp, layout)

    def with_decoder(self, name: str) -> "Karlo":
        """Karlo ships one decoder, ``"decoder"`` (this stack); any other name is refused."""
        if name == "decoder":
            return self
        raise bad_input("name", f"the {self.name!r} stack has one decoder, 'decoder'; there is no {name!r}")

    # ------------------------------------------------------------------ protocol facts
    @property
    def embed_dim(self) -> int:
        return self.clip.embed_dim

    @property
    def image_size(self) -> int:
        return int(self.super_res_first.config.sample_size)

    @property
    def noise_shape(self) -> tuple[int, int, int]:
        S = int(self.decoder.config.sample_size)
        return (int(self.decoder.config.in_channels), S, S)

    @property
    def prior_kinds(self) -> tuple[str, ...]:
        return ("diffusion",)

    @property
    def reads_caption(self) -> bool:
        return True  # the prompt's tokens and embedding, through text_proj

    @property
    def reads_embedding(self) -> bool:
        return True

    @functools.cached_property
    def checksums(self) -> dict[str, str]:
        """{"clip": the CLIP's tensor checksum, "<folder>/<component>/<file>": file checksum}; hashed once."""
        from unclip_probe.checkpoints import file_checksum

        out = {"clip": self.clip.checksum}
        if self.layout is not None:
            out.update(latent.weight_checksums({"karlo": self.layout.folder}))
            enc = self.layout.image_encoder
            for file in sorted(enc.iterdir()) if enc is not None else ():
                if file.suffix in latent.WEIGHT_SUFFIXES:
                    out[f"image_encoder/{enc.name}/{file.name}"] = file_checksum(file)
        return out

    # ------------------------------------------------------------------ encoders
    def _need_vision(self, argument: str) -> None:
        if getattr(self.clip, "vision", None) is None:
            raise missing(self.name, "image encoder (the karlo-v1-alpha folder holds CLIP's text tower only)",
                          argument, "load it with image_encoder='<the karlo-v1-alpha-image-variations folder>'")

    def encode_image(self, images) -> Tensor:
        """(B, D) unit-norm CLIP ViT-L/14 image embeddings (the raw ones, normalised): what decode takes.
        Images (PIL, paths, or a (B, 3, H, W) tensor in [0, 1]) through CLIP's own preprocessing."""
        self._need_vision("images")
        return self.clip.encode_image(images if isinstance(images, Tensor) else validate.images(images))

    def encode_text(self, prompts: str | Sequence[str]) -> Tensor:
        with validate.renamed(texts="prompts"):
            return self.clip.encode_text(validate.prompts(prompts))

    def _text(self, prompts: list[str]) -> Text:
        """Checked prompts as the decoder and prior read them: raw embedding, tokens, mask (one pass)."""
        with validate.renamed(texts="prompts"):
            return Text(*self.clip.text_features(prompts))

    def _empty(self, B: int) -> Text:
        """The "" prompt, B times: the unconditional branch's text (and a caption-free decode's)."""
        return Text(*self.clip.text_features([""])).expand(B)

    def _raw(self, z: Tensor) -> Tensor:
        """Unit embeddings (B, D) at the scale Karlo's decoder reads (module docstring)."""
        return F.normalize(z.float().to(self.device), dim=-1) * self.embedding_norm

    def noise(self, n: int, seed: int) -> Tensor:
        """x_T (n, 3, 64, 64) for the 64 px decoder, drawn from `seed` (what decode uses when given none)."""
        n, seed = validate.count(n, "n"), validate.seed(seed)
        return torch.randn(n, *self.noise_shape, generator=self._generator(seed), device=self.device)

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(int(seed))

    @contextlib.contextmanager
    def _run(self):
        with torch.no_grad(), autocast(self.device, self.amp_dtype):
            yield

    # ------------------------------------------------------------------ prior (paper §2.2)
    def _check_kind(self, kind: object, argument: str = "kind") -> str:
        kind = validate.choice(kind, PRIOR_KINDS, argument)
        if kind != "diffusion":
            raise missing(self.name, f"{kind!r} prior", argument, "Karlo ships a diffusion prior only")
        return kind

    def _prior_args(self, guidance, steps, names=("guidance", "steps")) -> tuple[float, int]:
        d = self.defaults.prior
        guidance = validate.guidance(guidance, names[0])
        steps = validate.steps(steps, names[1], self.stages["prior"].schedule.T)
        return d.guidance if guidance is None else guidance, d.steps if steps is None else steps

    def prior(self, prompts: str | Sequence[str], *, seed: int = 0, kind: str = "diffusion",
              guidance: float | None = None, steps: int | None = None, sampler: str | None = None) -> Tensor:
        """Unit-norm CLIP image embeddings (B, D) for the prompts; None: ``defaults.prior``."""
        prompts, seed = validate.prompts(prompts), validate.seed(seed)
        self._check_kind(kind)
        guidance, steps = self._prior_args(guidance, steps)
        sampler = self._sampler(sampler, self.defaults.prior)
        with self._run():
            return F.normalize(self._prior(self._text(prompts), seed, guidance, steps, sampler), dim=-1)

    def _sampler(self, sampler: str | None, default, eta: float = 0.0, name: str = "sampler") -> str:
        """A sampler name (None: the operation's default); eta is DDIM's."""
        return resolve_sampler(sampler, default.sampler, eta, name)

    def prior_raw(self, prompts: str | Sequence[str], *, seed: int = 0, guidance: float | None = None,
                  steps: int | None = None, sampler: str = "ddim", generator: torch.Generator | None = None,
                  x_T: Tensor | None = None) -> Tensor:
        """The prior's raw embeddings (B, D), the decoder's scale. sampler "ddpm" (the pipeline's,
        noise from `generator`) or "ddim"; x_T (B, D): its starting noise (default from seed + 3)."""
        prompts, seed = validate.prompts(prompts), validate.seed(seed)
        guidance, steps = self._prior_args(guidance, steps)
        x_T = None if x_T is None else validate.noise(x_T, (self.embed_dim,), len(prompts), "x_T")
        with self._run():
            return self._prior(self._text(prompts), seed, guidance, steps, sampler, generator, x_T)

    def _prior(self, text: Text, seed: int, guidance: float, steps: int, sampler="ddim", generator=None,
               x_T=None) -> Tensor:
        """prior_raw() on encoded prompts, arguments checked."""
        B = text.emb.shape[0]
        if x_T is None:
            x_T = torch.randn(B, self.embed_dim, generator=self._generator(seed + 3), device=self.device)
        return sample_prior(self.prior_net, self.stages["prior"], text, self._empty(B), x_T.to(self.device),
                            steps=steps, guidance=guidance, sampler=sampler,
                            generator=generator or self._generator(seed + 4))

    # ------------------------------------------------------------------ decoder and super-res (paper §2.1)
    def decode(self, z: Tensor, *, seed: int = 0, x_T: Tensor | None = None, prompts: Sequence[str] | None = None,
               guidance: float | None = None, steps: int | None = None, eta: float = 0.0, upsample: bool = True,
               upsample_steps: int | None = None, sampler: str | None = None) -> list[Image.Image]:
        """Images for CLIP image embeddings z (B, D) (unit norm, rescaled: module docstring), optionally
        also reading captions. x_T (B, 3, 64, 64); None: drawn from `seed`. None: ``defaults.decode``.
        sampler: the decoder's and super-res' ("ddim", "ddpm" or "dpm++2m")."""
        z = latent.check_z(z, self.embed_dim, self.name, CLIP_NAME)
        args = self._decode_args(z.shape[0], seed, x_T, prompts, guidance, steps, eta, upsample, upsample_steps)
        sampler = self._sampler(sampler, self.defaults.decode, args[5])
        with self._run():
            return signed_to_pil(self._decode(self._raw(z), *args, sampler))

    def decode_raw(self, z_raw: Tensor, *, prompts: Sequence[str] | None = None, seed: int = 0,
                   x_T: Tensor | None = None, guidance: float | None = None, steps: int | None = None,
                   eta: float = 0.0, upsample: bool = True, upsample_steps: int | None = None, sampler: str = "ddim",
                   generator: torch.Generator | None = None, sr_x_T: Tensor | None = None) -> Tensor:
        """decode() for raw embeddings (B, D) (the pipelines' ``image_embeddings``), as a (B, 3, H, W)
        tensor in [-1, 1]. sampler "ddpm": the pipelines' UnCLIPScheduler sampling, all step noise
        from `generator` (decoder, then super-res); sr_x_T: the super-res starting noise."""
        z_raw = latent.check_z(z_raw, self.embed_dim, self.name, CLIP_NAME, "z_raw")
        B = z_raw.shape[0]
        args = self._decode_args(B, seed, x_T, prompts, guidance, steps, eta, upsample, upsample_steps)
        H = self.image_size
        sr_x_T = None if sr_x_T is None else validate.noise(sr_x_T, (self.noise_shape[0], H, H), B, "sr_x_T")
        with self._run():
            return self._decode(z_raw.to(self.device), *args, sampler, generator, sr_x_T)

    def _decode_args(self, B, seed, x_T, prompts, guidance, steps, eta, upsample, upsample_steps) -> tuple:
        """decode()'s arguments checked, encoded and resolved to the defaults, in _decode's order."""
        seed = validate.seed(seed)
        x_T = None if x_T is None else validate.noise(x_T, self.noise_shape, B, "x_T").to(self.device)
        guidance = validate.guidance(guidance, "guidance")
        steps = validate.steps(steps, "steps", self.stages["decoder"].schedule.T)
        eta = validate.fraction(eta, "eta")
        upsample = validate.flag(upsample, "upsample")
        upsample_steps = validate.steps(upsample_steps, "upsample_steps", self.stages["super_res"].schedule.T)
        text = None
        if prompts is not None:
            prompts = validate.prompts(prompts)
            if len(prompts) != B:
                raise bad_input("prompts", f"expected one prompt per embedding ({B}), got {len(prompts)}")
            with self._run():
                text = self._text(prompts)
        d = self.defaults
        return (text, seed, x_T, d.decode.guidance if guidance is None else guidance,
                d.decode.steps if steps is None else steps, eta, upsample,
                d.upsample_steps if upsample_steps is None else upsample_steps)

    def _decode(self, z_raw: Tensor, text: Text | None, seed: int, x_T: Tensor | None, guidance: float, steps: int,
                eta: float, upsample: bool, upsample_steps: int, sampler: str = "ddim",
                generator: torch.Generator | None = None, sr_x_T: Tensor | None = None) -> Tensor:
        """x_0 (B, 3, H, W) in [-1, 1] for raw embeddings, arguments checked."""
        B = z_raw.shape[0]
        x_T = self.noise(B, seed) if x_T is None else x_T
        empty = self._empty(B)
        if generator is None and (sampler == "ddpm" or eta > 0):
            generator = self._generator(seed + 1)
        x = sample_decoder(self.decoder, self.stages["decoder"], decoder_cond(self.text_proj, z_raw, text or empty),
                           decoder_uncond(self.text_proj, empty), x_T, steps=steps, guidance=guidance,
                           sampler=sampler, eta=eta, generator=generator)
        if not upsample:
            return x
        H, C = self.image_size, self.noise_shape[0]
        if sr_x_T is None:
            sr_x_T = torch.randn(B, C, H, H, generator=self._generator(seed + 2), device=self.device)
        return sample_super_res(self.super_res_first, self.super_res_last, self.stages["super_res"], x,
                                sr_x_T.to(self.device), steps=upsample_steps, sampler=sampler, generator=generator)

    def __call__(self, prompts: str | Sequence[str], *, seed: int = 0, prior: str = "diffusion",
                 guidance: float | None = None, steps: int | None = None, prior_guidance: float | None = None,
                 prior_steps: int | None = None, upsample_steps: int | None = None, sampler: str | None = None,
                 prior_sampler: str | None = None) -> list[Image.Image]:
        """Text -> 256 px images: prior, decoder (reading the prompt too), super-res (paper Fig. 2)."""
        prompts = validate.prompts(prompts)
        self._check_kind(prior, "prior")
        p_guidance, p_steps = self._prior_args(prior_guidance, prior_steps, ("prior_guidance", "prior_steps"))
        sampler = self._sampler(sampler, self.defaults.decode)
        prior_sampler = self._sampler(prior_sampler, self.defaults.prior, name="prior_sampler")
        text, seed, _, guidance, steps, eta, _, upsample_steps = self._decode_args(
            len(prompts), seed, None, prompts, guidance, steps, 0.0, True, upsample_steps)  # one text-tower pass
        with self._run():
            z_raw = self._prior(text, seed, p_guidance, p_steps, prior_sampler)
            return signed_to_pil(self._decode(z_raw, text, seed, None, guidance, steps, eta, True, upsample_steps,
                                              sampler))

    # ------------------------------------------------------------------ inversion (paper §3.1)
    def _pixels(self, images: list[Image.Image]) -> Tensor:
        """x_0 (B, 3, 64, 64) in [-1, 1] for RGB squares at the decoder's size."""
        return pil_to_signed(images).to(self.device)

    def invert(self, images, *, steps: int | None = None, z: Tensor | None = None) -> Tensor:
        """x_T (B, 3, 64, 64): DDIM inversion of the images (one or a list, as 64 px squares) under the
        conditional decoder, unguided, reading z (B, D) (default: the images' own embeddings) and no
        caption. Decoding x_T with eta 0, guidance 1, the same steps and no caption retraces the images."""
        steps = validate.steps(steps, "steps", self.stages["decoder"].schedule.T)
        steps = self.defaults.inversion.steps if steps is None else steps
        z = None if z is None else latent.check_z(z, self.embed_dim, self.name, CLIP_NAME)
        if z is None:
            self._need_vision("images")
        squares = latent.squares(images, self.noise_shape[-1])
        if z is not None and z.shape[0] != len(squares):
            raise bad_input("z", f"expected one embedding per image ({len(squares)}), got {z.shape[0]}")
        with self._run():
            z = self.encode_image(images) if z is None else z
            cond = decoder_cond(self.text_proj, self._raw(z), self._empty(len(squares)))
            return invert_decoder(self.decoder, self.stages["decoder"], cond, self._pixels(squares), steps=steps)


load = Karlo.from_pretrained
