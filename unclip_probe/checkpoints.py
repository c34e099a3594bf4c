"""Checkpoint IO: safetensors for tensors, JSON for configuration (docs/design.md §5).

Never pickle: a checkpoint is data a user may download, and loading it must not
run code. Every write goes to a temporary file in the same folder and is then
renamed over the target (``os.replace`` is atomic on POSIX and Windows), so a
process killed mid-write leaves the previous file intact. Every read failure
is a :class:`~unclip_probe.errors.ProbeInputError` that names the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, Union

from safetensors import safe_open
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save
from torch import Tensor, nn

from unclip_probe.errors import ProbeInputError, bad_input

PathLike = Union[str, os.PathLike]
_CHUNK = 1 << 20  # bytes per write call; small enough that a kill can land mid-file


# ----------------------------------------------------------------------------- bytes
def _write_chunks(f: typing.BinaryIO, data: bytes) -> None:
    """Write ``data`` in chunks (a separate function so tests can fail it midway)."""
    view = memoryview(data)
    for i in range(0, len(view), _CHUNK):
        f.write(view[i:i + _CHUNK])


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    Writes ``<path>.tmp-<pid>`` beside the target, fsyncs it, then ``os.replace``s it.
    On an exception the temporary file is removed and the old file is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            _write_chunks(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not possible on every platform/filesystem
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def file_checksum(path: PathLike) -> str:
    """First 16 hex characters of the sha256 of the file's bytes (names a checkpoint version)."""
    path = Path(path)
    if not path.is_file():
        raise bad_input(str(path), "file not found, so its checksum cannot be computed.")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()[:16]


def stack_checksums(folder: PathLike) -> dict[str, str]:
    """{stage file stem: file_checksum} for every weights file of a stack folder: what a measurement names."""
    return {f.stem: file_checksum(f) for f in sorted(Path(folder).glob("*.safetensors"))}


def require_files(folder: PathLike, names: list[str]) -> None:
    """Check a checkpoint folder holds every file in ``names``; the error names folder and files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise bad_input(str(folder), "checkpoint folder not found (or not a folder).")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise bad_input(str(folder), f"checkpoint folder is missing {', '.join(missing)}.")


# ----------------------------------------------------------------------------- tensors
def save_weights(state: dict[str, Tensor], path: PathLike, metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors, atomically; tensors are detached, moved to CPU, made contiguous.

    Tensors sharing storage (tied weights) are cloned, because safetensors refuses aliasing.
    """
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise bad_input("metadata", "safetensors metadata must map str to str.")
    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    for name, t in state.items():
        if not isinstance(t, Tensor):
            raise bad_input("state", f"entry {name!r} is a {type(t).__name__}, expected a torch.Tensor.")
        t = t.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        full = t.untyped_storage().nbytes() == t.numel() * t.element_size()
        if (ptr in seen and t.numel() > 0) or not full:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    atomic_write_bytes(path, _st_save(out, metadata=metadata))


def load_weights(path: PathLike) -> dict[str, Tensor]:
    """Load a safetensors file onto the CPU; a missing, truncated or corrupt file names the file."""
    path = Path(path)
    if not path.is_file():
        raise bad_input(str(path), "weights file not found.")
    try:
        return _st_load(path.read_bytes())
    except Exception as e:  # safetensors raises SafetensorError / ValueError on bad headers
        raise bad_input(str(path), f"not a readable safetensors file (truncated or corrupt: {e}).") from None


def load_metadata(path: PathLike) -> dict[str, str]:
    """The string metadata stored in a safetensors file's header (stage name, step, ...)."""
    path = Path(path)
    if not path.is_file():
        raise bad_input(str(path), "weights file not found.")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise bad_input(str(path), f"not a readable safetensors file (truncated or corrupt: {e}).") from None


def load_state_into(module: nn.Module, state: dict[str, Tensor], *, source: str) -> None:
    """Strictly load ``state`` into ``module``, naming ``source`` and the offending tensors on mismatch."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s) ({_first5(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) ({_first5(unexpected)})")
    if shapes:
        listed = ", ".join(f"{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in shapes[:5])
        more = f" and {len(shapes) - 5} more" if len(shapes) > 5 else ""
        problems.append(f"{len(shapes)} shape mismatch(es) ({listed}{more})")
    if problems:
        raise bad_input(source, "weights do not fit the model: " + "; ".join(problems) + ".")
    module.load_state_dict(state, strict=True)


def init_from_file(module: nn.Module, path: PathLike | None) -> nn.Module:
    """Start a training run from the weights in ``path`` (a continued training) instead of random;
    None leaves ``module`` as built. Strict, as :func:`load_state_into`."""
    if path:
        load_state_into(module, load_weights(path), source=str(path))
    return module


def _first5(names: list[str]) -> str:
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return ", ".join(names[:5]) + more


# ----------------------------------------------------------------------------- configs
def _to_jsonable(obj: Any, where: str) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_jsonable(getattr(obj, f.name), f"{where}.{f.name}")
                for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise bad_input(where, "config dict keys must be strings.")
        return {k: _to_jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise bad_input(where, f"a {type(obj).__name__} cannot be stored in a JSON config (use numbers, strings, "
                           "lists, tuples, dicts or dataclasses).")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a dataclass instance or dict (tuples become lists)."""
    out = _to_jsonable(cfg, "cfg")
    if not isinstance(out, dict):
        raise bad_input("cfg", f"expected a dataclass instance or dict, got {type(cfg).__name__}.")
    return out


