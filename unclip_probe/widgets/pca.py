"""PCA reconstruction explorer (paper §4, Fig. 7): a slider over k, the decode and what the oracle reads."""
from __future__ import annotations

from typing import Sequence

import ipywidgets as W
import torch.nn.functional as F

from .. import validate
from ..backends.base import check_stack
from ..probes.pca import _checked_ks, at_k, fit_world_pca
from ..world import SceneSpec, detect, render, sample_scenes
from .live import Live, png, strip


class PCAExplorer(W.VBox):
    """Slide k: the image's CLIP embedding cut to its first k principal components, decoded with one
    fixed seed, beside the source; the oracle's verdict per attribute below.

    stack: any stack (backends/base.py). images: PIL images or paths (default: one world scene). PCA is fitted on
    `n_fit` world scenes once, when the explorer is built; decodes are cached per k.
    """

    def __init__(self, stack, images: Sequence | None = None, n_fit: int = 1000, seed: int = 0,
                 ks: Sequence[int] | None = None, steps: int | None = None):
        D = check_stack(stack).embed_dim  # every check before the PCA fit, the slow part
        ks = _checked_ks(ks, D)
        validate.count(n_fit, "n_fit", minimum=2), validate.seed(seed), validate.steps(steps)
        images = None if images is None else validate.images(images)
        self.stack, self.seed, self.steps = stack, seed, steps
        self.sources = list(images) if images is not None else [render(s) for s in sample_scenes(1, seed=seed + 1)]
        ks = sorted(set(ks))
        self.mean, self.components, self.ratio = fit_world_pca(stack, n_fit, seed)
        self.z = stack.encode_image(self.sources)  # (B, D); errors name `images`
        self.refs = [SceneSpec.from_scene(detect(im)) for im in self.sources] if stack.name == "world" else []
        self._cache: dict[int, list] = {}
        self.k = W.SelectionSlider(options=[(str(k), k) for k in ks] + [(f"all ({D})", D)], value=ks[len(ks) // 2],
                                   description="k", continuous_update=True)
        self.k.add_class("up-k-slider")
        self.image = W.Image(format="png")
        self.image.add_class("up-image")
        self.verdict = W.HTML()
        self.live = Live(self._update)
        self.k.observe(self.live.trigger, names="value")
        super().__init__([W.HBox([self.k, self.live.status]), self.image, self.verdict, self.live.errors])
        self.live.run()

    def decoded(self, k: int) -> list:
        """The decodes (64 px PIL) of every source at k components (cached)."""
        if k not in self._cache:
            self._cache[k] = self.stack.decode(at_k(self.z, self.mean, self.components, k), seed=self.seed,
                                              steps=self.steps)
        return self._cache[k]

    def _update(self) -> None:
        k = self.k.value
        dec = self.decoded(k)
        self.image.value = png(strip([im for pair in zip(dec, self.sources) for im in pair]))
        rows = []
        if self.refs:  # the world: the oracle's verdict per attribute
            for ref, im in zip(self.refs, dec):
                s = ref.score(detect(im))
                rows.append(" ".join(f"{a} {'✓' if s[a] else '✗'}" for a in ("count", "shape", "color", "size", "position")))
        else:  # any other stack: how close CLIP finds the decode to its source
            cos = (self.stack.clip.encode_image(dec) * F.normalize(self.z.float(), dim=-1)).sum(-1)
            rows = [f"CLIP cosine to the source {c:.3f}" for c in cos.tolist()]
        var = float(self.ratio[:k].sum())
        self.verdict.value = (f"<small>k = {k}: {100 * var:.1f} % of the variance. Decode (left) vs source (right), "
                              + ("oracle: " if self.refs else "") + " | ".join(rows) + "</small>")
