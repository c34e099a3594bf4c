"""Recipe: the diffusion prior (paper §2.2), text -> CLIP image embedding.

Targets are the frozen world CLIP's image embeddings of the rendered scene;
inputs are the caption's CLIP text tokens and text embedding. Unit-norm
embeddings are scaled by sqrt(D) so each coordinate has about unit variance,
the scale the noise schedule assumes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...checkpoints import init_from_file
from ...clip import load_clip, trim_padding
from ...diffusion import diffusion_loss, schedule_of
from ...models.configs import PriorConfig
from ...models.prior import PriorNetConfig, PriorTransformer
from ...world.spec import WorldConfig
from ..data import BatchRenderer
from ..trainer import rank_slice


@dataclass
class PriorRecipe:
    clip_dir: str = "checkpoints/world"
    batch_size: int = 64
    data_seed: int = 3
    workers: int | None = None
    world: WorldConfig = WorldConfig()
    name: str = "prior"
    init_from: str | None = None  # start from these weights (a continued training; see the model card)
    captions: str = "grammar"  # "wide": world.captions.wide_caption's wider wordings (issue 24)

    def __post_init__(self):
        self.clip = load_clip(self.clip_dir)
        D = self.clip.embed_dim
        W = int(self.clip.model.text_projection.shape[0]) if getattr(self.clip.model, "text_projection", None) is not None else D
        self.config = PriorConfig(net=PriorNetConfig(embed_dim=D, text_dim=W, max_text_len=self.clip.context_length),
                                  clip_checksum=self.clip.checksum or "")
        self.scale = math.sqrt(D)
        self.schedule = schedule_of(self.config.diffusion)
        self.renderer = BatchRenderer(self.data_seed, self.batch_size, (64,), self.world, "train", self.workers,
                                     captions=self.captions)

    def build_model(self):
        return init_from_file(PriorTransformer(self.config.net), self.init_from)

    def model_config(self) -> PriorConfig:
        return self.config

    @torch.no_grad()
    def batch(self, step: int, rank: int, world_size: int, device):
        sl = rank_slice(self.batch_size, rank, world_size)
        imgs, caps, _ = self.renderer.get(step, sl.start, sl.stop)
        clip = self.clip.to(device)  # the frozen CLIP runs where the prior trains (a GPU, when there is one)
        z_i = clip.encode_image(torch.from_numpy(imgs[64]).to(device).float() / 255.0) * self.scale  # (B, D)
        z_t, text, mask = clip.encode_text_and_tokens(caps)  # (B, D), (B, L, W), (B, L): one text pass
        text, mask = trim_padding(text, mask)  # as the sampler does
        return z_i, z_t * self.scale, text, mask

    def loss(self, model, batch, generator):
        z_i, z_t, text, mask = batch
        g = generator
        keep = (torch.rand(z_i.shape[0], generator=g, device=g.device) >= self.config.text_dropout).to(z_i.device)
        z_t = z_t * keep[:, None].to(z_t.dtype)
        mask = mask & keep[:, None]
        loss = diffusion_loss(lambda x, t: model(x, t, z_t, text, mask), self.schedule, z_i,
                              prediction=self.config.diffusion.prediction, generator=g,
                              min_snr_gamma=self.config.diffusion.min_snr_gamma)
        return loss, {}
