"""UnCLIP: text -> CLIP image embedding -> 32 px -> 64 px, and the paper's manipulations (§3).

The path from prompt to pixels, one method per stage:

    z_t, tokens  = CLIP text encoder(prompts)             (clip.encode_text / encode_text_tokens)
    z_i          = prior(z_t, tokens)                      (paper §2.2; diffusion or AR)
    x_32         = decoder(z_i, tokens)                    (paper §2.1; DDIM, classifier-free guidance)
    x_64         = upsampler(x_32)                         (paper §2.1; conv-only, DDIM)

Variations (§3.1) DDIM-invert an image to its x_T under its own z_i and decode
again with eta > 0; interpolations (§3.2) slerp between image embeddings with
x_T fixed or slerped; text diffs (§3.3) slerp z_i toward normalise(z_t - z_t0).
Same seed on the same device gives the same images.
"""
from __future__ import annotations

import copy
import functools
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .clip import ClipModel, load_clip
from .decode import DECODER_GUIDANCE, decode_images, invert_images, to_unit, upsample_images
from .device import autocast, resolve_device, resolve_dtype
from .errors import bad_input, one_of
from .world.oracle import as_rgb_image
from .stages import load_decoder, load_unet_stage, load_upsampler

PRIOR_KINDS = ("diffusion", "ar")

# Manipulations that start from a DDIM-inverted x_T (paper §3). The inversion runs the
# unguided conditional decoder, so only an unguided decode retraces it: at eta = 0 and
# guidance 1 a variation keeps its source's oracle reading (94 % of two-object scenes),
# while the decoder's generation guidance of 3 on the same x_T redraws small shapes as
# blobs (8 % kept at eta 1). Eta trades what is kept for how much the variations differ
# (kept 92 / 88 / 67 / 17 % at eta 0.05 / 0.1 / 0.2 / 0.5); 0.1 is the largest that keeps
# >= 80 % (issue 5). A text diff must move the embedding away from the image's, so
# it needs a little guidance: blue circle at theta 0.5 in 50 / 79 / 75 % of seeds at
# guidance 1 / 1.5 / 2. Sweep: benchmarks/manipulation_sweep.py (model card, "Manipulations").
INVERTED_GUIDANCE = 1.0
VARIATION_ETA = 0.1
TEXT_DIFF_GUIDANCE = 1.5


def slerp(a: Tensor, b: Tensor, theta: float) -> Tensor:
    """Spherical interpolation between unit vectors a and b (..., D) at fraction theta in [0, 1]."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    omega = torch.arccos((a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))  # (..., 1)
    so = torch.sin(omega)
    return F.normalize((torch.sin((1 - theta) * omega) * a + torch.sin(theta * omega) * b) / so, dim=-1)


def _to_pil(x: Tensor) -> list[Image.Image]:
    """[-1, 1] (B, 3, H, W) -> PIL images."""
    arr = (to_unit(x.float()).permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return [Image.fromarray(a) for a in arr]


def _sampling(method):
    """No autograd, and the pipeline's autocast dtype, around a sampling method."""
    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        with torch.no_grad(), autocast(self.device, self.amp_dtype):
            return method(self, *args, **kwargs)
    return wrapped


