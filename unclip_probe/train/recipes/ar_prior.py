"""Recipe: the autoregressive prior (paper §2.2) over PCA codes of world-CLIP image embeddings.

Before training, PCA is fitted on the image embeddings of `fit_scenes` training
scenes and the number of components is the smallest that keeps >= 99 % of the
variance (the paper keeps 319 of 1,024); each is quantised into K buckets.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ...backends.world.stages import clip_matches
from ...checkpoints import init_from_file, load_config
from ...clip import load_clip, trim_padding
from ...errors import ProbeInputError
from ...models.ar_prior import ARPrior, ARPriorConfig
from ...world.spec import WorldConfig
from ..data import BatchRenderer
from ..trainer import rank_slice


@dataclass
class ARPriorRecipe:
    clip_dir: str = "checkpoints/world"
    batch_size: int = 64
    data_seed: int = 4
    fit_scenes: int = 8192
    variance: float = 0.99
    # The paper quantises into 1,024 buckets; on our 32 components 64 buckets already reconstruct
    # embeddings at cosine 0.9954 (256: 0.9957; an ad-hoc check on 300 scenes), and 4x fewer classes
    # learn in a CPU budget.
    buckets: int = 64
    workers: int | None = None
    world: WorldConfig = WorldConfig()
    name: str = "ar_prior"
    init_from: str | None = None  # start from these weights and their codebook (a continued training)
    captions: str = "grammar"  # "wide": world.captions.wide_caption's wider wordings (issue 24)

    def __post_init__(self):
        self.clip = load_clip(self.clip_dir)
        self.renderer = BatchRenderer(self.data_seed, self.batch_size, (64,), self.world, "train", self.workers,
                                     captions=self.captions)
        if self.init_from:
            self._continue_from(Path(self.init_from))
        else:
            self._fit()

    def _continue_from(self, path: Path) -> None:
        """The checkpoint's config (its components and buckets) and all its tensors, codebook included."""
        cfg_path = path.with_suffix(".json")
        if not cfg_path.is_file():
            raise ProbeInputError(f"init_from: an AR prior continues from its weights and the config beside them "
                                  f"({cfg_path.name}), which is missing next to {str(path)!r}")
        cfg = load_config(ARPriorConfig, cfg_path)
        if cfg.clip_checksum and not clip_matches(cfg.clip_checksum, self.clip.checksum or "",
                                                  Path(self.clip_dir) / "clip.safetensors"):
            raise ProbeInputError(f"init_from: {str(path)!r} was trained against CLIP {cfg.clip_checksum}, not the "
                                  f"--clip given ({self.clip.checksum})")
        self.config = cfg
        self._fitted = init_from_file(ARPrior(cfg), path)

    def _fit(self) -> None:
        """PCA and buckets fitted on `fit_scenes` training scenes (the module docstring)."""
        D = self.clip.embed_dim
        fit = BatchRenderer(self.data_seed + 1000, self.fit_scenes, (64,), self.world, "train", 1)
        imgs, caps, _ = fit.get(0, 0, self.fit_scenes)
        with torch.no_grad():
            z_i = torch.cat([self.clip.encode_image(torch.from_numpy(imgs[64][i:i + 512]).float() / 255.0)
                             for i in range(0, self.fit_scenes, 512)])
            z_t = torch.cat([self.clip.encode_text(caps[i:i + 512]) for i in range(0, self.fit_scenes, 512)])
        S = torch.linalg.svdvals(z_i - z_i.mean(0)) ** 2
        k = int((torch.cumsum(S, 0) / S.sum() < self.variance).sum()) + 1
        W = int(self.clip.model.text_projection.shape[0])
        cfg = ARPriorConfig(embed_dim=D, text_dim=W, max_text_len=self.clip.context_length, components=k,
                            buckets=self.buckets, clip_checksum=self.clip.checksum or "")
        self._fitted = ARPrior(cfg)
        ev = self._fitted.fit_codebook(z_i, z_t)
        self.config = replace(cfg, explained_variance=round(ev, 5))

    def build_model(self):
        model = ARPrior(self.config)
        model.load_state_dict(self._fitted.state_dict())  # same init seed path is not needed: copy everything
        return model

    def model_config(self) -> ARPriorConfig:
        return self.config

    @torch.no_grad()
    def batch(self, step: int, rank: int, world_size: int, device):
        sl = rank_slice(self.batch_size, rank, world_size)
        imgs, caps, _ = self.renderer.get(step, sl.start, sl.stop)
        clip, fitted = self.clip.to(device), self._fitted.to(device)  # frozen; they run where the prior trains
        z_i = clip.encode_image(torch.from_numpy(imgs[64]).to(device).float() / 255.0)
        z_t, text, mask = clip.encode_text_and_tokens(caps)  # one text pass
        text, mask = trim_padding(text, mask)  # as the sampler does
        codes = fitted.encode(z_i)  # (B, k)
        dot = fitted.dot_bucket((z_i * z_t).sum(-1))  # (B,)
        return codes, dot, z_t, text, mask

    def loss(self, model, batch, generator):
        codes, dot, z_t, text, mask = batch
        g = generator
        keep = (torch.rand(codes.shape[0], generator=g, device=g.device) >= self.config.text_dropout).to(codes.device)
        logits = model(codes, dot, z_t * keep[:, None].to(z_t.dtype), text, mask & keep[:, None])  # (B, k, K)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))
        return loss, {}