def save_config(cfg: Any, path: PathLike) -> None:
    """Save a dataclass instance or dict as JSON (indent 2, sorted keys), atomically."""
    text = json.dumps(config_to_dict(cfg), indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def load_config(cls: type, path_or_dict: PathLike | dict, *, source: str | None = None) -> Any:
    """Build a ``cls`` instance from a JSON file or dict, refusing unknown and missing keys.

    Lists come back as tuples where the field is annotated (or defaults to) a tuple,
    nested tuples too; fields typed as dataclasses are built recursively.
    ``cls=dict`` returns the raw dict.
    """
    if isinstance(path_or_dict, dict):
        data, source = path_or_dict, source or f"{getattr(cls, '__name__', 'config')} dict"
    else:
        path = Path(path_or_dict)
        source = source or str(path)
        if not path.is_file():
            raise bad_input(source, "config file not found.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_input(source, f"not valid JSON ({e}).") from None
    if cls is dict:
        if not isinstance(data, dict):
            raise bad_input(source, f"expected a JSON object, got {type(data).__name__}.")
        return data
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise bad_input("cls", f"expected a dataclass type or dict, got {cls!r}.")
    return _build(cls, data, source, "")


def _build(cls: type, data: Any, source: str, prefix: str) -> Any:
    where = f"{source}{' (' + prefix.rstrip('.') + ')' if prefix else ''}"
    if not isinstance(data, dict):
        raise bad_input(where, f"expected a JSON object for {cls.__name__}, got {type(data).__name__}.")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    valid = [f.name for f in fields]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise bad_input(where, f"unknown key(s) {', '.join(map(repr, unknown))} for {cls.__name__}; "
                               f"valid keys are {', '.join(valid)}.")
    missing = [f.name for f in fields if f.name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise bad_input(where, f"missing required key(s) {', '.join(map(repr, missing))} for {cls.__name__}.")
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: fall back to defaults for tuple detection
        hints = {}
    kwargs = {}
    for f in fields:
        if f.name not in data:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        tp = hints.get(f.name, f.type if not isinstance(f.type, str) else Any)
        kwargs[f.name] = _convert(tp, data[f.name], default, source, f"{prefix}{f.name}")
    try:
        return cls(**kwargs)
    except ProbeInputError:
        raise
    except (TypeError, ValueError) as e:
        raise bad_input(where, f"invalid value for {cls.__name__}: {e}") from None


def _deep_tuple(v: Any) -> Any:
    return tuple(_deep_tuple(x) for x in v) if isinstance(v, list) else v


def _convert(tp: Any, value: Any, default: Any, source: str, key: str) -> Any:
    """Turn a JSON value into what a field of type ``tp`` holds (tuples, nested dataclasses)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for a in options:  # prefer the option whose JSON form matches the value
            a_origin = typing.get_origin(a) or a
            if isinstance(value, list) and a_origin in (tuple, list):
                return _convert(a, value, default, source, key)
            if isinstance(value, dict) and (dataclasses.is_dataclass(a) or a_origin is dict):
                return _convert(a, value, default, source, key)
        return _convert(options[0], value, default, source, key) if len(options) == 1 else value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, source, key + ".")
    if tp is tuple or origin is tuple:
        if not isinstance(value, list):
            raise bad_input(f"{source} ({key})", f"expected a list, got {type(value).__name__}.")
        if args and args[-1] is Ellipsis:
            return tuple(_convert(args[0], v, None, source, f"{key}[{i}]") for i, v in enumerate(value))
        if args and args != ((),):
            if len(args) != len(value):
                raise bad_input(f"{source} ({key})", f"expected {len(args)} items, got {len(value)}.")
            return tuple(_convert(a, v, None, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        return _deep_tuple(value)
    if origin is list and isinstance(value, list) and args:
        return [_convert(args[0], v, None, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {k: _convert(args[1], v, None, source, f"{key}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise bad_input(f"{source} ({key})", f"expected {tp.__name__}, got {value!r}.")
    if isinstance(default, tuple) and isinstance(value, list):
        return _deep_tuple(value)
    return value
