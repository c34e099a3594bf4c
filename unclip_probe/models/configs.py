"""Frozen configs of the diffusion stages, saved as JSON beside their weights (docs/design.md §5, §8).

A stage config holds its network's config and the diffusion process it was
trained with (schedule, prediction type), plus the checksum of the CLIP it
was trained against, so loading can refuse a stack that does not belong together.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .prior import PriorNetConfig
from .unet import UNetConfig


@dataclass(frozen=True)
class DiffusionConfig:
    """The forward process a stage was trained with; a committed schedule is never changed."""

    schedule: str = "cosine"
    T: int = 1000
    zero_terminal_snr: bool = True  # the last step is pure noise (Lin et al. 2023)
    prediction: str = "v"  # v pairs with zero terminal SNR; eps cannot give x0 there
    min_snr_gamma: float = 0.0  # > 0: Min-SNR-gamma loss weighting (Hang et al. 2023; diffusion/losses.py)


@dataclass(frozen=True)
class DecoderConfig:
    """The 32 px decoder (paper §2.1). clip_dim = 0 makes the text-only GLIDE analogue."""

    unet: UNetConfig = field(default_factory=lambda: UNetConfig(
        image_size=32, channels=32, channel_mult=(1, 2, 3), num_res_blocks=1, attention_resolutions=(8, 16),
        clip_dim=128, text_dim=128))
    # Min-SNR 5: the plain v loss put most weight on nearly clean inputs, and the first shipped decoder
    # (uniform weights) drew blobs of the right colour but rarely the right shape (model card, stage 2, run 1).
    diffusion: DiffusionConfig = field(default_factory=lambda: DiffusionConfig(min_snr_gamma=5.0))
    clip_checksum: str = ""  # of the world CLIP whose embeddings and text tokens it reads
    clip_dropout: float = 0.1  # paper §2.1: CLIP embedding zeroed 10 % of the time
    text_dropout: float = 0.5  # paper §2.1: caption dropped 50 % of the time


@dataclass(frozen=True)
class UpsamplerConfig:
    """A conv-only upsampler low_res -> high_res (paper §2.1), trained on crops of high_res."""

    unet: UNetConfig = field(default_factory=lambda: UNetConfig(
        image_size=64, in_channels=6, channels=32, channel_mult=(1, 2, 2), num_res_blocks=1,
        attention_resolutions=()))
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    low_res: int = 32
    high_res: int = 64
    crop: int = 32  # training crops of the high-res image (paper: 1/4-size crops); conv-only nets run at any size
    blur_sigma: float = 0.6  # Gaussian-blur corruption of the low-res conditioning (paper §2.1)
    blur_prob: float = 0.5
    # Gaussian noise added to the conditioning. 0 as in the paper's first upsampler (blur only): with a
    # residual target, noise in the conditioning taught the net to "remove" noise that clean inputs lack,
    # drawing grain on flat areas (model card, stage 3: the discarded variants).
    noise_level: float = 0.0
    residual: bool = True  # diffuse x_high - upsample(x_low): the net only has to add the missing detail
    base: str = "bicubic"  # the upsampling the residual is taken against (beats bilinear; model card, stage 3)
    # The residual is small on world renders; unscaled, a unit-variance diffusion drowns it at almost every
    # noise level, and the first shipped upsampler came out below its own bilinear base (model card, stage 3).
    residual_scale: float = 6.0


@dataclass(frozen=True)
class PriorConfig:
    """The diffusion prior (paper §2.2): x0 prediction of the CLIP image embedding, text dropped 10 %."""

    net: PriorNetConfig = field(default_factory=PriorNetConfig)
    diffusion: DiffusionConfig = field(default_factory=lambda: DiffusionConfig(zero_terminal_snr=False, prediction="x0"))
    clip_checksum: str = ""
    text_dropout: float = 0.1
