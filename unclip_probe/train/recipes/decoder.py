"""Recipe: the 32 px decoder (paper §2.1), conditioned on the frozen world CLIP.

Each example: the scene rendered at 64 px (what CLIP sees) and at 32 px (what
the decoder learns to draw), its caption's CLIP text tokens and its CLIP image
embedding. Condition dropout follows the paper: the CLIP embedding is zeroed
10 % of the time and the caption dropped 50 %, so classifier-free guidance has
an unconditional model to push away from. clip_dim = 0 trains the text-only
decoder of the same size (the GLIDE analogue the binding probe compares with).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
import torch

from ...clip import load_clip
from ...diffusion import diffusion_loss, schedule_of
from ...models.configs import DecoderConfig
from ...checkpoints import init_from_file
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

    def __post_init__(self):
        self.name = "decoder_text" if self.text_only else "decoder"
        self.clip = load_clip(self.clip_dir)
        cfg = DecoderConfig(clip_checksum=self.clip.checksum or "")
        if self.text_only:
            cfg = replace(cfg, unet=replace(cfg.unet, clip_dim=0), clip_dropout=0.0)
        self.config = cfg
        self.schedule = schedule_of(cfg.diffusion)
        self.renderer = BatchRenderer(self.data_seed, self.batch_size, (64, 32), self.world, "train", self.workers,
                                     captions=self.captions)

    def build_model(self):
        return init_from_file(UNet(self.config.unet), self.init_from)

    def model_config(self) -> DecoderConfig:
        return self.config

    @torch.no_grad()
    def _condition(self, imgs64: torch.Tensor, captions: list[str], device):
        clip = self.clip.to(device)  # frozen; it runs where the decoder trains
        z = clip.encode_image(imgs64.to(device).float() / 255.0) if self.config.unet.clip_dim else None  # (B, D)
        text, mask = clip.encode_text_tokens(captions)  # (B, L, W), (B, L)
        return z, text, mask

    def batch(self, step: int, rank: int, world_size: int, device):
        sl = rank_slice(self.batch_size, rank, world_size)
        imgs, caps, _ = self.renderer.get(step, sl.start, sl.stop)
        x0 = uint8_to_signed(imgs[32]).to(device)  # (B, 3, 32, 32) in [-1, 1]
        z, text, mask = self._condition(torch.from_numpy(imgs[64]), caps, device)
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
