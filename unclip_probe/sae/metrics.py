"""How good a sparse autoencoder is (Gao et al. 2024 §3): fraction of variance unexplained, L0 and
dead latents, as plain floats. Inputs are what the SAE reads (``sae.prepare(x)`` already applied)."""
from __future__ import annotations

import torch
from torch import Tensor

from unclip_probe import validate
from unclip_probe.errors import bad_input


def _pair(x: object, recon: object) -> tuple[Tensor, Tensor]:
    for name, t in (("x", x), ("recon", recon)):
        if not isinstance(t, Tensor) or t.ndim != 2 or not t.is_floating_point() or t.shape[0] < 1:
            got = f"shape {tuple(t.shape)} {t.dtype}" if isinstance(t, Tensor) else type(t).__name__
            raise bad_input(name, f"expected a float tensor (N, D) with N >= 1, got {got}.")
    if x.shape != recon.shape:
        raise bad_input("recon", f"expected the shape of x {tuple(x.shape)}, got {tuple(recon.shape)}.")
    return x.detach().double(), recon.detach().double()


def fvu(x: Tensor, recon: Tensor) -> float:
    """Fraction of variance unexplained: sum ||x - recon||^2 / sum ||x - mean(x)||^2 over the rows
    (0: perfect; 1: no better than the mean). x, recon (N, D)."""
    x, recon = _pair(x, recon)
    var = (x - x.mean(0, keepdim=True)).pow(2).sum()
    if not var > 0:
        raise bad_input("x", "has no variance (every row the same), so the fraction unexplained is undefined.")
    return float((x - recon).pow(2).sum() / var)


def l0(codes: Tensor) -> float:
    """Mean number of non-zero latents per row of codes (N, n_latents)."""
    if not isinstance(codes, Tensor) or codes.ndim != 2 or codes.shape[0] < 1:
        got = f"shape {tuple(codes.shape)}" if isinstance(codes, Tensor) else type(codes).__name__
        raise bad_input("codes", f"expected a tensor (N, n_latents) with N >= 1, got {got}.")
    return float((codes != 0).sum(1).double().mean())


@torch.no_grad()
def evaluate_sae(sae, x: Tensor, batch_size: int = 4096) -> dict[str, float]:
    """fvu, l0 and dead_fraction (latents that fire on no row) of ``sae`` over x (N, d_in), in one
    pass of batches, on the SAE's device, in eval mode (the dead-latent counter is left alone)."""
    batch_size = validate.count(batch_size, "batch_size")
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] < 1:
        got = f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise bad_input("x", f"expected a float tensor (N, {sae.config.d_in}) with N >= 1, got {got}.")
    was_training = sae.training
    sae.eval()
    dev = sae.W_dec.device
    err, nonzero = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    fired = torch.zeros(sae.config.n_latents, dtype=torch.bool, device=dev)
    try:
        for lo in range(0, x.shape[0], batch_size):
            xb = x[lo:lo + batch_size].to(dev)
            codes = sae.encode(xb)  # (B, n_latents)
            recon = sae.decode(codes)
            err += (xb - recon).double().pow(2).sum().cpu()
            nonzero += (codes > 0).sum().double().cpu()
            fired |= (codes > 0).any(0)
    finally:
        sae.train(was_training)
    xd = x.double()
    var = float((xd - xd.mean(0, keepdim=True)).pow(2).sum())
    if not var > 0:
        raise bad_input("x", "has no variance (every row the same), so the fraction unexplained is undefined.")
    return {"fvu": float(err) / var, "l0": float(nonzero) / x.shape[0],
            "dead_fraction": 1.0 - float(fired.float().mean())}


def dead_fraction(sae, x: Tensor, batch_size: int = 4096) -> float:
    """The share of latents that fire on no row of x (N, d_in): dead on this data set."""
    return evaluate_sae(sae, x, batch_size)["dead_fraction"]
