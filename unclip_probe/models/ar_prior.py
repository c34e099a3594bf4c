"""The autoregressive prior (paper §2.2): text -> CLIP image embedding as a sequence of discrete codes.

"We reduce the dimensionality of the CLIP image embeddings z_i by applying
Principal Component Analysis ... quantize each of the [remaining] dimensions
into 1,024 discrete buckets, and predict the resulting sequence using a
Transformer model with a causal attention mask ... We condition the AR prior
on the text caption and the CLIP text embedding by encoding them as a prefix
to the sequence. Additionally, we prepend a token indicating the (quantized)
dot product between the text embedding and image embedding, z_i · z_t."
The PCA basis and bucket ranges are buffers, so they travel inside the weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import bad_input
from . import kv_cache


@dataclass(frozen=True)
class ARPriorConfig:
    embed_dim: int = 128
    text_dim: int = 128
    max_text_len: int = 48
    components: int = 64  # PCA dimensions kept (set from the data: >= 99 % of the variance)
    buckets: int = 256  # K: discrete values per component
    dot_buckets: int = 32  # quantised z_i . z_t values
    width: int = 256
    layers: int = 4
    heads: int = 4
    clip_checksum: str = ""
    text_dropout: float = 0.1
    explained_variance: float = 0.0  # of the kept components, recorded for the model card


class ARPrior(nn.Module):
    """logits (B, k, K) = forward(codes (B, k), dot (B,), z_text (B, D), text (B, L, W), text_mask (B, L)).

    Position j's logits predict code j from the prefix and codes < j (teacher forcing).
    """

    def __init__(self, cfg: ARPriorConfig):
        super().__init__()
        self.cfg = cfg
        D, k, w = cfg.embed_dim, cfg.components, cfg.width
        # PCA and quantisation, fitted by the recipe (fit_codebook) and saved with the weights.
        self.register_buffer("pca_mean", torch.zeros(D))
        self.register_buffer("pca_components", torch.eye(D)[:k].clone())  # (k, D), rows orthonormal
        self.register_buffer("code_lo", -torch.ones(k))
        self.register_buffer("code_hi", torch.ones(k))
        self.register_buffer("dot_edges", torch.linspace(-1, 1, cfg.dot_buckets + 1))
        self.text_proj = nn.Linear(cfg.text_dim, w)
        self.ztext_proj = nn.Linear(D, w)
        self.dot_embed = nn.Embedding(cfg.dot_buckets, w)
        self.code_embed = nn.Embedding(cfg.buckets, w)
        # Positions: text tokens 0 .. L-1; z_t, the dot token and the codes always max_text_len + j, so
        # they sit at the same positions however long the (trimmed) caption batch is. Counting them on
        # from L tied them to the batch's longest caption: a GPU run at batch 256, whose batches were all
        # about 40 tokens long, learnt those positions only and sampled garbage for short captions.
        self.pos = nn.Parameter(torch.randn(cfg.max_text_len + 2 + k, w) * 0.01)
        layer = nn.TransformerEncoderLayer(w, cfg.heads, 4 * w, 0.0, activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(w)
        self.head = nn.Linear(w, cfg.buckets)

    # ------------------------------------------------------------------ codebook
    @torch.no_grad()
    def fit_codebook(self, z_img: Tensor, z_text: Tensor) -> float:
        """Fit PCA, bucket ranges and dot-product bins on unit-norm embeddings (N, D); returns
        the share of variance the kept components explain."""
        k = self.cfg.components
        mean = z_img.mean(0)
        _, S, Vh = torch.linalg.svd(z_img - mean, full_matrices=False)  # Vh: (D, D)
        var = S ** 2
        self.pca_mean.copy_(mean)
        self.pca_components.copy_(Vh[:k])
        coeffs = (z_img - mean) @ Vh[:k].T  # (N, k)
        self.code_lo.copy_(torch.quantile(coeffs, 0.001, dim=0))
        self.code_hi.copy_(torch.quantile(coeffs, 0.999, dim=0))
        dots = (z_img * z_text).sum(-1)
        self.dot_edges.copy_(torch.quantile(dots, torch.linspace(0, 1, self.cfg.dot_buckets + 1)))
        return float(var[:k].sum() / var.sum())

    def encode(self, z_img: Tensor) -> Tensor:
        """Unit-norm embeddings (B, D) -> codes (B, k) in [0, K)."""
        coeffs = (z_img - self.pca_mean) @ self.pca_components.T  # (B, k)
        u = (coeffs - self.code_lo) / (self.code_hi - self.code_lo)
        return (u * self.cfg.buckets).floor().clamp(0, self.cfg.buckets - 1).long()

    def decode(self, codes: Tensor) -> Tensor:
        """Codes (B, k) -> unit-norm embeddings (B, D), from each bucket's centre."""
        u = (codes.float() + 0.5) / self.cfg.buckets
        coeffs = self.code_lo + u * (self.code_hi - self.code_lo)  # (B, k)
        z = self.pca_mean + coeffs @ self.pca_components  # (B, D)
        return torch.nn.functional.normalize(z, dim=-1)

    def dot_bucket(self, dot: Tensor) -> Tensor:
        """z_i . z_t (B,) -> its quantile bin (B,)."""
        return (torch.bucketize(dot, self.dot_edges[1:-1].contiguous())).clamp(0, self.cfg.dot_buckets - 1)

    # ------------------------------------------------------------------ network
    def forward(self, codes: Tensor, dot: Tensor, z_text: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        B, n = codes.shape
        L = text.shape[1]
        if n > self.cfg.components or L > self.cfg.max_text_len or z_text.shape != (B, self.cfg.embed_dim):
            raise bad_input("codes", f"expected codes (B, <= {self.cfg.components}), text (B, <= {self.cfg.max_text_len}, "
                                     f"W) and z_text (B, {self.cfg.embed_dim}); got {tuple(codes.shape)}, "
                                     f"{tuple(text.shape)}, {tuple(z_text.shape)}")
        # Inputs: prefix [text, z_t, dot], then codes 0 .. n-2; outputs from the dot token on predict codes 0 .. n-1.
        M = self.cfg.max_text_len
        after = torch.cat([self.ztext_proj(z_text)[:, None], self.dot_embed(dot)[:, None],
                           self.code_embed(codes[:, :-1])], dim=1)  # (B, 2 + n - 1, w)
        seq = torch.cat([self.text_proj(text) + self.pos[:L], after + self.pos[M:M + after.shape[1]]], dim=1)
        T = seq.shape[1]  # L + 2 + n - 1
        pad = torch.cat([~text_mask.bool(), torch.zeros(B, T - L, dtype=torch.bool, device=seq.device)], dim=1)
        blocked = torch.ones(T, T, dtype=torch.bool, device=seq.device).triu(1)[None] | pad[:, None, :]
        blocked &= ~torch.eye(T, dtype=torch.bool, device=seq.device)[None]  # no fully masked row (dropped caption)
        h = self.blocks(seq, mask=blocked.repeat_interleave(self.cfg.heads, dim=0))  # (B, T, w)
        return self.head(self.norm(h[:, L + 1:]))  # (B, n, K)

    # ------------------------------------------------------------------ sampling, one code at a time
    # The prefix [text, z_t, dot] and every code drawn so far never see what follows them, so
    # sampling keeps their keys and values (kv_cache) and runs one new token per code.
    def start(self, dot: Tensor, z_text: Tensor, text: Tensor, text_mask: Tensor) -> tuple[Tensor, dict]:
        """(logits of code 0 (B, K), the cache of the prefix [text, z_t, dot]); inputs as in forward."""
        B, L = text.shape[:2]
        M = self.cfg.max_text_len
        seq = torch.cat([self.text_proj(text) + self.pos[:L],
                         torch.stack([self.ztext_proj(z_text), self.dot_embed(dot)], dim=1) + self.pos[M:M + 2]],
                        dim=1)  # (B, L + 2, w)
        key_ok = torch.cat([text_mask.bool(), torch.ones(B, 2, dtype=torch.bool, device=seq.device)], dim=1)
        T = L + 2
        blocked = torch.ones(T, T, dtype=torch.bool, device=seq.device).triu(1)[None] | ~key_ok[:, None, :]
        blocked &= ~torch.eye(T, dtype=torch.bool, device=seq.device)[None]  # as in forward
        h, kv = kv_cache.encode(self.blocks, seq, blocked, self.cfg.heads)
        return self.head(self.norm(h[:, -1])), {"kv": kv, "key_ok": key_ok, "text_len": L}

    def next_logits(self, code: Tensor, cache: dict) -> tuple[Tensor, dict]:
        """Append code (B,) to the cached sequence: (logits of the code after it (B, K), the grown cache)."""
        key_ok = cache["key_ok"]  # (B, T)
        B, T = key_ok.shape
        j = self.cfg.max_text_len + T - cache["text_len"]  # its position: after the text, as in forward
        x = self.code_embed(code)[:, None] + self.pos[j:j + 1]  # (B, 1, w)
        key_ok = torch.cat([key_ok, torch.ones(B, 1, dtype=torch.bool, device=x.device)], dim=1)  # (B, T + 1)
        x, new = kv_cache.extend(self.blocks, x, cache["kv"], key_ok[:, None, :], self.cfg.heads)
        return self.head(self.norm(x[:, -1])), {"kv": torch.cat([cache["kv"], new], dim=4), "key_ok": key_ok,
                                                "text_len": cache["text_len"]}
