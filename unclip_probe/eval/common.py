"""What every world-stack measurement shares: the evaluation seeds, the scene sets, PSNR.

Seeds: every figure in the model card is drawn from a stream no training run
draws from (training uses seeds 0..), at a fixed offset per measurement, so two
measurements never share scenes by accident and a re-run reproduces its figure.
"""
from __future__ import annotations

import numpy as np

from unclip_probe.world import WorldConfig

EVAL_SEED = 777_000
# offsets from EVAL_SEED, one per measurement (eval.clip uses + 0 .. + 5 for its figures)
RECONSTRUCTION_SEED = EVAL_SEED + 10  # decoder reconstructions (pairs use + 11)
UPSAMPLER_SEED = EVAL_SEED + 20
INVERSION_SEED = EVAL_SEED + 30
SINGLE_SEED, PAIR_SEED = EVAL_SEED + 40, EVAL_SEED + 41  # text -> image rows
VARIATION_SEED, INTERPOLATION_SEED, TEXT_DIFF_SEED = EVAL_SEED + 42, EVAL_SEED + 43, EVAL_SEED + 44
FIGURE_SEED = EVAL_SEED + 60

SINGLES = WorldConfig(max_objects=1, note_prob=0.0)
PAIRS = WorldConfig(min_objects=2, max_objects=2, note_prob=0.0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two images in [0, 1]."""
    mse = float(((a - b) ** 2).mean())
    return 10 * np.log10(1.0 / max(mse, 1e-12))
