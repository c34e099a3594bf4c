"""Checkpoint IO: safetensors for tensors, JSON for configuration (docs/design.md §5).

Never pickle: a checkpoint is data a user may download, and loading it must not
run code. Weights files are written byte-stably and record the checksum of their
tensors, which every load checks (a damaged file is refused as corrupted). Every
write goes to a temporary file in the same folder and is then renamed over the
target (``os.replace`` is atomic on POSIX and Windows), so a process killed
mid-write leaves the previous file intact. Every read failure
is a :class:`~unclip_probe.errors.ProbeInputError` that names the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Union

from safetensors import safe_open
from safetensors.torch import load as _st_load
import torch
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
    """First 16 hex characters of the sha256 of the file's bytes. Weights are named by
    :func:`weights_checksum` instead (it does not depend on how a file was written); measurements
    made before it existed (issue 21) name weights files by this."""
    path = Path(path)
    if not path.is_file():
        raise bad_input(str(path), "file not found, so its checksum cannot be computed.")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()[:16]


def stack_checksums(folder: PathLike) -> dict[str, str]:
    """{stage file stem: weights checksum} for every weights file of a stack folder: what a measurement
    names. Read from each file's header (computed for a file that records none)."""
    return {f.stem: checksum_of(f) for f in sorted(Path(folder).glob("*.safetensors"))}


def require_files(folder: PathLike, names: list[str]) -> None:
    """Check a checkpoint folder holds every file in ``names``; the error names folder and files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise bad_input(str(folder), "checkpoint folder not found (or not a folder).")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise bad_input(str(folder), f"checkpoint folder is missing {', '.join(missing)}.")


# ----------------------------------------------------------------------------- tensors
# A weights file records, in its safetensors metadata, the checksum of its tensors and of its other
# metadata, written when it is saved and checked whenever it is loaded (docs/design.md §5): a file
# whose bytes were damaged, truncated, edited or spliced from another file is refused as corrupted.
# The checksum names the tensors (names, dtypes, shapes, values), not the file's bytes, so the same
# weights have the same checksum however and wherever they were written; it is the checksum a later
# stage records of its CLIP and the one a measurement names.
CHECKSUM_KEY = "weights_checksum"  # metadata: weights_checksum() of the file's tensors
METADATA_CHECKSUM_KEY = "metadata_checksum"  # metadata: checksum of every other metadata entry
_RESERVED = (CHECKSUM_KEY, METADATA_CHECKSUM_KEY)
_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool, **{name: getattr(torch, attr) for name, attr in (
               ("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"), ("U16", "uint16"), ("U32", "uint32"),
               ("U64", "uint64")) if hasattr(torch, attr)}}
_DTYPE_NAMES = {dt: name for name, dt in _DTYPES.items()}


def _dtype_name(t: Tensor, name: str) -> str:
    try:
        return _DTYPE_NAMES[t.dtype]
    except KeyError:
        raise bad_input("state", f"entry {name!r} has dtype {t.dtype}, which safetensors cannot store.") from None


def _raw(t: Tensor) -> memoryview:
    """The tensor's bytes, C order, little-endian (as safetensors stores them)."""
    return memoryview(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())


