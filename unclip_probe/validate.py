"""One validation layer for the public entry points (docs/design.md §7).

Every function checks one kind of argument and returns it in the form the library
uses (an ``int`` seed, a list of prompts, float32 embeddings, a ``Path``), or raises
:class:`~unclip_probe.errors.ProbeInputError` with one sentence naming the argument
as the caller knows it: ``validate.steps(prior_steps, "prior_steps")``. Entry points
call these first, before any expensive work, so bad input never gets a deep
traceback, a result computed in vain, or a silent change (``seed=1.5`` is refused,
not rounded).

Sits below everything, like ``errors``: importing it pulls in neither torch nor PIL
(the checks that need them import them when called).
"""
from __future__ import annotations

import contextlib
import math
import os
from numbers import Integral, Real
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from unclip_probe.errors import ProbeInputError, bad_input, one_of

MAX_SEED = 2 ** 63 - 1  # numpy and torch take any seed in [0, 2**64); the stack also uses seed + 1, seed + 2


def _integer(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------- numbers
def seed(value: object, argument: str = "seed") -> int:
    """A random seed: an integer in [0, 2**63) (a float, even 2.0, is refused, never rounded)."""
    if not _integer(value) or not 0 <= value <= MAX_SEED:
        raise bad_input(argument, f"expected an integer seed from 0 to 2**63 - 1, got {_shown(value)}")
    return int(value)


def count(value: object, argument: str, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer count in [minimum, maximum]."""
    if not _integer(value) or value < minimum or (maximum is not None and value > maximum):
        span = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise bad_input(argument, f"expected an integer {span}, got {_shown(value)}")
    return int(value)


def number(value: object, argument: str, *, minimum: float | None = None, maximum: float | None = None,
           above: float | None = None, what: str = "a number") -> float:
    """A finite real number in [minimum, maximum] (and > above, when given)."""
    ok = _real(value) and math.isfinite(value)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    ok = ok and (above is None or value > above)
    if not ok:
        if minimum is not None and maximum is not None:
            span = f" from {minimum:g} to {maximum:g}"
        else:
            span = "".join([f" >= {minimum:g}" if minimum is not None else "",
                            f" > {above:g}" if above is not None else "",
                            f" <= {maximum:g}" if maximum is not None else ""])
        raise bad_input(argument, f"expected {what}{span}, got {_shown(value)}")
    return float(value)


def fraction(value: object, argument: str) -> float:
    """A probability or fraction in [0, 1]."""
    return number(value, argument, minimum=0.0, maximum=1.0, what="a fraction")


def guidance(value: object, argument: str = "guidance") -> float | None:
    """A classifier-free guidance scale: None (the stack's default) or a finite number >= 0 (1: none)."""
    if value is None:
        return None
    if not (_real(value) and math.isfinite(value) and value >= 0):
        raise bad_input(argument, f"expected a finite guidance scale >= 0 (1: no guidance), got {_shown(value)}")
    return float(value)


def steps(value: object, argument: str = "steps", maximum: int | None = None) -> int | None:
    """Sampling steps: None (the default) or an integer from 1 to ``maximum`` (the schedule's T)."""
    if value is None:
        return None
    return count(value, argument, 1, maximum)


def eta(value: object, argument: str = "eta") -> float | None:
    """DDIM eta: None (the default) or a number in [0, 1] (0: deterministic)."""
    return None if value is None else fraction(value, argument)


def number_list(value: object, argument: str, *, integer: bool = False, minimum: float | None = None,
                maximum: float | None = None, min_length: int = 1, what: str | None = None) -> list:
    """A non-empty list of finite numbers (or integers) in [minimum, maximum]; a single number is
    refused with a hint to wrap it in a list (never iterated over or wrapped silently)."""
    kind = what or ("integers" if integer else "numbers")
    span = "" if minimum is None and maximum is None else (
        f" from {minimum:g} to {maximum:g}" if minimum is not None and maximum is not None
        else f" >= {minimum:g}" if minimum is not None else f" <= {maximum:g}")
    if _real(value):
        raise bad_input(argument, f"expected a list of {kind}{span}, got the single number {_shown(value)} "
                                  f"(write [{value!r}])")
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable):
        raise bad_input(argument, f"expected a list of {kind}{span}, got {_shown(value)}")
    items = list(value)
    if len(items) < min_length:
        raise bad_input(argument, f"expected a list of at least {min_length} {kind}{span}, got {_shown(items)}")
    for x in items:
        good = _integer(x) if integer else (_real(x) and math.isfinite(x))
        if not good or (minimum is not None and x < minimum) or (maximum is not None and x > maximum):
            raise bad_input(argument, f"expected a list of {kind}{span}, got {_shown(x)} in {_shown(items)}")
    return [int(x) for x in items] if integer else [float(x) for x in items]


def choice(value: object, choices: Sequence[str], argument: str) -> str:
    """One of ``choices``, with close-match hints."""
    if not isinstance(value, str) or value not in choices:
        raise bad_input(argument, one_of(value, choices))
    return value


def flag(value: object, argument: str) -> bool:
    """A bool (1 and 0 are not taken for True and False)."""
    if not isinstance(value, bool):
        raise bad_input(argument, f"expected True or False, got {_shown(value)}")
    return value


# ----------------------------------------------------------------------------- text
def prompts(value: object, argument: str = "prompts") -> list[str]:
    """A prompt or a list of them, as a non-empty list of non-empty strings."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (bytes, dict)) or not isinstance(value, Iterable):
        raise bad_input(argument, f"expected a prompt or a list of prompts, got {type(value).__name__}")
    items = list(value)
    if not items or not all(isinstance(p, str) and p.strip() for p in items):
        raise bad_input(argument, f"expected a non-empty list of non-empty strings, got {_shown(items)}")
    return items


def prompt(value: object, argument: str) -> str:
    """One non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise bad_input(argument, f"expected a non-empty prompt, got {_shown(value)}")
    return value


def labels(value: object, argument: str = "labels") -> list[str]:
    """Zero-shot class names: a list (not one string) of distinct non-empty strings."""
    if isinstance(value, str):
        raise bad_input(argument, f"expected a list of label strings, got the single string {value!r} "
                                  f"(write [{value!r}])")
    items = prompts(value, argument)
    if len(set(items)) != len(items):
        raise bad_input(argument, "contains duplicates; each label must appear once")
    return items


@contextlib.contextmanager
def renamed(**names: str) -> Iterator[None]:
    """Inside the block, a ProbeInputError about argument ``old`` is re-raised as one about
    ``names[old]``: ``with renamed(texts="labels"): clip.encode_text(...)`` when the caller's
    argument is ``labels`` and the layer below calls it ``texts``."""
    try:
        yield
    except ProbeInputError as err:
        message = str(err)
        for old, new in names.items():
            if message.startswith(f"{old}: "):
                raise bad_input(new, message[len(old) + 2:]) from None
        raise


# ----------------------------------------------------------------------------- objects
CLIP_MEMBERS = ("encode_image", "encode_text")  # what every CLIP-side probe calls


def has_members(value: object, members: Iterable[str], argument: str, what: str) -> Any:
    """``value`` if it has every one of ``members`` (looked up without running properties), else
    an error saying what was expected: ``has_members(clip, CLIP_MEMBERS, "clip", "a ClipModel")``."""
    import inspect

    sentinel = object()
    missing = [m for m in members if inspect.getattr_static(value, m, sentinel) is sentinel]
    if value is None or missing:
        got = "None" if value is None else f"a {type(value).__name__} (it has no {', '.join(missing[:3])})"
        raise bad_input(argument, f"expected {what}, got {got}")
    return value


def clip(value: object, argument: str = "clip", needs: Sequence[str] = ()) -> Any:
    """A CLIP model (``unclip_probe.clip.ClipModel`` or one with its encoders, and ``needs``)."""
    return has_members(value, (*CLIP_MEMBERS, *needs), argument, "a CLIP model, e.g. up.load_clip('checkpoints/world')")


# ----------------------------------------------------------------------------- tensors
def embeddings(z: object, dim: int, argument: str = "z") -> Any:
    """CLIP embeddings (B, dim), B >= 1, finite; any floating dtype comes back as float32 (what the
    networks compute in), an integer or complex one is refused. Stays on its device."""
    import torch

    if not isinstance(z, torch.Tensor):
        raise bad_input(argument, f"expected a torch.Tensor of CLIP embeddings (B, {dim}), got {type(z).__name__}")
    if z.ndim != 2 or z.shape[1] != dim or z.shape[0] < 1:
        raise bad_input(argument, f"expected CLIP embeddings (B, {dim}) with B >= 1, got shape {tuple(z.shape)}")
    if not z.is_floating_point():
        raise bad_input(argument, f"expected floating-point CLIP embeddings, got dtype {z.dtype}")
    z = z.detach().float()
    if not torch.isfinite(z).all():
        bad = sorted({int(i) for i in (~torch.isfinite(z)).any(-1).nonzero()[:, 0].tolist()})
        raise bad_input(argument, f"row(s) {bad[:5]} hold NaN or infinite values")
    return z


def noise(x: object, shape: Sequence[int], batch: int, argument: str = "x_T") -> Any:
    """A decoder's starting noise (batch, *shape), finite floats (float32)."""
    import torch

    want = (batch, *shape)
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != want:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise bad_input(argument, f"expected a tensor of shape {want} (one noise per embedding), got {got}")
    if not x.is_floating_point() or not torch.isfinite(x).all():
        raise bad_input(argument, f"expected finite floating-point noise, got dtype {x.dtype}")
    return x.float()


# ----------------------------------------------------------------------------- images and paths
def images(value: object, argument: str = "images") -> list:
    """An image or a list of them, each a PIL image, a path to an image file, an (H, W, 3) array or
    a (3, H, W) tensor; paths are opened (and refused when missing or not images) so that a bad one
    fails before any work. Items come back as given, paths as loaded PIL images."""
    from PIL import Image, UnidentifiedImageError

    single = isinstance(value, (Image.Image, str, os.PathLike)) or hasattr(value, "shape")
    items = [value] if single else value
    if isinstance(items, (bytes, dict)) or not isinstance(items, Iterable):
        raise bad_input(argument, f"expected an image or a list of images, got {type(value).__name__}")
    items = list(items)
    if not items:
        raise bad_input(argument, "expected at least one image, got an empty list")
    out = []
    for item in items:
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if not path.is_file():
                raise bad_input(argument, f"{str(path)!r} does not exist (or is not a file)")
            try:
                with Image.open(path) as im:
                    im.load()
                    item = im.copy()
            except (UnidentifiedImageError, OSError) as e:
                raise bad_input(argument, f"{str(path)!r} is not an image PIL can read ({type(e).__name__})") from None
        elif not (isinstance(item, Image.Image) or hasattr(item, "shape")):
            raise bad_input(argument, f"expected PIL images, paths, (H, W, 3) arrays or (3, H, W) tensors, "
                                      f"got a {type(item).__name__}")
        out.append(item)
    return out


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def output_path(path: object, argument: str, *, folder: bool = False, image: bool = False) -> Path:
    """Where a command will write, checked before it works: a file (``folder=False``) or a folder
    that exists or can be created, inside a writable folder; ``image``: a file name whose extension
    PIL can write. Creates nothing."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise bad_input(argument, f"expected a path to write to, got {_shown(path)}")
    p = Path(path)
    if folder:
        if p.exists() and not p.is_dir():
            raise bad_input(argument, f"{str(p)!r} exists and is not a folder")
    else:
        if p.is_dir():
            raise bad_input(argument, f"{str(p)!r} is a folder; give a file name")
        if image:
            from PIL import Image

            known = Image.registered_extensions()
            if p.suffix.lower() not in known or known[p.suffix.lower()] not in Image.SAVE:
                raise bad_input(argument, f"{str(p)!r} has no image extension PIL can write (use .png or .jpg)")
    base = _nearest_existing(p if folder else p.parent)
    if not base.is_dir():
        raise bad_input(argument, f"cannot write {str(p)!r}: {str(base)!r} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise bad_input(argument, f"cannot write {str(p)!r}: the folder {str(base)!r} is not writable")
    return p


def input_folder(path: object, argument: str, files: Sequence[str] = ()) -> Path:
    """An existing folder holding ``files``."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise bad_input(argument, f"expected a folder, got {_shown(path)}")
    p = Path(path)
    if not p.is_dir():
        raise bad_input(argument, f"{str(p)!r} is not a folder")
    missing = [f for f in files if not (p / f).is_file()]
    if missing:
        raise bad_input(argument, f"{str(p)!r} is missing {', '.join(missing)}")
    return p


def input_file(path: object, argument: str) -> Path:
    """An existing file."""
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        raise bad_input(argument, f"{_shown(str(path) if isinstance(path, os.PathLike) else path)} is not a file")
    return Path(path)
