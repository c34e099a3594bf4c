"""The training-state checkpoint pair: ``<name>.train.safetensors`` + ``<name>.train.json``.

Everything needed for an exact resume, without pickle: raw weights, EMA weights,
AdamW moments and RNG states as tensors in safetensors; step counts, scalars and
the TrainConfig in JSON. The JSON is written last and names the weights checksum
of the tensors file (which that file also records, checked on every load), so a
half-written, torn or damaged pair is detectable. Before a new pair is written
the current complete pair is kept as ``<name>.train.prev.*`` (hard link, or a
copy where links are not possible), so at every instant at least one complete
pair exists: a run killed mid-write never loses the last good checkpoint
(docs/design.md §7).
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from unclip_probe.checkpoints import atomic_write_bytes, file_checksum, load_checked, save_weights
from unclip_probe.errors import ProbeInputError, bad_input

FORMAT = "unclip-probe/train-state/1"


@dataclass
class TrainState:
    """A loaded training checkpoint (see module docstring for the file layout)."""

    step: int
    total_seconds: float
    last_loss: float | None
    world_size: int
    device_type: str
    train_config: dict[str, Any]
    model_config: dict[str, Any]
    model: dict[str, Tensor]
    ema: dict[str, Tensor]
    optimizer: dict[str, Any]  # {"tensors": {"<idx>.<key>": Tensor}, "scalars": {"<idx>": {key: {...}}}}
    rng: dict[str, Tensor] = field(default_factory=dict)  # "cpu.<rank>", "loss.<rank>", "cuda.<rank>"
    source: str = ""  # the JSON file it came from


def pair_paths(out_dir: Path, name: str, prev: bool = False) -> tuple[Path, Path]:
    stem = f"{name}.train.prev" if prev else f"{name}.train"
    return out_dir / f"{stem}.safetensors", out_dir / f"{stem}.json"


def flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()['state']`` into tensors (``opt.state.<i>.<k>``) and JSON scalars."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor) and v.dim() > 0:
                tensors[f"opt.state.{idx}.{k}"] = v
            elif isinstance(v, Tensor):
                scalars.setdefault(str(idx), {})[k] = {"value": v.item(), "dtype": str(v.dtype).removeprefix("torch.")}
            else:
                scalars.setdefault(str(idx), {})[k] = {"value": v, "dtype": None}
    return tensors, scalars


def restore_optimizer(opt: torch.optim.Optimizer, state: TrainState) -> None:
    """Load AdamW moments and step counts saved by :func:`flatten_optimizer` into ``opt``."""
    per: dict[int, dict[str, Any]] = {}
    for key, t in state.optimizer["tensors"].items():
        idx, k = key.split(".", 1)
        per.setdefault(int(idx), {})[k] = t
    for idx, st in state.optimizer["scalars"].items():
        for k, rec in st.items():
            v = rec["value"] if rec["dtype"] is None else torch.tensor(rec["value"], dtype=getattr(torch, rec["dtype"]))
            per.setdefault(int(idx), {})[k] = v
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    if any(i >= n_params for i in per):
        raise bad_input(state.source, f"optimizer state covers more parameters than the model's {n_params}.")
    opt.load_state_dict({"state": per, "param_groups": opt.state_dict()["param_groups"]})


def _link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` hold ``src``'s bytes, atomically (hard link if possible: no extra IO)."""
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _complete(weights: Path, meta: Path) -> tuple[dict[str, Any] | None, str, dict[str, Tensor] | None]:
    """(parsed JSON, "", tensors) when the pair is complete and consistent, else (None, why not, None)."""
    if not meta.is_file():
        return None, f"{meta.name} missing", None
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None, f"{meta.name} is not valid JSON", None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        return None, f"{meta.name} is not a {FORMAT} file", None
    if not weights.is_file():
        return None, f"{weights.name} missing", None
    try:
        tensors, checksum = load_checked(weights)  # a damaged tensors file is refused here
    except ProbeInputError as err:
        return None, str(err).rstrip("."), None
    # a pair written before issue 21 names the file's bytes instead of its tensors
    if info.get("weights_checksum") != checksum and info.get("weights_checksum") != file_checksum(weights):
        return None, f"{weights.name} does not match the checksum in {meta.name} (half-written)", None
    return info, "", tensors


