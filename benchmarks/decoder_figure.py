"""Reconstruction figure for the model card: true render, decoder (32 px, guidance 1 and 3), upsampler (64 px).

    python benchmarks/decoder_figure.py [--n 12] [--out notebooks/figures/decoder_reconstructions.png]

Fresh single-object scenes (the decode_eval seed); each is embedded by the world CLIP and decoded from one
fixed noise per scene, 25 DDIM steps, no caption.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from unclip_probe.clip import load_clip
from unclip_probe.clip_eval import EVAL_SEED
from unclip_probe.decode import decode_images, to_unit, upsample_images
from unclip_probe.stages import load_decoder, load_upsampler
from unclip_probe.world import WorldConfig, render, sample_scenes


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--folder", default="checkpoints/world")
    p.add_argument("--n", type=int, default=12)
    p.add_argument("--out", default="notebooks/figures/decoder_reconstructions.png")
    args = p.parse_args()
    clip, (dec, dcfg), (up, ucfg) = load_clip(args.folder), load_decoder(args.folder), load_upsampler(args.folder)
    scenes = sample_scenes(args.n, seed=EVAL_SEED + 10, config=WorldConfig(max_objects=1, note_prob=0.0))
    z = clip.encode_image([render(s) for s in scenes])
    text, mask = torch.zeros(args.n, 1, dcfg.unet.text_dim), torch.zeros(args.n, 1, dtype=torch.bool)
    x_T = torch.randn(args.n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rows = [np.concatenate([np.asarray(render(s, 64)) for s in scenes], 1)]
    for g in (1.0, 3.0):
        x = decode_images(dec, dcfg, z, text, mask, x_T=x_T, steps=25, guidance=g)
        hi = upsample_images(up, ucfg, x, x_T=torch.randn(args.n, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
        for img in (torch.nn.functional.interpolate(x, size=64, mode="nearest"), hi):
            rows.append((to_unit(img).permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8).transpose(1, 0, 2, 3)
                        .reshape(64, -1, 3))
    Image.fromarray(np.concatenate(rows, 0)).resize((args.n * 128, len(rows) * 128), Image.NEAREST).save(args.out)
    print(f"wrote {args.out}: rows = truth, decoder g1 (32 px), + upsampler, decoder g3 (32 px), + upsampler")


if __name__ == "__main__":
    main()
