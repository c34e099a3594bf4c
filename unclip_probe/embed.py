"""Image embeddings at scale: a stack's ``encode_image`` over many images, in sharded safetensors
(`unclip-probe embed`; docs/design.md §5, §9).

Layout of an output folder::

    shard-00000.safetensors   "embeddings" (count, D) float32; metadata: format, shard, start, count,
    shard-00001.safetensors   dim, model_key, source_checksum (and the checksums every weights file has)
    ...
    index.json                format, n, dim, shard_size, shards [{file, start, count, checksum}],
                              stack, checksums, clip_checksum, model_key, activation, source,
                              source_checksum, ids (one per image) and, for the world, scenes

Sources: rendered world scenes (``embed_world``: scenes ``0 .. n-1`` of stream ``seed``, rendered at
64 px, with each scene's description as JSON, so a probe can read ground truth per image) or the
image files in a folder (``embed_folder``: sorted by name; ids are the file names).

Resumable: a shard is written atomically, and a rerun keeps every shard that is whole and belongs to
this model and source, embedding only the others. Parallel: under ``torchrun --nproc_per_node N``
(or with explicit ``rank`` / ``world_size``) shard ``i`` belongs to rank ``i % world_size`` and each
rank embeds only its own; no process group is needed. The index is written by whichever rank, when
it has finished, finds every shard present and whole: the last rank to finish always does (it sees
the other ranks' completed shards), and two ranks finishing together write the same bytes,
atomically. A folder with an index is complete; ``load_embeddings`` reads it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from unclip_probe import validate
from unclip_probe.checkpoints import (atomic_write_bytes, config_to_dict, load_checked, load_config, load_metadata,
                                      recorded_checksum, save_weights)
from unclip_probe.errors import ProbeInputError, bad_input

FORMAT = "unclip-probe/embeddings/1"
INDEX = "index.json"
SHARD_SIZE = 4096  # images per shard: 2 MB at D = 128
WORLD_PX = 64  # world scenes are rendered at the world's native size (the world CLIP's input)


@dataclass
class EmbedResult:
    """What one call did: the shards it wrote and kept (this rank's), and whether it wrote the index."""

    out: Path
    written: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    index_written: bool = False


@dataclass(frozen=True)
class _Source:
    description: dict[str, Any]  # JSON: what was embedded
    ids: list  # one per image: a scene index or a file name
    load: Callable[[int, int], list]  # images lo .. hi-1 (PIL images or paths) for encode_image
    scenes: list[dict] | None = None  # world: each scene as JSON

    @property
    def checksum(self) -> str:
        return _sha([self.description, self.ids, self.scenes])


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.safetensors"


def distributed_rank() -> tuple[int, int]:
    """(rank, world_size) from torchrun's environment (RANK, WORLD_SIZE); (0, 1) outside it."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def embed_scenes(stack, scenes: Sequence, batch_size: int = 256) -> Tensor:
    """Image embeddings (N, D), float32 on the CPU, of world scenes rendered at WORLD_PX, encoded
    `batch_size` at a time and kept in memory (no shards: for the evaluation sets of a script)."""
    from unclip_probe.world import render

    batch_size = validate.count(batch_size, "batch_size")
    with torch.no_grad():
        return torch.cat([stack.encode_image([render(s, size=WORLD_PX) for s in scenes[i:i + batch_size]]).float().cpu()
                          for i in range(0, len(scenes), batch_size)])


# ----------------------------------------------------------------------------- sources
def _world_source(n: int, seed: int) -> _Source:
    from unclip_probe.world import render, sample_scenes

    scenes = sample_scenes(n, seed=seed)
    return _Source({"kind": "world", "n": n, "seed": seed, "size": WORLD_PX}, list(range(n)),
                   lambda lo, hi: [render(s, size=WORLD_PX) for s in scenes[lo:hi]],
                   [config_to_dict(s) for s in scenes])


def _folder_source(folder: str | os.PathLike, argument: str) -> _Source:
    from unclip_probe.imaging import image_files

    files = image_files(folder, argument)
    return _Source({"kind": "folder", "folder": str(Path(folder).resolve())}, [f.name for f in files],
                   lambda lo, hi: files[lo:hi])  # paths: encode_image opens them (and says what it converts)


def embed_world(stack, out: str | os.PathLike, n: int, *, seed: int = 0, shard_size: int = SHARD_SIZE,
                batch_size: int = 256, rank: int | None = None, world_size: int | None = None,
                progress: bool = True) -> EmbedResult:
    """Embed world scenes 0 .. n-1 of stream ``seed`` (rendered at 64 px) with ``stack.encode_image``
    into ``out`` (see the module docstring); their scenes go into the index as JSON."""
    n, seed = validate.count(n, "n"), validate.seed(seed)
    return _embed(stack, _world_source(n, seed), out, shard_size, batch_size, rank, world_size, progress)


def embed_folder(stack, folder: str | os.PathLike, out: str | os.PathLike, *, shard_size: int = SHARD_SIZE,
                 batch_size: int = 256, rank: int | None = None, world_size: int | None = None,
                 progress: bool = True) -> EmbedResult:
    """Embed the image files directly in ``folder`` (sorted by name) with ``stack.encode_image``."""
    return _embed(stack, _folder_source(folder, "folder"), out, shard_size, batch_size, rank, world_size, progress)


# ----------------------------------------------------------------------------- writing
def _model_info(stack) -> dict[str, Any]:
    validate.has_members(stack, ("encode_image", "embed_dim", "checksums", "name"), "stack",
                         "a stack, e.g. up.load_stack('world', 'checkpoints/world')")
    checksums = dict(sorted(stack.checksums.items()))
    clip = getattr(stack, "clip", None)
    return {"stack": stack.name, "checksums": checksums, "clip_checksum": getattr(clip, "checksum", None) or "",
            "model_key": _sha([stack.name, checksums]), "dim": int(stack.embed_dim)}


def _shard_state(path: Path, want: dict[str, str], *, full: bool = True) -> str:
    """"ok" (whole, and this model's and source's), "missing", or "damaged"; raises for a shard of
    another model, source or sharding (never overwritten silently). ``full=False`` reads only the
    header (enough for a shard some rank has just written: writes are atomic; load_embeddings
    checks every tensor)."""
    if not path.is_file():
        return "missing"
    try:
        meta = load_metadata(path)
        tensors = load_checked(path)[0] if full else None
    except ProbeInputError:
        return "damaged"
    differ = [k for k in want if meta.get(k) != want[k]]
    if differ:
        raise bad_input("out", f"{str(path)!r} holds embeddings of another model, image set or sharding (its "
                               f"{', '.join(differ)} differ); write to another folder or delete it.")
    z = None if tensors is None else tensors.get("embeddings")
    if full and (z is None or tuple(z.shape) != (int(want["count"]), int(want["dim"]))):
        return "damaged"
    return "ok" if recorded_checksum(path) else "damaged"


def _embed(stack, source: _Source, out, shard_size, batch_size, rank, world_size, progress) -> EmbedResult:
    shard_size = validate.count(shard_size, "shard_size")
    batch_size = validate.count(batch_size, "batch_size")
    env_rank, env_world = distributed_rank()
    world_size = validate.count(env_world if world_size is None else world_size, "world_size")
    rank = validate.count(env_rank if rank is None else rank, "rank", minimum=0, maximum=world_size - 1)
    out = validate.output_path(out, "out", folder=True)
    info = _model_info(stack)
    N = len(source.ids)
    n_shards = math.ceil(N / shard_size)
    bounds = [(i * shard_size, min(N, (i + 1) * shard_size)) for i in range(n_shards)]
    common = {"format": FORMAT, "dim": str(info["dim"]), "model_key": info["model_key"],
              "source_checksum": source.checksum}

    def want(i: int) -> dict[str, str]:
        lo, hi = bounds[i]
        return {**common, "shard": str(i), "start": str(lo), "count": str(hi - lo)}

    index = out / INDEX
    if index.is_file():
        old = _read_index(index)
        if (old.get("model_key"), old.get("source_checksum"), old.get("shard_size")) != \
                (info["model_key"], source.checksum, shard_size):
            raise bad_input("out", f"{str(index)!r} indexes embeddings of another model, image set or shard size; "
                                   "write to another folder or delete it.")
    out.mkdir(parents=True, exist_ok=True)
    result = EmbedResult(out)
    todo = []
    for i in range(rank, n_shards, world_size):
        for tmp in out.glob(f"{shard_name(i)}.tmp-*"):  # left by a run of this rank killed mid-write
            tmp.unlink(missing_ok=True)
        state = _shard_state(out / shard_name(i), want(i))
        if state == "damaged":
            warnings.warn(f"{out / shard_name(i)}: damaged, embedding it again", stacklevel=3)
        (result.kept if state == "ok" else todo).append(i)
    bar = tqdm(total=sum(bounds[i][1] - bounds[i][0] for i in todo), desc=f"embed (rank {rank})",
               disable=not progress, dynamic_ncols=True)
    for i in todo:
        lo, hi = bounds[i]
        parts = []
        for b in range(lo, hi, batch_size):
            with torch.no_grad():
                z = stack.encode_image(source.load(b, min(hi, b + batch_size)))  # (B, D)
            parts.append(z.detach().float().cpu())
            bar.update(len(z))
        save_weights({"embeddings": torch.cat(parts)}, out / shard_name(i), metadata=want(i))
        result.written.append(i)
    bar.close()
    if all(_shard_state(out / shard_name(i), want(i), full=False) == "ok" for i in range(n_shards)):
        record = {"format": FORMAT, "n": N, "dim": info["dim"], "shard_size": shard_size,
                  "shards": [{"file": shard_name(i), "start": lo, "count": hi - lo,
                              "checksum": recorded_checksum(out / shard_name(i))} for i, (lo, hi) in enumerate(bounds)],
                  **{k: info[k] for k in ("stack", "checksums", "clip_checksum", "model_key")},
                  "activation": "image_embeds", "source": source.description, "source_checksum": source.checksum,
                  "ids": source.ids}
        if source.scenes is not None:
            record["scenes"] = source.scenes
        atomic_write_bytes(index, (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode())
        result.index_written = True
    return result


# ----------------------------------------------------------------------------- reading
def _read_index(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise bad_input(str(path), f"not a readable embeddings index ({e}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad_input(str(path), f"not a {FORMAT} index.")
    return meta


def load_embeddings(path: str | os.PathLike) -> tuple[Tensor, dict[str, Any]]:
    """(embeddings (N, D) float32 on the CPU, meta) from an `unclip-probe embed` folder (or its
    index.json): meta is the index (see the module docstring). Every shard is checked against the
    index's checksum; a folder without an index is incomplete and refused. A single .safetensors
    file holding one "embeddings" tensor (N, D) is read too (hooked activations saved with
    ``save_weights``); meta is then its metadata."""
    p = Path(path)
    if p.is_file() and p.suffix == ".safetensors":
        tensors, _ = load_checked(p)
        z = tensors.get("embeddings")
        if z is None or z.ndim != 2 or not z.is_floating_point():
            raise bad_input(str(p), "holds no float tensor 'embeddings' (N, D).")
        return z.float(), load_metadata(p)
    index = p / INDEX if p.is_dir() else p
    if not index.is_file():
        why = "an embed folder without index.json is incomplete (rerun `unclip-probe embed` to finish it)" \
            if p.is_dir() else "no such embeddings folder or file"
        raise bad_input(str(p), f"{why}.")
    meta = _read_index(index)
    parts = []
    for rec in meta["shards"]:
        f = index.parent / rec["file"]
        tensors, checksum = load_checked(f)
        if checksum != rec["checksum"]:
            raise bad_input(str(f), f"does not match the checksum in {index} (another run's shard).")
        parts.append(tensors["embeddings"])
    z = torch.cat(parts) if parts else torch.zeros(0, meta["dim"])
    if tuple(z.shape) != (meta["n"], meta["dim"]):
        raise bad_input(str(index), f"promises ({meta['n']}, {meta['dim']}) embeddings, the shards hold "
                                    f"{tuple(z.shape)}.")
    return z.float(), meta


def scenes_of(meta: dict[str, Any]) -> list:
    """The world scenes (``world.Scene``) of a world embeddings index, one per row."""
    from unclip_probe.world import Scene

    if "scenes" not in meta:
        raise bad_input("meta", "holds no scenes (embeddings of a folder of images, not of the world).")
    return [load_config(Scene, s, source="index.json scenes") for s in meta["scenes"]]