class UnCLIP:
    """The world stack: CLIP, priors, decoder, upsampler (each optional but the CLIP and decoder)."""

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
        folder = Path(folder)
        if not folder.is_dir():
            raise bad_input("folder", f"{str(folder)!r} is not a checkpoint folder")
        dev = resolve_device(device)
        amp = resolve_dtype(dtype, dev)
        clip = load_clip(folder, device=dev)
        decoder, dcfg = load_decoder(folder, clip_checksum=clip.checksum, device=dev)
        up = load_upsampler(folder, device=dev) if (folder / "upsampler.json").is_file() else (None, None)
        priors = {}
        if (folder / "prior.json").is_file():
            from .models.configs import PriorConfig
            from .models.prior import PriorTransformer

            priors["diffusion"] = load_unet_stage(folder, "prior", PriorConfig, clip_checksum=clip.checksum, device=dev,
                                                  build=lambda c: PriorTransformer(c.net))
        if (folder / "ar_prior.json").is_file():
            from .models.ar_prior import ARPrior, ARPriorConfig

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

    # ------------------------------------------------------------------ stages
    def _prompts(self, prompts: str | Sequence[str]) -> list[str]:
        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise bad_input("prompts", "expected a non-empty list of non-empty strings")
        return list(prompts)

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(int(seed))

    @_sampling
    def prior(self, prompts: str | Sequence[str], seed: int = 0, kind: str = "diffusion",
              guidance: float | None = None, steps: int = 64) -> Tensor:
        """Unit-norm CLIP image embeddings (B, D) for the prompts (paper §2.2).
        guidance None: the prior's own default (prior_sampling.PRIOR_GUIDANCE)."""
        return self._prior(self.clip.encode_text_and_tokens(self._prompts(prompts)), seed, kind, guidance, steps)

    def _prior(self, encoded: tuple[Tensor, Tensor, Tensor], seed: int, kind: str, guidance: float | None,
               steps: int) -> Tensor:
        """prior() on prompts already encoded as (z_t (B, D), tokens (B, L, W), mask (B, L))."""
        from .prior_sampling import PRIOR_GUIDANCE, sample_ar_prior, sample_diffusion_prior

        if kind not in PRIOR_KINDS:
            raise bad_input("kind", one_of(kind, PRIOR_KINDS))
        if kind not in self.priors:
            raise bad_input("kind", f"this stack has no {kind!r} prior (train it with `unclip-probe train "
                                    f"{'prior' if kind == 'diffusion' else 'ar-prior'}`)")
        net, cfg = self.priors[kind]
        guidance = PRIOR_GUIDANCE[kind] if guidance is None else guidance
        z_t, text, mask = encoded
        g = self._generator(seed)
        if kind == "diffusion":
            return sample_diffusion_prior(net, cfg, z_t, text, mask, generator=g, steps=steps, guidance=guidance)
        return sample_ar_prior(net, z_t, text, mask, generator=g, guidance=guidance)

    def _noise(self, n: int, size: int, seed: int) -> Tensor:
        return torch.randn(n, 3, size, size, generator=self._generator(seed), device=self.device)

    @_sampling
    def decode(self, z_img: Tensor, seed: int = 0, prompts: Sequence[str] | None = None, guidance: float = DECODER_GUIDANCE,
               steps: int = 25, eta: float = 0.0, x_T: Tensor | None = None, upsample: bool = True,
               upsample_steps: int = 10) -> list[Image.Image]:
        """Images for CLIP image embeddings z_img (B, D), optionally also conditioned on captions.
        x_T: the decoder's starting noise (B, 3, S, S) at its size S; drawn from `seed` when None."""
        if not isinstance(z_img, Tensor) or z_img.ndim != 2 or z_img.shape[1] != self.clip.embed_dim:
            raise bad_input("z_img", f"expected CLIP image embeddings (B, {self.clip.embed_dim}), got "
                                     f"{tuple(z_img.shape) if isinstance(z_img, Tensor) else type(z_img).__name__}")
        if prompts is None:  # no caption: the decoder's caption-dropped branch (paper §2.1)
            B = z_img.shape[0]
            text = torch.zeros(B, 1, self.decoder_cfg.unet.text_dim, device=self.device)
            mask = torch.zeros(B, 1, dtype=torch.bool, device=self.device)
        else:
            text, mask = self.clip.encode_text_tokens(self._prompts(prompts))
        return self._decode(z_img, text, mask, seed, guidance, steps, eta, x_T, upsample, upsample_steps)

    def _decode(self, z_img: Tensor, text: Tensor, mask: Tensor, seed: int, guidance: float, steps: int,
                eta: float = 0.0, x_T: Tensor | None = None, upsample: bool = True,
                upsample_steps: int = 10) -> list[Image.Image]:
        """decode() with the caption already encoded: tokens (B, L, W) and mask (B, L)."""
        B, S = z_img.shape[0], self.decoder_cfg.unet.image_size
        x_T = self._noise(B, S, seed) if x_T is None else x_T
        g = self._generator(seed + 1)
        x = decode_images(self.decoder, self.decoder_cfg, F.normalize(z_img, dim=-1).to(self.device), text, mask,
                          x_T=x_T, steps=steps, guidance=guidance, eta=eta, generator=g if eta > 0 else None)
        if upsample and self.upsampler is not None:
            hi = self.upsampler_cfg.high_res
            x = upsample_images(self.upsampler, self.upsampler_cfg, x, x_T=self._noise(B, hi, seed + 2),
                                steps=upsample_steps)
        return _to_pil(x)

    @_sampling
    def __call__(self, prompts: str | Sequence[str], seed: int = 0, prior: str = "diffusion", guidance: float = DECODER_GUIDANCE,
                 steps: int = 25, prior_guidance: float | None = None, prior_steps: int = 64,
                 upsample_steps: int = 10) -> list[Image.Image]:
        """Text -> images: prior, then decoder and upsampler (paper Fig. 2)."""
        z_t, text, mask = self.clip.encode_text_and_tokens(self._prompts(prompts))  # one pass of the text tower
        z = self._prior((z_t, text, mask), seed, prior, prior_guidance, prior_steps)
        return self._decode(z, text, mask, seed, guidance, steps, upsample_steps=upsample_steps)

    # ------------------------------------------------------------------ manipulations (paper §3)
    def _image_tensor(self, image) -> tuple[Tensor, Tensor]:
        """(x_0 at the decoder's size in [-1, 1] (1, 3, S, S), z_i (1, D)) for any image."""
        if isinstance(image, Image.Image) and ("A" in image.mode or "transparency" in image.info):
            warnings.warn(f"image: mode {image.mode} converted to RGB; transparency is dropped (not composited)",
                          stacklevel=3)
        pil = as_rgb_image(image, "image")  # converts modes; errors name `image`
        S = self.decoder_cfg.unet.image_size
        W, H = pil.size
        if H != W:  # the decoder draws squares; crop the centre as CLIP's preprocessing does
            k = min(H, W)
            pil = pil.crop(((W - k) // 2, (H - k) // 2, (W - k) // 2 + k, (H - k) // 2 + k))
            warnings.warn(f"image: {W}x{H} is not square; its centre {k}x{k} is used", stacklevel=3)
        x0 = torch.from_numpy(np.array(pil.resize((S, S), Image.BOX))).permute(2, 0, 1)[None].float() / 127.5 - 1
        z = self.clip.encode_image([pil])
        return x0.to(self.device), z

    @_sampling
    def invert(self, image, steps: int = 50) -> tuple[Tensor, Tensor]:
        """(x_T (1, 3, S, S), z_i (1, D)): DDIM inversion of `image` under its own CLIP embedding."""
        x0, z = self._image_tensor(image)
        return invert_images(self.decoder, self.decoder_cfg, x0, z, steps=steps), z

    @torch.no_grad()
    def variations(self, image, n: int = 4, eta: float = VARIATION_ETA, seed: int = 0, steps: int = 50,
                   guidance: float = INVERTED_GUIDANCE, inverted: tuple[Tensor, Tensor] | None = None
                   ) -> list[Image.Image]:
        """Paper §3.1: keep the image's CLIP embedding and its inverted x_T, decode with eta > 0.
        inverted: ``invert(image, steps)``'s result, to reuse across calls (a widget asking for more).
        The defaults (unguided, eta 0.1) are the ones measured to keep the scene (model card)."""
        if not isinstance(n, int) or n < 1:
            raise bad_input("n", f"expected an integer >= 1, got {n!r}")
        x_T, z = self.invert(image, steps=steps) if inverted is None else inverted
        return self.decode(z.expand(n, -1), seed=seed, x_T=x_T.expand(n, -1, -1, -1).clone(), eta=eta, steps=steps,
                           guidance=guidance)

    @torch.no_grad()
    def interpolate(self, a, b, n: int = 8, seed: int = 0, noise: str = "fixed", steps: int = 25,
                    guidance: float | None = None) -> list[Image.Image]:
        """Paper §3.2: slerp between the images' embeddings; x_T fixed, or slerped between their inversions.
        guidance None: unguided for inverted noise (so each end is the input's round trip), else DECODER_GUIDANCE."""
        if not isinstance(n, int) or n < 2:
            raise bad_input("n", f"expected an integer >= 2 (the two ends included), got {n!r}")
        if noise not in ("fixed", "inverted"):
            raise bad_input("noise", one_of(noise, ("fixed", "inverted")))
        thetas = torch.linspace(0, 1, n).tolist()
        if noise == "inverted":
            (xa, za), (xb, zb) = self.invert(a, steps), self.invert(b, steps)
            x_T = torch.cat([slerp(xa.flatten(1), xb.flatten(1), t).view_as(xa) * xa.flatten(1).norm() for t in thetas])
        else:
            za, zb = self._image_tensor(a)[1], self._image_tensor(b)[1]
            x_T = self._noise(1, self.decoder_cfg.unet.image_size, seed).expand(n, -1, -1, -1).clone()
        z = torch.cat([slerp(za, zb, t) for t in thetas])
        if guidance is None:
            guidance = INVERTED_GUIDANCE if noise == "inverted" else DECODER_GUIDANCE
        return self.decode(z, seed=seed, x_T=x_T, steps=steps, guidance=guidance)

    @torch.no_grad()
    def text_diff(self, image, src: str, dst: str, thetas: Sequence[float] = (0.0, 0.25, 0.5, 0.75),
                  seed: int = 0, steps: int = 50, guidance: float = TEXT_DIFF_GUIDANCE,
                  inverted: tuple[Tensor, Tensor] | None = None, caption: str | None = None) -> list[Image.Image]:
        """Paper §3.3: z_d = normalise(z_t(dst) - z_t(src)); decode slerp(z_i, z_d, theta) from the inverted x_T.
        inverted: ``invert(image, steps)``'s result, to reuse across calls.
        caption: a caption the decoder also reads for every frame (its text tokens, paper §2.1), e.g. `dst`;
        None decodes from the embedding alone."""
        thetas = list(thetas)
        if not thetas or not all(isinstance(t, (int, float)) and 0 <= t <= 1 for t in thetas):
            raise bad_input("thetas", f"expected angles as fractions in [0, 1], got {thetas!r}")
        # checked before the inversion, the call's slow part
        for name, text in (("src", src), ("dst", dst)) + ((("caption", caption),) if caption is not None else ()):
            if not isinstance(text, str) or not text.strip():
                raise bad_input(name, f"expected a non-empty prompt, got {text!r}")
        x_T, z_i = self.invert(image, steps=steps) if inverted is None else inverted
        z_t = self.clip.encode_text([src, dst])
        z_d = F.normalize(z_t[1] - z_t[0], dim=-1)[None]
        z = torch.cat([slerp(z_i, z_d, t) for t in thetas])
        return self.decode(z, seed=seed, x_T=x_T.expand(len(thetas), -1, -1, -1).clone(), steps=steps,
                           guidance=guidance, prompts=None if caption is None else [caption] * len(thetas))

