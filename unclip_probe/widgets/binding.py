"""Attribute binding explorer (paper §7): build a two-object prompt, see who binds colour to shape."""
from __future__ import annotations

import ipywidgets as W

from ..errors import ProbeInputError
from ..backends.base import check_stack
from ..probes.binding import SETTINGS, binding_prompt, check_generation, generation_binding, swap_similarities
from ..world import COLORS, SHAPES, Obj, Scene
from .live import Live, png, strip


class BindingExplorer(W.VBox):
    """Dropdowns for two objects and a button: the prompt decoded by (a) unCLIP, (b) the text-only
    decoder and (c) the decoder on the true image embedding (same noise), the oracle's verdict, and
    how the CLIP scores the prompt and its colour-swapped twin against both renders."""

    def __init__(self, stack, seed: int = 0, settings=SETTINGS[:3], steps: int | None = None,
                 prior_steps: int | None = None):
        # steps / prior_steps None: the stack's defaults (for the world stack DPM-Solver++, chosen by the
        # model card's quality-per-cost rule, which also keeps a click fast on 2 CPU cores)
        check_stack(stack)
        check_generation(1, seed, steps, None, 0, settings, prior_steps)
        self.stack, self.seed, self.settings, self.steps, self.prior_steps = stack, seed, settings, steps, prior_steps
        self.stacks = {}  # the other decoders, loaded once
        for _, name, _ in settings:
            if name != "decoder" and name not in self.stacks:
                try:
                    self.stacks[name] = stack.with_decoder(name)
                except ProbeInputError:
                    pass  # generation_binding lists it as skipped
        colors = list(COLORS)
        self.c1 = W.Dropdown(options=colors, value="red", description="object 1", layout=W.Layout(width="180px"))
        self.s1 = W.Dropdown(options=list(SHAPES), value="circle", layout=W.Layout(width="110px"))
        self.c2 = W.Dropdown(options=colors, value="blue", description="object 2", layout=W.Layout(width="180px"))
        self.s2 = W.Dropdown(options=list(SHAPES), value="square", layout=W.Layout(width="110px"))
        self.go = W.Button(description="decode", button_style="primary")
        self.go.add_class("up-run")
        self.image = W.Image(format="png")
        self.image.add_class("up-image")
        self.table = W.HTML()
        self.live = Live(self._update)
        self.go.on_click(lambda _b: self.live.run())
        super().__init__([W.HBox([self.c1, self.s1]), W.HBox([self.c2, self.s2]), W.HBox([self.go, self.live.status]),
                          self.image, self.table, self.live.errors])
        self.live.run()

    def prompt(self) -> str:
        """The probe's own prompt grammar ('a red circle and an orange square')."""
        return binding_prompt(Scene((Obj(self.s1.value, self.c1.value, "large", "left"),
                                     Obj(self.s2.value, self.c2.value, "large", "right"))))

    def _update(self) -> None:
        prompt = self.prompt()
        res = generation_binding(self.stack, [prompt], seed=self.seed, steps=self.steps, stack_seeds=0,
                                 settings=self.settings, stacks=self.stacks, prior_steps=self.prior_steps)
        self.result = res
        self.image.value = png(strip([imgs[0] for imgs in res.meta["images"].values()], size=64), scale=2)
        verdict = res.table.loc["two-object prompts"]
        verdict = verdict[[c for c in ("decoder", "bound", "swapped", "clip_two_way") if c in verdict]]
        sims = swap_similarities(self.stack.clip, prompt)
        self.table.value = (f"<b>{prompt}</b> — left to right: {', '.join(res.meta['images'])}"
                            + verdict.to_html(float_format=lambda v: f"{v:.0f}")
                            + "<br>CLIP cosine, captions × renders:" + sims.to_html(float_format=lambda v: f"{v:.3f}"))
