"""open_clip loading (world checkpoints, any open_clip name + tag or local file) and encoders.

A world checkpoint folder holds ``clip.safetensors`` (the open_clip module's
state_dict, keys exactly as open_clip names them) and ``clip.json`` (a
:class:`ClipConfig`). Nothing here ever downloads: pretrained tags are looked
up in the local cache only (docs/design.md: no machine this runs on has a network).

Public: ClipConfig, build_clip_model, save_clip, load_clip, resolve_device, ClipModel.
Hook points live in :mod:`unclip_probe.clip.hooks`.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Iterator, Sequence, Union

import numpy as np
import open_clip
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

from unclip_probe import checkpoints as ckpt
from unclip_probe.clip import hooks as clip_hooks
from unclip_probe.device import resolve_device  # noqa: F401  (re-exported)
from unclip_probe.errors import ProbeInputError, bad_input
from unclip_probe.validate import renamed
from unclip_probe.clip.tokenizer import WorldTokenizer

ImageInput = Union[Image.Image, str, os.PathLike, Tensor, Sequence[Union[Image.Image, str, os.PathLike]]]
WEIGHTS, CONFIG = "clip.safetensors", "clip.json"


@dataclass(frozen=True)
class ClipConfig:
    """A world CLIP: an open_clip model config dict (schema of open_clip's model_configs JSON:
    ``embed_dim``, ``vision_cfg``, ``text_cfg``) plus the word tokenizer and preprocessing."""

    name: str
    open_clip_config: dict
    tokenizer_words: tuple[str, ...]
    context_length: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise bad_input("name", f"{self.name!r} must be letters, digits, '.', '_' or '-' (it names a file)")
        missing = {"embed_dim", "vision_cfg", "text_cfg"} - set(self.open_clip_config)
        if missing:
            raise bad_input("open_clip_config", f"missing key(s) {sorted(missing)}")
        text = self.open_clip_config["text_cfg"]
        vocab = self.tokenizer().vocab_size
        if text.get("vocab_size") != vocab or text.get("context_length") != self.context_length:
            raise bad_input("open_clip_config", f"text_cfg needs vocab_size={vocab} and context_length="
                                                f"{self.context_length} to match the tokenizer, got "
                                                f"{text.get('vocab_size')} and {text.get('context_length')}")

    def tokenizer(self) -> WorldTokenizer:
        return WorldTokenizer(self.tokenizer_words, self.context_length)


def trim_padding(text: Tensor, text_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Token features (B, L, W) and mask (B, L) cut after the last position any caption uses: trailing
    padding carries nothing, and the priors train and sample on the shorter sequence."""
    used = text_mask.bool().any(0)  # (L,)
    L = int(used.nonzero().max()) + 1 if used.any() else 1
    return text[:, :L], text_mask[:, :L].bool()


# ----------------------------------------------------------------------------- building
_REGISTERED: dict[str, str] = {}  # name -> JSON text of the config registered with open_clip
_CONFIG_DIR: list[Path] = []


def _register(cfg: ClipConfig) -> None:
    """Make ``open_clip.create_model(cfg.name)`` build this architecture (via a temp JSON file)."""
    text = json.dumps(cfg.open_clip_config, sort_keys=True)
    if _REGISTERED.get(cfg.name) == text:
        return
    if cfg.name not in _REGISTERED and cfg.name in open_clip.list_models():
        raise bad_input("name", f"{cfg.name!r} is an open_clip built-in model name; pick another name")
    if not _CONFIG_DIR:
        _CONFIG_DIR.append(Path(tempfile.mkdtemp(prefix="unclip-probe-configs-")))
        atexit.register(shutil.rmtree, _CONFIG_DIR[0], True)
    folder = _CONFIG_DIR[0] / hashlib.sha256(text.encode()).hexdigest()[:12]  # one file per version
    folder.mkdir(exist_ok=True)
    (folder / f"{cfg.name}.json").write_text(text)
    open_clip.add_model_config(folder / f"{cfg.name}.json")
    _REGISTERED[cfg.name] = text


