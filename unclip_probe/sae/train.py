"""Recipe: a TopK SAE (Gao et al. 2024) on a fixed set of embeddings, on the shared trainer
(`unclip-probe train sae --embeddings DIR`; docs/design.md §5).

Data: an `unclip-probe embed` folder (or a .safetensors file with one "embeddings" tensor, or a
tensor (N, D) passed in, e.g. from :func:`~unclip_probe.sae.activations.collect_activations`).
A seeded permutation holds out ``holdout`` of the rows for :meth:`SAERecipe.evaluate`; the rest are
the training rows, visited epoch by epoch in a fresh permutation per epoch seeded by (data_seed,
epoch), so a batch is a pure function of its step (exact resume).

Inputs: every row is scaled to unit L2 norm (input_norm "unit"). CLIP compares embeddings by
direction, the world stack's image embeddings are unit norm already (so this changes nothing there),
and for raw projections and hooked activations it keeps an image's overall scale from counting as a
feature. The loss is the batch's normalised MSE (its fraction of variance unexplained) plus the AuxK
term, as in the paper, so neither depends on the input's scale. ``b_pre`` starts at the geometric
median of (up to 4,096) training rows, as in the paper.

Decoder rows: ``before_step`` removes the gradient along each row, ``after_step`` renormalises the
rows (the trainer's optional hooks). EMA: the stage's default ``ema_decay`` is 0, so the EMA the
trainer ships is the raw weights, whose rows are exactly unit norm; an EMA of unit rows is shorter
than one (``load_sae`` renormalises such rows, with a warning). The dead-latent counter is a buffer
(integer, so the EMA copies it), saved with the weights and restored on resume; ``loss`` advances
it by the global batch, with the latents that fired on any rank, so it is the same on every rank.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from unclip_probe import validate
from unclip_probe.errors import bad_input
from unclip_probe.train.trainer import rank_slice

from .metrics import evaluate_sae
from .model import SAEConfig, TopKSAE, normalized_mse

MEDIAN_ROWS = 4096  # rows the initial b_pre is the geometric median of


def geometric_median(x: Tensor, iters: int = 32) -> Tensor:
    """(N, D) -> (D,): Weiszfeld's iteration from the mean."""
    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - m).norm(dim=1).clamp_min(1e-8)  # (N,)
        m = (w[:, None] * x).sum(0) / w.sum()
    return m


def _as_rows(data: Any) -> tuple[Tensor, dict[str, Any]]:
    if isinstance(data, Tensor):
        if data.ndim != 2 or data.shape[0] < 3 or not data.is_floating_point():
            raise bad_input("data", f"expected a float tensor (N, D) with N >= 3, got {data.dtype} "
                                    f"{tuple(data.shape)}.")
        return data.detach().float().cpu(), {}
    if not isinstance(data, (str, os.PathLike)):
        raise bad_input("data", f"expected an embeddings folder or file, or a tensor (N, D), got {type(data).__name__}.")
    from unclip_probe.embed import load_embeddings

    x, meta = load_embeddings(data)
    if x.shape[0] < 3:
        raise bad_input("data", f"{str(data)!r} holds {x.shape[0]} row(s); an SAE needs at least 3 (two of them "
                                "held out).")
    return x, meta


