"""Attribute binding probe (paper §7, Figs. 14-15): which colour goes with which shape?

The paper finds unCLIP "worse than GLIDE at binding attributes to objects" and
blames the CLIP embedding: "the CLIP embedding itself does not explicitly bind
attributes to objects" (Fig. 15: reconstructions of "a red cube on top of a
blue cube" mix the colours up). This probe measures both halves on world scenes.

CLIP side (any ClipModel: the world CLIP or an open_clip model loaded from a
file), on pairs of two-object scenes that differ only in the binding:

- ``color``: the two objects' colours exchanged ("a red circle and a blue
  square" vs "a blue circle and a red square");
- ``relation``: the two objects' places exchanged ("a red circle to the left of
  a blue square" vs "a blue square to the left of a red circle").

Scores: ARO-style two-way accuracy (the image prefers its caption to the swapped
one; chance 50 %) and Winoground-style text / image / group scores over the
2 x 2 of images and captions (chance 25 / 25 / 16.7 %), computed by the same
functions of ``unclip_probe.metrics`` that score the published Winoground and
ARO sets (``unclip_probe.datasets``): each world pair is a Winoground item whose
ground truth is known.

Generation side: two-object prompts decoded at 32 px and read by the oracle,
from (a) unCLIP (diffusion prior, then the decoder), (b) the text-only decoder
of the same architecture (the GLIDE analogue, ``decoder_text``), (c) the decoder
fed the true CLIP image embedding of a render of the prompt; (a) and (c) also
with ``decoder_twin``, the image-conditioned decoder trained with exactly
``decoder_text``'s recipe, data and steps, so (b) has a same-budget rival.
Every setting starts from the same noise. Plus the Fig. 15 test: a red X above
a blue X, for every shape X, reconstructed from its image embedding alone.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .. import metrics, validate
from ..backends.base import check_stack
from ..errors import ProbeInputError, bad_input
from ..world import SHAPES, Obj, Scene, WorldConfig, detect, render, sample_scenes
from ..world.captions import RELATION_PHRASES, join_phrases, object_phrase
from ..world.parse import parse_caption
from ..world.scenes import relations, swapped_twin
from ..world.spec import cell_of
from .result import ProbeResult

SWAPS = ("color", "relation")
PAIR = WorldConfig(min_objects=2, max_objects=2, note_prob=0.0)
# (setting, decoder name in the checkpoint folder, what the decoder is fed); see the module docstring.
SETTINGS = (
    ("(a) unCLIP: prior + decoder", "decoder", "prior"),
    ("(b) text-only decoder (GLIDE analogue)", "decoder_text", "text"),
    ("(c) decoder, true image embedding", "decoder", "true"),
    ("(a) unCLIP: prior + twin decoder", "decoder_twin", "prior"),
    ("(c) twin decoder, true image embedding", "decoder_twin", "true"),
)


# ---------------------------------------------------------------------------- scenes and captions
def binding_scenes(n: int, seed: int = 0) -> list[Scene]:
    """n two-object world scenes whose objects differ in both colour and shape (no note)."""
    out: list[Scene] = []
    k = 0
    while len(out) < n:
        for s in sample_scenes(2 * n + 8, seed=seed + 7919 * k, config=PAIR):
            a, b = s.objects
            if a.color != b.color and a.shape != b.shape and len(out) < n:
                out.append(s)
        k += 1
    return out


def binding_prompt(scene: Scene) -> str:
    """'a red circle and a blue square': colours and shapes only, in the scene's object order."""
    return join_phrases([object_phrase(o, size=False) for o in scene.objects])


def swapped_pair(scene: Scene, kind: str) -> tuple[str, Scene, str]:
    """(caption of scene, the twin scene, the twin's caption) for one kind of swap."""
    if kind == "color":
        return binding_prompt(scene), swapped_twin(scene), binding_prompt(swapped_twin(scene))
    i, rel, j = relations(scene)[0]
    a, b = scene.objects[i], scene.objects[j]
    moved = Scene((Obj(a.shape, a.color, a.size, b.position), Obj(b.shape, b.color, b.size, a.position)),
                  scene.background)
    say = lambda x, y: f"{object_phrase(x, size=False)} {RELATION_PHRASES[rel]} {object_phrase(y, size=False)}"  # noqa: E731
    return say(a, b), moved, say(b, a)


