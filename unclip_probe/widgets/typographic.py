"""Typographic attack explorer (paper §4, Fig. 6): type a word, move and size its note, watch the probabilities."""
from __future__ import annotations

from typing import Sequence

import ipywidgets as W

from .. import validate
from ..backends.base import check_stack
from ..errors import bad_input
from ..probes.typographic import typographic_attack
from ..world import SHAPES, WorldConfig, render, sample_scenes
from .live import Live, figure_png


class TypographicExplorer(W.VBox):
    """A text box for the attack word, sliders for the note's place and size; the probe's figure
    (image, attacked image, what the decoder draws from the attacked embedding, zero-shot bars).

    clip: any ClipModel (default: the stack's). stack: a world stack, needed only for the decoded
    panel. image: PIL or path (default: one world scene); labels: zero-shot classes (default: shapes).
    """

    def __init__(self, stack=None, clip=None, image=None, labels: Sequence[str] = SHAPES, word: str = "star",
                 seed: int = 0, steps: int | None = None):
        if stack is None and clip is None:
            raise bad_input("stack", "TypographicExplorer needs a stack (or at least a clip), e.g. "
                                     "TypographicExplorer(up.load_stack('world', 'checkpoints/world'))")
        if stack is not None:
            check_stack(stack)
        clip = validate.clip(clip if clip is not None else stack.clip, needs=("zero_shot", "tokenize"))
        labels, word = validate.labels(labels), validate.prompt(word, "word")
        seed, steps = validate.seed(seed), validate.steps(steps)
        image = None if image is None else validate.images(image, "image")[0]
        self.steps = steps  # decoder steps of the decoded panel (None: the stack's default)
        self.stack, self.clip = stack, clip
        self.image_in = image if image is not None else render(sample_scenes(
            1, seed=seed + 3, config=WorldConfig(max_objects=1, note_prob=0.0))[0])
        self.labels, self.seed = list(labels), seed
        self.word = W.Text(value=word, description="word", continuous_update=False)
        self.x = W.FloatSlider(value=0.5, min=0.0, max=0.8, step=0.05, description="note x")
        self.y = W.FloatSlider(value=0.04, min=0.0, max=0.8, step=0.05, description="note y")
        self.size = W.FloatSlider(value=0.46, min=0.2, max=1.0, step=0.05, description="note width")
        for c in (self.word, self.x, self.y, self.size):
            c.add_class("up-control")
        self.chart = W.Image(format="png")
        self.chart.add_class("up-image")
        self.live = Live(self._update)
        for c in (self.word, self.x, self.y, self.size):
            c.observe(self.live.trigger, names="value")
        super().__init__([W.HBox([self.word, self.live.status]), W.HBox([self.x, self.y, self.size]), self.chart,
                          self.live.errors])
        self.live.run()

    def box(self) -> tuple[float, float, float, float]:
        """The note's box as fractions of the image; the height keeps a world note's 40:14 shape."""
        w = self.size.value
        x0, y0 = self.x.value, self.y.value
        return (x0, y0, min(1.0, x0 + w), min(1.0, y0 + w * 14 / 40))

    def _update(self) -> None:
        self.result = typographic_attack(self.clip, [self.image_in], self.labels, self.word.value.strip(),
                                         box=self.box(), stack=self.stack, n_decode=1, seed=self.seed,
                                         decode_steps=self.steps)
        self.chart.value = figure_png(self.result.figure())
