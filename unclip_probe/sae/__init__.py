"""Sparse autoencoders on CLIP embeddings and activations (Gao et al. 2024; docs/design.md §9).

model.py (SAEConfig, TopKSAE), metrics.py (fvu, l0, dead_fraction), train.py (SAERecipe for the
shared trainer), io.py (save_sae, load_sae), activations.py (any hooked activation as rows). The
embeddings they train on come from ``unclip_probe.embed`` (`unclip-probe embed`).
"""
from .activations import collect_activations, pool_tokens
from .io import load_sae, save_sae
from .metrics import dead_fraction, evaluate_sae, fvu, l0
from .model import AUX_COEF, SAEConfig, SAEOutput, TopKSAE, normalized_mse, topk_codes
from .train import SAERecipe

__all__ = ["AUX_COEF", "SAEConfig", "SAEOutput", "SAERecipe", "TopKSAE", "collect_activations", "dead_fraction",
           "evaluate_sae", "fvu", "l0", "load_sae", "normalized_mse", "pool_tokens", "save_sae", "topk_codes"]
