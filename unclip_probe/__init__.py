"""unclip-probe: see what CLIP latents encode (docs/design.md §2).

Layers, each importing only those before it:
world <- clip <- models / diffusion <- backends <- manipulations / probes <- widgets / report / cli;
metrics below all, datasets (the published benchmarks) on clip and metrics

Importing the package is cheap: the public names below are resolved on first
attribute access (PEP 562), so ``import unclip_probe`` (and the CLI's parser)
never pulls in torch, open_clip, pandas or matplotlib.
"""
import importlib as _importlib

__version__ = "0.1.0"

# public name -> (module, attribute); attribute None means the module itself
_LAZY = {
    "world": ("unclip_probe.world", None),
    "load_clip": ("unclip_probe.clip", "load_clip"),
    "ClipModel": ("unclip_probe.clip", "ClipModel"),
    "ProbeInputError": ("unclip_probe.errors", "ProbeInputError"),
    "UnCLIP": ("unclip_probe.backends.world.stack", "UnCLIP"),
    "load_stack": ("unclip_probe.backends", "load_stack"),
    "manipulations": ("unclip_probe.manipulations", None),
    "probes": ("unclip_probe.probes", None),
    "datasets": ("unclip_probe.datasets", None),
    "metrics": ("unclip_probe.metrics", None),
}

__all__ = ["world", "load_clip", "ClipModel", "ProbeInputError", "UnCLIP", "load_stack", "manipulations", "probes",
           "datasets", "metrics"]


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = _importlib.import_module(module)
    if attr is not None:
        value = getattr(value, attr)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
