"""A TopK sparse autoencoder over CLIP embeddings or activations (Gao et al. 2024, "Scaling and
evaluating sparse autoencoders", arXiv 2406.04093; docs/design.md §5).

    z    = TopK(W_enc^T (x - b_pre) + b_enc)      keep the k largest pre-activations per row, ReLU them
    x^   = W_dec^T z + b_pre                       W_dec: (n_latents, d_in), every row unit norm

The decoder rows are the features' directions, kept at unit norm so that a code's size is the
feature's strength: training removes the gradient component parallel to each row before the
optimizer step (:meth:`TopKSAE.remove_parallel_grad_`) and renormalises the rows after it
(:meth:`TopKSAE.normalise_decoder_`), as the paper does. The encoder starts as the decoder's
transpose. ``since_fired`` counts, per latent, the training samples since it last fired
(:meth:`TopKSAE.record_firing_`, once per training batch); a latent silent for ``dead_after``
samples is dead, and the AuxK loss (paper §2.4) asks the top ``aux_k``
dead latents to reconstruct the residual error, which brings them back. The counter is a buffer,
so it is saved with the weights and a resumed training continues it exactly.

Shapes: ``N`` rows, ``d_in`` input width (CLIP's ``D``), ``n_latents`` dictionary size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from unclip_probe.errors import bad_input, one_of

AUX_COEF = 1 / 32  # paper §2.4: the AuxK loss's weight
INPUT_NORMS = ("unit", "none")  # what prepare() does to an input row before the SAE sees it


@dataclass(frozen=True)
class SAEConfig:
    """A TopK SAE's shape and training constants, saved as JSON beside its weights (``sae.json``).

    aux_k: dead latents the AuxK loss uses; None picks d_in // 2 (paper §2.4: a power of two near
    d_model / 2), at most n_latents. dead_after: training samples without firing after which a
    latent counts as dead (the paper: 10 M tokens; the default is about 100 steps of the world
    stage's batch, the paper's figure in steps). input_norm: "unit" when every input row is scaled
    to unit L2 norm first (:meth:`TopKSAE.prepare`), "none" for raw inputs. activation and
    clip_checksum say what the SAE was trained on: ``image_embeds`` (a stack's encode_image) or a
    hook name, and the checksum of the CLIP that produced it (docs/design.md §5).
    """

    d_in: int = 128
    n_latents: int = 512
    k: int = 8
    aux_k: int | None = None
    aux_coef: float = AUX_COEF
    dead_after: int = 100_000
    input_norm: str = "unit"
    activation: str = "image_embeds"
    clip_checksum: str = ""

    def __post_init__(self) -> None:
        for name in ("d_in", "n_latents", "dead_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad_input(f"SAEConfig.{name}", f"expected a positive int, got {value!r}.")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= self.n_latents:
            raise bad_input("SAEConfig.k", f"expected an int from 1 to n_latents ({self.n_latents}), got {self.k!r}.")
        if self.aux_k is None:
            object.__setattr__(self, "aux_k", max(1, min(self.n_latents, self.d_in // 2)))
        if isinstance(self.aux_k, bool) or not isinstance(self.aux_k, int) or not 1 <= self.aux_k <= self.n_latents:
            raise bad_input("SAEConfig.aux_k", f"expected None or an int from 1 to n_latents ({self.n_latents}), "
                                               f"got {self.aux_k!r}.")
        if isinstance(self.aux_coef, bool) or not isinstance(self.aux_coef, (int, float)) \
                or not math.isfinite(self.aux_coef) or self.aux_coef < 0:
            raise bad_input("SAEConfig.aux_coef", f"expected a finite number >= 0, got {self.aux_coef!r}.")
        if self.input_norm not in INPUT_NORMS:
            raise bad_input("SAEConfig.input_norm", one_of(self.input_norm, INPUT_NORMS) + ".")
        for name in ("activation", "clip_checksum"):
            if not isinstance(getattr(self, name), str):
                raise bad_input(f"SAEConfig.{name}", f"expected a string, got {getattr(self, name)!r}.")


class SAEOutput(NamedTuple):
    """What :meth:`TopKSAE.forward` returns."""

    recon: Tensor  # (N, d_in) x^
    codes: Tensor  # (N, n_latents) sparse: at most k non-zeros per row, all > 0
    pre_acts: Tensor  # (N, n_latents) W_enc^T (x - b_pre) + b_enc, before TopK
    aux_loss: Tensor  # () aux_coef * AuxK loss; 0 when no latent is dead


def normalized_mse(pred: Tensor, target: Tensor) -> Tensor:
    """sum ||target - pred||^2 / sum ||target - mean(target)||^2 over the rows: the batch's fraction
    of variance unexplained, the loss the paper trains on (scale-free, so aux_coef means the same
    for any input scale)."""
    pred, target = pred.float(), target.float()  # in float32 under bf16 autocast too
    err = (target - pred).pow(2).sum()
    var = (target - target.mean(0, keepdim=True)).pow(2).sum()
    return err / var.clamp_min(torch.finfo(var.dtype).tiny)


def topk_codes(pre_acts: Tensor, k: int) -> Tensor:
    """The k largest entries of each row, ReLU'd, the rest zero: (N, n) -> (N, n), <= k non-zeros."""
    vals, idx = pre_acts.topk(k, dim=-1)  # (N, k)
    return torch.zeros_like(pre_acts).scatter(-1, idx, vals.relu())


class TopKSAE(nn.Module):
    """TopK sparse autoencoder (see the module docstring for the maths and the shapes)."""

    def __init__(self, config: SAEConfig) -> None:
        super().__init__()
        if not isinstance(config, SAEConfig):
            raise bad_input("config", f"expected an SAEConfig, got {type(config).__name__}.")
        self.config = config
        d, n = config.d_in, config.n_latents
        self.b_pre = nn.Parameter(torch.zeros(d))
        self.W_enc = nn.Parameter(torch.empty(d, n))
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.W_dec = nn.Parameter(torch.empty(n, d))
        self.register_buffer("since_fired", torch.zeros(n, dtype=torch.long))  # samples since each latent fired
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Random unit-norm decoder rows (global RNG), the encoder their transpose, zero biases."""
        self.W_dec.copy_(torch.randn(self.W_dec.shape))
        self.normalise_decoder_()
        self.W_enc.copy_(self.W_dec.T)
        self.b_pre.zero_()
        self.b_enc.zero_()
        self.since_fired.zero_()

    # ------------------------------------------------------------------ the maps
    def _check(self, x: object, width: int, argument: str, what: str) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != width or not x.is_floating_point():
            got = f"shape {tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
            raise bad_input(argument, f"expected {what} as a float tensor (N, {width}), got {got}.")
        return x.to(self.W_enc.dtype)

    def prepare(self, x: Tensor) -> Tensor:
        """Inputs as this SAE was trained on them: rows scaled to unit L2 norm (input_norm "unit",
        the identity on unit-norm CLIP embeddings) or unchanged ("none"). (N, d_in) -> (N, d_in)."""
        x = self._check(x, self.config.d_in, "x", "inputs")
        return nn.functional.normalize(x, dim=-1) if self.config.input_norm == "unit" else x

    def pre_activations(self, x: Tensor) -> Tensor:
        """(N, d_in) -> (N, n_latents): W_enc^T (x - b_pre) + b_enc."""
        x = self._check(x, self.config.d_in, "x", "inputs")
        return (x - self.b_pre) @ self.W_enc + self.b_enc

    def encode(self, x: Tensor) -> Tensor:
        """(N, d_in) -> (N, n_latents) sparse codes: at most k non-zeros per row, all positive."""
        return topk_codes(self.pre_activations(x), self.config.k)

    def decode(self, codes: Tensor) -> Tensor:
        """(N, n_latents) codes -> (N, d_in) reconstruction W_dec^T z + b_pre."""
        codes = self._check(codes, self.config.n_latents, "codes", "codes")
        return codes @ self.W_dec + self.b_pre

    def forward(self, x: Tensor) -> SAEOutput:
        """(N, d_in) -> :class:`SAEOutput` (the AuxK term uses the dead latents as counted so far)."""
        pre = self.pre_activations(x)  # (N, n_latents)
        codes = topk_codes(pre, self.config.k)
        recon = codes @ self.W_dec + self.b_pre  # (N, d_in)
        return SAEOutput(recon, codes, pre, self.auxk_loss(x, recon, pre))

    # ------------------------------------------------------------------ dead latents
    @torch.no_grad()
    def record_firing_(self, fired: Tensor, n: int) -> None:
        """Count ``n`` more training samples in ``since_fired`` and reset it for the latents that
        ``fired`` ((n_latents,) bool) on them. A training loop calls it once per batch (the SAE
        recipe does, with the mask and count of the global batch under DDP); forward never does, so
        evaluating a model leaves its counter alone."""
        if not isinstance(fired, Tensor) or fired.shape != self.since_fired.shape:
            raise bad_input("fired", f"expected a bool tensor ({self.config.n_latents},), got "
                                     f"{tuple(fired.shape) if isinstance(fired, Tensor) else type(fired).__name__}.")
        self.since_fired.add_(int(n)).masked_fill_(fired.to(torch.bool), 0)

    def dead_latents(self) -> Tensor:
        """(n_latents,) bool: latents that have not fired for ``dead_after`` training samples."""
        return self.since_fired >= self.config.dead_after

    def auxk_loss(self, x: Tensor, recon: Tensor, pre_acts: Tensor, dead: Tensor | None = None) -> Tensor:
        """aux_coef * the normalised MSE of reconstructing the residual e = x - x^ (no gradient into
        x^) from the top aux_k pre-activations among the ``dead`` latents (default: dead_latents()),
        decoded without b_pre (paper §2.4). A () tensor; exactly 0 when no latent is dead."""
        dead = self.dead_latents() if dead is None else dead
        n_dead = int(dead.sum())
        if n_dead == 0 or self.config.aux_coef == 0:
            return pre_acts.new_zeros(())
        masked = pre_acts.masked_fill(~dead, float("-inf"))  # (N, n_latents)
        z = topk_codes(masked, min(self.config.aux_k, n_dead))
        e = (x - recon).detach()  # (N, d_in)
        return self.config.aux_coef * normalized_mse(z @ self.W_dec, e)

    # ------------------------------------------------------------------ the decoder constraint
    @torch.no_grad()
    def normalise_decoder_(self) -> None:
        """Scale every decoder row to unit L2 norm, in place."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_grad_(self) -> None:
        """Remove from W_dec.grad each row's component along its decoder row (what keeps the step
        tangent to the unit sphere), in place; nothing when there is no gradient."""
        g, w = self.W_dec.grad, self.W_dec
        if g is None:
            return
        g.sub_((g * w).sum(1, keepdim=True) / (w * w).sum(1, keepdim=True).clamp_min(1e-12) * w)

    def extra_repr(self) -> str:
        c = self.config
        return f"d_in={c.d_in}, n_latents={c.n_latents}, k={c.k}, aux_k={c.aux_k}, activation={c.activation!r}"
