"""Recipe: the 32 px decoder (paper §2.1), conditioned on the frozen world CLIP.

Each example: the scene rendered at 64 px (what CLIP sees) and at 32 px (what
the decoder learns to draw), its caption's CLIP text tokens and its CLIP image
embedding. Condition dropout follows the paper: the CLIP embedding is zeroed
10 % of the time and the caption dropped 50 %, so classifier-free guidance has
an unconditional model to push away from. clip_dim = 0 trains the text-only
decoder of the same size (the GLIDE analogue the binding probe compares with).

prior_condition > 0 (issue 24): that share of each batch is conditioned not on the scene's
true image embedding but on the diffusion prior's sample for its caption, drawn exactly as the
stack draws it at inference (WORLD_DEFAULTS.prior, best z_i . z_t of two). The paper trains the
decoder on true embeddings only (§2.1) and feeds it prior samples at sampling time (§2.2); on the
world that mismatch costs most of the text -> image misses (model card, "What people type"), so
the decoder also learns to read what the prior actually hands it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import torch

from ...clip import load_clip
from ...diffusion import diffusion_loss, schedule_of
from ...models.configs import DecoderConfig
from ... import validate
from ...checkpoints import init_from_file
from ...errors import bad_input
from ...imaging import uint8_to_signed
from ...models.unet import UNet
from ...world.spec import WorldConfig
from ..data import BatchRenderer
from ..trainer import rank_slice


@dataclass
class DecoderRecipe:
    clip_dir: str = "checkpoints/world"
    batch_size: int = 64
    data_seed: int = 1  # a different stream from CLIP's
    text_only: bool = False
    workers: int | None = None
    world: WorldConfig = WorldConfig()
    init_from: str | None = None  # start from these weights (a continued training; see the model card)
    # "wide": world.captions.wide_caption's wider wordings (issue 24), so the decoder's caption path
    # (paper §2.1: the projected text tokens it attends to) sees more than the grammar's sentences.
    captions: str = "grammar"
    # Share of each batch conditioned on a diffusion-prior sample of its caption (from prior.* in
    # clip_dir) instead of the true z_i; 0 is the paper's recipe.
    prior_condition: float = 0.0

    def __post_init__(self):
        self.name = "decoder_text" if self.text_only else "decoder"
        self.clip = load_clip(self.clip_dir)
        cfg = DecoderConfig(clip_checksum=self.clip.checksum or "")
        if self.text_only:
            cfg = replace(cfg, unet=replace(cfg.unet, clip_dim=0), clip_dropout=0.0)
        self.config = cfg
        self.schedule = schedule_of(cfg.diffusion)
        self.prior_condition = validate.fraction(self.prior_condition, "prior_condition")
        if self.prior_condition and self.text_only:
            raise bad_input("prior_condition", "the text-only decoder reads no CLIP image embedding, so there is "
                                               "no embedding to swap for a prior sample; pass 0")
        self.prior = self._load_prior() if self.prior_condition else None
        self.renderer = BatchRenderer(self.data_seed, self.batch_size, (64, 32), self.world, "train", self.workers,
                                     captions=self.captions)

    def _load_prior(self):
        from ...backends.world.stages import load_unet_stage
        from ...models.configs import PriorConfig
        from ...models.prior import PriorTransformer

        validate.input_folder(self.clip_dir, "clip_dir", files=("prior.json", "prior.safetensors"))
        return load_unet_stage(self.clip_dir, "prior", PriorConfig, clip_checksum=self.clip.checksum,
                               build=lambda c: PriorTransformer(c.net))

    def build_model(self):
        return init_from_file(UNet(self.config.unet), self.init_from)

    def model_config(self) -> DecoderConfig:
        return self.config

    @torch.no_grad()
    def _condition(self, imgs64: torch.Tensor, captions: list[str], device, generator: torch.Generator):
        clip = self.clip.to(device)  # frozen; it runs where the decoder trains
        z = clip.encode_image(imgs64.to(device).float() / 255.0) if self.config.unet.clip_dim else None  # (B, D)
        if self.prior is None:
            text, mask = clip.encode_text_tokens(captions)  # (B, L, W), (B, L)
            return z, text, mask
        z_t, text, mask = clip.encode_text_and_tokens(captions)  # (B, D), (B, L, W), (B, L)
        swap = torch.rand(len(captions), generator=generator) < self.prior_condition  # (B,)
        if swap.any():
            z[swap.to(z.device)] = self._prior_samples(z_t[swap], text[swap], mask[swap], generator).to(z)
        return z, text, mask

    def _prior_samples(self, z_t, text, mask, generator):
        """The stack's own draw (backends.world.stack.UnCLIP.prior at its defaults): (n, D) unit norm."""
        from ...backends.world.prior_sampling import sample_diffusion_prior
        from ...backends.world.stack import WORLD_DEFAULTS

        net, cfg = self.prior
        d = WORLD_DEFAULTS.prior
        net = net.to(z_t.device)
        return sample_diffusion_prior(net, cfg, z_t, text, mask, generator=generator, steps=d.steps,
                                      guidance=d.guidance, sampler=d.sampler)

    def batch(self, step: int, rank: int, world_size: int, device):
        sl = rank_slice(self.batch_size, rank, world_size)
        imgs, caps, _ = self.renderer.get(step, sl.start, sl.stop)
        x0 = uint8_to_signed(imgs[32]).to(device)  # (B, 3, 32, 32) in [-1, 1]
        # Which rows get a prior sample, and its noise, are fixed by the stream position (exact resume).
        g = torch.Generator().manual_seed(self.data_seed * 1_000_003 + step * self.batch_size + sl.start)
        z, text, mask = self._condition(torch.from_numpy(imgs[64]), caps, device, g)
        return x0, z, text, mask

    def loss(self, model, batch, generator):
        x0, z, text, mask = batch
        B = x0.shape[0]
        g = generator
        # Paper §2.1 condition dropout, drawn from the generator (exact resume).
        keep_text = torch.rand(B, generator=g, device=g.device) >= self.config.text_dropout  # (B,)
        mask = mask & keep_text.to(mask.device)[:, None]
        kw = {"text": text, "text_mask": mask}
        if z is not None:
            keep_clip = torch.rand(B, generator=g, device=g.device) >= self.config.clip_dropout
            kw["clip_emb"] = z * keep_clip.to(z.device, z.dtype)[:, None]
        loss = diffusion_loss(lambda x, t: model(x, t, **kw), self.schedule, x0,
                              prediction=self.config.diffusion.prediction, generator=g,
                              min_snr_gamma=self.config.diffusion.min_snr_gamma)
        return loss, {}

    @torch.no_grad()
    def evaluate(self, model) -> dict:
        from unclip_probe.eval.decoder import reconstruction_accuracy

        # The text-only decoder has nothing to reconstruct from but the caption.
        res = reconstruction_accuracy(model, self.config, self.clip, n=100, steps=25, guidance=3.0,
                                      with_caption=self.text_only)
        return {k: v for k, v in res.items() if not isinstance(v, dict)}  # the trainer logs numbers only
