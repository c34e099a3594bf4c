"""The `unclip-probe` command (docs/design.md §3): world | train | generate | report.

Bad input ends the command with the library's one-sentence message and exit
code 2, never a traceback (docs/design.md §7).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import ProbeInputError


def _cmd_world(args: argparse.Namespace) -> None:
    from . import world
    from .world.grid import captioned_grid

    scenes = world.sample_scenes(args.n, seed=args.seed)
    images = [world.render(s, size=args.size) for s in scenes]
    caps = [world.caption(s, seed=args.seed * 100003 + i) for i, s in enumerate(scenes)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    captioned_grid(images, caps, cols=args.cols, scale=max(1, 192 // args.size)).save(out)
    print(f"wrote {out} ({len(scenes)} scenes, seed {args.seed})")


def _cmd_generate(args: argparse.Namespace) -> None:
    """Text -> images through the whole stack (prior, decoder, upsampler), as a captioned grid."""
    from .errors import bad_input
    from unclip_probe.backends.world.stack import UnCLIP
    from .world.grid import captioned_grid

    if args.n < 1:
        raise bad_input("--n", f"expected at least 1 image per prompt, got {args.n}")
    pipe = UnCLIP.from_pretrained(args.checkpoints, device=args.device)
    prompts = [p for p in args.prompts for _ in range(args.n)]  # n samples of each prompt, one batch
    guidance = {} if args.guidance is None else {"guidance": args.guidance}
    images = pipe(prompts, seed=args.seed, prior=args.prior, steps=args.steps, **guidance)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = images[0].size[0]
    captioned_grid(images, prompts, cols=min(args.n, 8) if len(args.prompts) == 1 else args.n,
                   scale=max(1, 192 // size)).save(out)
    print(f"wrote {out} ({len(images)} images, {args.prior} prior, seed {args.seed}, device {pipe.device})")


def _cmd_report(args: argparse.Namespace) -> None:
    """Every probe's figures and tables on the stack, as one self-contained HTML page."""
    import time

    from .report import write_report

    t = time.perf_counter()
    page = write_report(args.checkpoints, args.out, quick=args.quick, device=args.device)
    print(f"wrote {page} in {time.perf_counter() - t:.0f} s")


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
    g.add_argument("--prior", default="diffusion", help="diffusion | ar")
    g.add_argument("--guidance", type=float, default=None,
                   help="decoder classifier-free guidance (default: the pipeline's DECODER_GUIDANCE)")
    g.add_argument("--steps", type=int, default=25, help="decoder DDIM steps")
    g.add_argument("--checkpoints", default="checkpoints/world", help="a world stack folder")
    g.add_argument("--device", default="auto")
    g.add_argument("--out", default="grid.png")
    g.set_defaults(func=_cmd_generate)
    r = sub.add_parser("report", help="run every probe on a world stack and write report/index.html")
    r.add_argument("--out", default="report")
    r.add_argument("--checkpoints", default="checkpoints/world", help="a world stack folder")
    r.add_argument("--device", default="cpu")
    r.add_argument("--quick", action="store_true", help="small sizes (tests, smoke runs)")
    r.set_defaults(func=_cmd_report)
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
    except ProbeInputError as err:
        print(f"unclip-probe {args.command}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