# ---------------------------------------------------------------------------- CLIP side
@torch.no_grad()
def clip_binding(clip, n: int = 200, seed: int = 0, swaps: Sequence[str] = SWAPS) -> ProbeResult:
    """ARO two-way accuracy and Winoground text / image / group scores of any ClipModel on n world
    scene pairs per kind of swap. Table: one row per swap kind."""
    validate.clip(clip)
    n, seed = validate.count(n, "n"), validate.seed(seed)
    _check_swaps(swaps)
    scenes = binding_scenes(n, seed)
    i0 = clip.encode_image([render(s) for s in scenes])  # (n, D), unit norm; every kind swaps from these
    rows = []
    for kind in swaps:
        cap0, twin, cap1 = zip(*(swapped_pair(s, kind) for s in scenes))
        i1 = clip.encode_image([render(s) for s in twin])
        t = torch.stack([clip.encode_text(list(cap0)), clip.encode_text(list(cap1))], 1)  # (n, 2 captions, D)
        sims = torch.einsum("ncd,nid->nci", t, torch.stack([i0, i1], 1))  # (n, caption, image): a Winoground item
        wino = metrics.winoground_scores(sims)
        rows.append({"swap": kind, "aro_two_way": metrics.two_way_accuracy(sims[:, 0, 0], sims[:, 1, 0]),
                     **{f"winoground_{k}": v for k, v in wino.items()}, "n": n,
                     "example": f"{cap0[0]!r} vs {cap1[0]!r}"})
    table = pd.DataFrame(rows).set_index("swap")
    chance = {"aro_two_way": metrics.CHANCE["two_way"],
              **{k: metrics.CHANCE[k] for k in ("winoground_text", "winoground_image", "winoground_group")}}
    return ProbeResult("Attribute binding: CLIP side", table, meta={"chance": chance})


@torch.no_grad()
def swap_similarities(clip, prompt: str) -> pd.DataFrame:
    """CLIP cosine of a two-object prompt and its colour-swapped twin (rows) against renders of both
    (columns): the 2 x 2 a Winoground item scores."""
    scene = _prompt_scenes([prompt])[0]
    twin = swapped_twin(scene)
    caps = [prompt, binding_prompt(twin)]
    sims = clip.encode_text(caps) @ clip.encode_image([render(scene), render(twin)]).T  # (2, 2)
    return pd.DataFrame(sims.cpu().numpy(), index=caps, columns=["render of the prompt", "render of the swap"])


# ---------------------------------------------------------------------------- generation side
def _check_swaps(swaps: object) -> None:
    if isinstance(swaps, str) or not validate.prompts(swaps, "swaps"):
        raise bad_input("swaps", f"expected a list of swap kinds among {SWAPS}, got {swaps!r}")
    for kind in swaps:
        validate.choice(kind, SWAPS, "swaps")


def check_generation(n: int, seed: int, steps, guidance, stack_seeds: int, settings, prior_steps,
                      n_name: str = "n") -> None:
    """generation_binding's arguments, checked before any work."""
    validate.count(n, n_name), validate.seed(seed), validate.steps(steps), validate.guidance(guidance)
    validate.count(stack_seeds, "stack_seeds", minimum=0), validate.steps(prior_steps, "prior_steps")
    feeds = ("prior", "text", "true")
    if isinstance(settings, (str, bytes)) or not isinstance(settings, (list, tuple)) or not settings or not all(
            isinstance(x, tuple) and len(x) == 3 and all(isinstance(v, str) for v in x) and x[2] in feeds
            for x in settings):
        raise bad_input("settings", f"expected a non-empty list of (label, decoder name, feed) with feed among "
                                    f"{feeds}, as in binding.SETTINGS, got {settings!r}")


