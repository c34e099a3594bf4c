"""SAE features of a CLIP, seen as pictures: top images, decoded directions, steering (issue 23).

A sparse autoencoder (``unclip_probe.sae``) trained on a stack's image embeddings z (N, D) gives
each feature f a unit direction d_f (a row of its decoder) and an activation a_f(z) >= 0. This
probe shows a feature the ways a researcher reads one:

- the images that excite it most (its top activations over a set of images);
- its direction turned into pictures: the mean embedding of the set, moved along d_f by alpha,
  decoded by the stack's decoder (unCLIP's decoder inverts CLIP, paper §2.1, so a direction in
  embedding space has a picture);
- one chosen image's embedding moved along d_f (``steer``): does the decode change in the way
  the feature's name promises?
- the zero-shot labels whose text embeddings lie closest to d_f (CLIP's joint space, paper §2).

On the world, ``probes.sae_ground_truth`` scores every feature against the oracle's attributes.

Moving an embedding: z' = z + alpha * |z| * d_f, then z' is brought back to |z|. alpha is in
units of the embedding's own norm, so one alpha means the same on the world stack (unit-norm
embeddings) and on a real stack whose decoder reads CLIP's raw projections (norms of 10-30).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import validate
from ..backends.base import check_stack
from ..errors import bad_input
from .result import ProbeResult, image_list

DEFAULT_ALPHAS = (0.0, 0.5, 1.0)
LABEL_TEMPLATE = "a photo of a {}."


def directions(sae) -> Tensor:
    """(F, D) unit-norm feature directions: the SAE decoder's rows."""
    return F.normalize(sae.W_dec.detach().float(), dim=-1)


def check_feature(sae, feature, argument: str = "feature") -> int:
    """A feature index of `sae`, refused in one sentence otherwise."""
    n = sae.W_dec.shape[0]
    if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)) or not 0 <= int(feature) < n:
        raise bad_input(argument, f"expected a feature index in [0, {n}), got {feature!r}")
    return int(feature)


def _check_sae(sae, stack) -> None:
    for attr in ("encode", "W_dec"):
        if not hasattr(sae, attr):
            raise bad_input("sae", f"expected a sparse autoencoder (unclip_probe.sae.TopKSAE), got {type(sae).__name__}")
    if sae.W_dec.shape[1] != stack.embed_dim:
        raise bad_input("sae", f"it reads {sae.W_dec.shape[1]}-dimensional embeddings; the stack's are "
                               f"{stack.embed_dim}-dimensional (train it on this stack's `encode_image`)")


def moved(z: Tensor, direction: Tensor, alpha: float) -> Tensor:
    """z (B, D) moved by alpha·|z| along `direction` (D,), each row brought back to its own norm."""
    norm = z.norm(dim=-1, keepdim=True)
    out = z + alpha * norm * direction.to(z)
    return F.normalize(out, dim=-1) * norm


@torch.no_grad()
def activations(sae, z: Tensor, batch: int = 4096) -> Tensor:
    """(N, F) SAE feature activations of embeddings z (N, D), batched."""
    return torch.cat([sae.encode(sae.prepare(z[i:i + batch].to(sae.W_dec))) for i in range(0, len(z), batch)]).float()


def firing_rates(acts: Tensor) -> Tensor:
    """(F,) share of the rows of activations (N, F) on which each feature fires."""
    return (acts > 0).float().mean(0)


def set_mean(z: Tensor) -> Tensor:
    """(1, D) the mean direction of embeddings z (N, D) at their mean norm: the embedding a feature
    moves when no image is chosen (unit norm on the world stack, CLIP's scale on a real one)."""
    return F.normalize(z.mean(0, keepdim=True), dim=-1) * z.norm(dim=-1).mean()


def _checked_alphas(alphas) -> list[float]:
    return validate.number_list(alphas, "alphas", what="steering strengths (in units of the embedding's norm)")


def steer(stack, image, sae, feature: int, alpha: float | Sequence[float], *, seed: int = 0,
          steps: int | None = None, guidance: float | None = None, upsample: bool = True) -> list:
    """Decodes of one image's embedding moved by each alpha along SAE feature `feature`.

    image: a PIL image or path. alpha: one strength or several (units of the embedding's norm;
    0 decodes the image's own embedding). Every decode starts from the same noise (`seed`), so the
    pictures differ only by the move. Returns one PIL image per alpha."""
    stack = check_stack(stack)
    _check_sae(sae, stack)
    feature = check_feature(sae, feature)
    alphas = _checked_alphas([alpha] if isinstance(alpha, (int, float)) else alpha)
    validate.seed(seed), validate.steps(steps), validate.guidance(guidance)
    z = stack.encode_image(validate.images([image], "image"))  # (1, D)
    d = directions(sae)[feature]
    zs = torch.cat([moved(z, d, a) for a in alphas])  # (len(alphas), D)
    x_T = stack.noise(1, seed).expand(len(alphas), *stack.noise_shape)
    return stack.decode(zs, seed=seed, x_T=x_T, steps=steps, guidance=guidance, upsample=upsample)


