"""The `unclip-probe` command (docs/design.md §3): world | train | generate | report | benchmark | embed.

Bad input ends the command with the library's one-sentence message and exit
code 2, never a traceback (docs/design.md §7). Every argument, output paths
included, is checked before the command starts its work.
"""
from __future__ import annotations

import argparse
import sys

from . import validate
from .errors import ProbeInputError

# the library's argument names -> this command's flags, so that an error names what the user typed
FLAGS = {"n": "--n", "seed": "--seed", "size": "--size", "cols": "--cols", "guidance": "--guidance",
         "steps": "--steps", "prior": "--prior-kind", "sampler": "--sampler", "prior_sampler": "--prior-sampler",
         "folder": "--checkpoints", "device": "--device", "out": "--out"}


def _cmd_world(args: argparse.Namespace) -> None:
    from . import world
    from .world.grid import captioned_grid

    n, seed = validate.count(args.n, "--n"), validate.seed(args.seed, "--seed")
    cols = validate.count(args.cols, "--cols")
    size = int(validate.choice(str(args.size), [str(s) for s in world.SIZES], "--size"))
    out = validate.output_path(args.out, "--out", image=True)
    scenes = world.sample_scenes(n, seed=seed)
    images = [world.render(s, size=size) for s in scenes]
    caps = [world.caption(s, seed=(seed * 100003 + i) % (validate.MAX_SEED + 1)) for i, s in enumerate(scenes)]
    out.parent.mkdir(parents=True, exist_ok=True)
    captioned_grid(images, caps, cols=cols, scale=max(1, 192 // size)).save(out)
    print(f"wrote {out} ({len(scenes)} scenes, seed {args.seed})")


SAMPLER_NAMES = ("ddim", "ddpm", "dpm++2m")  # diffusion.SAMPLERS, named here so that --help imports no torch
STACK_KINDS = ("world", "kandinsky-2.2", "stable-unclip-h", "stable-unclip-l", "karlo")  # backends.STACKS


def _stack_args(args: argparse.Namespace) -> dict:
    """load_stack's arguments from the shared flags, checked (cheaply) before anything loads."""
    validate.choice(args.stack, STACK_KINDS, "--stack")
    if args.stack == "world":
        if args.decoder is not None or args.prior is not None:
            raise ProbeInputError("--decoder: the world stack is one folder; give it as --checkpoints")
        validate.input_folder(args.checkpoints, "--checkpoints")
        return {"kind": "world", "folder": args.checkpoints}
    extra = {"clip_text": ("--clip-text", args.clip_text), "image_encoder": ("--image-encoder", args.image_encoder)}
    for flag, value in (("--decoder", args.decoder), ("--prior", args.prior), *extra.values()):
        if value is not None:
            validate.input_folder(value, flag)
    wanted = {"clip_text": args.stack.startswith("stable-unclip"), "image_encoder": args.stack == "karlo"}
    for key, (flag, value) in extra.items():
        if value is not None and not wanted[key]:
            raise ProbeInputError(f"{flag}: the {args.stack!r} stack takes no such folder")
    return {"kind": args.stack, "decoder": args.decoder, "prior": args.prior,
            **{k: v for k, (_, v) in extra.items() if v is not None}}


def _load(args: argparse.Namespace, spec: dict):
    from unclip_probe.backends import load_stack

    with validate.renamed(**{**FLAGS, "decoder": "--decoder", "prior": "--prior", "clip_text": "--clip-text",
                             "image_encoder": "--image-encoder"}):
        return load_stack(**spec, device=args.device)


def _cmd_generate(args: argparse.Namespace) -> None:
    """Text -> images through the whole stack (prior, decoder, upsampler), as a captioned grid."""
    from .world.grid import captioned_grid

    validate.count(args.n, "--n")  # images per prompt
    validate.prompts(args.prompts), validate.seed(args.seed, "--seed"), validate.steps(args.steps, "--steps")
    validate.guidance(args.guidance, "--guidance")
    validate.choice(args.prior_kind, ("diffusion", "ar"), "--prior-kind")
    for flag, value in (("--sampler", args.sampler), ("--prior-sampler", args.prior_sampler)):
        if value is not None:
            validate.choice(value, SAMPLER_NAMES, flag)
    spec = _stack_args(args)
    out = validate.output_path(args.out, "--out", image=True)  # before the sampling, not after it
    pipe = _load(args, spec)
    with validate.renamed(**FLAGS):
        prompts = [p for p in args.prompts for _ in range(args.n)]  # n samples of each prompt, one batch
        options = {k: v for k, v in (("guidance", args.guidance), ("sampler", args.sampler),
                                     ("prior_sampler", args.prior_sampler)) if v is not None}
        images = pipe(prompts, seed=args.seed, prior=args.prior_kind, steps=args.steps, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = images[0].size[0]
    captioned_grid(images, prompts, cols=min(args.n, 8) if len(args.prompts) == 1 else args.n,
                   scale=max(1, 192 // size)).save(out)
    print(f"wrote {out} ({len(images)} images, {args.prior_kind} prior, seed {args.seed}, device {pipe.device})")


def _cmd_report(args: argparse.Namespace) -> None:
    """Every probe's figures and tables on the stack, as one self-contained HTML page."""
    import time

    from .report import write_report

    from .imaging import image_files

    spec = _stack_args(args)
    validate.output_path(args.out, "--out", folder=True)  # before the probes run, not after them
    images = image_files(args.images, "--images") if args.images is not None else None
    labels = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else None
    if images is not None and (labels is None or len(labels) < 2):
        raise ProbeInputError("--labels: a report on your images needs at least two zero-shot labels, e.g. "
                              "--labels cat,dog,car")
    benchmarks = {}
    for item in args.benchmark or []:  # NAME=DIR, checked before the probes run
        name, sep, folder = item.partition("=")
        if not sep:
            raise ProbeInputError(f"--benchmark: expected NAME=DIR, e.g. winoground=/data/winoground, got {item!r}")
        benchmarks[validate.choice(name, BENCHMARK_NAMES, "--benchmark")] = validate.input_folder(folder, "--benchmark")
    t = time.perf_counter()
    stack = _load(args, spec)
    with validate.renamed(labels="--labels", word="--word", images="--images", **FLAGS):
        page = write_report(stack, args.out, quick=args.quick, device=args.device, images=images, labels=labels,
                            word=args.word, benchmarks=benchmarks)
    print(f"wrote {page} in {time.perf_counter() - t:.0f} s")


BENCHMARK_NAMES = ("winoground", "vg-relation", "vg-attribution", "coco-order", "flickr30k-order", "sugarcrepe",
                   "rta-100", "paint", "scam")  # datasets.BENCHMARKS, named here so that --help imports no torch


def _cmd_benchmark(args: argparse.Namespace) -> None:
    """Score a CLIP on a published benchmark read from a local copy; print the table, write JSON."""
    import json
    import time

    validate.choice(args.name, BENCHMARK_NAMES, "name")
    validate.input_folder(args.data, "--data")
    validate.count(args.batch_size, "--batch-size")
    if args.images is not None:
        validate.input_folder(args.images, "--images")
    out = validate.output_path(args.json, "--json") if args.json is not None else None
    options = {k: v for k, v in (("images", args.images), ("variant", args.variant), ("seed", args.seed)) if v is not None}
    wanted = {"images": ("sugarcrepe",), "variant": ("scam",), "seed": ("coco-order", "flickr30k-order")}
    for key in options:
        if args.name not in wanted[key]:
            raise ProbeInputError(f"--{key}: the {args.name!r} benchmark takes no such option")
    from .clip import load_clip
    from .datasets import run_benchmark

    t = time.perf_counter()
    with validate.renamed(source="--clip", pretrained="--pretrained", device="--device", folder="--data",
                          images="--images", variant="--variant", batch_size="--batch-size", cache="--cache"):
        clip = load_clip(args.clip, args.pretrained, device=args.device)
        res = run_benchmark(args.name, clip, args.data, cache=False if args.no_cache else (args.cache or True),
                            batch_size=args.batch_size, **options)
    seconds = time.perf_counter() - t
    print(res.title)
    print(res.table.round(4).to_string())
    print(f"cache: {res.meta['cache']}; {seconds:.1f} s")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"benchmark": args.name, "clip": res.meta["clip"], "data": str(args.data),
                  "figures": json.loads(res.table.to_json(orient="index")),
                  "per_group": {k: json.loads(v.to_json(orient="index")) for k, v in res.extra_tables.items()},
                  "chance": res.meta["chance"], "cache": res.meta["cache"], "seconds": round(seconds, 1)}
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {out}")


WORLD_N = 10_000  # embed: world scenes when --n is not given
SHARD_SIZE = 4096  # embed.SHARD_SIZE, named here so that --help imports no torch


def _cmd_embed(args: argparse.Namespace) -> None:
    """A stack's image embeddings (encode_image) of world scenes or of a folder's images, as resumable
    shards; under torchrun each rank embeds its own shards (docs/design.md §9)."""
    import os
    from pathlib import Path

    from .imaging import image_files

    if args.images == "world":
        validate.count(WORLD_N if args.n is None else args.n, "--n")
        validate.seed(0 if args.seed is None else args.seed, "--seed")
    else:
        if not Path(args.images).is_dir():
            raise ProbeInputError(f"--images: expected 'world' or a folder of images, got {args.images!r} "
                                  "(no such folder)")
        for flag, value in (("--n", args.n), ("--seed", args.seed)):
            if value is not None:
                raise ProbeInputError(f"{flag}: only --images world takes it; a folder's images are all embedded")
        image_files(args.images, "--images")
    validate.count(args.shard_size, "--shard-size"), validate.count(args.batch_size, "--batch-size")
    spec = _stack_args(args)
    validate.output_path(args.out, "--out", folder=True)
    from .device import resolve_device
    from .embed import distributed_rank, embed_folder, embed_world

    rank, world_size = distributed_rank()
    with validate.renamed(device="--device"):
        device = resolve_device(args.device)
    if device.type == "cuda" and world_size > 1 and device.index is None:  # torchrun: one GPU per rank
        args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    stack = _load(args, spec)
    options = {"shard_size": args.shard_size, "batch_size": args.batch_size, "rank": rank,
               "world_size": world_size, "progress": not args.quiet}
    with validate.renamed(**{**FLAGS, "folder": "--images", "images": "--images", "shard_size": "--shard-size",
                             "batch_size": "--batch-size"}):
        if args.images == "world":
            res = embed_world(stack, args.out, WORLD_N if args.n is None else args.n,
                              seed=0 if args.seed is None else args.seed, **options)
        else:
            res = embed_folder(stack, args.images, args.out, **options)
    done = "index.json written" if res.index_written else "index.json follows when every rank's shards exist"
    print(f"{args.out}: rank {rank} of {world_size} wrote {len(res.written)} shard(s), kept {len(res.kept)}; {done}")


def _add_stack_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stack", default="world", help=f"which stack: {' | '.join(STACK_KINDS)}")
    p.add_argument("--checkpoints", default="checkpoints/world", help="the world stack's folder")
    p.add_argument("--decoder", default=None, help="a real stack's (decoder's) folder, in its public repository's "
                                                   "layout (default: the local Hugging Face cache)")
    p.add_argument("--prior", default=None, help="Kandinsky 2.2's prior folder")
    p.add_argument("--clip-text", default=None, help="Stable unCLIP: its CLIP's text tower folder (text diffs, "
                                                     "zero-shot)")
    p.add_argument("--image-encoder", default=None, help="Karlo: the image-variations repository's image tower")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unclip-probe", description="Probe CLIP latents with a compact unCLIP.")
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("world", help="render a captioned grid of shape-world scenes")
    w.add_argument("--n", type=int, default=16)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--size", type=int, default=64)
    w.add_argument("--cols", type=int, default=4)
    w.add_argument("--out", default="world.png")
    w.set_defaults(func=_cmd_world)
    g = sub.add_parser("generate", help="text -> images through prior, decoder and upsampler")
    g.add_argument("prompts", nargs="+", help="one or more captions, e.g. \"a red circle left of a blue square\"")
    g.add_argument("--n", type=int, default=8, help="images per prompt")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--prior-kind", default="diffusion", help="which prior samples the embedding: diffusion | ar")
    g.add_argument("--guidance", type=float, default=None,
                   help="decoder classifier-free guidance (default: the pipeline's DECODER_GUIDANCE)")
    g.add_argument("--steps", type=int, default=None, help="decoder steps (default: the stack's)")
    g.add_argument("--sampler", default=None, help=f"decoder sampler: {' | '.join(SAMPLER_NAMES)} (default: the "
                                                   "stack's)")
    g.add_argument("--prior-sampler", default=None, help="the diffusion prior's sampler (default: the stack's)")
    _add_stack_flags(g)
    g.add_argument("--device", default="auto")
    g.add_argument("--out", default="grid.png")
    g.set_defaults(func=_cmd_generate)
    r = sub.add_parser("report", help="run every probe on a stack and write report/index.html")
    r.add_argument("--out", default="report")
    _add_stack_flags(r)
    r.add_argument("--images", default=None, help="a folder of your images for the PCA and typographic probes")
    r.add_argument("--labels", default=None, help="zero-shot classes for your images, comma-separated: cat,dog,car")
    r.add_argument("--word", default=None, help="the typographic attack's word (default: star on world scenes, "
                                                "else ipod)")
    r.add_argument("--benchmark", action="append", default=None, metavar="NAME=DIR",
                   help="also score the stack's CLIP on a published benchmark from a local copy (repeatable)")
    r.add_argument("--device", default="cpu")
    r.add_argument("--quick", action="store_true", help="small sizes (tests, smoke runs)")
    r.set_defaults(func=_cmd_report)
    b = sub.add_parser("benchmark", help="score a CLIP on a published benchmark from a local copy "
                                         "(Winoground, ARO, SugarCrepe, typographic sets)")
    b.add_argument("name", help=" | ".join(BENCHMARK_NAMES))
    b.add_argument("--clip", default="checkpoints/world", help="a world checkpoint folder, a transformers CLIP folder, "
                                                               "or an open_clip model name (with --pretrained)")
    b.add_argument("--pretrained", default=None, help="open_clip: a local weights file or a cached pretrained tag")
    b.add_argument("--data", required=True, help="the benchmark's folder, in its release's layout (see README)")
    b.add_argument("--images", default=None, help="SugarCrepe: the COCO val2017 images (default DATA/val2017)")
    b.add_argument("--variant", default=None, help="SCAM: SCAM | NoSCAM | SynthSCAM (default: every one present)")
    b.add_argument("--seed", type=int, default=None, help="ARO order sets: the perturbations' seed (default 1)")
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--cache", default=None, help="embedding cache folder (default $UNCLIP_PROBE_CACHE or "
                                                 "~/.cache/unclip-probe/embeddings)")
    b.add_argument("--no-cache", action="store_true", help="embed everything again, keep nothing")
    b.add_argument("--device", default="auto")
    b.add_argument("--json", default=None, help="also write the figures here")
    b.set_defaults(func=_cmd_benchmark)
    e = sub.add_parser("embed", help="a stack's image embeddings of many images (world scenes or a folder) as "
                                     "resumable safetensors shards; torchrun-aware")
    e.add_argument("--images", required=True, help="'world' (rendered scenes, stored with their scene JSON) or a "
                                                   "folder of image files (sorted by name)")
    e.add_argument("--n", type=int, default=None, help=f"world: how many scenes (default {WORLD_N})")
    e.add_argument("--seed", type=int, default=None, help="world: the scenes' seed (default 0)")
    e.add_argument("--shard-size", type=int, default=SHARD_SIZE, help="images per shard")
    e.add_argument("--batch-size", type=int, default=256, help="images per encode_image call")
    _add_stack_flags(e)
    e.add_argument("--device", default="auto")
    e.add_argument("--out", required=True, help="the output folder (shard-*.safetensors, index.json)")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=_cmd_embed)
    try:
        from .train.cli import add_train_parser
    except ImportError:  # the training stack is optional for looking at the world
        add_train_parser = None
    if add_train_parser is not None:
        add_train_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ProbeInputError as err:  # bad input: its one sentence, no traceback
        print(f"unclip-probe {args.command}: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except OSError as err:  # the machine refused (disk full, read-only file system): one line as well
        print(f"unclip-probe {args.command}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
