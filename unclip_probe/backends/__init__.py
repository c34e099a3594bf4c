"""Stacks behind one protocol (docs/design.md §2): ``base.py`` says what a stack offers;
each backend implements it. ``load_stack(kind, ...)`` is the one loader by name.

| kind | decoder (public repository) | CLIP it reads |
|---|---|---|
| ``world`` | this project's ``checkpoints/world`` | the world CLIP (128) |
| ``kandinsky-2.2`` | kandinsky-community/kandinsky-2-2-decoder (+ ``-prior``) | LAION ViT-bigG-14 (1280) |
| ``stable-unclip-h`` | stabilityai/stable-diffusion-2-1-unclip | LAION ViT-H-14 (1024) |
| ``stable-unclip-l`` | stabilityai/stable-diffusion-2-1-unclip-small | OpenAI ViT-L/14 (768) |
| ``karlo`` | kakaobrain/karlo-v1-alpha (+ ``-image-variations`` for its image tower) | OpenAI ViT-L/14 (768) |

Folders are local only: a path in the repository's layout, or, when no path is given, that
repository's snapshot in the local Hugging Face cache. Nothing here downloads (offline flags on).
Backends import lazily, so naming one does not import another's dependencies.
"""
from __future__ import annotations

import os
from pathlib import Path

from unclip_probe.backends.base import PRIOR_KINDS, Sampling, Stack, StackDefaults
from unclip_probe.errors import bad_input, one_of

# kind -> (the decoder's public repository, the prior's or None)
REPOSITORIES = {
    "world": (None, None),
    "kandinsky-2.2": ("kandinsky-community/kandinsky-2-2-decoder", "kandinsky-community/kandinsky-2-2-prior"),
    "stable-unclip-h": ("stabilityai/stable-diffusion-2-1-unclip", None),
    "stable-unclip-l": ("stabilityai/stable-diffusion-2-1-unclip-small", None),
    "karlo": ("kakaobrain/karlo-v1-alpha", None),
}
STACKS = tuple(REPOSITORIES)


def cached_snapshot(repo: str, argument: str) -> Path:
    """The local Hugging Face cache's snapshot of `repo`, or one sentence saying how to give a folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, local_files_only=True))
    except Exception:  # noqa: BLE001  not cached (or no hub library): the same answer
        raise bad_input(argument, f"no folder given and {repo!r} is not in the local Hugging Face cache; pass the "
                                  f"path of a local copy in that repository's layout (nothing is downloaded)") from None


def load_stack(kind: str, folder: str | Path | None = None, *, decoder: str | Path | None = None,
               prior: str | Path | None = None, device: str = "auto", **kwargs) -> Stack:
    """Load a stack of `kind` (see the table above) from local folders only.

    folder / decoder: the stack's (decoder's) folder (the two names are one argument; ``decoder``
    reads better beside ``prior``); prior: Kandinsky 2.2's prior folder. None: the repository's
    snapshot in the local Hugging Face cache. kwargs go to the backend's loader: ``dtype`` and
    ``compile`` (world), ``clip_text`` (Stable unCLIP: a CLIP text tower for text diffs and
    zero-shot), ``image_encoder`` (Karlo: the image-variations repository's image tower).
    """
    if kind not in REPOSITORIES:
        raise bad_input("kind", one_of(kind, STACKS))
    if folder is not None and decoder is not None:
        raise bad_input("decoder", "give the stack's folder once, as folder or as decoder")
    folder = decoder if folder is None else folder
    repo, prior_repo = REPOSITORIES[kind]
    if kind == "world":
        if folder is None:
            raise bad_input("folder", "the 'world' stack needs its checkpoint folder, e.g. 'checkpoints/world'")
        from unclip_probe.backends.world import UnCLIP

        return UnCLIP.from_pretrained(folder, device=device, **kwargs)
    folder = cached_snapshot(repo, "decoder") if folder is None else folder
    if kind == "kandinsky-2.2":
        from unclip_probe.backends import kandinsky

        prior = cached_snapshot(prior_repo, "prior") if prior is None else prior
        return kandinsky.load(folder, prior, device=device, **kwargs)
    if prior is not None:
        raise bad_input("prior", f"the {kind!r} stack takes no prior folder")
    if kind.startswith("stable-unclip"):
        from unclip_probe.backends import stable_unclip

        return stable_unclip.load(folder, None, device=device, name=kind, **kwargs)
    from unclip_probe.backends import karlo

    return karlo.load(folder, device=device, **kwargs)


__all__ = ["PRIOR_KINDS", "REPOSITORIES", "STACKS", "Sampling", "Stack", "StackDefaults", "load_stack"]
