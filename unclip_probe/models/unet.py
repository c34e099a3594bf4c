"""The decoder U-Net and the conv-only upsampler (paper §2.1; GLIDE, Nichol et al. 2021).

Decoder conditioning, as unCLIP describes it: the CLIP image embedding is
projected and *added to the timestep embedding*, and projected into four extra
context tokens that are *concatenated with the sequence of the text encoder*;
GLIDE attends to that context by appending its keys and values to the
self-attention of the image tokens, and only at the lower resolutions.
The upsampler is convolutions only (paper §2.1: "we found no benefit from
conditioning the upsamplers on the caption, and use unconditional ADMNets
with no attention layers"); it sees the noisy high-resolution image
concatenated with the (corrupted) low-resolution image, upsampled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import bad_input


@dataclass(frozen=True)
class UNetConfig:
    """Saved beside the weights (decoder.json / upsampler.json)."""

    image_size: int = 32
    in_channels: int = 3  # 3 for the decoder; 6 for an upsampler (x_t and the upsampled low-res image)
    out_channels: int = 3
    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (8,)  # feature-map sizes with attention; () = conv only
    head_channels: int = 32
    clip_dim: int = 0  # width of the CLIP image embedding; 0 = no image-embedding input (GLIDE analogue)
    text_dim: int = 0  # width of the CLIP text-token features; 0 = no text input
    context_tokens: int = 4  # paper: four extra tokens from the CLIP image embedding
    dropout: float = 0.0


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of integer timesteps t (B,) -> (B, dim) (Vaswani et al.; DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(ch, 32), ch)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the embedding as a scale and shift (ADM / improved-diffusion)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * cout))
        self.out_norm = _norm(cout)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(cout, cout, 3, padding=1))
        nn.init.zeros_(self.out_layers[-1].weight)  # each block starts as the identity
        nn.init.zeros_(self.out_layers[-1].bias)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x)
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        h = self.out_norm(h) * (1 + scale) + shift
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Self-attention over image tokens whose keys/values also include the context tokens (GLIDE)."""

    def __init__(self, ch: int, head_channels: int, context_dim: int):
        super().__init__()
        self.heads = max(1, ch // head_channels)
        self.norm = _norm(ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.ctx_kv = nn.Linear(context_dim, 2 * ch) if context_dim else None
        self.proj = nn.Conv1d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor, context: Tensor | None, context_mask: Tensor | None) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x).reshape(B, C, H * W)).chunk(3, dim=1)  # (B, C, HW) each
        mask = None
        if self.ctx_kv is not None and context is not None:
            ck, cv = self.ctx_kv(context).transpose(1, 2).chunk(2, dim=1)  # (B, C, L) each
            k, v = torch.cat([ck, k], dim=2), torch.cat([cv, v], dim=2)  # (B, C, L + HW)
            keep = torch.cat([context_mask, context_mask.new_ones(B, H * W)], dim=1)  # (B, L + HW)
            mask = keep[:, None, None, :]  # (B, 1, 1, L + HW), True = attend
        split = lambda a: a.reshape(B, self.heads, C // self.heads, -1).transpose(2, 3)  # (B, nh, T, hs)
        out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)  # (B, nh, HW, hs)
        out = out.transpose(2, 3).reshape(B, C, H * W)
        return x + self.proj(out).reshape(B, C, H, W)


