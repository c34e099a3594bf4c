"""The one training loop every stage uses (CLIP, priors, decoder, upsampler; docs/design.md §5).

A stage only writes a :class:`Recipe` (model, config, batches, loss); this loop
owns everything else: AdamW with warmup + cosine, gradient clipping, EMA
weights, tqdm progress and a JSONL log, a wall-clock budget, periodic atomic
checkpoints and *exact* resume (a run stopped at step N and resumed equals an
uninterrupted run), and DDP under ``torchrun``. Exactness rests on one rule
for recipes: every random draw in ``loss`` comes from the ``generator`` argument
(its state is checkpointed), and ``batch`` is a pure function of its arguments.
"""
from __future__ import annotations

import contextlib
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from unclip_probe.checkpoints import (atomic_write_bytes, checksum_of, config_to_dict, load_state_into, save_config,
                                      save_weights)
from unclip_probe.errors import bad_input
from unclip_probe.train import distributed as dist
from unclip_probe.train.ema import EMA
from unclip_probe.train.resume import (TrainState, check_compatible, load_train_state, restore_optimizer,
                                       remove_stale_tmp, restore_rng, save_train_state, trim_log)

MIN_LR_RATIO = 0.1  # cosine decays to 10 % of the peak lr (nanoGPT's choice)
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every")  # may differ between runs of one training


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings, saved in the training checkpoint and checked on resume."""

    steps: int = 1000
    batch_size: int = 64  # the global batch; recipes split it with rank_slice()
    lr: float = 3e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 100
    lr_schedule: str = "cosine"  # or "constant"
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    ema_decay: float = 0.999
    ema_start: int = 0  # before this step the EMA simply copies the weights
    checkpoint_every: int = 200  # steps; also at the end and when the budget runs out
    log_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad_input(f"TrainConfig.{name}", f"expected a positive int, got {getattr(self, name)!r}.")
        for name in ("warmup_steps", "ema_start", "seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise bad_input(f"TrainConfig.{name}", f"expected an int >= 0, got {getattr(self, name)!r}.")
        if not self.lr > 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise bad_input("TrainConfig", "lr must be > 0, weight_decay and grad_clip >= 0.")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise bad_input("TrainConfig.betas", f"expected two numbers in [0, 1), got {self.betas!r}.")
        if self.lr_schedule not in ("cosine", "constant"):
            raise bad_input("TrainConfig.lr_schedule", f"expected 'cosine' or 'constant', got {self.lr_schedule!r}.")
        if not 0 <= self.ema_decay < 1:
            raise bad_input("TrainConfig.ema_decay", f"expected a number in [0, 1), got {self.ema_decay!r}.")


class Recipe(Protocol):
    """What a stage provides. ``name`` names the files: ``<name>.safetensors``, ``<name>.json``, ...

    ``batch(step, rank, world_size, device)`` must be a deterministic function of its arguments:
    this rank's share of global batch ``step``. ``loss(model, batch, generator)`` must draw all its
    randomness (noise, timesteps, condition dropout) from ``generator`` — e.g.
    ``torch.randn(shape, generator=g, device=g.device)`` — and call ``model(...)`` (under DDP it is
    the wrapper, and only its forward averages gradients). Optional: ``evaluate(model) -> dict``,
    run on the EMA model when training finishes; its numbers go into ``<name>.summary.json``.

    Optional hooks for a constraint on the weights (a sparse autoencoder's unit-norm decoder rows),
    each called with the raw model (never the DDP wrapper or the EMA; in place, the same on every
    rank, under ``torch.no_grad``): ``before_step(model)`` once the gradients are complete (averaged
    over ranks), before clipping and the optimizer step, e.g. to project them; ``after_step(model)``
    after the optimizer step and before the EMA update, e.g. to renormalise. A recipe without them
    trains exactly as before.
    """

    name: str

    def build_model(self) -> nn.Module: ...
    def model_config(self) -> Any: ...
    def batch(self, step: int, rank: int, world_size: int, device: torch.device) -> Any: ...
    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]: ...


@dataclass
class TrainSummary:
    """What one call of :func:`train` did; written to ``<name>.summary.json`` when training finishes."""

    stage: str
    steps_done: int  # total optimizer steps in the checkpoint (all runs)
    finished: bool  # steps_done == cfg.steps
    wall_seconds: float  # this run
    total_seconds: float  # training time over all runs
    final_loss: float | None
    eval: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    machine: str = ""
    start_step: int = 0  # where this run started (> 0 after a resume)


def rank_slice(batch_size: int, rank: int, world_size: int) -> slice:
    """Indices of the global batch that ``rank`` computes (shares differ by at most one)."""
    lo, hi = batch_size * rank // world_size, batch_size * (rank + 1) // world_size
    return slice(lo, hi)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate for 0-based ``step``: linear warmup, then cosine to MIN_LR_RATIO·lr (or constant)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    lo = cfg.lr * MIN_LR_RATIO
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * progress))


def _loss_seed(seed: int, rank: int) -> int:
    return seed * 1_000_003 + rank  # distinct noise per rank, reproducible per (seed, rank)


def _check_args(recipe: Any, cfg: Any, budget_minutes: Any, stop_after: Any, metadata: Any) -> None:
    for attr in ("name", "build_model", "model_config", "batch", "loss"):
        if not hasattr(recipe, attr):
            raise bad_input("recipe", f"{type(recipe).__name__} has no {attr!r}; a Recipe needs name, "
                                      "build_model, model_config, batch and loss.")
    if not isinstance(recipe.name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", recipe.name):
        raise bad_input("recipe.name", f"expected a file-name-safe string, got {recipe.name!r}.")
    if not isinstance(cfg, TrainConfig):
        raise bad_input("cfg", f"expected a TrainConfig, got {type(cfg).__name__}.")
    if budget_minutes is not None and not (isinstance(budget_minutes, (int, float)) and budget_minutes > 0):
        raise bad_input("budget_minutes", f"expected a positive number of minutes or None, got {budget_minutes!r}.")
    if stop_after is not None and (not isinstance(stop_after, int) or stop_after < 0):
        raise bad_input("stop_after", f"expected a step count >= 0 or None, got {stop_after!r}.")
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise bad_input("metadata", "expected a dict of str to str (it goes into the safetensors header).")


def train(recipe: Recipe, cfg: TrainConfig, out_dir: str | Path, *, budget_minutes: float | None = None,
          device: str = "cpu", resume: bool = True, progress: bool = True, metadata: dict[str, str] | None = None,
          stop_after: int | None = None) -> TrainSummary:
    """Train ``recipe`` to ``cfg.steps`` (or until ``budget_minutes`` of this run, or ``stop_after`` total
    steps), checkpointing into ``out_dir``; with ``resume=True`` continue from the checkpoint there.
    """
    t0 = time.monotonic()
    _check_args(recipe, cfg, budget_minutes, stop_after, metadata)
    dev = dist.resolve_device(device)
    env = dist.setup(dev)
    try:
        if dev.type == "cuda" and env.enabled:
            dev = torch.device("cuda", env.local_rank)
        loop = _Loop(recipe, cfg, Path(out_dir), dev, env, metadata or {})
        return loop.run(t0, None if budget_minutes is None else 60.0 * budget_minutes, resume, progress, stop_after)
    finally:
        dist.teardown(env)


class _Loop:
    """One call of :func:`train`: model, EMA, optimizer and RNGs, restored from ``out_dir`` when resuming."""

    def __init__(self, recipe: Recipe, cfg: TrainConfig, out: Path, dev: torch.device,
                 env: dist.DistEnv, metadata: dict[str, str]) -> None:
        self.recipe, self.cfg, self.out, self.dev, self.env, self.metadata = recipe, cfg, out, dev, env, metadata
        self.name = recipe.name
        self.log_path = out / f"{self.name}.log.jsonl"
        torch.manual_seed(cfg.seed)  # same initial weights on every rank, and the global RNG for dropout
        self.model = recipe.build_model().to(dev)
        self.model_cfg = config_to_dict(recipe.model_config())
        self.ema = EMA(self.model)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                     weight_decay=cfg.weight_decay)
        self.gen = torch.Generator(device=dev).manual_seed(_loss_seed(cfg.seed, env.rank))
        self.step, self.prev_seconds, self.last_loss = 0, 0.0, None

    def restore(self, state: TrainState) -> None:
        check_compatible(state, config_to_dict(self.cfg), self.model_cfg, RESUMABLE_CHANGES)
        load_state_into(self.model, state.model, source=state.source.replace(".json", ".safetensors"))
        load_state_into(self.ema.model, state.ema, source=state.source.replace(".json", ".safetensors"))
        restore_optimizer(self.opt, state)
        restore_rng(state, self.env.rank, self.env.world_size, self.gen, self.dev,
                    _loss_seed(self.cfg.seed, self.env.rank))
        self.step, self.prev_seconds, self.last_loss = state.step, state.total_seconds, state.last_loss

    def run(self, t0: float, budget_s: float | None, resume: bool, progress: bool,
            stop_after: int | None) -> TrainSummary:
        cfg, env, dev = self.cfg, self.env, self.dev
        if env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        state = load_train_state(self.out, self.name) if resume else None
        if state is not None:
            self.restore(state)
        if env.is_main:
            trim_log(self.log_path, self.step)
            remove_stale_tmp(self.out, self.name)
        start = self.step
        net: nn.Module = self.model
        if env.enabled:
            net = nn.parallel.DistributedDataParallel(self.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
        end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
        bar = tqdm(total=cfg.steps, initial=start, desc=self.name, disable=not (progress and env.is_main),
                   dynamic_ncols=True)
        loss = None
        before_step = getattr(self.recipe, "before_step", None)  # optional hooks (see Recipe)
        after_step = getattr(self.recipe, "after_step", None)
        self.model.train()
        while self.step < end:
            lr = lr_at(cfg, self.step)
            for group in self.opt.param_groups:
                group["lr"] = lr
            batch = self.recipe.batch(self.step, env.rank, env.world_size, dev)
            with amp:
                loss, metrics = self.recipe.loss(net, batch, self.gen)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if before_step is not None:
                with torch.no_grad():
                    before_step(self.model)
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.opt.step()
            if after_step is not None:
                with torch.no_grad():
                    after_step(self.model)
            self.ema.update(self.model, cfg.ema_decay if self.step >= cfg.ema_start else 0.0)
            self.step += 1
            bar.update(1)
            out_of_time = budget_s is not None and dist.any_rank(env, time.monotonic() - t0 > budget_s, dev)
            if self.step % cfg.log_every == 0 or self.step == end or out_of_time:
                self.last_loss = dist.mean_across(env, float(loss.detach().float()), dev)
                self._log(lr, metrics, time.monotonic() - t0)
                bar.set_postfix(loss=f"{self.last_loss:.4g}", lr=f"{lr:.2e}")
            if self.step % cfg.checkpoint_every == 0 or self.step == end or out_of_time:
                self.checkpoint(time.monotonic() - t0)
            if out_of_time:
                break
        bar.close()
        return self._finish(t0, start)

    def _log(self, lr: float, metrics: dict[str, Any], elapsed: float) -> None:
        if not self.env.is_main:
            return
        line = {"step": self.step, "loss": self.last_loss, "lr": lr,
                "elapsed_s": round(self.prev_seconds + elapsed, 3),
                "metrics": {k: float(v) for k, v in metrics.items()}}
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def checkpoint(self, elapsed: float) -> None:
        """EMA weights + model config (shipped), then the exact-resume pair; rank 0 writes, all ranks wait."""
        env, dev = self.env, self.dev
        rng: dict[str, Tensor] = {}
        for key, t in [("cpu", torch.get_rng_state()), ("loss", self.gen.get_state())] + (
                [("cuda", torch.cuda.get_rng_state(dev))] if dev.type == "cuda" else []):
            for r, s in enumerate(dist.gather_uint8(env, t, dev)):
                rng[f"{key}.{r}"] = s
        dist.check_ranks_agree(env, self.model, dev)
        if env.is_main:
            meta = {**self.metadata, "stage": self.name, "step": str(self.step)}
            save_weights(self.ema.state_dict(), self.out / f"{self.name}.safetensors", metadata=meta)
            save_config(self.recipe.model_config(), self.out / f"{self.name}.json")
            save_train_state(self.out, self.name, step=self.step, total_seconds=self.prev_seconds + elapsed,
                             last_loss=self.last_loss, world_size=env.world_size, device_type=dev.type,
                             train_config=config_to_dict(self.cfg), model_config=self.model_cfg,
                             model=self.model.state_dict(), ema=self.ema.state_dict(),
                             optimizer_sd=self.opt.state_dict(), rng=rng)
        dist.barrier(env)

    def _finish(self, t0: float, start: int) -> TrainSummary:
        train_seconds = time.monotonic() - t0
        summary = TrainSummary(stage=self.name, steps_done=self.step, finished=self.step >= self.cfg.steps,
                               wall_seconds=train_seconds, total_seconds=self.prev_seconds + train_seconds,
                               final_loss=self.last_loss, device=str(self.dev),
                               machine=dist.machine_description(self.dev), start_step=start)
        if summary.finished and self.env.is_main:
            evaluate = getattr(self.recipe, "evaluate", None)
            if evaluate is not None:
                self.ema.model.eval()
                with torch.no_grad():
                    summary.eval = {k: float(v) for k, v in evaluate(self.ema.model).items()}
            summary.wall_seconds = time.monotonic() - t0
            weights = self.out / f"{self.name}.safetensors"
            record = {**asdict(summary), "train_config": config_to_dict(self.cfg), "model_config": self.model_cfg,
                      "metadata": self.metadata, "weights_checksum": checksum_of(weights) if weights.exists() else None}
            text = json.dumps(record, indent=2, sort_keys=True) + "\n"
            atomic_write_bytes(self.out / f"{self.name}.summary.json", text.encode("utf-8"))
        return summary
