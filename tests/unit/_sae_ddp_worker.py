"""Run under ``python -m torch.distributed.run --nproc_per_node 2 _sae_ddp_worker.py OUT``: train a tiny
SAE with DDP (gloo) and write each rank's final in-memory state (weights and dead-latent counter) to
OUT/rank<r>.safetensors."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from unclip_probe.checkpoints import save_weights
from unclip_probe.sae import SAERecipe
from unclip_probe.train import TrainConfig, train


class KeepModel(SAERecipe):
    def build_model(self):
        self.model = super().build_model()  # the very module the trainer optimises
        return self.model


out = Path(sys.argv[1])
recipe = KeepModel(torch.randn(300, 16, generator=torch.Generator().manual_seed(0)), n_latents=32, k=2, aux_k=4,
                   dead_after=20, batch_size=16)
cfg = TrainConfig(steps=8, batch_size=16, lr=3e-3, warmup_steps=2, ema_decay=0.0, checkpoint_every=4, log_every=2)
summary = train(recipe, cfg, out / "run", progress=False)
assert summary.finished and summary.steps_done == 8, summary
save_weights(recipe.model.state_dict(), out / f"rank{os.environ['RANK']}.safetensors")
