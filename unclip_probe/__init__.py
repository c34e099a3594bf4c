"""unclip-probe: see what CLIP latents encode (DESIGN.md).

Layers, each importing only those before it:
world <- clip <- models / diffusion <- pipeline <- probes <- widgets / cli
"""
from . import world
from .clip import ClipModel, load_clip
from .errors import ProbeInputError
from .pipeline import UnCLIP
from . import probes  # noqa: E402  (after the pipeline it builds on)

__version__ = "0.1.0"
__all__ = ["world", "load_clip", "ClipModel", "ProbeInputError", "UnCLIP", "probes"]
