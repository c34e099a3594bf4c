"""Stable unCLIP 2.1 as a stack (docs/design.md §2): Stable Diffusion 2.1 fine-tuned to read a CLIP
image embedding, through the Stack protocol of ``backends/base.py``. Two kinds:

    stable-unclip-h  stabilityai/stable-diffusion-2-1-unclip        OpenCLIP ViT-H-14 embeddings (1024)
    stable-unclip-l  stabilityai/stable-diffusion-2-1-unclip-small  OpenAI ViT-L/14 embeddings (768)

One local folder in the public layout: feature_extractor/, image_encoder/ (CLIPVisionModelWithProjection),
image_normalizer/ (StableUnCLIPImageNormalizer), image_noising_scheduler/, text_encoder/ (CLIPTextModel),
tokenizer/, unet/ (UNet2DConditionModel, class_embed_type "projection"), vae/ (AutoencoderKL), scheduler/.

Decoding is ``StableUnCLIPImg2ImgPipeline``'s with ``image_embeds``: the raw projected embedding
is noise-augmented (image_normalizer.scale, image_noising_scheduler.add_noise at ``noise_level``,
unscale; its noise drawn from seed + 1), the noise level's sinusoidal embedding appended, and the
result enters the U-Net as ``class_labels``; the unconditional branch gets zeros there. The U-Net
also reads a caption through text_encoder/ (``reads_caption``): ``prompts`` None is the pipeline's
empty prompt, and the unconditional branch always reads "". ``noise_level`` (0, the pipeline's
default) is a field of the stack and an option of ``decode``. The sampler is ``backends/latent.py``'s.

``invert`` conditions on the embedding noised at ``noise_level`` with seed 0's noise.

It has no prior: ``prior`` and ``stack(prompts)`` say so. Its CLIP: the image encoder from the
folder, and, for text (``encode_text``, zero-shot, text diffs), the CLIP text tower of the same
CLIP given as ``clip_text`` (a local copy of laion/CLIP-ViT-H-14-laion2B-s32B-b79K or
openai/clip-vit-large-patch14). The folder's own text_encoder/ cannot stand in: it is the U-Net's
caption encoder (SD 2.1's OpenCLIP-H text tower without its last layer and its projection), whose
output is not in the image-embedding space.
"""
from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image
from torch import Tensor

from unclip_probe import validate
from unclip_probe.backends import latent
from unclip_probe.backends.base import Sampling, missing
from unclip_probe.device import resolve_device, resolve_dtype, sampling
from unclip_probe.errors import bad_input
from unclip_probe.imaging import signed_to_pil

VARIANTS = {"stable-unclip-h": ("stabilityai/stable-diffusion-2-1-unclip", 1024),
            "stable-unclip-l": ("stabilityai/stable-diffusion-2-1-unclip-small", 768)}
PIPELINE = "StableUnCLIPImg2ImgPipeline"
COMPONENTS = {"feature_extractor": "preprocessor_config.json", "image_encoder": "config.json",
              "image_normalizer": "config.json", "image_noising_scheduler": "scheduler_config.json",
              "text_encoder": "config.json", "tokenizer": "tokenizer_config.json", "unet": "config.json",
              "vae": "config.json", "scheduler": "scheduler_config.json"}
OTHERS = {"StableUnCLIPPipeline": "the text-to-image Stable unCLIP (with Karlo's prior), not the image-embedding one",
          "StableDiffusionPipeline": "plain Stable Diffusion, which reads no image embedding",
          "KandinskyV22Pipeline": "Kandinsky 2.2's decoder, which load_stack('kandinsky-2.2', ...) takes"}

# Sampling defaults: StableUnCLIPImg2ImgPipeline's documented settings (not measured here: no real
# weights); decodes from an inverted x_T: backends/latent.py's rule.
NOISE_LEVEL = 0  # the pipeline's noise_level default: the embedding as given (a little noise still: alpha_bar_0 < 1)
STABLE_UNCLIP_DEFAULTS = latent.stack_defaults(
    decode=Sampling(guidance=10.0, steps=20),  # the pipeline's guidance_scale and num_inference_steps defaults
    inversion_steps=50)                        # more than a decode: each inverted step is an approximation

