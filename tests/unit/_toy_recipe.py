"""A tiny deterministic regression recipe for the trainer tests (and the DDP worker script)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unclip_probe.train import rank_slice


@dataclass(frozen=True)
class ToyConfig:
    in_dim: int = 4
    width: int = 16
    dropout: float = 0.1  # draws from the global RNG: exercises its save/restore


class ToyRecipe:
    """y = sin(sum x) from an MLP; batches depend only on the step, input noise on the generator."""

    name = "toy"

    def __init__(self, cfg: ToyConfig = ToyConfig(), batch_size: int = 8) -> None:
        self.cfg, self.batch_size = cfg, batch_size

    def build_model(self) -> nn.Module:
        c = self.cfg
        return nn.Sequential(nn.Linear(c.in_dim, c.width), nn.Tanh(), nn.Dropout(c.dropout), nn.Linear(c.width, 1))

    def model_config(self) -> ToyConfig:
        return self.cfg

    def batch(self, step: int, rank: int, world_size: int, device: torch.device):
        g = torch.Generator().manual_seed(10_000 + step)
        x = torch.randn(self.batch_size, self.cfg.in_dim, generator=g)  # (B, in_dim)
        y = torch.sin(x.sum(-1, keepdim=True))  # (B, 1)
        share = rank_slice(self.batch_size, rank, world_size)
        return x[share].to(device), y[share].to(device)

    def loss(self, model: nn.Module, batch, generator: torch.Generator):
        x, y = batch
        x = x + 0.05 * torch.randn(x.shape, generator=generator, device=generator.device)
        loss = F.mse_loss(model(x), y)
        return loss, {"mse": float(loss.detach())}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        x, y = self.batch(-1, 0, 1, next(model.parameters()).device)
        return {"eval_mse": float(F.mse_loss(model(x), y))}