def save_train_state(out_dir: Path, name: str, *, step: int, total_seconds: float, last_loss: float | None,
                     world_size: int, device_type: str, train_config: dict[str, Any], model_config: dict[str, Any],
                     model: dict[str, Tensor], ema: dict[str, Tensor], optimizer_sd: dict[str, Any],
                     rng: dict[str, Tensor]) -> None:
    """Write the pair: keep the current complete pair as prev, then tensors, then the JSON last."""
    w, j = pair_paths(out_dir, name)
    pw, pj = pair_paths(out_dir, name, prev=True)
    if _complete(w, j)[0] is not None:  # a torn or damaged current pair never replaces a good prev
        _link_or_copy(w, pw)
        _link_or_copy(j, pj)
    opt_tensors, opt_scalars = flatten_optimizer(optimizer_sd)
    tensors = {f"model.{k}": v for k, v in model.items()}
    tensors.update({f"ema.{k}": v for k, v in ema.items()})
    tensors.update(opt_tensors)
    tensors.update({f"rng.{k}": v for k, v in rng.items()})
    checksum = save_weights(tensors, w, metadata={"format": FORMAT, "stage": name, "step": str(step)})
    info = {
        "format": FORMAT, "stage": name, "step": step, "total_seconds": total_seconds, "last_loss": last_loss,
        "world_size": world_size, "device_type": device_type, "train_config": train_config,
        "model_config": model_config, "optimizer_scalars": opt_scalars,
        "weights_file": w.name, "weights_checksum": checksum,
    }
    atomic_write_bytes(j, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def load_train_state(out_dir: Path, name: str) -> TrainState | None:
    """The newest complete pair (current, else prev with a warning); None when training never checkpointed."""
    candidates = [pair_paths(out_dir, name), pair_paths(out_dir, name, prev=True)]
    if not any(j.exists() for _, j in candidates):
        if any(w.exists() for w, _ in candidates):
            warnings.warn(f"{out_dir}: found {name}.train.safetensors without its JSON (a first checkpoint "
                          "killed mid-write); starting from step 0.", stacklevel=3)
        return None
    reasons = []
    for i, (w, j) in enumerate(candidates):
        info, why, tensors = _complete(w, j)
        if info is None:
            reasons.append(why)
            continue
        if i == 1:
            warnings.warn(f"{j.parent}: the latest training checkpoint is incomplete ({reasons[0]}); resuming "
                          f"from the previous one at step {info['step']}.", stacklevel=3)
        part = {p: {k[len(p) + 1:]: v for k, v in tensors.items() if k.startswith(p + ".")}
                for p in ("model", "ema", "opt.state", "rng")}
        return TrainState(
            step=int(info["step"]), total_seconds=float(info["total_seconds"]), last_loss=info.get("last_loss"),
            world_size=int(info["world_size"]), device_type=str(info["device_type"]),
            train_config=info["train_config"], model_config=info["model_config"], model=part["model"],
            ema=part["ema"], optimizer={"tensors": part["opt.state"], "scalars": info["optimizer_scalars"]},
            rng=part["rng"], source=str(j),
        )
    raise bad_input(str(candidates[0][1]), f"no complete training checkpoint to resume from ({'; '.join(reasons)}); "
                                           "pass resume=False to start over.")


def check_compatible(state: TrainState, here: dict[str, Any], model_cfg: dict[str, Any],
                     may_change: tuple[str, ...]) -> None:
    """Refuse to resume with a different TrainConfig (beyond ``may_change``) or model config."""
    diff = [k for k in here if k not in may_change and state.train_config.get(k) != here[k]]
    if diff:
        listed = ", ".join(f"{k} ({state.train_config.get(k)!r} there, {here[k]!r} here)" for k in diff)
        raise bad_input("cfg", f"differs from the checkpoint {state.source} in {listed}; use the same values "
                               "to resume or pass resume=False to start over.")
    if state.model_config != model_cfg:
        keys = sorted(k for k in set(model_cfg) | set(state.model_config)
                      if model_cfg.get(k) != state.model_config.get(k))
        raise bad_input(state.source, f"was trained with a different model config (differs in {', '.join(keys)}); "
                                      "pass resume=False to start over.")


def restore_rng(state: TrainState, rank: int, world_size: int, gen: torch.Generator, dev: torch.device,
                loss_seed: int) -> None:
    """Restore this rank's global and loss RNG; reseed (with a warning) if the layout changed."""
    r = rank
    if state.world_size == world_size and state.device_type == dev.type and f"loss.{r}" in state.rng:
        torch.set_rng_state(state.rng[f"cpu.{r}"])
        gen.set_state(state.rng[f"loss.{r}"])
        if dev.type == "cuda" and f"cuda.{r}" in state.rng:
            torch.cuda.set_rng_state(state.rng[f"cuda.{r}"], dev)
        return
    warnings.warn(f"{state.source}: saved on {state.world_size} {state.device_type} process(es), resumed on "
                  f"{world_size} {dev.type}; random streams are reseeded, so the resume is not bit-exact.",
                  stacklevel=3)
    gen.manual_seed(loss_seed + 7919 * state.step)


def trim_log(path: Path, keep_through: int) -> None:
    """Drop log lines past the step we resume from (a killed run may have logged beyond its checkpoint)."""
    if not path.exists():
        return
    if keep_through == 0:
        path.unlink()
        return
    lines = []
    for ln in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(ln)["step"] <= keep_through:
                lines.append(ln)
        except (ValueError, KeyError, TypeError):  # a line torn by a kill mid-append
            continue
    atomic_write_bytes(path, "".join(ln + "\n" for ln in lines).encode())


def remove_stale_tmp(out_dir: Path, name: str) -> None:
    """Delete ``<name>.*.tmp-<pid>`` files left by a run killed mid-write (they are never read)."""
    for p in out_dir.glob(f"{name}.*.tmp-*"):
        p.unlink(missing_ok=True)