def _prompt_scenes(prompts: Sequence[str]) -> list[Scene]:
    """Scenes to render for prompts the user typed: the said attributes, else large objects left and right."""
    if isinstance(prompts, str):
        raise bad_input("prompts", f"expected a list of two-object prompts, got the single string {prompts!r} "
                                   f"(write [{prompts!r}])")
    out = []
    prompts = validate.prompts(prompts)
    for p in prompts:
        spec = parse_caption(p)
        objs = spec.objects
        if len(objs) != 2 or any(o.shape is None or o.color is None for o in objs) \
                or objs[0].color == objs[1].color or objs[0].shape == objs[1].shape:
            raise bad_input("prompts", f"{p!r} names {len(objs)} object(s); the binding probe needs two objects "
                                       "of different colours and different shapes, e.g. 'a red circle and a blue square'")
        places = [o.position for o in objs]
        if None in places:
            places = ["left", "right"]
        out.append(Scene(tuple(Obj(o.shape, o.color, o.size or "large", pos) for o, pos in zip(objs, places)),
                         spec.background or "gray"))
    return out


def read_binding(wanted: Sequence[Obj], reading: Scene) -> dict[str, bool]:
    """How an oracle reading of a two-object image binds the wanted colours to the wanted shapes.

    bound: exactly the two wanted (shape, colour) objects; attributes: exactly two objects showing the
    two wanted colours and the two wanted shapes, however paired; swapped: those two with each
    colour on the other shape."""
    (a, b), got = wanted, Counter((o.shape, o.color) for o in reading.objects)
    two = len(reading.objects) == 2
    colors = sorted(o.color for o in reading.objects) == sorted((a.color, b.color))
    shapes = sorted(o.shape for o in reading.objects) == sorted((a.shape, b.shape))
    return {"bound": two and got == Counter([(a.shape, a.color), (b.shape, b.color)]),
            "attributes": two and colors and shapes,
            "swapped": two and got == Counter([(a.shape, b.color), (b.shape, a.color)])}


def _summary(reads: list[dict[str, bool]]) -> dict[str, float]:
    bound, attrs = np.mean([r["bound"] for r in reads]), np.mean([r["attributes"] for r in reads])
    return {"bound": float(bound), "attributes_drawn": float(attrs),
            "bound_given_attributes": float(bound / attrs) if attrs else float("nan"),
            "swapped": float(np.mean([r["swapped"] for r in reads])), "n": len(reads)}


def _two_way(clip, said: Sequence[str], swapped: Sequence[str]):
    """images -> share whose CLIP embedding is closer to its `said` caption than to its `swapped` one."""
    t_said, t_swap = clip.encode_text(list(said)), clip.encode_text(list(swapped))  # (B, D) each

    def score(images) -> float:
        e = clip.encode_image(list(images))  # (B, D)
        return metrics.two_way_accuracy((e * t_said).sum(-1), (e * t_swap).sum(-1))
    return score


def _stack_prompt(scene: Scene, swap: bool) -> str:
    """'a red circle above a blue circle' (or the colours exchanged) for a Fig. 15 scene."""
    top, bottom = scene.objects
    a, b = (bottom.color, top.color) if swap else (top.color, bottom.color)
    return f"{object_phrase(Obj(top.shape, a, 'large', 'top'), size=False)} above " \
           f"{object_phrase(Obj(top.shape, b, 'large', 'center'), size=False)}"


def stacked_scenes(color_top: str = "red", color_bottom: str = "blue") -> list[Scene]:
    """Fig. 15's test: for every shape X, a large `color_top` X directly above a large `color_bottom` X."""
    return [Scene((Obj(x, color_top, "large", "top"), Obj(x, color_bottom, "large", "center"))) for x in SHAPES]


def _read_stack(scene: Scene, reading: Scene) -> dict[str, bool]:
    """bound: the top colour drawn above the bottom one (both the right shape); swapped: the reverse."""
    top, bottom = scene.objects
    rows = {o.color: cell_of(o.position)[0] for o in reading.objects if o.shape == top.shape}  # 0 = top row
    both = len(reading.objects) == 2 and set(rows) == {top.color, bottom.color}
    return {"bound": both and rows[top.color] < rows[bottom.color], "attributes": both,
            "swapped": both and rows[top.color] > rows[bottom.color]}


