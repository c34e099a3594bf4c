"""Reconstruction figure for the model card: true render, decoder (32 px, guidance 1 and the default), upsampler (64 px).

    python benchmarks/decoder_figure.py [--n 12] [--out notebooks/figures/decoder_reconstructions.png]

The first n single-object scenes that `python -m unclip_probe.eval.decoder` reads, decoded the same way
(`decode_eval.decode_scenes`: the scene's CLIP image embedding, no caption, 25 DDIM steps, the same noise).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from unclip_probe.clip import load_clip
from unclip_probe.backends.world.decode import DECODER_GUIDANCE, upsample_images
from unclip_probe.imaging import to_unit
from unclip_probe.eval.decoder import RECONSTRUCTION_SEED, SINGLES, decode_scenes
from unclip_probe.backends.world.stages import load_decoder, load_upsampler
from unclip_probe.world import render, sample_scenes


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--folder", default="checkpoints/world")
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--out", default="notebooks/figures/decoder_reconstructions.png")
    args = p.parse_args()
    clip, (dec, dcfg), (up, ucfg) = load_clip(args.folder), load_decoder(args.folder), load_upsampler(args.folder)
    seed = RECONSTRUCTION_SEED  # reconstruction_accuracy's single-object scenes and noise
    scenes = sample_scenes(args.n, seed=seed, config=SINGLES)
    rows = [np.concatenate([np.asarray(render(s, 64)) for s in scenes], 1)]
    for g in (1.0, DECODER_GUIDANCE):
        x = torch.stack(decode_scenes(dec, dcfg, clip, scenes, steps=25, guidance=g, with_caption=False, seed=seed))
        x = x * 2 - 1  # [0, 1] -> [-1, 1], the upsampler's range
        hi = upsample_images(up, ucfg, x, x_T=torch.randn(args.n, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
        for img in (torch.nn.functional.interpolate(x, size=64, mode="nearest"), hi):
            rows.append((to_unit(img).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8).transpose(1, 0, 2, 3)
                        .reshape(64, -1, 3))
    Image.fromarray(np.concatenate(rows, 0)).resize((args.n * 128, len(rows) * 128), Image.NEAREST).save(args.out)
    print(f"wrote {args.out}: rows = truth, decoder g1 (32 px), + upsampler, decoder g{DECODER_GUIDANCE:g} (32 px), + upsampler")


if __name__ == "__main__":
    main()
