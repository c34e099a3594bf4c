"""Device resolution and process-group plumbing for ``torchrun --nproc_per_node N`` (docs/design.md §5).

Kept apart from the loop so that single-process training never touches
``torch.distributed``. Backends: gloo on CPU, nccl on CUDA. Only rank 0
writes files; the helpers below let the other ranks agree with it (stop
decisions, RNG states for exact resume, a weight checksum).
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from unclip_probe.device import resolve_device  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    owns_group: bool = False  # True when setup() created the process group (so teardown() ends it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> DistEnv:
    """Join the process group described by torchrun's env vars, or return a 1-process env."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        owns = True
    return DistEnv(rank=dist.get_rank(), local_rank=local, world_size=dist.get_world_size(), owns_group=owns)


def teardown(env: DistEnv) -> None:
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def _comm_device(device: torch.device) -> torch.device:
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def any_rank(env: DistEnv, flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any rank (so all ranks stop at the same step)."""
    if not env.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device(device))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def mean_across(env: DistEnv, value: float, device: torch.device) -> float:
    """Mean of a float over ranks (for logging the global loss)."""
    if not env.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_comm_device(device))
    dist.all_reduce(t)
    return float(t.item()) / env.world_size


def gather_uint8(env: DistEnv, t: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
    """Every rank's copy of a same-sized uint8 tensor (RNG states), on the CPU, in rank order."""
    if not env.enabled:
        return [t.cpu()]
    src = t.to(_comm_device(device))
    out = [torch.empty_like(src) for _ in range(env.world_size)]
    dist.all_gather(out, src)
    return [o.cpu() for o in out]


@torch.no_grad()
def check_ranks_agree(env: DistEnv, model: nn.Module, device: torch.device) -> None:
    """Raise if the ranks' weights have drifted apart (a recipe that bypassed the DDP forward)."""
    if not env.enabled:
        return
    s = torch.stack([p.double().sum() for p in model.parameters()]).to(_comm_device(device))
    lo, hi = s.clone(), s.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.allclose(lo, hi, rtol=1e-5, atol=1e-6):
        raise RuntimeError("DDP ranks disagree on the weights; recipe.loss must call model(...) (the DDP "
                           "forward) so gradients are averaged, not a submodule or method of the model.")


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def machine_description(device: torch.device) -> str:
    """Platform, CPU count, torch version and GPU name: what a model card records per stage."""
    text = f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    if device.type == "cuda":
        text += f", {torch.cuda.get_device_name(device)}"
    return text
