"""SAE feature explorer (issue 23): pick a feature, slide alpha, see its top images and the steered decodes."""
from __future__ import annotations

from typing import Sequence

import ipywidgets as W
import torch

from .. import validate
from ..backends.base import check_stack
from ..errors import bad_input
from ..probes.sae import _as_pil, _check_sae, activations, check_feature, directions, firing_rates, moved, set_mean
from .live import Live, png, strip


class SAEExplorer(W.VBox):
    """A feature picker and an alpha slider over a sparse autoencoder of the stack's image embeddings.

    Shown per update: the feature's top images over `images`, then two decodes from one fixed
    noise: the set's mean embedding and the chosen image's embedding, each moved by alpha along the
    feature (probes.sae.moved). names: a label per feature for the picker (e.g. its best attribute
    on the world, ``probes.sae_ground_truth.feature_table``); features: which to offer (default:
    the alive ones, most frequent first). Decodes are cached per (feature, alpha).
    """

    def __init__(self, stack, sae, images: Sequence, image=None, features: Sequence[int] | None = None,
                 names: dict[int, str] | None = None, n_top: int = 6, seed: int = 0, steps: int | None = None,
                 alpha_max: float = 2.0):
        stack = check_stack(stack)
        _check_sae(sae, stack)
        images = validate.images(images)
        validate.count(n_top, "n_top"), validate.seed(seed), validate.steps(steps)
        alpha_max = validate.number(alpha_max, "alpha_max", minimum=0.1)
        self.stack, self.sae, self.seed, self.steps = stack, sae, seed, steps
        self.images = [_as_pil(im) for im in images]
        z = stack.encode_image(self.images).float()  # (N, D)
        self.acts = activations(sae, z)  # (N, F)
        fires = firing_rates(self.acts)
        alive = [int(f) for f in fires.argsort(descending=True).tolist() if fires[f] > 0]
        self.features = [check_feature(sae, f, "features") for f in features] if features is not None else alive
        if not self.features:
            raise bad_input("images", "no feature of the SAE fires on these images; pass more images or features=")
        target = z[:1] if image is None else stack.encode_image(validate.images([image], "image")).float()
        self.base = torch.cat([set_mean(z), target])  # (2, D): mean, image
        self.directions = directions(sae)
        self.n_top = min(n_top, len(self.images))
        self._cache: dict[tuple[int, float], list] = {}
        names = names or {}
        self.feature = W.Dropdown(options=[(f"#{f} {names.get(f, '')} (fires on {100 * float(fires[f]):.0f} %)", f)
                                           for f in self.features], description="feature")
        self.alpha = W.FloatSlider(value=min(1.0, alpha_max), min=0.0, max=alpha_max, step=0.25, description="α")
        for c in (self.feature, self.alpha):
            c.add_class("up-control")
        self.top = W.Image(format="png")
        self.image = W.Image(format="png")
        for c in (self.top, self.image):
            c.add_class("up-image")
        self.caption = W.HTML()
        self.live = Live(self._update)
        for c in (self.feature, self.alpha):
            c.observe(self.live.trigger, names="value")
        super().__init__([W.HBox([self.feature, self.alpha, self.live.status]), W.HTML("<small>top images</small>"),
                          self.top, self.caption, self.image, self.live.errors])
        self.live.run()

    def decoded(self, feature: int, alpha: float) -> list:
        """[mean moved, image moved] decoded from one noise (64 px PIL; cached)."""
        key = (feature, round(alpha, 6))
        if key not in self._cache:
            zs = moved(self.base, self.directions[feature], alpha)
            x_T = self.stack.noise(1, self.seed).expand(2, *self.stack.noise_shape)
            self._cache[key] = self.stack.decode(zs, seed=self.seed, x_T=x_T, steps=self.steps)
        return self._cache[key]

    def _update(self) -> None:
        f, alpha = self.feature.value, self.alpha.value
        order = self.acts[:, f].argsort(descending=True)[:self.n_top].tolist()
        self.top.value = png(strip([self.images[i] for i in order]), scale=2)
        self.image.value = png(strip(self.decoded(f, alpha)))
        self.caption.value = (f"<small>feature #{f}: top activation {float(self.acts[order[0], f]):.3f}. "
                              f"Below: the mean embedding (left) and the image (right) moved by α = {alpha:g}</small>")
