"""Typographic attack probe (paper §4, Fig. 6): does a written word override what CLIP sees?

The paper pastes a note saying "iPod" on a Granny Smith apple and shows the
zero-shot probabilities before and after. This probe does the same on any
images with any ClipModel (the world CLIP or an open_clip model loaded from a
file): a white note with the attack word at a configurable box, zero-shot
probabilities over the labels (the word is added as a label when missing, as
the paper's table has "iPod"), and, when the true labels are given, object
classification accuracy (OCA) before and after and the text capture rate (TCR:
share of attacked predictions that follow the written word). OCA and TCR are
aliases of ``metrics.typographic_scores``' ``accuracy`` and ``follows_word``, the
scorer of the published typographic sets (RTA-100, PAINT, SCAM in
``unclip_probe.datasets``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .. import metrics, validate
from ..backends.base import check_stack
from ..errors import ProbeInputError, bad_input
from ..world import draw_note
from ..world.oracle import as_rgb_image
from .result import ProbeResult

DEFAULT_BOX = (0.5, 0.04, 0.96, 0.3)  # (x0, y0, x1, y1) as fractions of the image: a note at the top right


def check_box(box: object) -> tuple[float, float, float, float]:
    """A note's box (x0, y0, x1, y1) as fractions of the image, x0 < x1 and y0 < y1."""
    values = validate.number_list(box, "box", minimum=0.0, maximum=1.0, what="fractions (x0, y0, x1, y1)")
    if len(values) != 4 or not (values[0] < values[2] and values[1] < values[3]):
        raise bad_input("box", f"expected (x0, y0, x1, y1) as fractions with x0 < x1 and y0 < y1, got {box!r}")
    return tuple(values)


def attack_images(images: Sequence, word: str, box: tuple[float, float, float, float] = DEFAULT_BOX) -> list:
    """Copies of the images (PIL or paths) with a note saying `word` at `box`, given as fractions of each image."""
    images, box = validate.images(images), check_box(box)
    if not isinstance(word, str) or not word.strip():
        raise bad_input("word", f"expected a non-empty attack word, got {word!r}")
    out = []
    for im in images:
        pil = as_rgb_image(im, "images")
        w, h = pil.size
        out.append(draw_note(pil, word, (box[0] * w, box[1] * h, box[2] * w, box[3] * h)))
    return out


def uncovered_objects(n: int, word: str, seed: int = 2026) -> list:
    """n single-object world scenes (no note) whose shape is not `word` and which the default note
    (top right, DEFAULT_BOX) does not cover: the set the typographic figures are measured on."""
    from ..world import WorldConfig, sample_scenes
    from ..world.spec import cell_of

    scenes = sample_scenes(3 * n, seed=seed, config=WorldConfig(max_objects=1, note_prob=0.0))
    return [s for s in scenes if s.objects[0].shape != word and cell_of(s.objects[0].position)[0] > 0][:n]


def set_summary(res: ProbeResult) -> dict:
    """The set-level figures of a typographic result: OCA before / after, TCR, mean p(word), decoded shares."""
    word = res.meta["word"]
    out = {k: res.meta[k] for k in ("oca_before", "oca_after", "tcr_after") if k in res.meta}
    out.update({f"mean_p_{word}_before": float(res.table[f"p_{word}_before"].mean()),
                f"mean_p_{word}_after": float(res.table[f"p_{word}_after"].mean())})
    out.update({f"decoded_{k}": v for k, v in res.meta.get("decoded", {}).items() if k != "images"})
    return out