class UNet(nn.Module):
    """x_t (B, in_channels, S, S), t (B,) -> prediction (B, out_channels, S, S).

    Optional conditioning: clip_emb (B, clip_dim) — added to the timestep embedding and
    turned into `context_tokens` context tokens; text (B, L, text_dim) with text_mask (B, L)
    (True = real token) — projected and appended to the context. A dropped condition is
    passed as zeros (clip_emb) or an all-False mask (text), as in training.
    """

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        ch0 = cfg.channels
        emb_dim = 4 * ch0
        self.time_embed = nn.Sequential(nn.Linear(ch0, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        ctx_dim = 0
        if cfg.clip_dim:
            self.clip_to_emb = nn.Linear(cfg.clip_dim, emb_dim)  # paper: "added to the timestep embedding"
            self.clip_to_tokens = nn.Linear(cfg.clip_dim, cfg.context_tokens * emb_dim)  # "four extra tokens"
            ctx_dim = emb_dim
        if cfg.text_dim:
            self.text_proj = nn.Linear(cfg.text_dim, emb_dim)
            self.text_pool = nn.Linear(cfg.text_dim, emb_dim)  # GLIDE also adds the pooled text to the timestep embedding
            ctx_dim = emb_dim
        self.context_norm = nn.LayerNorm(emb_dim) if ctx_dim else None
        self.input = nn.Conv2d(cfg.in_channels, ch0, 3, padding=1)
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        chans, ch, size = [ch0], ch0, cfg.image_size
        attn = lambda c, s: AttentionBlock(c, cfg.head_channels, ctx_dim) if s in cfg.attention_resolutions else None
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                block = [ResBlock(ch, ch0 * mult, emb_dim, cfg.dropout), attn(ch0 * mult, size)]
                self.down.append(nn.ModuleList([b for b in block if b is not None]))
                ch = ch0 * mult
                chans.append(ch)
            if level < len(cfg.channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                chans.append(ch)
                size //= 2
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, cfg.dropout), attn(ch, size) or nn.Identity(),
                                  ResBlock(ch, ch, emb_dim, cfg.dropout)])
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                block = [ResBlock(ch + chans.pop(), ch0 * mult, emb_dim, cfg.dropout), attn(ch0 * mult, size)]
                ch = ch0 * mult
                if level and i == cfg.num_res_blocks:
                    block.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    block.append(nn.Conv2d(ch, ch, 3, padding=1))
                    size *= 2
                self.up.append(nn.ModuleList([b for b in block if b is not None]))
        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def _conditioning(self, t: Tensor, clip_emb: Tensor | None, text: Tensor | None, text_mask: Tensor | None):
        cfg = self.cfg
        emb = self.time_embed(timestep_embedding(t, cfg.channels))  # (B, E)
        B, E = emb.shape
        ctx, masks = [], []
        if cfg.clip_dim:
            if clip_emb is None or clip_emb.shape != (B, cfg.clip_dim):
                got = None if clip_emb is None else tuple(clip_emb.shape)
                raise bad_input("clip_emb", f"expected shape ({B}, {cfg.clip_dim}) (batch of x_t, CLIP width), got {got}")
            emb = emb + self.clip_to_emb(clip_emb)
            ctx.append(self.clip_to_tokens(clip_emb).reshape(B, cfg.context_tokens, E))  # (B, 4, E)
            masks.append(torch.ones(B, cfg.context_tokens, dtype=torch.bool, device=emb.device))
        if cfg.text_dim:
            if text is None or text.shape[0] != B or text.shape[-1] != cfg.text_dim or text_mask is None:
                raise bad_input("text", f"expected CLIP token features ({B}, L, {cfg.text_dim}) and a mask ({B}, L)")
            m = text_mask.to(text.dtype)[..., None]  # (B, L, 1)
            pooled = (text * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, W): zeros when the caption is dropped
            emb = emb + self.text_pool(pooled)
            ctx.append(self.text_proj(text))  # (B, L, E)
            masks.append(text_mask.bool())
        if not ctx:
            return emb, None, None
        return emb, self.context_norm(torch.cat(ctx, 1)), torch.cat(masks, 1)

    def forward(self, x: Tensor, t: Tensor, clip_emb: Tensor | None = None, text: Tensor | None = None,
                text_mask: Tensor | None = None) -> Tensor:
        emb, ctx, ctx_mask = self._conditioning(t, clip_emb, text, text_mask)
        h = self.input(x)
        hs = [h]
        for block in self.down:
            h = self._run(block, h, emb, ctx, ctx_mask)
            hs.append(h)
        for layer in self.mid:
            h = self._layer(layer, h, emb, ctx, ctx_mask)
        for block in self.up:
            h = self._run(block, torch.cat([h, hs.pop()], dim=1), emb, ctx, ctx_mask)
        return self.out(h)

    @staticmethod
    def _layer(layer, h, emb, ctx, ctx_mask):
        if isinstance(layer, ResBlock):
            return layer(h, emb)
        if isinstance(layer, AttentionBlock):
            return layer(h, ctx, ctx_mask)
        return layer(h)

    def _run(self, block, h, emb, ctx, ctx_mask):
        for layer in block:
            h = self._layer(layer, h, emb, ctx, ctx_mask)
        return h