@dataclass
class SAERecipe:
    """Trainer recipe; ``batch_size`` is the global batch, split over DDP ranks."""

    data: Any  # an embeddings folder / file, or a tensor (N, D)
    n_latents: int = 512
    k: int = 8
    aux_k: int | None = None  # None: SAEConfig's default (d_in // 2)
    dead_after: int = SAEConfig.dead_after
    batch_size: int = 1024
    holdout: float = 0.05  # share of rows held out for evaluate() (two at least)
    data_seed: int = 0
    activation: str | None = None  # what the rows are; default: the embeddings' own record, else "tensor"
    init_from: str | None = None  # start from these weights (a continued training)
    name: str = "sae"

    def __post_init__(self) -> None:
        self.batch_size = validate.count(self.batch_size, "batch_size")
        self.data_seed = validate.seed(self.data_seed, "data_seed")
        validate.number(self.holdout, "holdout", above=0.0, maximum=0.5, what="a held-out share")
        x, meta = _as_rows(self.data)
        if not torch.isfinite(x).all():
            raise bad_input("data", "holds NaN or infinite values.")
        activation = self.activation or meta.get("activation", "tensor")
        self.config = SAEConfig(d_in=x.shape[1], n_latents=self.n_latents, k=self.k, aux_k=self.aux_k,
                                dead_after=self.dead_after, input_norm="unit", activation=activation,
                                clip_checksum=str(meta.get("clip_checksum", "")))
        x = F.normalize(x, dim=-1)  # input_norm "unit": as TopKSAE.prepare does
        g = torch.Generator().manual_seed(self.data_seed)
        perm = torch.randperm(x.shape[0], generator=g)
        n_eval = max(2, round(x.shape[0] * self.holdout))  # two at least: one row has no variance
        self.x_eval, self.x_train = x[perm[:n_eval]].contiguous(), x[perm[n_eval:]].contiguous()
        self._perms: dict[int, Tensor] = {}

    # ------------------------------------------------------------------ trainer protocol
    def build_model(self) -> TopKSAE:
        from unclip_probe.checkpoints import init_from_file

        sae = TopKSAE(self.config)  # the trainer has seeded the global RNG
        with torch.no_grad():
            sae.b_pre.copy_(geometric_median(self.x_train[self._order(0)[:MEDIAN_ROWS]]))
        return init_from_file(sae, self.init_from)

    def model_config(self) -> SAEConfig:
        return self.config

    def _order(self, epoch: int) -> Tensor:
        """The training rows' order in ``epoch``: a permutation seeded by (data_seed, epoch)."""
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            g = torch.Generator().manual_seed(self.data_seed * 1_000_003 + epoch + 1)
            self._perms[epoch] = torch.randperm(self.x_train.shape[0], generator=g)
        return self._perms[epoch]

    def batch(self, step: int, rank: int, world_size: int, device) -> Tensor:
        n, B = self.x_train.shape[0], self.batch_size
        lo, hi = step * B, (step + 1) * B  # positions in the endless stream of epochs
        idx = [self._order(e)[max(lo, e * n) - e * n: min(hi, (e + 1) * n) - e * n]
               for e in range(lo // n, (hi - 1) // n + 1)]
        rows = torch.cat(idx)[rank_slice(B, rank, world_size)]
        return self.x_train[rows].to(device)  # (B_rank, D)

    def loss(self, model, batch: Tensor, generator: torch.Generator):
        out = model(batch)
        mse = normalized_mse(out.recon, batch)
        sae = getattr(model, "module", model)  # the DDP wrapper's module
        with torch.no_grad():  # the dead-latent counter sees the global batch, the same on every rank
            fired = (out.codes > 0).any(0).to(torch.uint8)  # (n_latents,)
            if dist.is_available() and dist.is_initialized():
                comm = fired if dist.get_backend() == "nccl" else fired.cpu()
                dist.all_reduce(comm, op=dist.ReduceOp.MAX)
                fired = comm.to(fired.device)
            sae.record_firing_(fired.bool(), self.batch_size)
        metrics = {"fvu": float(mse.detach()), "aux": float(out.aux_loss.detach()),
                   "l0": float((out.codes > 0).sum(1).float().mean()),
                   "dead": float(sae.dead_latents().float().mean())}
        return mse + out.aux_loss, metrics

    def before_step(self, model: TopKSAE) -> None:
        model.remove_parallel_grad_()

    def after_step(self, model: TopKSAE) -> None:
        model.normalise_decoder_()

    def evaluate(self, model: TopKSAE) -> dict[str, float]:
        """fvu, l0 and dead_fraction on the held-out rows; dead_tracked: the share of latents the
        training counter calls dead (silent for dead_after samples)."""
        figures = evaluate_sae(model, self.x_eval)
        figures["dead_tracked"] = float(model.dead_latents().float().mean())
        return figures
