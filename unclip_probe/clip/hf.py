"""ClipModel over Hugging Face ``transformers`` CLIP towers, as the real unCLIP repositories ship them.

Kandinsky 2.2's prior folder holds ``image_encoder/`` (CLIPVisionModelWithProjection, ViT-bigG-14)
and ``text_encoder/`` (CLIPTextModelWithProjection); Stable unCLIP's holds ``image_encoder/`` and
a projection-less ``text_encoder/`` (the U-Net's text input); Karlo's holds ``text_encoder/``.
:class:`HFClipModel` gives any of these the interface of :class:`~unclip_probe.clip.model.ClipModel`
(encoders, zero-shot, named hooks, ``run_with_cache``), so the probes run on them unchanged.

Two embeddings per image: ``encode_image`` is unit-norm (zero-shot, probes), ``image_embeds``
the raw projection the real decoders were trained on (paper §2.1 feeds the decoder CLIP's
embedding as CLIP emits it; Kandinsky and Stable unCLIP do not normalise it).

Hook names follow the open_clip towers' (``clip/hooks.py``) where the module exists:
``visual.hook_embed`` (after ``pre_layrnorm``), ``{tower}.blocks.{i}.hook_attn_out`` /
``hook_mlp_out`` / ``hook_resid_post``, ``text.hook_embed`` (token + position embeddings),
``text.hook_ln_final``, ``{tower}.hook_out`` (the raw projection, or the pooled output without
one). Attention patterns are not hooked here: transformers' attention does not expose them
without ``output_attentions``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from unclip_probe.clip import hooks as clip_hooks
from unclip_probe.clip.model import ClipModel, ImageInput, _as_texts, _eval, _open_image
from unclip_probe.device import resolve_device
from unclip_probe.checkpoints import weights_checksum
from unclip_probe.errors import bad_input

LOGIT_SCALE = 100.0  # CLIP's learned temperature saturates at 100; the towers alone do not carry it


class HFClipModel(ClipModel):
    """CLIP towers from ``transformers``: ``vision`` (CLIPVisionModelWithProjection or None), ``text``
    (CLIPTextModelWithProjection, CLIPTextModel or None) and ``tokenizer`` (CLIPTokenizer or None).
    Preprocessing as CLIP's: shortest side resized to ``image_size`` (bicubic), centre crop,
    then ``(x - image_mean) / image_std``. Either tower may be absent; its encoders then say so."""

    def __init__(self, vision: nn.Module | None = None, text: nn.Module | None = None, tokenizer=None, *,
                 image_mean: Sequence[float] = (0.48145466, 0.4578275, 0.40821073),
                 image_std: Sequence[float] = (0.26862954, 0.26130258, 0.27577711), image_size: int = 224,
                 name: str = "hf-clip", device: torch.device | str = "cpu") -> None:
        if vision is None and text is None:
            raise bad_input("vision", "an HFClipModel needs a vision tower, a text tower or both")
        self.device = resolve_device(device)
        towers = {k: v for k, v in (("visual", vision), ("text", text)) if v is not None}
        self.model = nn.ModuleDict(towers).to(self.device).eval()
        self.vision, self.text = vision, text
        self.tokenizer, self.name, self.source = tokenizer, name, name
        self.context_length = int(getattr(tokenizer, "model_max_length", 77)) if tokenizer is not None else 0
        if self.context_length > 10_000:  # tokenizers without a limit report a huge sentinel
            self.context_length = int(text.config.max_position_embeddings) if text is not None else 77
        self.image_size = (int(image_size), int(image_size))
        self._mean = torch.tensor(image_mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(image_std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._text_out = clip_hooks.HookPoint()  # text.hook_out for a tower without a projection
        cfg = (vision or text).config
        self.embed_dim = int(getattr(cfg, "projection_dim", None) or cfg.hidden_size)
        self._checksum: str | None = None

    @classmethod
    def from_folders(cls, *, image_encoder: str | os.PathLike | None = None,
                     text_encoder: str | os.PathLike | None = None, tokenizer: str | os.PathLike | None = None,
                     image_processor: str | os.PathLike | None = None, name: str = "hf-clip",
                     device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> "HFClipModel":
        """Load the towers from local ``save_pretrained`` folders (never a download)."""
        import transformers as tf

        def folder(path, argument: str, what: str) -> Path | None:
            if path is None:
                return None
            path = Path(path)
            if not any((path / f).is_file() for f in ("config.json", "preprocessor_config.json", "vocab.json",
                                                       "tokenizer.json")):
                raise bad_input(argument, f"{str(path)!r} is not a transformers {what} folder "
                                          "(expected a config.json, or a tokenizer's vocab.json / tokenizer.json)")
            return path

        ie = folder(image_encoder, "image_encoder", "CLIP vision")
        te = folder(text_encoder, "text_encoder", "CLIP text")
        tk, ip = folder(tokenizer, "tokenizer", "CLIP tokenizer"), folder(image_processor, "image_processor",
                                                                            "image processor")
        kw = {"local_files_only": True, "torch_dtype": dtype}
        tf.logging.set_verbosity_error()  # a tower read from a whole CLIPModel lists the other tower's keys as unused
        vision = tf.CLIPVisionModelWithProjection.from_pretrained(ie, **kw) if ie else None
        text = None
        if te is not None:
            arch = (tf.AutoConfig.from_pretrained(te, local_files_only=True).architectures or [""])[0]
            # a whole CLIPModel folder (openai/clip-vit-large-patch14's layout) carries the text projection too
            projected = arch in ("CLIPTextModelWithProjection", "CLIPModel")
            cls_ = tf.CLIPTextModelWithProjection if projected else tf.CLIPTextModel
            text = cls_.from_pretrained(te, **kw)
        tok = tf.CLIPTokenizer.from_pretrained(tk, local_files_only=True) if tk else None
        mean, std, size = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711), 224
        if ip is not None:
            proc = tf.CLIPImageProcessor.from_pretrained(ip, local_files_only=True)
            mean, std = tuple(proc.image_mean), tuple(proc.image_std)
            crop = proc.crop_size  # a dict in transformers 4, a SizeDict in 5
            size = int(crop["height"] if not isinstance(crop, (int, float)) else crop)
        elif vision is not None:
            size = int(vision.config.image_size)
        return cls(vision, text, tok, image_mean=mean, image_std=std, image_size=size, name=name, device=device)

    def to(self, device: torch.device | str) -> "HFClipModel":
        device = resolve_device(device)
        if device != self.device:
            self.device = device
            self.model.to(device)
            self._mean, self._std = self._mean.to(device), self._std.to(device)
        return self

    @property
    def checksum(self) -> str:
        """Names these weights (over the tensors, not files); computed once."""
        if self._checksum is None:
            self._checksum = weights_checksum(self.model.state_dict())  # the stages' checksum, over both towers
        return self._checksum

    def __repr__(self) -> str:
        return f"HFClipModel({self.name}, embed_dim={self.embed_dim}, towers={list(self.model)}, device={self.device})"

    # ---------------------------------------------------------------- text
    def _need(self, tower: str, what: str) -> None:
        if tower not in self.model or (tower == "text" and self.tokenizer is None):
            raise bad_input("prompts" if tower == "text" else "images",
                            f"the CLIP {self.name!r} has no {what} here; load it with its "
                            f"{'text_encoder and tokenizer' if tower == 'text' else 'image_encoder'} folder")

    def tokenize(self, texts: str | Sequence[str]) -> Tensor:
        """Token ids (B, context_length), padded; a prompt past the context is an error, never truncated."""
        self._need("text", "text tower")
        texts = _as_texts(texts)
        for t in texts:
            n = len(self.tokenizer(t, verbose=False)["input_ids"])  # with the start and end tokens
            if n > self.context_length:
                raise bad_input("prompts", f"{t[:60]!r} is {n} tokens but {self.name}'s text context is "
                                           f"{self.context_length}; shorten it")
        ids = self.tokenizer(texts, padding="max_length", max_length=self.context_length, truncation=False,
                             return_tensors="pt")["input_ids"]
        return ids.to(self.device)

    @torch.no_grad()
    def text_features(self, texts) -> tuple[Tensor, Tensor, Tensor]:
        """(raw text embedding (B, D), last hidden state (B, L, W), mask (B, L)) in one pass."""
        ids = self.tokenize(texts)
        eot = self.tokenizer.eos_token_id
        # CLIP pads with its end token in some tokenizers: the mask keeps up to the first end token
        first_end = (ids == eot).int().argmax(-1)  # (B,)
        mask = torch.arange(ids.shape[1], device=self.device)[None] <= first_end[:, None]
        with _eval(self.model):
            out = self.text(input_ids=ids)
        emb = getattr(out, "text_embeds", None)
        if emb is None:
            emb = self._text_out(out.pooler_output)
        return emb, out.last_hidden_state, mask

    @torch.no_grad()
    def text_embeds(self, texts: str | Sequence[str]) -> Tensor:
        """Raw projected text embeddings (B, D), as the towers emit them."""
        return self.text_features(texts)[0]

    @torch.no_grad()
    def encode_text(self, texts: str | Sequence[str]) -> Tensor:
        return F.normalize(self.text_embeds(texts), dim=-1)

    @torch.no_grad()
    def encode_text_tokens(self, texts: str | Sequence[str]) -> tuple[Tensor, Tensor]:
        """(last hidden state (B, L, W), mask (B, L) bool): the per-token features a decoder reads."""
        _, hidden, mask = self.text_features(texts)
        return hidden, mask

    @torch.no_grad()
    def encode_text_and_tokens(self, texts: str | Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        emb, hidden, mask = self.text_features(texts)
        return F.normalize(emb, dim=-1), hidden, mask

    # ---------------------------------------------------------------- images
    def preprocess_tensor(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> CLIP input (B, 3, S, S): shortest side to S, centre crop, normalise."""
        S = self.image_size[0]
        H, W = x.shape[-2:]
        scale = S / min(H, W)
        h, w = max(S, round(H * scale)), max(S, round(W * scale))
        x = F.interpolate(x.to(self.device, torch.float32), size=(h, w), mode="bicubic", align_corners=False,
                          antialias=True).clamp(0, 1)
        top, left = (h - S) // 2, (w - S) // 2
        return (x[..., top:top + S, left:left + S] - self._mean) / self._std

    def _image_batch(self, images: ImageInput) -> Tensor:
        if isinstance(images, Tensor):
            return super()._image_batch(images)
        items = [images] if isinstance(images, (Image.Image, str, os.PathLike)) else images
        if not isinstance(items, (list, tuple)) or not items:
            raise bad_input("images", f"expected a PIL image, a path, a list of them or a (B, 3, H, W) tensor, "
                                      f"got {type(images).__name__}")
        out = []
        for it in items:
            it = _open_image(it) if isinstance(it, (str, os.PathLike)) else it
            if not isinstance(it, Image.Image):
                raise bad_input("images", f"list items must be PIL images or paths, got {type(it).__name__}")
            arr = np.asarray(it.convert("RGB"), dtype=np.uint8)
            out.append(self.preprocess_tensor(torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 255))
        return torch.cat(out)

    @torch.no_grad()
    def image_embeds(self, images: ImageInput) -> Tensor:
        """Raw projected image embeddings (B, D): what Kandinsky 2.2 and Stable unCLIP condition on."""
        self._need("visual", "vision tower")
        x = self._image_batch(images).to(next(self.vision.parameters()).dtype)
        with _eval(self.model):
            return self.vision(pixel_values=x).image_embeds.float()

    @torch.no_grad()
    def encode_image(self, images: ImageInput) -> Tensor:
        return F.normalize(self.image_embeds(images), dim=-1)

    def _scale(self) -> Tensor:
        return torch.tensor(LOGIT_SCALE, device=self.device)

    # ---------------------------------------------------------------- hooks
    def _points(self) -> dict[str, clip_hooks.Point]:
        cached = self.__dict__.get("_hook_points")
        if cached is None or cached[0] is not self.model:
            cached = (self.model, hf_hook_points(self.vision, self.text, self._text_out))
            self._hook_points = cached
        return cached[1]