@torch.no_grad()
def generation_binding(stack, prompts: Sequence[str] | None = None, n: int = 32, seed: int = 0,
                       steps: int | None = None, guidance: float | None = None, stack_seeds: int = 4,
                       settings=SETTINGS, stacks: dict | None = None, prior_steps: int | None = None,
                       oracle: bool | None = None) -> ProbeResult:
    """Binding of two-object prompts under each setting (see SETTINGS), and Fig. 15's stacked-objects
    test. Every decode is scored by the stack's CLIP, two-way (``clip_two_way``: the decode is closer
    to its prompt than to the prompt with the colours exchanged, ARO style; chance 50 %); on the world
    (``oracle``, default: the world stack) the oracle also reads which colour went on which shape.
    prompts: two-object prompts (default: n world prompts). Settings whose decoder or prior the stack
    lacks are skipped (listed in meta['skipped']). Decodes are not upsampled. steps / guidance /
    prior_steps None: the stack's defaults. stacks: other decoders of the stack, already loaded
    (``stack.with_decoder(name)``), by decoder name."""
    check_stack(stack)
    check_generation(n, seed, steps, guidance, stack_seeds, settings, prior_steps)
    oracle = stack.name == "world" if oracle is None else oracle
    scenes = binding_scenes(n, seed) if prompts is None else _prompt_scenes(prompts)
    prompts = [binding_prompt(s) for s in scenes] if prompts is None else list(prompts)
    decoders, skipped = {"decoder": stack, **(stacks or {})}, []
    for _, name, _ in settings:
        if name not in decoders and name not in skipped:
            try:
                decoders[name] = stack.with_decoder(name)
            except ProbeInputError:  # a stack without that decoder: say so, measure the rest
                skipped.append(name)
    if "diffusion" not in stack.prior_kinds:  # a stack without a prior: its unCLIP settings cannot run
        skipped.append("prior")
        settings = [s for s in settings if s[2] != "prior"]
    rows, images = [], {}
    z_true = stack.encode_image([render(s) for s in scenes])  # (B, D): what the decoder takes
    feeds = {"true": z_true, "text": torch.zeros_like(z_true)}  # the text-only decoder ignores its embedding
    if any(feed == "prior" for _, name, feed in settings if name in decoders):
        feeds["prior"] = stack.prior(prompts, seed=seed, kind="diffusion", steps=prior_steps)
    swapped = [binding_prompt(swapped_twin(s)) for s in scenes]
    two_way = _two_way(stack.clip, prompts, swapped)
    B = len(prompts)
    x_T = stack.noise(B, seed)  # (B, *noise_shape): one noise for every setting
    decoded = {}
    for name in dict.fromkeys(n for _, n, _ in settings if n in decoders):  # one batched call per decoder
        mine = [(label, feed) for label, n, feed in settings if n == name]
        z = torch.cat([feeds[feed] for _, feed in mine])  # (k B, D)
        caption = prompts * len(mine) if decoders[name].reads_caption else None
        imgs = decoders[name].decode(z, seed=seed, prompts=caption, guidance=guidance, steps=steps,
                                     x_T=x_T.repeat(len(mine), *[1] * (x_T.ndim - 1)), upsample=False)
        decoded.update({label: imgs[i * B:(i + 1) * B] for i, (label, _) in enumerate(mine)})
    for label, name, _ in settings:
        if label not in decoded:
            continue
        images[label] = imgs = decoded[label]
        read = _summary([read_binding(s.objects, detect(im)) for s, im in zip(scenes, imgs)]) if oracle else {}
        rows.append({"test": "two-object prompts", "setting": label, "decoder": name, **read,
                     "clip_two_way": two_way(imgs), "n": len(imgs)})
    unique = stacked_scenes() if stack_seeds else []
    stacked = [s for s in unique for _ in range(stack_seeds)]
    z_stack = stack.encode_image([render(s) for s in unique]).repeat_interleave(stack_seeds, 0) if unique else None
    if stacked:
        said = [_stack_prompt(s, swap=False) for s in stacked]
        stack_two_way = _two_way(stack.clip, said, [_stack_prompt(s, swap=True) for s in stacked])
    for name, d in decoders.items() if stacked else ():
        if not d.reads_embedding:
            continue  # Fig. 15 reconstructs from the image embedding alone
        imgs = d.decode(z_stack, seed=seed + 1, guidance=guidance, steps=steps, upsample=False)  # no caption
        images[f"red X above blue X: {name}"] = imgs
        read = _summary([_read_stack(s, detect(im)) for s, im in zip(stacked, imgs)]) if oracle else {}
        rows.append({"test": "red X above blue X (Fig. 15)", "setting": f"{name}, image embedding only",
                     "decoder": name, **read, "clip_two_way": stack_two_way(imgs), "n": len(imgs)})
    table = pd.DataFrame(rows).set_index(["test", "setting"])
    meta = {"prompts": prompts, "skipped": skipped, "images": images, "stack_seeds": stack_seeds}
    return ProbeResult("Attribute binding: generation", table, [im for v in images.values() for im in v], _draw, meta)


