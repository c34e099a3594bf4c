"""Upsampler quality on true 32 px renders (issue 4).

    python -m unclip_probe.eval.upsampler checkpoints/world --n 300

Oracle agreement: the oracle's reading of the 64 px output equals its reading of
the 32 px input (every object's shape, colour, size, cell; the count). PSNR of
the output against the true 64 px render, next to bicubic upsampling's: PIL's
(uint8) and the upsampler's own base (torch, float), which it must both beat.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from unclip_probe.backends.world.decode import upsample_base, upsample_images
from unclip_probe.eval.common import UPSAMPLER_SEED, psnr
from unclip_probe.imaging import pil_to_signed, to_unit
from unclip_probe.world import detect, render, sample_scenes


@torch.no_grad()
def upsampler_quality(unet, cfg, n: int = 300, steps: int = 10, seed: int = UPSAMPLER_SEED, batch: int = 50,
                      sampler: str = "ddim") -> dict:
    unet.eval()
    scenes = sample_scenes(n, seed=seed)
    agree, p_model, p_bicubic, p_base = [], [], [], []
    for i in range(0, n, batch):
        chunk = scenes[i:i + batch]
        lows = [render(s, 32) for s in chunk]
        low = pil_to_signed(lows)  # (B, 3, 32, 32)
        x_T = torch.randn(len(chunk), 3, 64, 64, generator=torch.Generator().manual_seed(seed + i))
        hi = to_unit(upsample_images(unet, cfg, low, x_T=x_T, steps=steps, sampler=sampler)).permute(0, 2, 3, 1).numpy()
        # the residual upsampler's base: what it adds detail to
        bil = to_unit(upsample_base(low, 64, cfg.base)).permute(0, 2, 3, 1).numpy()
        for s, im_low, out, b in zip(chunk, lows, hi, bil):
            truth = np.asarray(render(s, 64), dtype=np.float32) / 255
            bic = np.asarray(im_low.resize((64, 64), Image.BICUBIC), dtype=np.float32) / 255
            agree.append(detect(out).key == detect(im_low).key)
            p_model.append(psnr(out, truth))
            p_bicubic.append(psnr(bic, truth))
            p_base.append(psnr(b, truth))
    return {"oracle_agreement": round(float(np.mean(agree)), 4), "psnr_upsampler_db": round(float(np.mean(p_model)), 2),
            "psnr_bicubic_db": round(float(np.mean(p_bicubic)), 2),
            f"psnr_base_{cfg.base}_db": round(float(np.mean(p_base)), 2), "n": n, "steps": steps, "sampler": sampler}


if __name__ == "__main__":
    import argparse
    import json
    import sys
    from pathlib import Path

    from unclip_probe.checkpoints import checksum_of
    from unclip_probe.backends.world.stages import load_upsampler

    p = argparse.ArgumentParser()
    p.add_argument("folder")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    unet, cfg = load_upsampler(args.folder)
    out = upsampler_quality(unet, cfg, args.n, args.steps)
    out.update(command="python -m unclip_probe.eval.upsampler " + " ".join(sys.argv[1:]),
               weights_checksum=checksum_of(Path(args.folder) / "upsampler.safetensors"))
    print(json.dumps(out, indent=2))