def nearest_labels(stack, sae, labels: Sequence[str], template: str = LABEL_TEMPLATE, top: int = 3) -> pd.DataFrame:
    """Per feature, the `top` labels whose text embedding (in `template`) has the highest cosine to
    the feature's direction: a column of names and one of cosines."""
    labels = validate.labels(labels)
    text = F.normalize(stack.encode_text([template.format(x) for x in labels]).float(), dim=-1)  # (C, D)
    cos = directions(sae).to(text) @ text.T  # (F, C)
    val, idx = cos.topk(min(top, len(labels)), dim=-1)
    return pd.DataFrame({"labels": [", ".join(labels[j] for j in row) for row in idx.tolist()],
                         "label_cosines": [", ".join(f"{v:.2f}" for v in row) for row in val.tolist()]})


def sae_features(stack, sae, images: Sequence, features: Sequence[int] | None = None, n_features: int = 6,
                 n_top: int = 6, alphas: Sequence[float] = DEFAULT_ALPHAS, image=None,
                 labels: Sequence[str] | None = None, template: str = LABEL_TEMPLATE, seed: int = 0,
                 steps: int | None = None, guidance: float | None = None) -> ProbeResult:
    """Each chosen SAE feature as pictures: its top images and its direction decoded.

    stack: any stack; sae: a sparse autoencoder over this stack's ``encode_image`` embeddings.
    images: PIL images or paths, the set whose activations rank the top images (and whose mean
    embedding is moved along each feature). features: indices (default: the `n_features` that fire
    on the most images). image: one image to steer (default: the set's first). labels: zero-shot
    names for each feature's nearest-label column. Every decode uses one noise (`seed`).

    Returns a ProbeResult: a table with one row per feature (how often it fires, its mean and top
    activation, the nearest labels), images = per feature [n_top top images, the mean moved by each
    alpha, the chosen image moved by each alpha], drawn as one row per feature.
    """
    stack = check_stack(stack)
    _check_sae(sae, stack)
    images = image_list(validate.images(images))
    validate.count(n_top, "n_top"), validate.count(n_features, "n_features")
    alphas = _checked_alphas(alphas)
    validate.seed(seed), validate.steps(steps), validate.guidance(guidance)
    z = stack.encode_image(images).float()  # (N, D)
    acts = activations(sae, z)  # (N, F)
    fires = firing_rates(acts)  # (F,)
    if features is None:
        features = fires.argsort(descending=True)[:n_features].tolist()
    features = [check_feature(sae, f, "features") for f in features]
    target = z[:1] if image is None else stack.encode_image(validate.images([image], "image")).float()
    mean = set_mean(z)
    dirs = directions(sae)
    x_T = stack.noise(1, seed)
    rows, pictures = [], []
    for f in features:
        order = acts[:, f].argsort(descending=True)[:min(n_top, len(images))].tolist()
        zs = torch.cat([moved(mean, dirs[f], a) for a in alphas] + [moved(target, dirs[f], a) for a in alphas])
        dec = stack.decode(zs, seed=seed, x_T=x_T.expand(len(zs), *stack.noise_shape), steps=steps, guidance=guidance)
        pictures += [images[i] for i in order] + dec
        rows.append({"feature": f, "fires_on": float(fires[f]), "mean_activation": float(acts[:, f].mean()),
                     "top_activation": float(acts[order[0], f]), "top_images": order})
    table = pd.DataFrame(rows)
    if labels is not None:
        near = nearest_labels(stack, sae, labels, template).iloc[features].reset_index(drop=True)
        table = pd.concat([table, near], axis=1)
    return ProbeResult("SAE features", table.set_index("feature"), [_as_pil(p) for p in pictures], _draw,
                       meta={"features": features, "n_top": min(n_top, len(images)), "alphas": alphas,
                             "seed": seed})


def _as_pil(image):
    from ..world.oracle import as_rgb_image

    return as_rgb_image(image, "images")


def _draw(res: ProbeResult):
    """One row per feature: its top images | the mean moved by each alpha | the image moved by each alpha."""
    import matplotlib.pyplot as plt

    feats, n_top, alphas = res.meta["features"], res.meta["n_top"], res.meta["alphas"]
    per = n_top + 2 * len(alphas)
    fig, axes = plt.subplots(len(feats), per, figsize=(0.9 * per, 1.0 * len(feats) + 0.4), squeeze=False)
    for r, f in enumerate(feats):
        for c in range(per):
            ax = axes[r, c]
            ax.imshow(res.images[r * per + c])
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                title = ("top" if c == 0 else "") if c < n_top else (
                    f"mean α={alphas[c - n_top]:g}" if c < n_top + len(alphas) else f"image α={alphas[c - n_top - len(alphas)]:g}")
                ax.set_title(title, fontsize=6)
        label = res.table.loc[f, "labels"].split(",")[0] if "labels" in res.table else ""
        axes[r, 0].set_ylabel(f"#{f} {label}", fontsize=7)
    fig.tight_layout(pad=0.2)
    return fig
