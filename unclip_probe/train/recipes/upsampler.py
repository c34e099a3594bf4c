"""Recipe: the conv-only 32 -> 64 px upsampler (paper §2.1).

The paper's upsamplers see a corrupted low-resolution image (Gaussian blur for
the first, BSR degradation for the second) so that they tolerate the decoder's
imperfect samples, and train on quarter-size random crops because a network
without attention runs at any resolution. Here: the 32 px render, blurred
(kernel 3, sigma 0.6) half of the time, upsampled bicubically and
concatenated with the noisy 64 px target; 32x32 crops. With `residual`
(default) the diffused quantity is the 64 px image minus that bicubic
upsampling, times `residual_scale`, so an untrained net already returns a
bicubic upsample and training only has to learn the missing detail.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...backends.world.decode import upsample_base
from ...diffusion import diffusion_loss, schedule_of
from ...models.configs import UpsamplerConfig
from ...checkpoints import init_from_file
from ...imaging import uint8_to_signed
from ...models.unet import UNet
from ...world.spec import WorldConfig
from ..data import BatchRenderer
from ..trainer import rank_slice


def blur3(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur with a 3x3 kernel, per channel, reflect padding: (B, C, H, W) -> same."""
    k = torch.exp(-torch.tensor([-1.0, 0.0, 1.0]) ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).to(x)
    kernel = (k[:, None] * k[None, :]).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel, groups=x.shape[1])


def corrupt_low_res(low: torch.Tensor, cfg: UpsamplerConfig, generator: torch.Generator) -> torch.Tensor:
    """Blur (with probability cfg.blur_prob) and add noise to low-res images in [-1, 1]."""
    g = generator
    B = low.shape[0]
    blurred = blur3(low, cfg.blur_sigma)
    pick = (torch.rand(B, generator=g, device=g.device) < cfg.blur_prob).to(low)[:, None, None, None]
    noise = torch.randn(low.shape, generator=g, device=g.device).to(low)
    return (pick * blurred + (1 - pick) * low + cfg.noise_level * 2 * noise).clamp(-1, 1)


@dataclass
class UpsamplerRecipe:
    batch_size: int = 32
    data_seed: int = 2
    workers: int | None = None
    world: WorldConfig = WorldConfig()
    init_from: str | None = None  # start from these weights (a continued training; see the model card)
    name: str = "upsampler"

    def __post_init__(self):
        self.config = UpsamplerConfig()
        self.schedule = schedule_of(self.config.diffusion)
        self.renderer = BatchRenderer(self.data_seed, self.batch_size, (64, 32), self.world, "train", self.workers)

    def build_model(self):
        return init_from_file(UNet(self.config.unet), self.init_from)

    def model_config(self) -> UpsamplerConfig:
        return self.config

    def batch(self, step: int, rank: int, world_size: int, device):
        sl = rank_slice(self.batch_size, rank, world_size)
        imgs, _, _ = self.renderer.get(step, sl.start, sl.stop)
        hi = uint8_to_signed(imgs[64])  # (B, 3, 64, 64)
        lo = uint8_to_signed(imgs[32])  # (B, 3, 32, 32)
        return hi.to(device), lo.to(device)

    def loss(self, model, batch, generator):
        hi, lo = batch
        cfg, g = self.config, generator
        cond = upsample_base(corrupt_low_res(lo, cfg, g), hi.shape[-1], cfg.base)  # (B, 3, 64, 64)
        B, c = hi.shape[0], cfg.crop
        # One random crop per example (paper: quarter-size crops); offsets from the generator.
        oy = torch.randint(0, hi.shape[-1] - c + 1, (B,), generator=g, device=g.device).cpu()
        ox = torch.randint(0, hi.shape[-1] - c + 1, (B,), generator=g, device=g.device).cpu()
        crop = lambda a: torch.stack([a[i, :, oy[i]:oy[i] + c, ox[i]:ox[i] + c] for i in range(B)])  # noqa: E731
        hi_c, cond_c = crop(hi), crop(cond)  # (B, 3, c, c) each
        # Residual: only the missing detail is diffused, scaled to about unit variance (UpsamplerConfig).
        target = (hi_c - cond_c) * cfg.residual_scale if cfg.residual else hi_c
        loss = diffusion_loss(lambda x, t: model(torch.cat([x, cond_c], dim=1), t), self.schedule, target,
                              prediction=cfg.diffusion.prediction, generator=g,
                              min_snr_gamma=cfg.diffusion.min_snr_gamma)
        return loss, {}

    @torch.no_grad()
    def evaluate(self, model) -> dict:
        from unclip_probe.eval.upsampler import upsampler_quality

        return upsampler_quality(model, self.config, n=100)
