"""TransformerLens-style named hook points on both towers of an open_clip CLIP.

Names (``T`` = 1 + patches for images, ``L`` = context length for text,
``W`` = tower width, ``D`` = embedding dim, ``H`` = heads):

    visual.hook_embed                     (B, T, W)  tokens entering the transformer (after ln_pre)
    visual.blocks.{i}.hook_resid_pre      (B, T, W)  input of block i
    visual.blocks.{i}.attn.hook_pattern   (B, H, T, T) attention probabilities (rows sum to 1)
    visual.blocks.{i}.hook_attn_out       (B, T, W)  attention's contribution to the residual
    visual.blocks.{i}.hook_mlp_out        (B, T, W)  MLP's contribution to the residual
    visual.blocks.{i}.hook_resid_post     (B, T, W)  output of block i
    visual.hook_out                       (B, D)     image embedding before normalisation
    text.*                                the same with L for T (causal patterns), plus
    text.hook_ln_final                    (B, L, W)  per-token features after ln_final
    text.hook_out                         (B, D)     text embedding before normalisation

A hook function follows TransformerLens' convention (docs/design.md §8): it is called
``fn(tensor, hook=point)``, where ``point`` (a :class:`Point`) carries the hook name as
``point.name``, so ``def fn(activation, hook): ... hook.name`` works unchanged. It returns
None to keep the activation or a tensor of the same shape to replace it. Replacing an
attention pattern recomputes that attention's output from the new pattern, so pattern
patching takes effect too. ``ClipModel.run_with_cache(..., names_filter=...)`` takes a
name, a list of names or a predicate ``name -> bool``, like TransformerLens' ``names_filter``.
open_clip 3.3 builds its transformers with ``batch_first=True``; non-batch-first
attention modules (older open_clip) are handled by transposing here.
"""
from __future__ import annotations

import inspect
import math
from contextlib import contextmanager
from difflib import get_close_matches
from typing import Callable, Iterator, NamedTuple, Protocol, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unclip_probe.errors import bad_input


class HookPoint(nn.Identity):
    """An identity module placed where no open_clip module's output is the activation."""


class Point(NamedTuple):
    """A named hook point; what a hook function receives as ``hook`` (docs/design.md §8)."""
    name: str  # e.g. "visual.blocks.0.attn.hook_pattern"
    module: nn.Module  # where it attaches
    kind: str  # "pre": the module's first input; "post": its output; "pattern": attention probs


class HookFn(Protocol):
    """``fn(tensor, hook=point) -> Tensor | None`` (TransformerLens' convention)."""
    def __call__(self, tensor: Tensor, *, hook: Point) -> Tensor | None: ...


# TransformerLens' names_filter: a hook name, a list of names, or a predicate name -> bool (None: all)
NamesFilter = Union[str, Sequence[str], Callable[[str], bool], None]


def _text_parts(model: nn.Module) -> tuple[nn.Module | None, nn.Module | None]:
    """(text transformer, ln_final) for CLIP (flat attributes) or CustomTextCLIP (``.text``)."""
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "transformer") and hasattr(text, "ln_final"):
        return text.transformer, text.ln_final
    if hasattr(model, "transformer") and hasattr(model, "ln_final"):
        return model.transformer, model.ln_final
    return None, None  # e.g. a Hugging Face text tower: only text.hook_out is available


def _tower_points(prefix: str, transformer: nn.Module) -> dict[str, Point]:
    out = {}

    def add(name: str, module: nn.Module, kind: str) -> None:
        out[name] = Point(name, module, kind)
    add(f"{prefix}.hook_embed", transformer, "pre")
    for i, block in enumerate(getattr(transformer, "resblocks", [])):
        p = f"{prefix}.blocks.{i}"
        add(f"{p}.hook_resid_pre", block, "pre")
        if isinstance(getattr(block, "attn", None), nn.MultiheadAttention):
            add(f"{p}.attn.hook_pattern", block.attn, "pattern")
        if hasattr(block, "ls_1") and hasattr(block, "ls_2"):  # LayerScale or Identity, one per block
            add(f"{p}.hook_attn_out", block.ls_1, "post")
            add(f"{p}.hook_mlp_out", block.ls_2, "post")
        add(f"{p}.hook_resid_post", block, "post")
    return out


