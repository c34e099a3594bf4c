"""Run under ``python -m torch.distributed.run --nproc_per_node 2 _ddp_worker.py OUT``: train the toy
recipe with DDP (gloo) and write each rank's final in-memory raw weights to OUT/rank<r>.safetensors."""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _toy_recipe import ToyRecipe  # noqa: E402

from unclip_probe.checkpoints import save_weights  # noqa: E402
from unclip_probe.train import TrainConfig, train  # noqa: E402


class KeepModel(ToyRecipe):
    def build_model(self):
        self.model = super().build_model()  # the very module the trainer optimises (CPU: .to() is a no-op)
        return self.model


out = Path(sys.argv[1])
recipe = KeepModel()
cfg = TrainConfig(steps=6, batch_size=8, lr=1e-2, warmup_steps=2, checkpoint_every=3, log_every=2, ema_decay=0.9)
summary = train(recipe, cfg, out / "run", progress=False)
assert summary.finished and summary.steps_done == 6, summary
save_weights(recipe.model.state_dict(), out / f"rank{os.environ['RANK']}.safetensors")
