"""UnCLIP: the world stack (docs/design.md §1), text -> CLIP image embedding -> 32 px -> 64 px.

The path from prompt to pixels, one method per stage:

    z_t, tokens  = CLIP text encoder(prompts)             (clip.encode_text / encode_text_tokens)
    z_i          = prior(z_t, tokens)                      (paper §2.2; diffusion or AR)
    x_32         = decoder(z_i, tokens)                    (paper §2.1; DDIM, classifier-free guidance)
    x_64         = upsampler(x_32)                         (paper §2.1; conv-only, DDIM)

It implements the stack protocol (``backends/base.py``); the paper's manipulations
(§3) are functions over that protocol in ``unclip_probe.manipulations``. Same seed on
the same device gives the same images.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from unclip_probe import validate
from unclip_probe.backends.base import PRIOR_KINDS, Sampling, StackDefaults, missing
from unclip_probe.backends.world.decode import (DECODER_GUIDANCE, MAX_CANDIDATES, decode_images, invert_images,
                                                pick_nearest, upsample_images)
from unclip_probe.diffusion import check_sampler, resolve_sampler
from unclip_probe.backends.world.prior_sampling import PRIOR_GUIDANCE
from unclip_probe.backends.world.stages import load_decoder, load_unet_stage, load_upsampler
from unclip_probe.checkpoints import stack_checksums
from unclip_probe.clip import ClipModel, load_clip
from unclip_probe.device import resolve_device, resolve_dtype, sampling
from unclip_probe.errors import bad_input, one_of
from unclip_probe.imaging import pil_to_signed, signed_to_pil, squares

# The world stack's defaults, each measured on the shipped weights (model card, "Tuned sampling
# defaults"). The rules: fresh-noise decodes and the priors use the guidance that read best in
# the pipeline's text -> image sweep; a decode from a DDIM-inverted x_T runs unguided, because the
# inversion ran the unguided conditional decoder and only an unguided decode retraces it; variation
# eta is the largest that keeps the source's oracle reading in >= 80 % of scenes; a text diff
# needs a little guidance to move the embedding away from the image's own. Samplers and steps of the
# fresh-noise decode, the diffusion prior and the upsampler: the fewest network calls within one
# point of the former DDIM defaults (25 / 64 / 10 steps), confirmed on fresh seeds (model card,
# "Samplers and steps: quality per cost"); decodes from an inverted x_T stay DDIM, the sampler the
# inversion runs backwards.
INVERTED_GUIDANCE = 1.0
VARIATION_ETA = 0.1
TEXT_DIFF_GUIDANCE = 1.5
WORLD_DEFAULTS = StackDefaults(
    decode=Sampling(guidance=DECODER_GUIDANCE, steps=15, sampler="dpm++2m"),
    prior=Sampling(guidance=PRIOR_GUIDANCE["diffusion"], steps=16, sampler="dpm++2m"),
    ar_prior=Sampling(guidance=PRIOR_GUIDANCE["ar"], steps=0),
    inversion=Sampling(guidance=INVERTED_GUIDANCE, steps=50),
    variations=Sampling(guidance=INVERTED_GUIDANCE, steps=50, eta=VARIATION_ETA),
    interpolation=Sampling(guidance=INVERTED_GUIDANCE, steps=25),  # fixed noise: decode.guidance
    text_diff=Sampling(guidance=TEXT_DIFF_GUIDANCE, steps=50),
    upsample_steps=2,
    upsample_sampler="ddim",
)


class UnCLIP:
    """The world stack: CLIP, priors, decoder, upsampler (each optional but the CLIP and decoder)."""

    name = "world"
    defaults = WORLD_DEFAULTS

    def __init__(self, clip: ClipModel, decoder, decoder_cfg, upsampler=None, upsampler_cfg=None, priors=None,
                 device: torch.device | None = None, amp_dtype: torch.dtype | None = None):
        self.clip, self.decoder, self.decoder_cfg = clip, decoder, decoder_cfg
        self.upsampler, self.upsampler_cfg = upsampler, upsampler_cfg
        self.priors = priors or {}  # kind -> (network, config)
        self.device = device or clip.device
        self.amp_dtype = amp_dtype  # autocast dtype while sampling; None = fp32
        self.folder: Path | None = None  # the checkpoint folder, when loaded from one (with_decoder reads it)
    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "auto", dtype: str = "auto",
                        compile: bool = False) -> "UnCLIP":
        """Load a world stack. device "auto": CUDA when present, else CPU. dtype "auto": bf16 (else
        fp16) autocast on CUDA, fp32 on the CPU. On CUDA the U-Nets run channels_last; ``compile``
        wraps decoder and upsampler in torch.compile (slow first call, faster after)."""
        if not isinstance(folder, (str, Path)) or not Path(folder).is_dir():
            raise bad_input("folder", f"{str(folder)!r} is not a checkpoint folder")
        folder = Path(folder)
        validate.flag(compile, "compile")
        dev = resolve_device(device)
        amp = resolve_dtype(dtype, dev)
        clip = load_clip(folder, device=dev)
        decoder, dcfg = load_decoder(folder, clip_checksum=clip.checksum, device=dev)
        up_files = [f for f in ("upsampler.json", "upsampler.safetensors") if (folder / f).is_file()]
        up = load_upsampler(folder, device=dev) if up_files else (None, None)  # one of the two: names the other
        if not up_files:
            size = dcfg.unet.image_size
            warnings.warn(f"{folder}: no upsampler (upsampler.json and upsampler.safetensors), so this stack returns "
                          f"{size} px images, the decoder's own size, not upsampled ones", stacklevel=2)
        priors = {}
        if (folder / "prior.json").is_file():
            from unclip_probe.models.configs import PriorConfig
            from unclip_probe.models.prior import PriorTransformer

            priors["diffusion"] = load_unet_stage(folder, "prior", PriorConfig, clip_checksum=clip.checksum, device=dev,
                                                  build=lambda c: PriorTransformer(c.net))
        if (folder / "ar_prior.json").is_file():
            from unclip_probe.models.ar_prior import ARPrior, ARPriorConfig

            priors["ar"] = load_unet_stage(folder, "ar_prior", ARPriorConfig, clip_checksum=clip.checksum, device=dev,
                                           build=ARPrior)
        upsampler = up[0]
        if dev.type == "cuda":  # tensor-core convolutions want NHWC
            decoder = decoder.to(memory_format=torch.channels_last)
            upsampler = upsampler.to(memory_format=torch.channels_last) if upsampler is not None else None
        if compile:
            decoder = torch.compile(decoder)
            upsampler = torch.compile(upsampler) if upsampler is not None else None
        pipe = cls(clip, decoder, dcfg, upsampler, up[1], priors, dev, amp)
        pipe.folder = folder
        return pipe

    def with_decoder(self, name: str) -> "UnCLIP":
        """This stack with another decoder from its folder, e.g. ``"decoder_text"`` (the text-only
        GLIDE analogue) or ``"decoder_twin"``; CLIP, priors and upsampler are shared, not copied."""
        if not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name:
            raise bad_input("name", f"expected the name of a decoder in the stack's folder, e.g. 'decoder_text', "
                                    f"got {name!r}")
        if self.folder is None or not (self.folder / f"{name}.json").is_file():
            where = "this pipeline was not loaded from a folder" if self.folder is None else \
                f"{str(self.folder)!r} has no {name}.json"
            raise bad_input("name", f"no decoder {name!r}: {where}")
        decoder, cfg = load_decoder(self.folder, name, clip_checksum=self.clip.checksum, device=self.device)
        if self.device.type == "cuda":
            decoder = decoder.to(memory_format=torch.channels_last)
        other = copy.copy(self)
        other.decoder, other.decoder_cfg = decoder, cfg
        return other

    # ------------------------------------------------------------------ protocol facts
    @property
    def embed_dim(self) -> int:
        return self.clip.embed_dim

    @property
    def image_size(self) -> int:
        return self.upsampler_cfg.high_res if self.upsampler is not None else self.decoder_cfg.unet.image_size

    @property
    def noise_shape(self) -> tuple[int, int, int]:
        S = self.decoder_cfg.unet.image_size
        return (3, S, S)

    @property
    def prior_kinds(self) -> tuple[str, ...]:
        return tuple(k for k in PRIOR_KINDS if k in self.priors)

    @property
    def reads_caption(self) -> bool:
        return bool(self.decoder_cfg.unet.text_dim)

    @property
    def reads_embedding(self) -> bool:
        return bool(self.decoder_cfg.unet.clip_dim)

    @property
    def checksums(self) -> dict[str, str]:
        return stack_checksums(self.folder) if self.folder is not None else {"clip": self.clip.checksum}

    def encode_image(self, images) -> Tensor:
        """(B, D) unit-norm CLIP embeddings of what the decoder draws: each image as an RGB square
        (centre crop, said in a warning), as ``invert`` sees it. A (B, 3, H, W) tensor in [0, 1] goes
        to CLIP as it is."""
        if isinstance(images, Tensor):
            return self.clip.encode_image(images)
        return self.clip.encode_image(self._squares(images))

    def encode_text(self, prompts: str | Sequence[str]) -> Tensor:
        return self._encode(self.clip.encode_text, validate.prompts(prompts))

    @staticmethod
    def _encode(encoder, prompts: list[str], argument: str = "prompts"):
        """``encoder(prompts)``, its errors (the tokenizer's ``texts: ...``) naming `argument`."""
        with validate.renamed(texts=argument):
            return encoder(prompts)

    def noise(self, n: int, seed: int) -> Tensor:
        """x_T (n, 3, S, S) at the decoder's size S, drawn from `seed` (what decode uses when given none)."""
        n = validate.count(n, "n")
        return torch.randn(n, *self.noise_shape, generator=self._generator(validate.seed(seed)), device=self.device)

    # ------------------------------------------------------------------ stages
    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(int(seed))

    @sampling
    def prior(self, prompts: str | Sequence[str], *, seed: int = 0, kind: str = "diffusion",
              guidance: float | None = None, steps: int | None = None, sampler: str | None = None) -> Tensor:
        """Unit-norm CLIP image embeddings (B, D) for the prompts (paper §2.2).
        guidance / steps / sampler None: the prior's own defaults (``defaults.prior`` / ``defaults.ar_prior``)."""
        prompts, seed = validate.prompts(prompts), validate.seed(seed)
        kind, guidance, steps = self._check_prior(kind, guidance, steps, ("kind", "guidance", "steps"))
        sampler = self._check_prior_sampler(kind, sampler, "sampler")
        return self._prior(self._encode(self.clip.encode_text_and_tokens, prompts), seed, kind, guidance, steps,
                           sampler)

    def _check_prior_sampler(self, kind: str, sampler: str | None, name: str) -> str | None:
        """The diffusion prior's sampler (None: its default); the AR prior samples codes, not noise."""
        if kind == "ar":
            if sampler is not None:
                raise bad_input(name, "the AR prior samples one PCA code at a time, not with a diffusion sampler; "
                                      "pass None (the default)")
            return None
        return self.defaults.prior.sampler if sampler is None else check_sampler(sampler, name)

    def _check_prior(self, kind: str, guidance: float | None, steps: int | None,
                     names: tuple[str, str, str]) -> tuple[str, float, int]:
        """(kind, guidance, steps) checked and resolved to the prior's defaults; errors name `names`."""
        if not isinstance(kind, str) or kind not in PRIOR_KINDS:
            raise bad_input(names[0], one_of(kind, PRIOR_KINDS))
        if kind not in self.priors:
            raise missing(self.name, f"{kind!r} prior in this folder", names[0],
                          f"train it with `unclip-probe train {'prior' if kind == 'diffusion' else 'ar-prior'}`")
        d = self.defaults.prior if kind == "diffusion" else self.defaults.ar_prior
        guidance = validate.guidance(guidance, names[1])
        if kind == "ar" and steps is not None:  # one step per PCA code: a steps value would be ignored
            raise bad_input(names[2], "the AR prior takes one step per PCA code; pass None (the default)")
        steps = validate.steps(steps, names[2], self.priors[kind][1].diffusion.T) if kind == "diffusion" else None
        return kind, d.guidance if guidance is None else guidance, d.steps if steps is None else steps

    def _prior(self, encoded: tuple[Tensor, Tensor, Tensor], seed: int, kind: str, guidance: float,
               steps: int | None, sampler: str | None = None) -> Tensor:
        """prior() on prompts already encoded as (z_t (B, D), tokens (B, L, W), mask (B, L)), arguments checked."""
        from unclip_probe.backends.world.prior_sampling import sample_ar_prior, sample_diffusion_prior

        net, cfg = self.priors[kind]
        z_t, text, mask = encoded
        g = self._generator(seed)
        if kind == "diffusion":
            return sample_diffusion_prior(net, cfg, z_t, text, mask, generator=g, steps=steps, guidance=guidance,
                                          sampler=sampler or self.defaults.prior.sampler)
        return sample_ar_prior(net, z_t, text, mask, generator=g, guidance=guidance)

    @sampling
    def decode(self, z: Tensor, *, seed: int = 0, x_T: Tensor | None = None, prompts: Sequence[str] | None = None,
               guidance: float | None = None, steps: int | None = None, eta: float = 0.0, upsample: bool = True,
               upsample_steps: int | None = None, sampler: str | None = None,
               candidates: int = 1) -> list[Image.Image]:
        """Images for CLIP image embeddings z (B, D), optionally also conditioned on captions.
        x_T: the decoder's starting noise (B, 3, S, S) at its size S; drawn from `seed` when None.
        guidance / steps / sampler None: ``defaults.decode`` (eta > 0 needs the "ddim" sampler).
        candidates K > 1: K decodes per embedding, the first from x_T and the others from noise drawn
        after it from `seed`; the one whose CLIP embedding lies nearest z is kept and upsampled
        (``decode.pick_nearest``; K times the decoder's cost)."""
        z = validate.embeddings(z, self.embed_dim, "z")
        B = z.shape[0]
        seed = validate.seed(seed)
        x_T = None if x_T is None else validate.noise(x_T, self.noise_shape, B, "x_T")
        guidance, steps, upsample_steps = self._check_decode(guidance, steps, upsample_steps)
        eta = validate.fraction(eta, "eta")
        sampler = self._check_sampler(sampler, eta, "sampler")
        validate.flag(upsample, "upsample")
        if prompts is not None:
            if not self.reads_caption:
                raise missing(self.name, "caption input on this decoder", "prompts", "decode from the embedding alone")
            prompts = validate.prompts(prompts)
            if len(prompts) != B:
                raise bad_input("prompts", f"expected one prompt per embedding ({B}), got {len(prompts)}")
        if prompts is None:  # no caption: the decoder's caption-dropped branch (paper §2.1)
            text = torch.zeros(B, 1, self.decoder_cfg.unet.text_dim, device=self.device)
            mask = torch.zeros(B, 1, dtype=torch.bool, device=self.device)
        else:
            text, mask = self._encode(self.clip.encode_text_tokens, prompts)
        candidates = validate.count(candidates, "candidates", maximum=MAX_CANDIDATES)
        return self._decode(z, text, mask, seed, guidance, steps, eta, x_T, upsample, upsample_steps, sampler,
                            candidates)

    def _check_sampler(self, sampler: str | None, eta: float, name: str) -> str:
        """The decoder's sampler (None: ``defaults.decode.sampler``); DDIM's eta needs "ddim"."""
        return resolve_sampler(sampler, self.defaults.decode.sampler, eta, name)

    def _check_decode(self, guidance, steps, upsample_steps, names=("guidance", "steps", "upsample_steps")):
        """The decoder's and upsampler's sampling arguments, checked (None stays None: the defaults)."""
        up_T = self.upsampler_cfg.diffusion.T if self.upsampler is not None else None
        return (validate.guidance(guidance, names[0]), validate.steps(steps, names[1], self.decoder_cfg.diffusion.T),
                validate.steps(upsample_steps, names[2], up_T))

    def _decode(self, z: Tensor, text: Tensor, mask: Tensor, seed: int, guidance: float | None, steps: int | None,
                eta: float = 0.0, x_T: Tensor | None = None, upsample: bool = True,
                upsample_steps: int | None = None, sampler: str | None = None,
                candidates: int = 1) -> list[Image.Image]:
        """decode() with the caption already encoded: tokens (B, L, W) and mask (B, L)."""
        d = self.defaults
        B, K = z.shape[0], candidates
        noise = self._generator(seed)
        x_T = torch.randn(B, *self.noise_shape, generator=noise, device=self.device) if x_T is None else x_T
        if K > 1:  # the other candidates' noise continues seed's stream: candidate 0 is the plain decode
            more = torch.randn((K - 1) * B, *self.noise_shape, generator=noise, device=self.device)
            x_T = torch.cat([x_T, more])  # (K * B, 3, S, S), candidate-major
        z = F.normalize(z, dim=-1).to(self.device)
        g = self._generator(seed + 1)
        x = decode_images(self.decoder, self.decoder_cfg, z.repeat(K, 1), text.repeat(K, 1, 1), mask.repeat(K, 1),
                          x_T=x_T, steps=d.decode.steps if steps is None else steps,
                          guidance=d.decode.guidance if guidance is None else guidance, eta=eta,
                          generator=g, sampler=sampler or d.decode.sampler)  # drawn from by eta > 0 and DDPM
        if K > 1:
            x, _ = pick_nearest(x.view(K, B, *x.shape[1:]), z, self.clip.encode_image)
        if upsample and self.upsampler is not None:
            hi = self.upsampler_cfg.high_res
            x_hi = torch.randn(B, 3, hi, hi, generator=self._generator(seed + 2), device=self.device)
            x = upsample_images(self.upsampler, self.upsampler_cfg, x, x_T=x_hi,
                                steps=d.upsample_steps if upsample_steps is None else upsample_steps,
                                sampler=d.upsample_sampler)
        return signed_to_pil(x)

    @sampling
    def __call__(self, prompts: str | Sequence[str], *, seed: int = 0, prior: str = "diffusion",
                 guidance: float | None = None, steps: int | None = None, prior_guidance: float | None = None,
                 prior_steps: int | None = None, upsample_steps: int | None = None, sampler: str | None = None,
                 prior_sampler: str | None = None) -> list[Image.Image]:
        """Text -> images: prior, then decoder and upsampler (paper Fig. 2). sampler / prior_sampler:
        the decoder's and the diffusion prior's (None: their defaults)."""
        prompts, seed = validate.prompts(prompts), validate.seed(seed)
        prior, prior_guidance, prior_steps = self._check_prior(prior, prior_guidance, prior_steps,
                                                               ("prior", "prior_guidance", "prior_steps"))
        prior_sampler = self._check_prior_sampler(prior, prior_sampler, "prior_sampler")
        guidance, steps, upsample_steps = self._check_decode(guidance, steps, upsample_steps)
        sampler = self._check_sampler(sampler, 0.0, "sampler")
        z_t, text, mask = self._encode(self.clip.encode_text_and_tokens, prompts)  # one pass of the text tower
        z = self._prior((z_t, text, mask), seed, prior, prior_guidance, prior_steps, prior_sampler)
        return self._decode(z, text, mask, seed, guidance, steps, upsample_steps=upsample_steps, sampler=sampler)

    # ------------------------------------------------------------------ inversion (paper §3.1)
    def _squares(self, images) -> list[Image.Image]:
        """An image or a list of them as RGB squares at their own size (the decoder draws squares)."""
        return squares(images, stacklevel=5)

    def _pixels(self, images) -> Tensor:
        """x_0 at the decoder's size in [-1, 1] (B, 3, S, S) for an image or a list of them."""
        S = self.decoder_cfg.unet.image_size
        pils = self._squares(images)
        for pil in pils:
            if pil.size[0] not in (S, self.image_size):
                warnings.warn(f"image: {pil.size[0]}x{pil.size[0]} resized to {S}x{S}, the decoder's size (this stack "
                              f"draws {S} px and returns {self.image_size} px)", stacklevel=4)
        return pil_to_signed([pil.resize((S, S), Image.BOX) for pil in pils]).to(self.device)

    @sampling
    def invert(self, images, *, steps: int | None = None, z: Tensor | None = None) -> Tensor:
        """x_T (B, 3, S, S): DDIM inversion of `images` (one or a list) under the conditional decoder,
        unguided, conditioned on z (B, D) (default: the images' own CLIP embeddings).
        Decoding x_T back with eta = 0, guidance 1 and the same steps reproduces the images."""
        steps = validate.steps(steps, "steps", self.decoder_cfg.diffusion.T)
        z = None if z is None else validate.embeddings(z, self.embed_dim, "z").to(self.device)
        x0 = self._pixels(images)
        if z is not None and z.shape[0] != x0.shape[0]:
            raise bad_input("z", f"expected one embedding per image ({x0.shape[0]}), got {z.shape[0]}")
        z = self.encode_image(images) if z is None else z
        return invert_images(self.decoder, self.decoder_cfg, x0, z,
                             steps=self.defaults.inversion.steps if steps is None else steps)