def weights_checksum(state: typing.Mapping[str, Tensor]) -> str:
    """First 16 hex characters of a sha256 over the tensors in name order: each name, dtype, shape
    and value bytes. The same tensors give the same checksum in any file layout and any process."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        h.update(json.dumps([name, _dtype_name(t, name), list(t.shape), t.numel() * t.element_size()]).encode())
        h.update(_raw(t))
    return h.hexdigest()[:16]


def _metadata_checksum(metadata: dict[str, str]) -> str:
    rest = sorted((k, v) for k, v in metadata.items() if k not in _RESERVED)
    return hashlib.sha256(json.dumps(rest).encode()).hexdigest()[:16]


def serialize_weights(state: dict[str, Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """safetensors bytes written deterministically: the same tensors and metadata give the same bytes
    in every process (the header's keys sorted; tensors laid out widest dtype first, then by name)."""
    header: dict[str, Any] = {"__metadata__": dict(sorted((metadata or {}).items()))} if metadata else {}
    order = sorted(state, key=lambda n: (-state[n].element_size(), n))
    offset, chunks = 0, []
    for name in order:
        t = state[name]
        raw = _raw(t)
        header[name] = {"dtype": _dtype_name(t, name), "shape": list(t.shape),
                        "data_offsets": [offset, offset + raw.nbytes]}
        offset += raw.nbytes
        chunks.append(raw)
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    text += b" " * (-len(text) % 8)  # safetensors pads the header to 8 bytes with spaces
    return b"".join([struct.pack("<Q", len(text)), text, *chunks])


def save_weights(state: dict[str, Tensor], path: PathLike, metadata: dict[str, str] | None = None) -> str:
    """Save tensors as safetensors, atomically and byte-stably; returns their weights checksum.

    Tensors are detached, moved to CPU and made contiguous. The metadata gains the weights
    checksum and a checksum of the other entries, which loading checks."""
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise bad_input("metadata", "safetensors metadata must map str to str.")
    out: dict[str, Tensor] = {}
    for name, t in state.items():
        if not isinstance(name, str):
            raise bad_input("state", f"tensor names must be strings, got {name!r}.")
        if not isinstance(t, Tensor):
            raise bad_input("state", f"entry {name!r} is a {type(t).__name__}, expected a torch.Tensor.")
        out[name] = t.detach().to("cpu").contiguous()
    meta = {k: v for k, v in (metadata or {}).items() if k not in _RESERVED}
    checksum = weights_checksum(out)
    meta[METADATA_CHECKSUM_KEY] = _metadata_checksum(meta)
    meta[CHECKSUM_KEY] = checksum
    atomic_write_bytes(path, serialize_weights(out, meta))
    return checksum


def _corrupted(path: Path, why: str) -> ProbeInputError:
    return bad_input(str(path), f"corrupted: {why}.")


def _read(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file; a file safetensors cannot read is corrupted."""
    if not path.is_file():
        raise bad_input(str(path), "weights file not found.")
    data = path.read_bytes()
    try:
        tensors = _st_load(data)
        (n,) = struct.unpack("<Q", data[:8])
        meta = json.loads(data[8:8 + n]).get("__metadata__") or {}
    except Exception as e:  # safetensors raises SafetensorError / ValueError on bad headers
        raise _corrupted(path, f"not a readable safetensors file (truncated or corrupt: {e})") from None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _corrupted(path, "its metadata is not a map of strings")
    return tensors, meta


def check_weights(path: PathLike, tensors: dict[str, Tensor], metadata: dict[str, str]) -> str | None:
    """Check tensors read from ``path`` against the checksums its metadata recorded when it was saved;
    returns the weights checksum, or None for a file saved before checksums were recorded."""
    path = Path(path)
    want = metadata.get(CHECKSUM_KEY)
    if want is None:
        return None
    if metadata.get(METADATA_CHECKSUM_KEY) != _metadata_checksum(metadata):
        raise _corrupted(path, "its metadata differs from what was saved (metadata checksum mismatch)")
    have = weights_checksum(tensors)
    if have != want:
        raise _corrupted(path, f"its tensors do not match the weights checksum recorded when it was saved "
                               f"({have} read, {want} recorded)")
    return want


def load_checked(path: PathLike, *, warn_unrecorded: bool = False) -> tuple[dict[str, Tensor], str]:
    """(tensors on the CPU, their weights checksum), checked against the checksum recorded at save time.

    A missing file, or one that is truncated, damaged or edited, raises ProbeInputError naming the
    file ("corrupted"). A file saved before checksums were recorded loads unchecked (its checksum is
    computed), with a warning when ``warn_unrecorded`` (a stack's own files)."""
    path = Path(path)
    tensors, meta = _read(path)
    checksum = check_weights(path, tensors, meta)
    if checksum is None:
        if warn_unrecorded:
            warnings.warn(f"{path}: records no weights checksum (saved before unclip-probe recorded them), so "
                          "damage to it cannot be detected; `python -m unclip_probe.backends.world.seal "
                          f"{path.parent}` records one without changing a weight", stacklevel=3)
        checksum = weights_checksum(tensors)
    return tensors, checksum


def load_weights(path: PathLike) -> dict[str, Tensor]:
    """Load a safetensors file onto the CPU, checked as :func:`load_checked`."""
    return load_checked(path)[0]


def recorded_checksum(path: PathLike) -> str | None:
    """The weights checksum a file's header records (cheap: the tensors are not read), or None."""
    return load_metadata(path).get(CHECKSUM_KEY)


def checksum_of(path: PathLike) -> str:
    """A weights file's weights checksum: the one its header records, or computed for an old file."""
    return recorded_checksum(path) or load_checked(path)[1]


def load_metadata(path: PathLike) -> dict[str, str]:
    """The string metadata stored in a safetensors file's header (stage name, step, checksums)."""
    path = Path(path)
    if not path.is_file():
        raise bad_input(str(path), "weights file not found.")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:
        raise _corrupted(path, f"not a readable safetensors file (truncated or corrupt: {e})") from None


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
