"""The diffusion prior (paper §2.2): text -> CLIP image embedding, as a causal transformer.

"We use a decoder-only Transformer with a causal attention mask on a sequence
consisting of, in order: the encoded text, the CLIP text embedding, an
embedding for the diffusion timestep, the noised CLIP image embedding, and a
final embedding whose output from the Transformer is used to predict the
unnoised CLIP image embedding." The network predicts z_i directly (x0
prediction, MSE); sampling lives in unclip_probe.diffusion.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import bad_input
from . import kv_cache
from .unet import timestep_embedding


@dataclass(frozen=True)
class PriorNetConfig:
    embed_dim: int = 128  # CLIP joint embedding width (z_t, z_i)
    text_dim: int = 128  # CLIP text-token feature width
    max_text_len: int = 48
    width: int = 256
    layers: int = 4
    heads: int = 4
    dropout: float = 0.0


class PriorTransformer(nn.Module):
    """forward(z_noisy (B, D), t (B,), z_text (B, D), text (B, L, W), text_mask (B, L)) -> z_i (B, D).

    z_* are in the prior's working scale (unit-norm CLIP embeddings times sqrt(D),
    so each coordinate has about unit variance). A dropped caption is an all-False
    text_mask plus a zero z_text (classifier-free guidance, paper §2.2).
    """

    def __init__(self, cfg: PriorNetConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.text_proj = nn.Linear(cfg.text_dim, w)
        self.ztext_proj = nn.Linear(cfg.embed_dim, w)
        self.time_proj = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.zimg_proj = nn.Linear(cfg.embed_dim, w)
        self.query = nn.Parameter(torch.randn(w) * 0.02)
        self.pos = nn.Parameter(torch.randn(cfg.max_text_len + 4, w) * 0.01)
        layer = nn.TransformerEncoderLayer(w, cfg.heads, 4 * w, cfg.dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(w)
        self.out = nn.Linear(w, cfg.embed_dim)

    def _check(self, z_noisy: Tensor | None, z_text: Tensor, text: Tensor) -> None:
        B, D = z_text.shape
        if D != self.cfg.embed_dim or (z_noisy is not None and z_noisy.shape != (B, D)):
            raise bad_input("z_noisy", f"expected (B, {self.cfg.embed_dim}) embeddings with matching z_text, "
                                       f"got {None if z_noisy is None else tuple(z_noisy.shape)} and {tuple(z_text.shape)}")
        if text.shape[1] > self.cfg.max_text_len or text.shape[0] != B:
            raise bad_input("text", f"expected ({B}, <= {self.cfg.max_text_len}, {self.cfg.text_dim}) token features, "
                                    f"got {tuple(text.shape)}")

    def forward(self, z_noisy: Tensor, t: Tensor, z_text: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        self._check(z_noisy, z_text, text)
        return self.forward_prefixed(z_noisy, t, self.encode_prefix(z_text, text, text_mask))

    # The sequence splits in two. Under the causal mask the prefix [encoded text, z_text] never
    # sees the timestep or the noised embedding, so its attention keys and values are the same at
    # every sampling step: the sampler computes them once (a KV cache) and each of its steps runs
    # only the three suffix tokens [timestep, noised z_i, query] against them. Training goes
    # through the same two calls; tests/unit/test_prior.py compares them with a one-pass reference.
    def encode_prefix(self, z_text: Tensor, text: Tensor, text_mask: Tensor) -> dict[str, Tensor]:
        """{"kv": per-layer keys and values of the prefix (B, layers, 2, heads, L + 1, head_dim),
        "key_ok": which prefix positions may be attended (B, L + 1)}."""
        self._check(None, z_text, text)
        B, L = text.shape[:2]
        P = L + 1
        h = torch.cat([self.text_proj(text), self.ztext_proj(z_text)[:, None]], dim=1) + self.pos[:P]  # (B, P, w)
        key_ok = torch.cat([text_mask.bool(), torch.ones(B, 1, dtype=torch.bool, device=h.device)], dim=1)  # (B, P)
        blocked = torch.ones(P, P, dtype=torch.bool, device=h.device).triu(1)[None] | ~key_ok[:, None, :]
        # Every position may see itself, so no row is fully masked (a dropped caption masks
        # all text keys, and a softmax over nothing is NaN).
        blocked &= ~torch.eye(P, dtype=torch.bool, device=h.device)[None]
        _, kv = kv_cache.encode(self.blocks, h, blocked, self.cfg.heads)
        return {"kv": kv, "key_ok": key_ok}

    def forward_prefixed(self, z_noisy: Tensor, t: Tensor, prefix: dict[str, Tensor]) -> Tensor:
        """z_i (B, D) from the noised embedding z_noisy (B, D) at timesteps t (B,), given encode_prefix's cache."""
        B = z_noisy.shape[0]
        key_ok = prefix["key_ok"]  # (B, P)
        P = key_ok.shape[1]
        x = torch.cat([
            self.time_proj(timestep_embedding(t, self.cfg.width))[:, None],  # (B, 1, w) timestep
            self.zimg_proj(z_noisy)[:, None],  # (B, 1, w) noised image embedding
            self.query.expand(B, 1, -1),  # (B, 1, w) final query token
        ], dim=1) + self.pos[P:P + 3]
        causal = torch.ones(3, 3, dtype=torch.bool, device=x.device).tril()
        allowed = torch.cat([key_ok[:, None, :].expand(B, 3, P), causal[None].expand(B, 3, 3)], dim=2)
        x, _ = kv_cache.extend(self.blocks, x, prefix["kv"], allowed, self.cfg.heads)
        return self.out(self.norm(x[:, -1]))  # (B, D): read at the query token
