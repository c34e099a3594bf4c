"""PCA reconstruction probe (paper §4, Fig. 7): what survives in the first k principal components?

The paper fits PCA on CLIP image embeddings, keeps the first k components of an
image's embedding, and decodes it with one fixed DDIM seed (k = 20 ... 320 of
1,024). Here every decode is measured twice:

- by CLIP, on any stack: the cosine of the decode's re-encoded embedding to the
  embedding it was decoded from (``cosine_to_target``) and to the source's full
  embedding (``cosine_to_source``), and, given labels, how often the decode keeps
  the source's zero-shot label (``label_kept``);
- by the world's oracle, on the world stack: how often each attribute of the
  source (count, shape, colour, size, position, note word) comes back.

Do coarse attributes come first?
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import validate
from ..backends.base import check_stack
from ..backends.base import unit_norm
from ..errors import bad_input
from ..world import SceneSpec, detect, render, sample_scenes
from .result import ProbeResult, image_list

PAPER_KS = (20, 30, 40, 80, 120, 160, 200, 320)  # of the paper's 1,024 dimensions
PAPER_WIDTH = 1024
ATTRIBUTES = ("count", "shape", "color", "size", "position", "note")  # the oracle's columns
CLIP_COLUMNS = ("cosine_to_target", "cosine_to_source", "label_kept")


def scaled_ks(width: int) -> list[int]:
    """The paper's k schedule scaled from 1,024 dimensions to `width` (distinct, at least 1)."""
    return sorted({max(1, round(k * width / PAPER_WIDTH)) for k in PAPER_KS})