def hook_points(model: nn.Module, text_out: nn.Module) -> dict[str, Point]:
    """All hook names of ``model`` (an open_clip CLIP) mapped to their :class:`Point`.

    Walks the module tree; ClipModel builds this once and keeps it (modules move in place)."""
    points: dict[str, Point] = {}
    vis_tf = getattr(model.visual, "transformer", None)
    if vis_tf is not None:
        points.update(_tower_points("visual", vis_tf))
    points["visual.hook_out"] = Point("visual.hook_out", model.visual, "post")
    txt_tf, ln_final = _text_parts(model)
    if txt_tf is not None:
        points.update(_tower_points("text", txt_tf))
        points["text.hook_ln_final"] = Point("text.hook_ln_final", ln_final, "post")
    points["text.hook_out"] = Point("text.hook_out", text_out, "post")
    return points


def check_names(names: Sequence[str], known: Sequence[str], argument: str) -> None:
    """Raise ProbeInputError naming ``argument`` for the first unknown hook name."""
    for name in names:
        if name not in known:
            close = get_close_matches(str(name), known, n=3, cutoff=0.5)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise bad_input(argument, f"unknown hook name {name!r}{hint} (see ClipModel.hook_names())")


def select_names(names_filter: object, known: Sequence[str], towers: Sequence[str]) -> list[str]:
    """Resolve TransformerLens' ``names_filter`` against the hook names ``known``.

    None: every name of ``towers`` (prefixes such as ``"visual."``); a name or a list of names:
    those, each checked; a predicate ``name -> bool``: the names of ``towers`` it accepts, at least
    one. Errors name ``names_filter`` (docs/design.md §8)."""
    towers = tuple(towers)
    running = [n for n in known if n.startswith(towers)]
    if names_filter is None:
        return running
    if callable(names_filter):
        chosen = [n for n in running if names_filter(n)]
        if not chosen:
            raise bad_input("names_filter", f"the predicate selected no hook name of the towers that run "
                                            f"({', '.join(t.rstrip('.') for t in towers)}); see "
                                            f"ClipModel.hook_names()")
        return chosen
    if isinstance(names_filter, str):
        names = [names_filter]
    elif isinstance(names_filter, (list, tuple, set, frozenset)):
        names = list(names_filter)
    else:
        raise bad_input("names_filter", f"got {type(names_filter).__name__}, expected a hook name, a list "
                                        f"of names or a predicate name -> bool")
    check_names(names, known, "names_filter")
    idle = [n for n in names if not n.startswith(towers)]
    if idle:
        raise bad_input("names_filter", f"{idle[0]!r} belongs to a tower that does not run; pass "
                                        f"{'images' if idle[0].startswith('visual.') else 'texts'} too")
    return names


# ----------------------------------------------------------------------------- attention
def _mha_args(args: tuple, kwargs: dict) -> dict:
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
    return {**dict(zip(names, args)), **kwargs}


def _qkv_weights(mha: nn.MultiheadAttention) -> tuple[Tensor, Tensor, Tensor]:
    if mha._qkv_same_embed_dim:
        return mha.in_proj_weight.chunk(3)
    return mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight


def _heads(x: Tensor, w: Tensor, b: Tensor | None, n_heads: int) -> Tensor:
    B, T, _ = x.shape
    y = F.linear(x, w, b)  # (B, T, E)
    return y.view(B, T, n_heads, -1).transpose(1, 2)  # (B, H, T, hd)


