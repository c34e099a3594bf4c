"""Probes of the CLIP latent space (DESIGN.md §1, issue 6). Each returns a ProbeResult."""
from .pca import pca_reconstruction
from .result import ProbeResult

__all__ = ["ProbeResult", "pca_reconstruction"]
