"""Recipe: the world CLIP, trained contrastively on rendered scenes and their captions.

Paper mapping (docs/design.md §1): the paper's CLIP ViT-H/16 at 256 px becomes an
open_clip ViT at 64 px with patch 8 and a small text tower over the world's
word vocabulary. The loss is CLIP's symmetric cross-entropy over the batch
(Radford et al. 2021), with the learned temperature.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...clip import ClipConfig, build_clip_model
from unclip_probe.clip.tokenizer import WorldTokenizer
from ...world.captions import CONTEXT, vocabulary  # CONTEXT: the caption grammar's longest, with room
from ...world.spec import WorldConfig
from ..data import BatchRenderer
from ..trainer import rank_slice



def world_clip_config(width: int = 192, layers: int = 6, text_width: int = 128, text_layers: int = 4,
                      embed_dim: int = 128) -> ClipConfig:
    """The shipped world-CLIP architecture: ViT 64 px / patch 8, word-level text tower."""
    words = tuple(vocabulary())
    vocab = WorldTokenizer(words, CONTEXT).vocab_size
    oc = {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": 64, "layers": layers, "width": width, "patch_size": 8, "head_width": 32, "mlp_ratio": 4.0},
        "text_cfg": {"context_length": CONTEXT, "vocab_size": vocab, "width": text_width, "heads": 4, "layers": text_layers},
    }
    return ClipConfig("world-clip", oc, words, CONTEXT, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@dataclass
class ClipRecipe:
    """Trainer recipe; `batch_size` is the global batch, split over DDP ranks."""

    batch_size: int = 256
    data_seed: int = 0
    config: ClipConfig | None = None
    world: WorldConfig = WorldConfig()
    workers: int | None = None
    init_from: str | None = None  # start from these weights (a continued training; see the model card)
    hard_negatives: float = 0.0  # share of the batch replaced by position-moved / colour-swapped twins
    name: str = "clip"

    def __post_init__(self):
        self.config = self.config or world_clip_config()
        self.tokenizer = self.config.tokenizer()
        self.renderer = BatchRenderer(self.data_seed, self.batch_size, (64,), self.world, "train", self.workers)
        self._mean = torch.tensor(self.config.image_mean).view(1, 3, 1, 1)
        self._std = torch.tensor(self.config.image_std).view(1, 3, 1, 1)

    def build_model(self):
        from ...checkpoints import init_from_file

        return init_from_file(build_clip_model(self.config), self.init_from)

    def model_config(self) -> ClipConfig:
        return self.config

    def batch(self, step: int, rank: int, world_size: int, device):
        sl = rank_slice(self.batch_size, rank, world_size)
        imgs, caps, scenes = self.renderer.get(step, sl.start, sl.stop)
        images = torch.from_numpy(imgs[64])
        if self.hard_negatives > 0:
            images, caps = self._with_twins(images, caps, scenes, step, sl.start)
        x = (images.float() / 255.0 - self._mean) / self._std  # (B, 3, 64, 64)
        return x.to(device), self.tokenizer(caps).to(device)

    def _with_twins(self, images, caps, scenes, step: int, offset: int):
        """Replace items m..2m-1 by twins of items 0..m-1 that only position or colour binding
        tells apart, captioned so that the text does tell them apart. A random batch rarely
        needs position to match captions to images; these in-batch hard negatives make it."""
        import numpy as np

        from ...world import caption, render_array
        from ...world.scenes import moved_twin, swapped_twin

        m = int(len(scenes) * self.hard_negatives / 2)
        images, caps = images.clone(), list(caps)
        for k in range(m):
            rng = np.random.default_rng([self.data_seed, step, offset + k, 7])
            src = scenes[k]
            twin = swapped_twin(src) if k % 2 else None
            template = "list" if twin is not None else "positions"
            twin = twin or moved_twin(src, rng)
            seed = int(rng.integers(2**31))
            caps[k], caps[m + k] = caption(src, seed, template), caption(twin, seed, template)
            images[m + k] = torch.from_numpy(np.ascontiguousarray(render_array(twin).transpose(2, 0, 1)))
        return images, caps

    def loss(self, model, batch, generator):
        images, tokens = batch
        img, txt, scale = model(images, tokens)[:3]  # normalised features (B, D), logit scale
        scale = scale.clamp(max=100.0)  # as open_clip training does: keeps the softmax from saturating
        logits = scale * img @ txt.T  # (B, B)
        # Identical captions in one batch are true positives too: spread the target over them.
        same = (tokens[:, None, :] == tokens[None, :, :]).all(-1).float()
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        acc = (logits.argmax(1) == torch.arange(len(logits), device=logits.device)).float().mean()
        return loss, {"acc": acc.item(), "scale": scale.item()}

    def evaluate(self, model) -> dict:
        from ...clip import ClipModel
        from unclip_probe.eval.clip import evaluate_clip

        clip = ClipModel(model, self.tokenizer, image_mean=self.config.image_mean, image_std=self.config.image_std,
                         device=next(model.parameters()).device, source="training EMA")
        return evaluate_clip(clip, n=500)