def attention_pattern(mha: nn.MultiheadAttention, query: Tensor, key: Tensor,
                      attn_mask: Tensor | None = None, key_padding_mask: Tensor | None = None) -> Tensor:
    """Recompute ``softmax(q k^T / sqrt(hd) + mask)`` -> (B, H, Tq, Tk) from an MHA's inputs.

    Needed because open_clip calls ``nn.MultiheadAttention`` with ``need_weights=False``.
    """
    if mha.bias_k is not None or mha.add_zero_attn:
        raise bad_input("hooks", "attention patterns are not supported for attention with bias_k/add_zero_attn")
    if not mha.batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)  # (T, B, E) -> (B, T, E)
    E, H = mha.embed_dim, mha.num_heads
    wq, wk, _ = _qkv_weights(mha)
    b = mha.in_proj_bias
    q = _heads(query, wq, None if b is None else b[:E], H)  # (B, H, Tq, hd)
    k = _heads(key, wk, None if b is None else b[E:2 * E], H)  # (B, H, Tk, hd)
    scores = q @ k.transpose(-1, -2) / math.sqrt(E // H)  # (B, H, Tq, Tk)
    B, _, Tq, Tk = scores.shape
    if attn_mask is not None:
        m = attn_mask.reshape(B, H, Tq, Tk) if attn_mask.dim() == 3 else attn_mask  # (B*H, Tq, Tk) form
        scores = scores.masked_fill(m, float("-inf")) if m.dtype == torch.bool else scores + m.to(scores.dtype)
    if key_padding_mask is not None:
        m = key_padding_mask[:, None, None, :]  # (B, 1, 1, Tk)
        scores = scores.masked_fill(m, float("-inf")) if m.dtype == torch.bool else scores + m.to(scores.dtype)
    return scores.softmax(dim=-1)


def _attend(mha: nn.MultiheadAttention, pattern: Tensor, value: Tensor) -> Tensor:
    """The MHA output for a given pattern: out_proj(pattern @ v) in the module's layout."""
    if not mha.batch_first:
        value = value.transpose(0, 1)
    E = mha.embed_dim
    b = mha.in_proj_bias
    v = _heads(value, _qkv_weights(mha)[2], None if b is None else b[2 * E:], mha.num_heads)  # (B, H, Tk, hd)
    out = (pattern.to(v.dtype) @ v).transpose(1, 2).reshape(v.shape[0], -1, E)  # (B, Tq, E)
    out = mha.out_proj(out)
    return out if mha.batch_first else out.transpose(0, 1)


# ----------------------------------------------------------------------------- registration
def _checked(name: str, old: Tensor, new: object) -> Tensor | None:
    if new is None:
        return None
    if not isinstance(new, Tensor) or new.shape != old.shape:
        got = f"shape {tuple(new.shape)}" if isinstance(new, Tensor) else type(new).__name__
        raise bad_input("hooks", f"the hook on {name} returned {got}, expected None or a tensor of shape "
                                 f"{tuple(old.shape)}")
    return new


def _register(point: Point, fn: HookFn) -> torch.utils.hooks.RemovableHandle:
    name = point.name
    if point.kind == "pre":
        def pre(module: nn.Module, args: tuple):
            new = _checked(name, args[0], fn(args[0], hook=point))
            return None if new is None else (new, *args[1:])
        return point.module.register_forward_pre_hook(pre)

    if point.kind == "post":
        def post(module: nn.Module, args: tuple, output):
            if isinstance(output, tuple):  # Hugging Face modules return (activation, extras...)
                new = _checked(name, output[0], fn(output[0], hook=point))
                return None if new is None else (new, *output[1:])
            return _checked(name, output, fn(output, hook=point))
        return point.module.register_forward_hook(post)

    def pattern(module: nn.MultiheadAttention, args: tuple, kwargs: dict, output: tuple):
        a = _mha_args(args, kwargs)
        probs = attention_pattern(module, a["query"], a["key"], a.get("attn_mask"), a.get("key_padding_mask"))
        new = _checked(name, probs, fn(probs, hook=point))
        if new is None:
            return None
        return _attend(module, new, a["value"]), None  # weights were not requested (need_weights=False)
    return point.module.register_forward_hook(pattern, with_kwargs=True)


def _takes_hook_keyword(fn: object) -> bool:
    """Whether ``fn(tensor, hook=point)`` binds; True when the signature cannot be read."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    try:
        sig.bind(None, hook=None)
    except TypeError:
        return False
    return True


@contextmanager
def hooks(points: dict[str, Point], pairs: Sequence[tuple[str, HookFn]]) -> Iterator[None]:
    """Attach ``(name, fn)`` pairs for the duration of the block, each called ``fn(tensor, hook=point)``;
    every handle is removed on exit, also when the block (or a hook) raises."""
    if isinstance(pairs, tuple) and len(pairs) == 2 and isinstance(pairs[0], str):
        pairs = [pairs]  # a single (name, fn) pair
    try:
        pairs = [(n, f) for n, f in pairs]
    except (TypeError, ValueError):
        raise bad_input("hooks", "expected a list of (name, fn) pairs") from None
    check_names([n for n, _ in pairs], list(points), "hooks")
    for n, f in pairs:
        if not callable(f):
            raise bad_input("hooks", f"the function for {n!r} is a {type(f).__name__}, expected a callable")
        if not _takes_hook_keyword(f):
            raise bad_input("hooks", f"the function for {n!r} cannot be called fn(tensor, hook=point); hooks "
                                     f"follow TransformerLens' convention, e.g. def fn(activation, hook): ...")
    handles = []
    try:
        for n, f in pairs:
            handles.append(_register(points[n], f))
        yield
    finally:
        for h in handles:
            h.remove()


def caching_pairs(names: Sequence[str], cache: dict[str, Tensor]) -> list[tuple[str, HookFn]]:
    """Hook pairs that store a detached copy of each named activation in ``cache``."""
    def store(t: Tensor, hook: Point) -> None:
        cache[hook.name] = t.detach()
    return [(n, store) for n in names]