def layout(name: str) -> latent.Layout:
    return latent.Layout(PIPELINE, VARIANTS[name][0], COMPONENTS)


class StableUnCLIP(latent.LatentStack):
    """Stable unCLIP 2.1 (H or L; see the module docstring). ``load(folder, name=...)`` builds one."""

    defaults = STABLE_UNCLIP_DEFAULTS

    def __init__(self, *, name: str, clip, caption, unet, vae, scheduler_config, normalizer, noising, folders,
                 device, amp_dtype=None, noise_level: int = NOISE_LEVEL):
        super().__init__(clip=clip, unet=unet, scheduler_config=scheduler_config,
                         embed_dim=normalizer.config.embedding_dim,
                         latent_scale=2 ** (len(vae.config.block_out_channels) - 1), folders=folders, device=device,
                         amp_dtype=amp_dtype)
        self.name, self.clip_name = name, clip.name
        self.caption = caption  # HFClipModel over text_encoder/ + tokenizer/: the U-Net's caption encoder
        self.vae, self.normalizer, self.noising = vae, normalizer, noising
        self.noise_level = self._check_noise_level(noise_level)

    @property
    def prior_kinds(self) -> tuple[str, ...]:
        return ()

    @property
    def reads_caption(self) -> bool:
        return True

    def prior(self, prompts, *, seed: int = 0, kind: str = "diffusion", guidance: float | None = None,
              steps: int | None = None, sampler: str | None = None) -> Tensor:
        """There is none: every kind is refused naming ``kind`` (an unknown one with the usual hint)."""
        self._check_prior_kind(kind)  # prior_kinds is empty, so this raises
        raise NotImplementedError

    def encode_text(self, prompts) -> Tensor:
        if self.clip.text is None:
            raise missing(self.name, "CLIP text tower in its image-embedding space", "prompts",
                          f"load it with clip_text= a local copy of {self.clip_name}'s CLIP (its text_encoder/ "
                          "is the U-Net's caption encoder, outside that space)")
        return super().encode_text(prompts)

    # ------------------------------------------------------------------ the decoder
    def _check_noise_level(self, noise_level: object) -> int:
        return validate.count(noise_level, "noise_level", 0, self.noising.config.num_train_timesteps - 1)

    @sampling
    def decode(self, z: Tensor, *, noise_level: int | None = None, **kwargs) -> list[Image.Image]:
        """As ``LatentStack.decode`` (same arguments), and noise_level: the embedding's noise
        augmentation, an integer timestep of image_noising_scheduler (None: the stack's ``noise_level``)."""
        return signed_to_pil(self._decode(z, noise_level=noise_level, **kwargs))

    def augment(self, z: Tensor, noise_level: int, generator: torch.Generator) -> Tensor:
        """The U-Net's class input (B, 2D): z (B, D) noised at ``noise_level`` in the normaliser's units,
        then the level's sinusoidal embedding (D) appended (the pipeline's noise_image_embeddings)."""
        from diffusers.models.embeddings import get_timestep_embedding

        noise = torch.randn(z.shape, generator=generator, device=generator.device, dtype=z.dtype).to(z.device)
        levels = torch.full((z.shape[0],), noise_level, device=z.device, dtype=torch.long)  # (B,)
        x = self.normalizer.scale(z)
        x = self.normalizer.unscale(self.noising.add_noise(x, noise=noise, timesteps=levels))
        level = get_timestep_embedding(levels, embedding_dim=x.shape[-1], flip_sin_to_cos=True, downscale_freq_shift=0)
        return torch.cat([x, level.to(x.dtype)], dim=1)  # (B, 2D)

    def _conditions(self, z: Tensor, prompts: Sequence[str] | None, generator: torch.Generator,
                    noise_level: int | None = None) -> tuple[dict, dict]:
        B = z.shape[0]
        level = self.noise_level if noise_level is None else self._check_noise_level(noise_level)
        with validate.renamed(texts="prompts"):
            text = self.caption.encode_text_tokens(list(prompts) if prompts is not None else [""] * B)[0]
            empty = text if prompts is None else self.caption.encode_text_tokens([""] * B)[0]  # (B, L, W)
        label = self.augment(z, level, generator)
        return ({"encoder_hidden_states": text, "class_labels": label},
                {"encoder_hidden_states": empty, "class_labels": torch.zeros_like(label)})

    def _denoise(self, x: Tensor, t: Tensor, cond: dict) -> Tensor:
        return self.unet(x, t, encoder_hidden_states=cond["encoder_hidden_states"],
                         class_labels=cond["class_labels"], return_dict=False)[0]

    def _to_latents(self, x: Tensor) -> Tensor:
        return self.vae.encode(x).latent_dist.mode() * self.vae.config.scaling_factor  # the mean: deterministic

    def _to_pixels(self, latents: Tensor) -> Tensor:
        return self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0].float()


