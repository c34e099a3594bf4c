"""Kandinsky 2.2 as a stack (docs/design.md §2): a diffusers decoder over MoVQ latents, read through
the Stack protocol of ``backends/base.py``.

Two local folders, in the layouts of the public repositories:

    decoder  kandinsky-community/kandinsky-2-2-decoder  unet/ (UNet2DConditionModel, 4 -> 8 channels:
             eps and a learned variance), movq/ (VQModel), scheduler/
    prior    kandinsky-community/kandinsky-2-2-prior    prior/ (PriorTransformer), image_encoder/ and
             text_encoder/ (CLIP ViT-bigG-14, 1280 wide), tokenizer/, scheduler/, image_processor/

The prior folder is required: it holds the CLIP, and the decoder's classifier-free guidance runs
against the prior's "zero embedding" (the image encoder's embedding of an all-zero pixel tensor,
``KandinskyV22PriorPipeline.get_zero_embed``), as the pipeline does.

Decoding is ``KandinskyV22Pipeline``'s: the U-Net reads the raw (not unit-normalised) projected
image embedding as ``added_cond_kwargs={"image_embeds": z}``, guidance combines the eps channels
of [zero embedding; z] and the learned-variance channels are dropped for DDIM; the MoVQ decodes
the latents unquantised. The sampler is ``backends/latent.py``'s (diffusers' DDIMScheduler built
from scheduler/'s config). The prior is ``KandinskyV22PriorPipeline`` over the same modules.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from unclip_probe import validate
from unclip_probe.backends import latent
from unclip_probe.backends.base import Sampling
from unclip_probe.device import resolve_device, resolve_dtype, sampling
from unclip_probe.diffusion import check_sampler
from unclip_probe.errors import bad_input

NAME = "kandinsky-2.2"
CLIP_NAME = "ViT-bigG-14"
DECODER = latent.Layout("KandinskyV22Pipeline", "kandinsky-community/kandinsky-2-2-decoder",
                        {"unet": "config.json", "movq": "config.json", "scheduler": "scheduler_config.json"})
PRIOR = latent.Layout("KandinskyV22PriorPipeline", "kandinsky-community/kandinsky-2-2-prior",
                      {"prior": "config.json", "image_encoder": "config.json", "text_encoder": "config.json",
                       "tokenizer": "tokenizer_config.json", "scheduler": "scheduler_config.json",
                       "image_processor": "preprocessor_config.json"})
OTHERS = {"KandinskyV22PriorPipeline": "Kandinsky 2.2's prior folder, which goes to prior",
          "KandinskyV22Pipeline": "Kandinsky 2.2's decoder folder, which goes to decoder"}

# Sampling defaults: the diffusers pipelines' documented settings (not measured here: no real weights);
# decodes from an inverted x_T: backends/latent.py's rule.
KANDINSKY_DEFAULTS = latent.stack_defaults(
    decode=Sampling(guidance=4.0, steps=50),  # KandinskyV22Pipeline's guidance_scale; its example's 50 steps
    prior=Sampling(guidance=4.0, steps=25),   # KandinskyV22PriorPipeline's guidance_scale, num_inference_steps
    inversion_steps=50)                       # as many as a decode

class Kandinsky22(latent.LatentStack):
    """Kandinsky 2.2: CLIP ViT-bigG-14, its diffusion prior, the MoVQ latent decoder (see the module
    docstring). ``load(decoder, prior)`` builds one from local folders."""

    name = NAME
    clip_name = CLIP_NAME
    defaults = KANDINSKY_DEFAULTS

    def __init__(self, *, clip, unet, movq, scheduler_config, prior, prior_scheduler, image_processor,
                 folders, device, amp_dtype=None):
        super().__init__(clip=clip, unet=unet, scheduler_config=scheduler_config,
                         embed_dim=unet.config.encoder_hid_dim,
                         latent_scale=2 ** (len(movq.config.block_out_channels) - 1), folders=folders, device=device,
                         amp_dtype=amp_dtype)
        from diffusers import KandinskyV22PriorPipeline

        self.movq = movq
        self.prior_pipe = KandinskyV22PriorPipeline(prior=prior, image_encoder=clip.vision, text_encoder=clip.text,
                                                    tokenizer=clip.tokenizer, scheduler=prior_scheduler,
                                                    image_processor=image_processor)
        self.prior_pipe.set_progress_bar_config(disable=True)
        with torch.no_grad():  # the guidance's negative: get_zero_embed, once
            self.negative = self.prior_pipe.get_zero_embed(1, device=device).float()  # (1, D)

    @property
    def prior_kinds(self) -> tuple[str, ...]:
        return ("diffusion",)

    @property
    def reads_caption(self) -> bool:
        return False

    @sampling
    def prior(self, prompts, *, seed: int = 0, kind: str = "diffusion", guidance: float | None = None,
              steps: int | None = None, sampler: str | None = None) -> Tensor:
        """Raw image embeddings (B, 1280) for the prompts, as decode takes them (the prior pipeline's
        ``image_embeds``: un-normalised with CLIP's statistics, not unit-norm). guidance / steps None:
        ``defaults.prior``. A prompt past the 77-token context is refused (the pipeline would truncate).
        sampler: the pipeline's own UnCLIPScheduler, ancestral ("ddpm", the default); its step takes
        arguments no other diffusers scheduler does, so other samplers are refused."""
        kind = self._check_prior_kind(kind)
        if sampler not in (None, "ddpm"):
            check_sampler(sampler)  # an unknown name gets the usual list
            raise bad_input("sampler", f"the {self.name} prior samples with its pipeline's UnCLIPScheduler (ancestral, "
                                       f"'ddpm'), got {sampler!r}; the other samplers serve its decoder")
        prompts, seed = validate.prompts(prompts), validate.seed(seed)
        guidance = validate.guidance(guidance, "guidance")
        steps = validate.steps(steps, "steps", self.prior_pipe.scheduler.config.num_train_timesteps)
        with validate.renamed(texts="prompts"):
            self.clip.tokenize(prompts)  # refuses a prompt past the context
        d = self.defaults.prior
        out = self.prior_pipe(prompts, num_inference_steps=d.steps if steps is None else steps,
                              guidance_scale=d.guidance if guidance is None else guidance,
                              generator=self._generator(seed), output_type="pt")
        return out.image_embeds.float()

    # ------------------------------------------------------------------ the decoder
    def _conditions(self, z: Tensor, prompts: Sequence[str] | None, generator: torch.Generator) -> tuple[dict, dict]:
        return {"image_embeds": z}, {"image_embeds": self.negative.expand(z.shape[0], -1)}

    def _denoise(self, x: Tensor, t: Tensor, cond: dict) -> Tensor:
        out = self.unet(x, t, encoder_hidden_states=None, added_cond_kwargs={"image_embeds": cond["image_embeds"]},
                        return_dict=False)[0]
        return out[:, : x.shape[1]]  # (N, C, h, w): eps; the learned variance is DDIM's to drop

    def _to_latents(self, x: Tensor) -> Tensor:
        return self.movq.encode(x).latents  # pre-quantisation, as the img2img pipeline takes them

    def _to_pixels(self, latents: Tensor) -> Tensor:
        return self.movq.decode(latents, force_not_quantize=True).sample.float()


def load(decoder, prior=None, device: str = "auto", dtype: str = "auto") -> Kandinsky22:
    """Kandinsky 2.2 from local folders only (see the module docstring). device "auto": CUDA when
    present; dtype "auto": bf16 (else fp16) autocast on CUDA, fp32 on the CPU; weights stay fp32."""
    from diffusers import PriorTransformer, UNet2DConditionModel, UnCLIPScheduler, VQModel
    from transformers import CLIPImageProcessor

    from unclip_probe.clip.hf import HFClipModel

    latent.offline()
    dec = latent.check_folder(decoder, "decoder", DECODER, OTHERS)
    if prior is None:
        raise bad_input("prior", f"the {NAME!r} stack needs its prior folder ({PRIOR.repo}): it holds the CLIP "
                                     "and the zero embedding the decoder is guided against")
    pri = latent.check_folder(prior, "prior", PRIOR, OTHERS)
    dev = resolve_device(device)
    amp = resolve_dtype(dtype, dev)
    unet = latent.load_component(UNet2DConditionModel, dec, "unet", "decoder").to(dev)
    movq = latent.load_component(VQModel, dec, "movq", "decoder").to(dev)
    prior = latent.load_component(PriorTransformer, pri, "prior", "prior").to(dev)
    for component in ("image_encoder", "text_encoder"):
        latent.require_weights(pri, component, "prior")
    with latent.loading(pri, "CLIP (image_encoder/, text_encoder/, tokenizer/, image_processor/)", "prior"), \
            validate.renamed(image_encoder="prior", text_encoder="prior", tokenizer="prior",
                             image_processor="prior"):
        clip = HFClipModel.from_folders(image_encoder=pri / "image_encoder", text_encoder=pri / "text_encoder",
                                        tokenizer=pri / "tokenizer", image_processor=pri / "image_processor",
                                        name=CLIP_NAME, device=dev)
    if not unet.config.encoder_hid_dim == prior.config.embedding_dim == clip.embed_dim:
        raise bad_input("prior", f"its CLIP and prior are {clip.embed_dim} and {prior.config.embedding_dim} "
                                     f"wide, but the decoder in decoder reads {unet.config.encoder_hid_dim}")
    return Kandinsky22(clip=clip, unet=unet, movq=movq, scheduler_config=latent.read_config(dec, "scheduler"),
                       prior=prior, prior_scheduler=latent.load_component(UnCLIPScheduler, pri, "scheduler",
                                                                          "prior"),
                       image_processor=latent.load_component(CLIPImageProcessor, pri, "image_processor", "prior"),
                       folders={"decoder": dec, "prior": pri}, device=dev, amp_dtype=amp)

