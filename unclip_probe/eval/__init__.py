"""Quality measurements of the world stack, read by the world's oracle (docs/design.md §2, §5).

clip: zero-shot and linear-probe figures of the world CLIP; decoder: reconstructions
from true embeddings and the inversion round trip; upsampler: PSNR against the true
64 px render; pipeline: text -> image and the manipulations end to end. common: the
evaluation seeds, PSNR and the image <-> tensor conversion every measurement shares.
Each runs from the shell as ``python -m unclip_probe.eval.<name> checkpoints/world``.
"""
