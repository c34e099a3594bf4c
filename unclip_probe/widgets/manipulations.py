"""Manipulations explorer (paper §3): variations, an interpolation slider, a text-diff slider."""
from __future__ import annotations

import ipywidgets as W

from .. import validate
from ..backends.base import check_stack
from ..manipulations import interpolate, invert, text_diff, variations
from ..world import WorldConfig, render, sample_scenes
from .live import Live, png, strip


class ManipulationsExplorer(W.Tab):
    """Three tabs over one stack (any: backends/base.py). Variations: the image's inverted x_T (computed once) decoded with
    eta > 0 under new seeds (§3.1). Interpolation: `frames` slerps between two images, decoded once,
    a slider picks one (§3.2). Text diff: slerp towards z_t(dst) - z_t(src) for `thetas`, a slider
    picks theta (§3.3); a checkbox lets the decoder also read the `to` caption. Sliders then only show
    what was sampled: updates are instant.
    """

    def __init__(self, stack, image_a=None, image_b=None, src: str = "a red circle", dst: str = "a blue circle",
                 frames: int = 6, thetas=(0.0, 0.25, 0.5, 0.75, 1.0), steps: int = 25, seed: int = 0,
                 read_dst: bool = False):
        check_stack(stack)  # every check before the first inversion, the slow part
        frames, seed, steps = validate.count(frames, "frames", minimum=2), validate.seed(seed), validate.steps(steps)
        thetas = validate.number_list(thetas, "thetas", minimum=0.0, maximum=1.0, what="angles as fractions")
        src, dst, read_dst = validate.prompt(src, "src"), validate.prompt(dst, "dst"), validate.flag(read_dst, "read_dst")
        image_a = None if image_a is None else validate.images(image_a, "image_a")[0]
        image_b = None if image_b is None else validate.images(image_b, "image_b")[0]
        single = WorldConfig(max_objects=1, note_prob=0.0)
        scenes = sample_scenes(2, seed=seed + 5, config=single)
        self.stack, self.steps, self.seed = stack, steps, seed
        self.a = image_a if image_a is not None else render(scenes[0])
        self.b = image_b if image_b is not None else render(scenes[1])
        # Variations
        self.inverted = invert(stack, self.a, steps=steps)  # (x_T, z_i), once: every variation and text diff starts from it
        self.eta = W.FloatSlider(value=stack.defaults.variations.eta, min=0.0, max=1.0, step=0.05, description="eta")
        self.more = W.Button(description="new variations")
        self.var_image = W.Image(format="png")
        self.var_live = Live(self._variations)
        self._var_seed = seed
        self.eta.observe(self.var_live.trigger, names="value")
        self.more.on_click(self._next_seed)
        var_tab = W.VBox([W.HBox([self.eta, self.more, self.var_live.status]), self.var_image, self.var_live.errors])
        # Interpolation
        self.frames = interpolate(stack, self.a, self.b, n=frames, seed=seed, steps=steps)
        self.t = W.IntSlider(value=0, min=0, max=frames - 1, description="frame")
        self.interp_image = W.Image(format="png")
        self.interp_live = Live(self._interpolation)
        self.t.observe(self.interp_live.trigger, names="value")
        interp_tab = W.VBox([W.HBox([self.t, self.interp_live.status]), self.interp_image, self.interp_live.errors])
        # Text diff
        self.thetas = list(thetas)
        self.src, self.dst = W.Text(value=src, description="from"), W.Text(value=dst, description="to")
        self.recompute = W.Button(description="recompute")
        self.read_dst = W.Checkbox(value=read_dst, description="decoder reads 'to'")
        self.theta = W.SelectionSlider(options=[(f"{t:g}", i) for i, t in enumerate(self.thetas)], value=0,
                                       description="theta")
        self.diff_image = W.Image(format="png")
        self.diff_live = Live(self._text_diff)
        self._diff_images: list | None = None
        self.theta.observe(self.diff_live.trigger, names="value")
        self.recompute.on_click(self._recompute)
        self.read_dst.observe(self._recompute, names="value")
        diff_tab = W.VBox([W.HBox([self.src, self.dst, self.read_dst, self.recompute]),
                           W.HBox([self.theta, self.diff_live.status]), self.diff_image, self.diff_live.errors])
        super().__init__([var_tab, interp_tab, diff_tab])
        for i, title in enumerate(("variations", "interpolation", "text diff")):
            self.set_title(i, title)
        for live in (self.var_live, self.interp_live, self.diff_live):
            live.run()

    def _next_seed(self, _button=None) -> None:
        self._var_seed += 1
        self.var_live.run()

    def _variations(self) -> None:
        imgs = variations(self.stack, self.a, n=1, eta=self.eta.value, seed=self._var_seed, steps=self.steps,
                          inverted=self.inverted)
        self.var_image.value = png(strip([self.a] + imgs))

    def _interpolation(self) -> None:
        self.interp_image.value = png(strip([self.a, self.frames[self.t.value], self.b]))

    def _recompute(self, _event=None) -> None:
        self._diff_images = None
        self.diff_live.run()

    def _text_diff(self) -> None:
        if self._diff_images is None:
            self._diff_images = text_diff(self.stack, self.a, self.src.value, self.dst.value, self.thetas,
                                          seed=self.seed, steps=self.steps, inverted=self.inverted,
                                          caption=self.dst.value if self.read_dst.value else None)
        self.diff_image.value = png(strip([self.a, self._diff_images[self.theta.value]]))
