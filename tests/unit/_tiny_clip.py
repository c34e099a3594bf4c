"""Tiny random transformers CLIP towers and an offline CLIP tokenizer, saved in the layouts the real
unCLIP repositories use (``image_encoder/``, ``text_encoder/``, ``tokenizer/``, ``image_processor/``).

The tokenizer's vocabulary is every lower-case letter, digit and a few marks, each alone and as
a word end, with no merges: any world prompt tokenizes (one token per character), offline.
"""
import json
import string
from pathlib import Path

import torch
import transformers as tf

CHARS = string.ascii_lowercase + string.digits + ".,'\"!?-:"


def write_tokenizer(folder: Path, context: int = 32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in CHARS:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = tf.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=context)
    tok.save_pretrained(folder)
    return folder


def vision_config(dim: int = 16, image_size: int = 32, width: int = 32, layers: int = 2) -> tf.CLIPVisionConfig:
    return tf.CLIPVisionConfig(hidden_size=width, intermediate_size=37, num_hidden_layers=layers, num_attention_heads=4,
                               image_size=image_size, patch_size=8, projection_dim=dim)


def text_config(dim: int = 16, width: int = 32, layers: int = 2, context: int = 32) -> tf.CLIPTextConfig:
    return tf.CLIPTextConfig(vocab_size=2 + 2 * len(CHARS), hidden_size=width, intermediate_size=37,
                             num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=context,
                             projection_dim=dim, bos_token_id=0, eos_token_id=1, pad_token_id=1)


def write_clip_towers(root: Path, dim: int = 16, image_size: int = 32, text_with_projection: bool = True,
                      seed: int = 0, context: int = 32) -> dict[str, Path]:
    """image_encoder/, text_encoder/, tokenizer/, image_processor/ under root; returns their paths."""
    torch.manual_seed(seed)
    out = {"image_encoder": root / "image_encoder", "text_encoder": root / "text_encoder",
           "tokenizer": root / "tokenizer", "image_processor": root / "image_processor"}
    tf.CLIPVisionModelWithProjection(vision_config(dim, image_size)).save_pretrained(out["image_encoder"])
    text_cls = tf.CLIPTextModelWithProjection if text_with_projection else tf.CLIPTextModel
    text_cls(text_config(dim, context=context)).save_pretrained(out["text_encoder"])
    write_tokenizer(out["tokenizer"], context)
    tf.CLIPImageProcessor(size={"shortest_edge": image_size},
                          crop_size={"height": image_size, "width": image_size}).save_pretrained(out["image_processor"])
    return out