def _layer_points(prefix: str, layers: nn.ModuleList) -> dict[str, clip_hooks.Point]:
    out = {}
    for i, layer in enumerate(layers):
        p = f"{prefix}.blocks.{i}"
        for name, module in ((f"{p}.hook_attn_out", layer.self_attn), (f"{p}.hook_mlp_out", layer.mlp),
                             (f"{p}.hook_resid_post", layer)):
            out[name] = clip_hooks.Point(name, module, "post")
    return out


def hf_hook_points(vision: nn.Module | None, text: nn.Module | None,
                   text_out: nn.Module) -> dict[str, clip_hooks.Point]:
    """Hook names of transformers CLIP towers (see the module docstring) -> Point."""
    P = clip_hooks.Point
    points: dict[str, clip_hooks.Point] = {}
    if vision is not None:
        vm = vision.vision_model
        points["visual.hook_embed"] = P("visual.hook_embed", vm.pre_layrnorm, "post")
        points.update(_layer_points("visual", vm.encoder.layers))
        points["visual.hook_out"] = P("visual.hook_out", vision.visual_projection, "post")
    if text is not None:
        tm = text.text_model
        points["text.hook_embed"] = P("text.hook_embed", tm.embeddings, "post")
        points.update(_layer_points("text", tm.encoder.layers))
        points["text.hook_ln_final"] = P("text.hook_ln_final", tm.final_layer_norm, "post")
        proj = getattr(text, "text_projection", None)
        points["text.hook_out"] = P("text.hook_out", proj if proj is not None else text_out, "post")
    return points
