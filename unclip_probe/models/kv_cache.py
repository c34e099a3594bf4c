"""Key/value caching for the priors' causal transformers (nn.TransformerEncoder, norm_first layers).

Both priors of paper §2.2 read a caption prefix under a causal mask, then run
many steps that only add tokens after it: 64 diffusion steps over [timestep,
noised z_i, query], or one step per PCA code for the AR prior. Under the causal
mask the prefix never sees what follows, so its per-layer keys and values are
computed once (`encode`) and each step runs only its new tokens against them
(`extend`). `extend` writes out the encoder layer's norm_first computation
(x + SA(norm1(x)), then x + FF(norm2(x))) with the layer's own weights; the
priors' tests check it against the one-pass nn.TransformerEncoder forward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def qkv(layer: nn.TransformerEncoderLayer, a: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """Query, key and value heads of normalised inputs a (B, T, w): each (B, heads, T, w // heads)."""
    B, T, w = a.shape
    x = F.linear(a, layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias)  # (B, T, 3w)
    return tuple(y.view(B, T, heads, -1).transpose(1, 2) for y in x.split(w, dim=-1))


def encode(blocks: nn.TransformerEncoder, h: Tensor, blocked: Tensor, heads: int) -> tuple[Tensor, Tensor]:
    """Run the prefix h (B, P, w) through every layer with the attention mask `blocked` (B, P, P; True =
    blocked). Returns (its outputs (B, P, w), the keys and values each layer saw (B, layers, 2, heads, P, dh))."""
    mask = blocked.repeat_interleave(heads, dim=0)  # (B * heads, P, P), as nn.MultiheadAttention wants
    kv = []
    for layer in blocks.layers:
        kv.append(torch.stack(qkv(layer, layer.norm1(h), heads)[1:], dim=1))  # (B, 2, heads, P, dh)
        h = layer(h, src_mask=mask)
    return h, torch.stack(kv, dim=1)


def extend(blocks: nn.TransformerEncoder, x: Tensor, kv: Tensor, allowed: Tensor, heads: int) -> tuple[Tensor, Tensor]:
    """Run new tokens x (B, S, w) after a cached prefix kv (B, layers, 2, heads, P, dh). allowed
    (B, S, P + S): which keys each new token may attend (True = attend). Returns (outputs (B, S, w),
    the new tokens' own keys and values (B, layers, 2, heads, S, dh), to append for a later step)."""
    B, S, _ = x.shape
    new = []
    for i, layer in enumerate(blocks.layers):
        q, k, v = qkv(layer, layer.norm1(x), heads)
        new.append(torch.stack([k, v], dim=1))
        k = torch.cat([kv[:, i, 0], k], dim=2)  # (B, heads, P + S, dh)
        v = torch.cat([kv[:, i, 1], v], dim=2)
        attn = layer.self_attn
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None],
                                           dropout_p=attn.dropout if layer.training else 0.0)
        x = x + layer.dropout1(attn.out_proj(o.transpose(1, 2).reshape(B, S, -1)))
        x = x + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(x))))))
    return x, torch.stack(new, dim=1)
