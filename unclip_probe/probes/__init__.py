"""Probes of the CLIP latent space (docs/design.md §1, issue 6). Each returns a ProbeResult."""
from .binding import attribute_binding, clip_binding, generation_binding
from .pca import pca_clip_side, pca_reconstruction
from .result import ProbeResult
from .sae import sae_features, steer
from .typographic import attack_images, typographic_attack

__all__ = ["ProbeResult", "attack_images", "attribute_binding", "clip_binding", "generation_binding",
           "pca_clip_side", "pca_reconstruction", "sae_features", "steer", "typographic_attack"]