def fit_pca(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean (D,), components (D, D) as rows, explained-variance ratio (D,)) of embeddings z (N, D)."""
    mean = z.mean(0)
    _, S, Vh = torch.linalg.svd(z - mean, full_matrices=False)
    var = S ** 2
    return mean, Vh, var / var.sum()


def reconstruct(z: torch.Tensor, mean: torch.Tensor, components: torch.Tensor, k: int) -> torch.Tensor:
    """Embeddings (B, D) rebuilt from the first k principal components of z (B, D), at z's norms:
    unit norm for unit-norm z (the world stack), each row's own norm for raw CLIP projections
    (the real decoders were trained on embeddings at CLIP's own scale)."""
    V = components[:k]  # (k, D)
    out = F.normalize(mean + ((z - mean) @ V.T) @ V, dim=-1)
    return out if unit_norm(z) else out * z.norm(dim=-1, keepdim=True)


def fit_world_pca(encoder, n_fit: int = 2000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """fit_pca on the image embeddings (``encoder.encode_image``: a ClipModel or a stack) of n_fit
    fresh world scenes (drawn from `seed`)."""
    return fit_pca(encoder.encode_image([render(s) for s in sample_scenes(n_fit, seed=seed)]))


def at_k(z: torch.Tensor, mean: torch.Tensor, components: torch.Tensor, k: int) -> torch.Tensor:
    """z (B, D) kept to its first k components; k >= D returns z itself (the whole embedding)."""
    return z if k >= z.shape[1] else reconstruct(z, mean, components, k)


def _checked_ks(ks: Sequence[int] | None, D: int) -> list[int]:
    """The k schedule (default: the paper's, scaled to D), checked against the width (docs/design.md §7)."""
    if ks is None:
        return scaled_ks(D)
    return validate.number_list(ks, "ks", integer=True, minimum=1, maximum=D,
                                what=f"component counts (the embedding width is {D})")


def _checked_labels(clip, labels, template: str) -> list[str]:
    """Zero-shot labels, each readable by the CLIP's tokenizer in `template` (checked before the PCA fit)."""
    labels = validate.labels(labels)
    with validate.renamed(texts="labels", prompts="labels"):
        clip.tokenize([template.format(x) for x in labels])
    return labels


def _checked_sizes(n_fit: int, seed: int, template: str | None = None) -> None:
    """The fit size, seed and zero-shot template of either half, checked before any work."""
    validate.count(n_fit, "n_fit", minimum=2)
    validate.seed(seed)
    if template is not None and (not isinstance(template, str) or "{}" not in template):
        raise bad_input("template", f"expected a string with '{{}}' where the label goes, got {template!r}")


def pca_reconstruction(stack, images: Sequence | None = None, ks: Sequence[int] | None = None, n_fit: int = 2000,
                       n_images: int = 8, seed: int = 0, steps: int | None = None, guidance: float | None = None,
                       fit_images: Sequence | None = None, labels: Sequence[str] | None = None,
                       template: str = "a {}", oracle: bool | None = None) -> ProbeResult:
    """Decode each image's embedding cut to its first k principal components, for every k.

    stack: any stack (backends/base.py); steps / guidance None: its decode defaults.
    images: PIL images or paths (default: n_images world scenes).
    ks: components to keep (default: the paper's schedule scaled to the embedding width).
    PCA is fitted on the stack's embeddings (``stack.encode_image``, what its decoder takes) of
    `fit_images` (default: n_fit fresh world scenes). Every decode of an image uses the same noise
    (one seed), so columns differ only by k. labels: classes for the zero-shot column (filled into
    `template`). oracle: read the decodes with the world's oracle (default: on the world stack).
    Returns a ProbeResult whose table has one row per k (the last, k = D, is the full embedding):
    the explained variance, the CLIP columns and, with the oracle, the share of images whose
    oracle reading keeps each attribute of the source's reading.
    """
    D = check_stack(stack).embed_dim
    ks = _checked_ks(ks, D)
    _checked_sizes(n_fit, seed, template)
    validate.count(n_images, "n_images")
    validate.steps(steps), validate.guidance(guidance)
    images = None if images is None else validate.images(images)
    fit_images = None if fit_images is None else validate.images(fit_images, "fit_images")
    labels = None if labels is None else _checked_labels(stack.clip, labels, template)
    oracle = stack.name == "world" if oracle is None else oracle
    images = image_list(images) if images is not None else [render(s) for s in sample_scenes(n_images, seed=seed + 1)]
    mean, comps, ratio = (fit_pca(stack.encode_image(image_list(fit_images))) if fit_images is not None
                          else fit_world_pca(stack, n_fit, seed))
    z = stack.encode_image(images)  # (B, D); errors name `images`
    source = F.normalize(z.float(), dim=-1)
    text = stack.clip.encode_text([template.format(x) for x in labels]) if labels is not None else None
    source_label = (source @ text.T).argmax(-1) if text is not None else None
    refs = [SceneSpec.from_scene(detect(im)) for im in images] if oracle else []  # the oracle's reading
    rows, grid = [], []
    for k in sorted(set(ks) | {D}):  # k = D: the whole embedding
        zk = at_k(z, mean, comps, k)
        dec = stack.decode(zk, seed=seed, guidance=guidance, steps=steps)
        back = stack.clip.encode_image(dec)  # (B, D) unit norm: the decode seen by CLIP
        row = {"k": k, "explained_variance": float(ratio[:k].sum()),
               "cosine_to_target": float((back * F.normalize(zk.float(), dim=-1)).sum(-1).mean()),
               "cosine_to_source": float((back * source).sum(-1).mean())}
        if text is not None:
            row["label_kept"] = float(((back @ text.T).argmax(-1) == source_label).float().mean())
        if oracle:
            scores = [ref.score(detect(im)) for ref, im in zip(refs, dec)]
            row.update({a: float(np.mean([s[a] for s in scores])) for a in ATTRIBUTES})
        rows.append(row)
        grid.append(dec)
    table = pd.DataFrame(rows).set_index("k")
    flat = [grid[c][r] for r in range(len(images)) for c in range(len(grid))] + list(images)
    return ProbeResult("PCA reconstruction", table, flat, _draw,
                       meta={"ks": sorted(ks), "width": D, "n_images": len(images), "ratio": ratio.tolist(),
                             "oracle": oracle, "labels": None if labels is None else list(labels)})


@torch.no_grad()
def pca_clip_side(clip, images: Sequence, labels: Sequence[str], fit_images: Sequence | None = None,
                  ks: Sequence[int] | None = None, n_fit: int = 2000, seed: int = 0,
                  template: str = "a {}") -> ProbeResult:
    """The probe's CLIP-only half, for any ClipModel (no decoder needed): per k, the explained
    variance, the mean cosine of each image's k-component embedding to its full embedding, and
    how often its zero-shot label over `labels` stays the full embedding's. PCA is fitted on
    `fit_images` (default: n_fit world scenes)."""
    validate.clip(clip, needs=("embed_dim", "tokenize"))
    images = validate.images(images)
    ks = _checked_ks(ks, clip.embed_dim)
    _checked_sizes(n_fit, seed, template)
    labels = _checked_labels(clip, labels, template)
    fit_images = None if fit_images is None else validate.images(fit_images, "fit_images")
    z = clip.encode_image(images)  # (B, D)
    mean, comps, ratio = (fit_pca(clip.encode_image(list(fit_images))) if fit_images is not None
                          else fit_world_pca(clip, n_fit, seed))
    text = clip.encode_text([template.format(label) for label in labels])  # (C, D)
    full = (z @ text.T).argmax(-1)
    rows = []
    for k in sorted(ks):
        zk = reconstruct(z, mean, comps, k)
        rows.append({"k": k, "explained_variance": float(ratio[:k].sum()), "cosine_to_full": float((zk * z).sum(-1).mean()),
                     "zero_shot_kept": float(((zk @ text.T).argmax(-1) == full).float().mean())})
    return ProbeResult("PCA reconstruction: CLIP side", pd.DataFrame(rows).set_index("k"), list(images),
                       meta={"width": z.shape[1], "ratio": ratio.tolist(), "labels": list(labels)})


def _draw(res: ProbeResult):
    """Grid (rows: images; columns: k, then the source) beside the explained-variance curve."""
    import matplotlib.pyplot as plt

    ks = list(res.table.index)
    n, cols = res.meta["n_images"], len(ks) + 1
    decoded, sources = res.images[:-n], res.images[-n:]
    fig = plt.figure(figsize=(1.1 * cols + 3.5, 1.1 * n + 0.6))
    gs = fig.add_gridspec(n, cols + 3)
    for r in range(n):
        for c in range(cols):
            ax = fig.add_subplot(gs[r, c])
            ax.imshow(decoded[r * len(ks) + c] if c < len(ks) else sources[r])
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title("source" if c == len(ks) else (f"k={ks[c]}" if c < len(ks) - 1 else "all"), fontsize=8)
    ax = fig.add_subplot(gs[:, cols + 1:])
    ratio = res.meta["ratio"]  # at most as many components as PCA had fitting images
    ax.plot(np.arange(1, len(ratio) + 1), np.cumsum(ratio), color="k", label="explained variance")
    for a in ATTRIBUTES + CLIP_COLUMNS:
        if a in res.table:
            ax.plot(ks, res.table[a], marker="o" if a in ATTRIBUTES else "s", ms=3,
                    ls="-" if a in ATTRIBUTES else ":", label=a)
    ax.set_xscale("log"), ax.set_xlabel("components k"), ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, title="share of images keeping", title_fontsize=7)
    return fig


if __name__ == "__main__":  # python -m unclip_probe.probes.pca checkpoints/world [--figure F] [--json J]
    import argparse
    import json
    import time
    from pathlib import Path

    from unclip_probe.backends import load_stack

    p = argparse.ArgumentParser(description="PCA reconstruction probe on a world stack")
    p.add_argument("folder")
    p.add_argument("--figure", default="notebooks/figures/probe_pca.png")
    p.add_argument("--json", default="benchmarks/results/probe_pca.json")
    p.add_argument("--n-images", type=int, default=8)
    args = p.parse_args()
    t = time.perf_counter()
    stack = load_stack("world", args.folder, device="cpu")
    res = pca_reconstruction(stack, n_images=args.n_images)
    seconds = time.perf_counter() - t
    res.figure().savefig(args.figure, dpi=100, bbox_inches="tight")
    out = {"command": f"python -m unclip_probe.probes.pca {args.folder} --n-images {args.n_images}",
           "seconds_with_loading": round(seconds, 1),
           "sizes": f"n_fit 2000, {args.n_images} world scenes, decoder {stack.defaults.decode.steps} steps, "
                    f"guidance {stack.defaults.decode.guidance:g}, one seed",
           "table": json.loads(res.table.reset_index().to_json(orient="records"))}
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(res.table.round(3).to_string(), f"\n{seconds:.1f} s")