def attribute_binding(stack, prompts: Sequence[str] | None = None, n_clip: int = 200, n_gen: int = 32,
                      seed: int = 0, **gen_kw) -> ProbeResult:
    """Both halves: the generation result, with the CLIP-side table in meta['clip'] (and in its HTML)."""
    check_stack(stack)
    validate.count(n_clip, "n_clip")  # every check before the generation half, the slow one
    check_generation(n_gen, seed, gen_kw.get("steps"), gen_kw.get("guidance"), gen_kw.get("stack_seeds", 4),
                      gen_kw.get("settings", SETTINGS), gen_kw.get("prior_steps"), n_name="n_gen")
    if prompts is not None:
        _prompt_scenes(prompts)
    gen = generation_binding(stack, prompts, n=n_gen, seed=seed, **gen_kw)
    side = clip_binding(stack.clip, n=n_clip, seed=seed)
    gen.title = "Attribute binding"
    gen.meta["clip"] = side.table
    gen.extra_tables = {"CLIP side (chance: ARO 0.5, Winoground text / image 0.25, group 0.167)": side.table}
    return gen


def _draw(res: ProbeResult):
    """Rows: settings (then Fig. 15's stacks); columns: the first prompts (or stacks)."""
    import matplotlib.pyplot as plt

    rows = list(res.meta["images"].items())
    cols = min(8, max(len(v) for _, v in rows))
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.1 * cols + 2.6, 1.15 * len(rows)), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        step = res.meta["stack_seeds"] if label.startswith("red X") else 1
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if c * step < len(imgs):
                ax.imshow(imgs[c * step])
            if r == 0 and c < len(res.meta["prompts"]):
                ax.set_title(res.meta["prompts"][c].replace(" and ", "\n& "), fontsize=6)
        axes[r, 0].set_ylabel(label.replace(": ", ":\n", 1), fontsize=6, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig


if __name__ == "__main__":  # python -m unclip_probe.probes.binding checkpoints/world [--n-gen 32] [--n-clip 200]
    import argparse
    import json
    import time
    from pathlib import Path

    from unclip_probe.backends import load_stack

    p = argparse.ArgumentParser(description="Attribute binding probe on a world stack")
    p.add_argument("folder")
    p.add_argument("--n-gen", type=int, default=32)
    p.add_argument("--n-clip", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--figure", default="notebooks/figures/probe_binding.png")
    p.add_argument("--json", default="benchmarks/results/probe_binding.json")
    args = p.parse_args()
    t = time.perf_counter()
    stack = load_stack("world", args.folder, device="cpu")
    res = attribute_binding(stack, n_clip=args.n_clip, n_gen=args.n_gen, seed=args.seed)
    seconds = time.perf_counter() - t
    d = stack.defaults
    res.figure().savefig(args.figure, dpi=100, bbox_inches="tight")
    records = lambda df: json.loads(df.reset_index().to_json(orient="records"))  # noqa: E731
    out = {"command": f"python -m unclip_probe.probes.binding {args.folder} --n-gen {args.n_gen} --n-clip "
                      f"{args.n_clip} --seed {args.seed}", "seconds_with_loading": round(seconds, 1),
           "defaults": f"decoder {d.decode.steps} steps, guidance {d.decode.guidance:g}, {stack.noise_shape[-1]} px; "
                       f"diffusion prior {d.prior.steps} steps, guidance {d.prior.guidance:g}; stacks: 4 seeds",
           "generation": records(res.table), "clip": records(res.meta["clip"]), "skipped": res.meta["skipped"]}
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(res.table.round(3).to_string(), "\n", res.meta["clip"].drop(columns="example").round(3).to_string(),
          f"\n{seconds:.1f} s")
