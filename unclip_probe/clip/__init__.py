"""CLIP behind one interface (docs/design.md §2): the model wrapper, its named hook points, the world tokenizer.

model: ``ClipModel`` over an open_clip model (the world CLIP or a user's weights file);
hooks: TransformerLens-style hook points on both towers; tokenizer: the world's
word-level tokenizer. ``load_clip`` is the one loader.
"""
from unclip_probe.clip.model import ClipConfig, ClipModel, build_clip_model, load_clip, save_clip, trim_padding

__all__ = ["ClipConfig", "ClipModel", "build_clip_model", "load_clip", "save_clip", "trim_padding"]