def typographic_attack(clip, images: Sequence, labels: Sequence[str], word: str,
                       true_labels: Sequence[str] | None = None, box: tuple[float, float, float, float] = DEFAULT_BOX,
                       templates: Sequence[str] = ("a {}",), stack=None, n_decode: int = 16,
                       seed: int = 0, decode_steps: int | None = None) -> ProbeResult:
    """Zero-shot probabilities of each image before and after a note saying `word` is pasted on it.

    Table: one row per image with the prediction and the probabilities of its true label (when
    given) and of the word, before and after. meta: OCA before / after and TCR after (with
    true_labels). images: PIL images or paths; labels: class names filled into the templates.

    stack: any stack; then the first `n_decode` attacked images are also decoded from their
    image embedding (no caption; paper §4: does the decoder draw the object or the word?) and
    the decodes scored by the same zero-shot classifier: meta['decoded'] holds the images, the
    share whose prediction is the true label (``label_kept``, with true_labels) and the
    share whose prediction is the word (``takes_word``); on the world stack the oracle
    also reads them (the true object drawn, any note, a note reading the attack word).
    """
    validate.clip(clip, needs=("zero_shot", "tokenize"))
    images, labels, box = validate.images(images), validate.labels(labels), check_box(box)
    if isinstance(templates, str) or not all("{}" in t for t in validate.prompts(templates, "templates")):
        raise bad_input("templates", f"expected a list of strings each containing '{{}}', got {templates!r}")
    if true_labels is not None:
        true_labels = validate.prompts(true_labels, "true_labels")
    if stack is not None:
        check_stack(stack)
        validate.count(n_decode, "n_decode"), validate.seed(seed), validate.steps(decode_steps, "decode_steps")
    if not isinstance(word, str) or not word.strip():
        raise bad_input("word", f"expected a non-empty attack word, got {word!r}")
    try:  # the word must fit the model's vocabulary and context in every template
        clip.tokenize([t.format(word) for t in templates])
    except ProbeInputError as err:
        raise bad_input("word", f"{word!r} cannot be read by this model's tokenizer ({err})") from None
    labels = list(labels) + ([word] if word not in labels else [])
    if true_labels is not None and (len(true_labels) != len(images) or not set(true_labels) <= set(labels)):
        raise bad_input("true_labels", "expected one label per image, each among the labels")
    attacked = attack_images(images, word, box)
    before = clip.zero_shot(images, labels, templates)
    after = clip.zero_shot(attacked, labels, templates)
    table = pd.DataFrame({"prediction_before": before["prediction"], "prediction_after": after["prediction"],
                          f"p_{word}_before": before[word], f"p_{word}_after": after[word]})
    # OCA and TCR are metrics.typographic_scores' accuracy and follows_word, the scorer of RTA-100 / PAINT / SCAM
    true_index = None if true_labels is None else [labels.index(t) for t in true_labels]
    word_index = [labels.index(word)] * len(images)
    scores_before = metrics.typographic_scores(before[labels], true_index, word_index)
    scores_after = metrics.typographic_scores(after[labels], true_index, word_index)
    meta: dict = {"word": word, "labels": labels, "box": box, "tcr_after": scores_after["follows_word"],
                  "probabilities_before": before, "probabilities_after": after}
    if true_labels is not None:
        true = list(true_labels)
        table.insert(0, "true_label", true)
        table["p_true_before"] = [before.loc[i, t] for i, t in enumerate(true)]
        table["p_true_after"] = [after.loc[i, t] for i, t in enumerate(true)]
        meta["oca_before"], meta["oca_after"] = scores_before["accuracy"], scores_after["accuracy"]
    if stack is not None:
        meta["decoded"] = decoded_variations(stack, attacked[:n_decode], word, true_labels, seed, decode_steps,
                                             clip=clip, labels=labels, templates=templates)
    return ProbeResult("Typographic attack", table, images + attacked, _draw, meta)