def load(decoder, prior=None, device: str = "auto", dtype: str = "auto", *, name: str = "stable-unclip-h",
         clip_text=None) -> StableUnCLIP:
    """Stable unCLIP 2.1 (``name`` "stable-unclip-h" or "stable-unclip-l") from a local folder only.
    prior: must stay None (there is no prior). clip_text: optional, the text tower of the
    same CLIP (see the module docstring). device / dtype as the other stacks'."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer

    from unclip_probe.clip.hf import HFClipModel

    name = validate.choice(name, tuple(VARIANTS), "name")
    latent.offline()
    folder = latent.check_folder(decoder, "decoder", layout(name), OTHERS)
    if prior is not None:
        raise missing(name, "prior", "prior", "it decodes CLIP image embeddings; pass prior=None")
    dev = resolve_device(device)
    amp = resolve_dtype(dtype, dev)
    width = int(latent.read_config(folder, "image_normalizer", "config.json")["embedding_dim"])
    want = VARIANTS[name][1]
    if width != want:
        clip, kinds = latent.CLIP_WIDTHS.get(width, (f"a {width}-wide CLIP", ()))
        kind = next((k for k in kinds if k in VARIANTS), None)
        raise bad_input("decoder", f"{str(folder)!r} reads {clip} embeddings ({width} wide), not the "
                                       f"{want}-wide ones of {name}" + (f"; load it as {kind!r}" if kind else ""))
    modules = {c: latent.load_component(cls, folder, c, "decoder").to(dev) for c, cls in (
        ("unet", UNet2DConditionModel), ("vae", AutoencoderKL), ("image_normalizer", StableUnCLIPImageNormalizer))}
    for component in ("image_encoder", "text_encoder"):
        latent.require_weights(folder, component, "decoder")
    clip_name = latent.CLIP_WIDTHS[want][0]
    if clip_text is not None:
        clip_text = latent.check_tower(clip_text, "clip_text", f"{clip_name}'s CLIP text tower")
    with latent.loading(folder, "CLIP and caption encoder", "decoder"), \
            validate.renamed(image_encoder="decoder", image_processor="decoder", text_encoder="decoder",
                             tokenizer="decoder"):
        caption = HFClipModel.from_folders(text_encoder=folder / "text_encoder", tokenizer=folder / "tokenizer",
                                           name=f"{name} caption encoder", device=dev)
        clip = HFClipModel.from_folders(image_encoder=folder / "image_encoder",
                                        image_processor=folder / "feature_extractor", text_encoder=clip_text,
                                        tokenizer=clip_text, name=clip_name, device=dev)
    if clip.text is not None and (clip.text.__class__.__name__ != "CLIPTextModelWithProjection"
                                  or clip.text.config.projection_dim != width):
        raise bad_input("clip_text", f"expected {clip_name}'s CLIP text tower (a CLIPTextModelWithProjection "
                                         f"into {width}-wide embeddings), got a {clip.text.__class__.__name__} "
                                         f"{getattr(clip.text.config, 'projection_dim', '?')} wide")
    return StableUnCLIP(name=name, clip=clip, caption=caption, unet=modules["unet"], vae=modules["vae"],
                        scheduler_config=latent.read_config(folder, "scheduler"),
                        normalizer=modules["image_normalizer"],
                        noising=latent.load_component(DDPMScheduler, folder, "image_noising_scheduler", "decoder"),
                        folders={"decoder": folder}, device=dev, amp_dtype=amp)
