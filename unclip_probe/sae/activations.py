"""Any hooked activation of a CLIP image tower as an (N, W) tensor an SAE trains on (``SAERecipe(data=...)``).

Token activations (B, T, W) are pooled: ``pool="cls"`` takes token 0, open_clip ViTs' class token
(what the tower's output is projected from); ``"mean"`` averages over all T tokens, class token
included. Activations that are already (B, W) (``visual.hook_out``) are taken as they are;
attention patterns (B, H, T, T) are refused. Names: ``clip.hook_names()`` (unclip_probe.clip.hooks).
"""
from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from unclip_probe import validate
from unclip_probe.errors import bad_input

POOLS = ("cls", "mean")


def pool_tokens(act: Tensor, pool: str, name: str = "name") -> Tensor:
    """(B, T, W) -> (B, W) by ``pool``; (B, W) unchanged."""
    if act.ndim == 2:
        return act
    if act.ndim != 3:
        raise bad_input(name, f"its activation has shape {tuple(act.shape)}; only (B, T, W) token activations "
                              "or (B, W) vectors pool to one row per image.")
    return act[:, 0] if pool == "cls" else act.mean(1)  # (B, W)


@torch.no_grad()
def collect_activations(clip, images, name: str, *, pool: str = "cls", batch_size: int = 64,
                        progress: bool = False) -> Tensor:
    """The activation at hook ``name`` of the image tower for each image, pooled to one row:
    (N, W) float32 on the CPU. ``images``: a list of PIL images or paths (or a (N, 3, H, W) tensor
    in [0, 1]), run through ``clip.run_with_cache`` ``batch_size`` at a time."""
    validate.clip(clip, needs=("run_with_cache", "hook_names"))
    validate.choice(pool, POOLS, "pool")
    batch_size = validate.count(batch_size, "batch_size")
    if not isinstance(name, str) or not name.startswith("visual."):
        raise bad_input("name", f"expected a hook name of the image tower ('visual.…'; see clip.hook_names()), "
                                f"got {name!r}.")
    n = len(images)
    if n == 0:
        raise bad_input("images", "expected at least one image, got none.")
    rows = []
    for lo in tqdm(range(0, n, batch_size), desc=name, disable=not progress):
        with validate.renamed(names_filter="name"):
            _, cache = clip.run_with_cache(images=images[lo:lo + batch_size], names_filter=[name])
        rows.append(pool_tokens(cache[name], pool).float().cpu())
    return torch.cat(rows)