class _DropRandomInitNotice(logging.Filter):
    # create_model(pretrained=None) logs "initialized randomly"; we load weights right after.
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextmanager
def _offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 and no random-init notice for the duration (restores both)."""
    old, flt = os.environ.get("HF_HUB_OFFLINE"), _DropRandomInitNotice()
    os.environ["HF_HUB_OFFLINE"] = "1"
    logging.getLogger().addFilter(flt)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(flt)
        if old is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def check_open_clip_config(config: dict, source: str) -> None:
    """Refuse keys open_clip's CLIP does not take, at any level, naming ``source`` and the key
    (open_clip itself would fail with ``__init__() got an unexpected keyword argument``)."""
    import dataclasses
    import inspect

    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    top = [p for p in inspect.signature(CLIP.__init__).parameters if p != "self"] + ["custom_text"]
    levels = [("open_clip_config", config, top)]
    for key, cls in (("vision_cfg", CLIPVisionCfg), ("text_cfg", CLIPTextCfg)):
        if isinstance(config.get(key), dict):
            levels.append((f"open_clip_config.{key}", config[key], [f.name for f in dataclasses.fields(cls)]))
    for where, part, valid in levels:
        unknown = sorted(set(part) - set(valid))
        if unknown:
            close = get_close_matches(unknown[0], valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise bad_input(f"{source} ({where})", f"unknown key(s) {', '.join(map(repr, unknown))} for open_clip"
                                                   f"{hint}; valid keys are {', '.join(valid)}")


def build_clip_model(cfg: ClipConfig) -> nn.Module:
    """A randomly initialised open_clip CLIP for ``cfg`` (registered with open_clip under ``cfg.name``)."""
    _register(cfg)
    with _offline():
        model = open_clip.create_model(cfg.name, pretrained=None, pretrained_text=False)
    size = model.visual.image_size
    open_clip.set_model_preprocess_cfg(model, {**getattr(model.visual, "preprocess_cfg", {}), "size": size,
                                               "mean": tuple(cfg.image_mean), "std": tuple(cfg.image_std)})
    return model


def save_clip(model: nn.Module, cfg: ClipConfig, folder: str | os.PathLike) -> str:
    """Write a world checkpoint (``clip.safetensors`` + ``clip.json``) to ``folder``; returns the
    weights' checksum. ``model`` is the open_clip module (or a ClipModel)."""
    model = getattr(model, "model", model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checksum = ckpt.save_weights(model.state_dict(), folder / WEIGHTS, metadata={"name": cfg.name})
    ckpt.save_config(cfg, folder / CONFIG)
    return checksum


# ----------------------------------------------------------------------------- loading
def _read_state(path: Path) -> dict[str, Tensor]:
    """A state_dict from .safetensors, or .pt/.pth/.bin via torch.load(weights_only=True) (never pickle code)."""
    if not path.is_file():
        raise bad_input("pretrained", f"weights file {str(path)!r} not found")
    if path.suffix == ".safetensors":
        state = ckpt.load_weights(path)
    elif path.suffix in (".pt", ".pth", ".bin"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise bad_input(str(path), f"cannot be read with torch.load(weights_only=True) ({type(e).__name__}); "
                                       "convert it to .safetensors") from None
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict):
            raise bad_input(str(path), "does not hold a state_dict")
    else:
        raise bad_input("pretrained", f"{str(path)!r} must end in .safetensors, .pt, .pth or .bin")
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _cached_tag_file(name: str, tag: str, pcfg: dict) -> Path | None:
    """The local file of a pretrained tag, looked up in the caches only; None when not cached."""
    if "file" in pcfg:
        return Path(pcfg["file"]) if Path(pcfg["file"]).is_file() else None
    if pcfg.get("hf_hub"):
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            return None
        repo, filename = os.path.split(pcfg["hf_hub"])
        filename = filename or "open_clip_pytorch_model.bin"
        safe = ("open_clip_model.safetensors" if filename == "open_clip_pytorch_model.bin"
                else filename[:-4] + ".safetensors" if filename.endswith((".bin", ".pth")) else None)
        for fname in [f for f in (safe, filename) if f]:  # safetensors first, like open_clip
            try:  # local_files_only: never a request, even if HF_HUB_OFFLINE was read at import time
                return Path(hf_hub_download(repo, fname, local_files_only=True))
            except Exception:
                continue
    if pcfg.get("url"):
        local = Path("~/.cache/clip").expanduser() / os.path.basename(pcfg["url"])
        return local if local.is_file() else None
    return None


def load_clip(source: str | os.PathLike, pretrained: str | os.PathLike | None = None, *,
              device: str | torch.device = "cpu") -> "ClipModel":
    """Load a world checkpoint folder, a transformers CLIP folder (a whole ``CLIPModel`` as
    ``openai/clip-vit-large-patch14`` ships it, or an unCLIP repository's ``image_encoder/`` +
    ``text_encoder/`` towers), or an open_clip architecture by name with ``pretrained`` = a local
    weights file, a locally cached pretrained tag, or None (random init).

    A local file is loaded strictly into ``source``'s architecture; OpenAI weights need the
    ``-quickgelu`` name (e.g. ``"ViT-B-32-quickgelu"``). ``device``: "cpu", "cuda[:N]" or "auto"."""
    dev = resolve_device(device)
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        if pretrained is not None:
            raise bad_input("pretrained", "only applies to open_clip model names, not to a checkpoint folder")
        folder = Path(source)
        if not (folder / CONFIG).is_file() and _transformers_layout(folder):
            from unclip_probe.clip.hf import HFClipModel

            return HFClipModel.from_folders(**_transformers_layout(folder), name=folder.name, device=dev)
        ckpt.require_files(folder, [CONFIG, WEIGHTS])
        try:
            cfg = ckpt.load_config(ClipConfig, folder / CONFIG)
        except ProbeInputError as e:  # ClipConfig's own checks name a field, not the file: add it
            if str(folder / CONFIG) in str(e):
                raise
            raise bad_input(str(folder / CONFIG), str(e)) from None
        check_open_clip_config(cfg.open_clip_config, str(folder / CONFIG))
        state, checksum = ckpt.load_checked(folder / WEIGHTS, warn_unrecorded=True)  # refuses a damaged file
        model = build_clip_model(cfg)
        ckpt.load_state_into(model, state, source=str(folder / WEIGHTS))
        return ClipModel(model, cfg.tokenizer(), image_mean=cfg.image_mean, image_std=cfg.image_std,
                         device=dev, source=f"world checkpoint {folder}", checksum=checksum)
    models = open_clip.list_models()
    if not isinstance(source, str) or source not in models:
        close = get_close_matches(str(source), models, n=5, cutoff=0.5)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise bad_input("source", f"{str(source)!r} is neither a checkpoint folder nor an open_clip model name"
                                  f"{hint} (see open_clip.list_models())")
    name, tags = source, open_clip.list_pretrained_tags_by_model(source)
    pcfg: dict = {}
    if pretrained is None:
        path, desc = None, f"{name} (randomly initialised, no pretrained weights)"
    elif (isinstance(pretrained, os.PathLike) or Path(pretrained).is_file() or Path(pretrained).suffix
          or os.sep in pretrained):
        path, desc = Path(pretrained), f"{name} with weights from {pretrained}"
    else:
        pcfg = open_clip.get_pretrained_cfg(name, pretrained)
        if not pcfg:
            known = ", ".join(tags) if tags else "none"
            raise bad_input("pretrained", f"{pretrained!r} is not a pretrained tag of {name} (known tags: {known}) "
                                          "nor a weights file")
        with _offline():
            path = _cached_tag_file(name, pretrained, pcfg)
        if path is None:
            raise bad_input("pretrained", f"weights for {name}/{pretrained} are not on this machine and cannot be "
                                          f"downloaded here; pass a local file with load_clip({name!r}, "
                                          "pretrained='/path/to/weights.safetensors')")
        desc = f"{name} with pretrained weights {pretrained!r} ({path})"
    state = _read_state(path) if path is not None else None
    with _offline():
        model = open_clip.create_model(name, pretrained=None, pretrained_text=False,
                                       force_quick_gelu=bool(pcfg.get("quick_gelu", False)))
        try:
            tokenizer = open_clip.get_tokenizer(name)
        except Exception as e:
            raise bad_input("source", f"the tokenizer of {name} is not on this machine ({type(e).__name__})") from None
    if state is not None:
        ckpt.load_state_into(model, state, source=str(path))
    pp = open_clip.get_model_preprocess_cfg(model)
    return ClipModel(model, tokenizer, image_mean=pcfg.get("mean", pp.get("mean", open_clip.OPENAI_DATASET_MEAN)),
                     image_std=pcfg.get("std", pp.get("std", open_clip.OPENAI_DATASET_STD)),
                     device=dev, source=desc, checksum=None)


def _transformers_layout(folder: Path) -> dict[str, Path]:
    """The towers of a transformers CLIP folder: a whole CLIPModel (``openai/clip-vit-large-patch14``'s
    layout: config.json, weights, tokenizer and preprocessor files together), or an unCLIP
    repository's ``image_encoder/``, ``text_encoder/``, ``tokenizer/``, ``image_processor/`` (or
    ``feature_extractor/``) subfolders; {} for neither."""
    config = folder / "config.json"
    if config.is_file() and '"CLIPModel"' in config.read_text(encoding="utf-8", errors="replace"):
        return {k: folder for k in ("image_encoder", "text_encoder", "tokenizer", "image_processor")}
    if not (folder / "image_encoder").is_dir() and not (folder / "text_encoder").is_dir():
        return {}
    parts = {k: folder / k for k in ("image_encoder", "text_encoder", "tokenizer") if (folder / k).is_dir()}
    processor = next((folder / k for k in ("image_processor", "feature_extractor") if (folder / k).is_dir()), None)
    return {**parts, **({"image_processor": processor} if processor is not None else {})}


# ----------------------------------------------------------------------------- the wrapper
def _as_texts(texts: str | Sequence[str]) -> list[str]:
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
        raise bad_input("texts", "expected a string or a non-empty list of strings")
    return list(texts)


def _pil_to_tensor(img: Image.Image, converted: list[str]) -> Tensor:
    if img.mode != "RGB":
        converted.append(img.mode)
        img = img.convert("RGB")
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255  # (3, H, W)


def _open_image(path: str | os.PathLike) -> Image.Image:
    if not Path(path).is_file():
        raise bad_input("images", f"{str(path)!r} does not exist (or is not a file)")
    try:
        with Image.open(path) as img:
            img.load()
            return img
    except (UnidentifiedImageError, OSError) as e:
        raise bad_input("images", f"{str(path)!r} is not an image PIL can read ({type(e).__name__})") from None


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    # eval mode for the call, then back: a trainer may be holding the same module in train mode
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class ClipModel:
    """An open_clip CLIP with its tokenizer and preprocessing; all encoders return L2-normalised
    embeddings (B, D) under ``torch.no_grad`` in eval mode."""

    def __init__(self, model: nn.Module, tokenizer: Any, *, image_mean: Sequence[float],
                 image_std: Sequence[float], device: torch.device | str = "cpu", source: str = "",
                 checksum: str | None = None) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.context_length: int = int(getattr(tokenizer, "context_length", None) or model.context_length)
        size = model.visual.image_size
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        self.source, self.checksum = source, checksum
        self._mean = torch.tensor(image_mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(image_std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._text_out = clip_hooks.HookPoint()  # text.hook_out: CLIP.encode_text has no module at its output
        dim = getattr(model.visual, "output_dim", None)
        self.embed_dim: int = int(dim) if dim else int(self.encode_text("a").shape[-1])

    def to(self, device: torch.device | str) -> "ClipModel":
        """Move the network and its normalisation to ``device`` (in place); returns self.

        Cheap when already there, so training recipes call it on every batch."""
        device = resolve_device(device)
        if device == self.device:
            return self
        self.device = device
        self.model.to(self.device)
        self._mean, self._std = self._mean.to(self.device), self._std.to(self.device)
        return self

    def __repr__(self) -> str:
        return f"ClipModel({self.source}, embed_dim={self.embed_dim}, image_size={self.image_size}, device={self.device})"

    # ---------------------------------------------------------------- text
    def tokenize(self, texts: str | Sequence[str]) -> Tensor:
        """Token ids (B, context_length); a text longer than the context is an error, never truncated."""
        texts = _as_texts(texts)
        tok = self.tokenizer
        if not isinstance(tok, WorldTokenizer):
            for t in texts:  # count before open_clip's tokenizer silently truncates
                if hasattr(tok, "encode"):
                    n = len(tok.encode(t)) + 2  # + sot, eot
                elif hasattr(tok, "tokenizer"):
                    n = len(tok.tokenizer(t)["input_ids"])  # Hugging Face: specials included
                else:
                    continue
                if n > self.context_length:
                    raise bad_input("texts", f"{t[:60]!r} is {n} tokens but the context length is "
                                             f"{self.context_length}; shorten it")
        return tok(texts).to(self.device)

    def _text(self, tokens: Tensor) -> Tensor:
        return F.normalize(self._text_out(self.model.encode_text(tokens)), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: str | Sequence[str]) -> Tensor:
        """Texts -> L2-normalised embeddings (B, D)."""
        with _eval(self.model):
            return self._text(self.tokenize(texts))

    @torch.no_grad()
    def encode_text_tokens(self, texts: str | Sequence[str]) -> tuple[Tensor, Tensor]:
        """Per-token features of the text tower after ln_final, before projection: (B, L, W), and
        the mask of real tokens sot..eot inclusive: BoolTensor (B, L)."""
        return self.encode_text_and_tokens(texts)[1:]

    @torch.no_grad()
    def encode_text_and_tokens(self, texts: str | Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        """encode_text and encode_text_tokens from one pass of the text tower: the embeddings (B, D),
        the per-token features (B, L, W) and their mask (B, L); the prior and decoder need all three."""
        tokens = self.tokenize(texts)
        cache: dict[str, Tensor] = {}
        if "text.hook_ln_final" not in self._points():
            raise bad_input("texts", f"per-token features are not available for {self.source}")
        with _eval(self.model), self.hooks(clip_hooks.caching_pairs(["text.hook_ln_final"], cache)):
            z = self._text(tokens)
        L = tokens.shape[1]
        if getattr(self.model, "text_pool_type", "argmax") == "argmax":  # eot is the highest id
            mask = torch.arange(L, device=tokens.device)[None] <= tokens.argmax(-1, keepdim=True)
        else:
            mask = tokens != 0
        return z, cache["text.hook_ln_final"], mask

    # ---------------------------------------------------------------- images
    def preprocess_tensor(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, h, w) model input: resize the short side (bicubic,
        antialiased), centre-crop to ``image_size``, normalise. Differentiable."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise bad_input("images", f"expected a float tensor of shape (B, 3, H, W), got {tuple(x.shape)}")
        x = x.to(self.device, torch.float32)
        (H, W), (h, w) = x.shape[-2:], self.image_size
        if (H, W) != (h, w):
            s = max(h / H, w / W)
            rh, rw = max(h, round(H * s)), max(w, round(W * s))
            x = F.interpolate(x, size=(rh, rw), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
            top, left = (rh - h) // 2, (rw - w) // 2
            x = x[..., top:top + h, left:left + w]  # (B, 3, h, w)
        return (x - self._mean) / self._std

    def _image_batch(self, images: ImageInput) -> Tensor:
        """Any accepted image input -> preprocessed (B, 3, h, w)."""
        if isinstance(images, Tensor):
            x = images[None] if images.dim() == 3 else images
            if not x.is_floating_point() or x.dim() != 4 or x.shape[1] != 3:
                raise bad_input("images", f"expected a float tensor (B, 3, H, W) in [0, 1], got "
                                          f"{x.dtype} {tuple(x.shape)}")
            if x.numel() and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
                raise bad_input("images", f"tensor values must be in [0, 1] (got {x.min():.3g}..{x.max():.3g}); "
                                          "pass raw pixels / 255, not normalised ones")
            return self.preprocess_tensor(x)
        items = [images] if isinstance(images, (Image.Image, str, os.PathLike)) else images
        if not isinstance(items, (list, tuple)) or not items:
            raise bad_input("images", f"expected a PIL image, a path, a list of them or a (B, 3, H, W) tensor, "
                                      f"got {type(images).__name__}")
        converted: list[str] = []
        pixels = []
        for it in items:
            if isinstance(it, (str, os.PathLike)):
                it = _open_image(it)
            if not isinstance(it, Image.Image):
                raise bad_input("images", f"list items must be PIL images or paths, got {type(it).__name__}")
            pixels.append(_pil_to_tensor(it, converted))  # (3, H_i, W_i)
        if converted:
            warnings.warn(f"images: converted {len(converted)} image(s) of mode {sorted(set(converted))} to RGB",
                          stacklevel=3)
        if len({p.shape for p in pixels}) == 1:  # one batched resize when all sizes agree
            return self.preprocess_tensor(torch.stack(pixels))
        return torch.cat([self.preprocess_tensor(p[None]) for p in pixels])

    @torch.no_grad()
    def encode_image(self, images: ImageInput) -> Tensor:
        """PIL image(s), path(s) or a float tensor (B, 3, H, W) in [0, 1] -> L2-normalised (B, D)."""
        x = self._image_batch(images)
        with _eval(self.model):
            return F.normalize(self.model.encode_image(x), dim=-1)

    # ---------------------------------------------------------------- both
    def _scale(self) -> Tensor:
        return self.model.logit_scale.exp()

    @torch.no_grad()
    def logits(self, images: ImageInput, texts: str | Sequence[str]) -> Tensor:
        """``logit_scale * z_img @ z_txt^T`` (+ logit_bias if the model has one): (B_img, B_txt)."""
        out = self._scale() * self.encode_image(images) @ self.encode_text(texts).T
        bias = getattr(self.model, "logit_bias", None)
        return out if bias is None else out + bias

    @torch.no_grad()
    def zero_shot(self, images: ImageInput, labels: Sequence[str],
                  templates: Sequence[str] = ("a {}",)) -> pd.DataFrame:
        """Softmax over ``labels`` per image (rows = images, columns = labels, plus ``prediction``).
        Each label's embedding is the renormalised mean over ``templates`` (CLIP paper recipe)."""
        if isinstance(labels, str) or not labels or not all(isinstance(x, str) for x in labels):
            raise bad_input("labels", "expected a non-empty list of label strings")
        if len(set(labels)) != len(labels):
            raise bad_input("labels", "contains duplicates; each label must appear once")
        if isinstance(templates, str) or not templates or not all("{}" in t for t in templates):
            raise bad_input("templates", "expected a non-empty list of strings each containing '{}'")
        n_t = len(templates)
        with renamed(texts="labels"):  # a label the tokenizer cannot read is the caller's `labels`
            z = self.encode_text([t.format(label) for label in labels for t in templates])  # (n_labels * n_t, D)
        z = F.normalize(z.view(len(labels), n_t, -1).mean(1), dim=-1)  # (n_labels, D)
        probs = (self._scale() * self.encode_image(images) @ z.T).softmax(-1).cpu().numpy()  # (B, n_labels)
        table = pd.DataFrame(probs, columns=list(labels))
        table["prediction"] = [labels[i] for i in probs.argmax(1)]
        return table

    # ---------------------------------------------------------------- hooks
    def _points(self) -> dict[str, clip_hooks.Point]:
        """name -> Point, built on first use and kept: ``to()`` moves modules in place, so the map
        stays valid; it is rebuilt only if ``self.model`` is replaced (docs/design.md §8)."""
        cached = self.__dict__.get("_hook_points")
        if cached is None or cached[0] is not self.model:
            cached = (self.model, clip_hooks.hook_points(self.model, self._text_out))
            self._hook_points = cached
        return cached[1]

    def hook_names(self) -> list[str]:
        """Every hook name of this model (see unclip_probe.clip.hooks for names and shapes)."""
        return list(self._points())

    def hooks(self, pairs: Sequence[tuple[str, clip_hooks.HookFn]]):
        """``with clip.hooks([(name, fn)]):`` attach hooks, each called ``fn(tensor, hook=point)``
        with ``point.name`` the hook name (TransformerLens' convention, docs/design.md §8); it may
        return a replacement of the same shape. Every handle is removed on exit, also on exceptions."""
        return clip_hooks.hooks(self._points(), pairs)

    def run_with_cache(self, images: ImageInput | None = None, texts: str | Sequence[str] | None = None, *,
                       names_filter: clip_hooks.NamesFilter = None,
                       ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Encode ``images`` and/or ``texts`` caching activations -> (outputs, cache).

        outputs: ``image_embeds`` (B_img, D), ``text_embeds`` (B_txt, D), ``logits`` (B_img, B_txt)
        (those that apply); cache: name -> detached activation. ``names_filter`` is TransformerLens'
        (docs/design.md §8): None caches every hook of the towers that run; a name or a list of
        names caches those (each must exist and belong to a tower that runs); a predicate
        ``name -> bool`` caches the names of the running towers it accepts (at least one)."""
        if images is None and texts is None:
            raise bad_input("images", "run_with_cache needs images, texts or both")
        towers = [t for t, given in (("visual.", images), ("text.", texts)) if given is not None]
        names = clip_hooks.select_names(names_filter, self.hook_names(), towers)
        cache: dict[str, Tensor] = {}
        out: dict[str, Tensor] = {}
        with self.hooks(clip_hooks.caching_pairs(names, cache)):
            if images is not None:
                out["image_embeds"] = self.encode_image(images)
            if texts is not None:
                out["text_embeds"] = self.encode_text(texts)
        if len(out) == 2:
            out["logits"] = self._scale().detach() * out["image_embeds"] @ out["text_embeds"].T
        return out, cache