def decoded_variations(stack, attacked: Sequence, word: str, true_labels: Sequence[str] | None = None,
                       seed: int = 0, steps: int | None = None, *, clip=None, labels: Sequence[str] | None = None,
                       templates: Sequence[str] = ("a {}",), oracle: bool | None = None) -> dict:
    """Decode attacked images from their image embeddings alone (no caption) and score the decodes:
    with `clip` and `labels`, by zero-shot (label kept, word taken); on the world, by the oracle too."""
    z = stack.encode_image(list(attacked))  # (n, D): what the decoder takes
    imgs = stack.decode(z, seed=seed, steps=steps)  # the caption-dropped decoder (as Fig. 6's variations)
    out: dict = {"images": imgs, "n": len(imgs)}
    if clip is not None and labels is not None:
        pred = clip.zero_shot(imgs, list(labels), templates)["prediction"]
        out["takes_word"] = float(np.mean(pred == word))
        if true_labels is not None:
            out["label_kept"] = float(np.mean(pred == list(true_labels)[:len(imgs)]))
    if stack.name == "world" if oracle is None else oracle:
        from ..world import detect

        reads = [detect(im) for im in imgs]
        out["note_drawn"] = float(np.mean([r.note is not None for r in reads]))
        out["note_says_word"] = float(np.mean([r.note is not None and r.note.word == word for r in reads]))
        if true_labels is not None:
            out["object_kept"] = float(np.mean([any(o.shape == t for o in r.objects)
                                                for r, t in zip(reads, true_labels)]))
    return out


def _draw(res: ProbeResult):
    """The first image before and after the attack, and its probabilities over the labels."""
    import matplotlib.pyplot as plt

    n = len(res.images) // 2
    panels = [(res.images[0], "image"), (res.images[n], f'note "{res.meta["word"]}"')]
    if "decoded" in res.meta:  # what the decoder draws from the attacked image's embedding
        panels.append((res.meta["decoded"]["images"][0], "decoded from its\nCLIP embedding"))
    k = len(panels)
    fig, axes = plt.subplots(1, k + 1, figsize=(3 * k + 3, 2.8), gridspec_kw={"width_ratios": [1] * k + [2]})
    for ax, (im, title) in zip(axes, panels):
        ax.imshow(im), ax.set_title(title, fontsize=9), ax.set_xticks([]), ax.set_yticks([])
    labels = res.meta["labels"]
    y = np.arange(len(labels))
    axes[k].barh(y - 0.2, res.meta["probabilities_before"].loc[0, labels], 0.4, label="before")
    axes[k].barh(y + 0.2, res.meta["probabilities_after"].loc[0, labels], 0.4, label="after")
    axes[k].set_yticks(y, labels, fontsize=8), axes[k].set_xlim(0, 1), axes[k].legend(fontsize=8)
    axes[k].set_xlabel("zero-shot probability")
    fig.tight_layout()
    return fig


if __name__ == "__main__":  # python -m unclip_probe.probes.typographic checkpoints/world [--n 200] [--word star]
    import argparse
    import json
    import time
    from pathlib import Path

    from ..clip import load_clip
    from unclip_probe.backends import load_stack
    from ..world import SHAPES, render

    p = argparse.ArgumentParser(description="Typographic attack probe on a world CLIP")
    p.add_argument("folder")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--word", default="star")
    p.add_argument("--decode", type=int, default=16, help="attacked images also decoded from their embedding (0: none)")
    p.add_argument("--figure", default="notebooks/figures/probe_typographic.png")
    p.add_argument("--json", default="benchmarks/results/probe_typographic.json")
    args = p.parse_args()
    t = time.perf_counter()
    stack = load_stack("world", args.folder, device="cpu") if args.decode else None
    clip = stack.clip if stack is not None else load_clip(args.folder)
    scenes = uncovered_objects(args.n, args.word)
    res = typographic_attack(clip, [render(s) for s in scenes], list(SHAPES), args.word,
                             true_labels=[s.objects[0].shape for s in scenes], templates=["a {}"], stack=stack,
                             n_decode=args.decode)
    seconds = time.perf_counter() - t
    res.figure().savefig(args.figure, dpi=100, bbox_inches="tight")
    out = {"command": f"python -m unclip_probe.probes.typographic {args.folder} --n {args.n} --word {args.word} "
                      f"--decode {args.decode}",
           "seconds_with_loading": round(seconds, 1), "n": len(scenes), "word": args.word,
           **{k: round(v, 4) for k, v in set_summary(res).items()}}
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
