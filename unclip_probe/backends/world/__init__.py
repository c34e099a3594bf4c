"""The world stack (docs/design.md §1): this project's own CLIP, priors, decoder and upsampler,
trained on the shape world. ``UnCLIP.from_pretrained(folder)`` or ``load_stack("world", folder)``.

stack: the ``UnCLIP`` class (the stack protocol of ``backends/base.py``); stages: loading each
stage's weights; decode / prior_sampling: sampling as pure functions over the networks.
"""
from unclip_probe.backends.world.stack import UnCLIP, WORLD_DEFAULTS

__all__ = ["UnCLIP", "WORLD_DEFAULTS"]
