"""`unclip-probe train <stage>`: one command per stage, all on the shared trainer (docs/design.md §5)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _clip_recipe(args):
    from .recipes.clip import ClipRecipe

    from ..world.spec import WorldConfig

    return ClipRecipe(batch_size=args.batch_size, data_seed=args.data_seed, workers=args.workers,
                      world=WorldConfig(note_prob=args.note_prob), init_from=args.init_from,
                      hard_negatives=args.hard_negatives)


def _decoder_recipe(args, text_only: bool = False):
    from .recipes.decoder import DecoderRecipe

    return DecoderRecipe(clip_dir=args.clip, batch_size=args.batch_size, data_seed=args.data_seed,
                         text_only=text_only, workers=args.workers, init_from=args.init_from,
                         captions=args.captions, prior_condition=args.prior_condition)


def _upsampler_recipe(args):
    from .recipes.upsampler import UpsamplerRecipe

    return UpsamplerRecipe(batch_size=args.batch_size, data_seed=args.data_seed, workers=args.workers,
                           init_from=args.init_from)


def _prior_recipe(args):
    from .recipes.prior import PriorRecipe

    return PriorRecipe(clip_dir=args.clip, batch_size=args.batch_size, data_seed=args.data_seed, workers=args.workers,
                       init_from=args.init_from, captions=args.captions)


def _ar_prior_recipe(args):
    from .recipes.ar_prior import ARPriorRecipe

    return ARPriorRecipe(clip_dir=args.clip, batch_size=args.batch_size, data_seed=args.data_seed, workers=args.workers,
                         init_from=args.init_from, captions=args.captions)


def _sae_recipe(args):
    from ..sae.train import SAERecipe

    with _renamed_sae_flags():
        return SAERecipe(data=args.embeddings, n_latents=args.n_latents, k=args.k, dead_after=args.dead_after,
                         batch_size=args.batch_size, data_seed=args.data_seed, init_from=args.init_from)


def _renamed_sae_flags():
    from .. import validate

    return validate.renamed(data="--embeddings", **{f"SAEConfig.{k}": f"--{k.replace('_', '-')}"
                                                   for k in ("n_latents", "k", "dead_after")})


EMA_DECAY, OUT = 0.999, "checkpoints/world"  # --ema-decay and --out of the stages that name none
_DECODER_DEFAULTS = {"steps": 20000, "batch_size": 32, "lr": 5e-4, "warmup_steps": 200, "weight_decay": 0.0}

STAGES = {
    "clip": (_clip_recipe, {"steps": 6000, "batch_size": 256, "lr": 1e-3, "warmup_steps": 300, "weight_decay": 0.1}),
    "decoder": (_decoder_recipe, _DECODER_DEFAULTS),
    "decoder-text": (lambda a: _decoder_recipe(a, text_only=True), _DECODER_DEFAULTS),
    "prior": (_prior_recipe, {"steps": 4000, "batch_size": 64, "lr": 3e-4, "warmup_steps": 200, "weight_decay": 0.01}),
    "ar-prior": (_ar_prior_recipe, {"steps": 4000, "batch_size": 64, "lr": 3e-4, "warmup_steps": 200, "weight_decay": 0.01}),
    "upsampler": (_upsampler_recipe, {"steps": 3000, "batch_size": 32, "lr": 5e-4, "warmup_steps": 100, "weight_decay": 0.0}),
    # ema_decay 0: the shipped weights are the raw ones, whose decoder rows are unit norm (sae/train.py);
    # out: a subfolder, so that the stack's own files (and stack.checksums) stay as they are
    "sae": (_sae_recipe, {"steps": 4000, "batch_size": 1024, "lr": 1e-3, "warmup_steps": 100, "weight_decay": 0.0,
                          "ema_decay": 0.0, "out": f"{OUT}/sae"}),
}


CLIP_STAGES = ("decoder", "decoder-text", "prior", "ar-prior")  # the stages that read --clip
CAPTION_STAGES = ("prior", "ar-prior", "decoder", "decoder-text")  # the stages whose recipes take --captions (issue 24)


def _check_args(args: argparse.Namespace) -> None:
    """The flags of `train`, each error naming its flag (docs/design.md §7)."""
    from .. import validate
    from ..errors import ProbeInputError

    for flag, minimum in (("steps", 1), ("batch_size", 1), ("warmup_steps", 0), ("checkpoint_every", 1),
                          ("seed", 0), ("data_seed", 0)):
        validate.count(getattr(args, flag), "--" + flag.replace("_", "-"), minimum=minimum)
    if args.workers is not None:
        validate.count(args.workers, "--workers")
    validate.number(args.lr, "--lr", above=0.0, what="a learning rate")
    validate.number(args.weight_decay, "--weight-decay", minimum=0.0)
    validate.number(args.ema_decay, "--ema-decay", minimum=0.0, maximum=0.999999, what="an EMA decay below 1")
    if args.budget_minutes is not None:
        validate.number(args.budget_minutes, "--budget-minutes", above=0.0, what="a number of minutes")
    validate.fraction(args.note_prob, "--note-prob"), validate.fraction(args.hard_negatives, "--hard-negatives")
    if args.init_from is not None:
        validate.input_file(args.init_from, "--init-from")
    if args.captions != "grammar" and args.stage not in CAPTION_STAGES:
        raise ProbeInputError(f"--captions: only the {' and '.join(CAPTION_STAGES)} stages train on other caption "
                              f"styles so far, got --captions {args.captions!r} for the {args.stage} stage")
    validate.fraction(args.prior_condition, "--prior-condition")
    if args.prior_condition and args.stage != "decoder":
        raise ProbeInputError(f"--prior-condition: only the decoder stage reads the diffusion prior's samples, got "
                              f"--prior-condition {args.prior_condition} for the {args.stage} stage")
    if args.prior_condition:
        validate.input_folder(args.clip, "--clip", files=("prior.json", "prior.safetensors"))
    if args.stage in CLIP_STAGES:
        validate.input_folder(args.clip, "--clip", files=("clip.json", "clip.safetensors"))
    if args.stage == "sae":
        if args.embeddings is None or not Path(args.embeddings).exists():
            raise ProbeInputError(f"--embeddings: the sae stage trains on an `unclip-probe embed` folder (or a "
                                  f".safetensors file of embeddings), got {args.embeddings!r}")
        validate.count(args.n_latents, "--n-latents")
        validate.count(args.k, "--k", maximum=args.n_latents)
        validate.count(args.dead_after, "--dead-after")
    validate.output_path(args.out, "--out", folder=True)
    from ..device import resolve_device

    with validate.renamed(device="--device"):
        resolve_device(args.device)


def _cmd_train(args: argparse.Namespace) -> None:
    from ..errors import bad_input, one_of
    from .trainer import TrainConfig, train

    if args.stage not in STAGES:
        raise bad_input("stage", one_of(args.stage, list(STAGES)))
    make, defaults = STAGES[args.stage]
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.ema_decay = EMA_DECAY if args.ema_decay is None else args.ema_decay
    if args.stage == "sae":
        from ..sae.model import SAEConfig

        for name in ("n_latents", "k", "dead_after"):
            if getattr(args, name) is None:
                setattr(args, name, getattr(SAEConfig, name))
    args.out = OUT if args.out is None else args.out
    _check_args(args)  # every flag, before a recipe starts its renderers or reads a CLIP
    recipe = make(args)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
                      weight_decay=args.weight_decay, checkpoint_every=args.checkpoint_every, seed=args.seed,
                      ema_decay=args.ema_decay)
    try:
        summary = train(recipe, cfg, Path(args.out), budget_minutes=args.budget_minutes, device=args.device,
                        progress=not args.quiet)
    finally:
        getattr(getattr(recipe, "renderer", None), "close", lambda: None)()
    print(json.dumps(summary.__dict__, indent=2, default=str))


def add_train_parser(sub) -> None:
    t = sub.add_parser("train", help="train one stage of the world stack (resumes from --out)")
    t.add_argument("stage", help=f"one of: {', '.join(STAGES)}")
    t.add_argument("--out", default=None, help=f"(default: {OUT}; sae: {STAGES['sae'][1]['out']})")
    t.add_argument("--budget-minutes", type=float, default=None)
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--warmup-steps", type=int, default=None)
    t.add_argument("--weight-decay", type=float, default=None)
    t.add_argument("--ema-decay", type=float, default=None, help=f"(default: {EMA_DECAY}; sae: 0, the raw weights)")
    t.add_argument("--checkpoint-every", type=int, default=200)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data-seed", type=int, default=0)
    t.add_argument("--workers", type=int, default=None, help="rendering processes (default: all cores, at most 16)")
    t.add_argument("--device", default="auto")
    t.add_argument("--clip", default="checkpoints/world", help="world CLIP folder the later stages condition on")
    t.add_argument("--note-prob", type=float, default=0.25, help="share of training scenes with a note")
    t.add_argument("--hard-negatives", type=float, default=0.0,
                   help="clip: share of each batch made of position-moved / colour-swapped twins")
    t.add_argument("--embeddings", default=None, metavar="FILE_OR_DIR",
                   help="sae: an `unclip-probe embed` folder (or a .safetensors file of embeddings) to train on")
    t.add_argument("--n-latents", type=int, default=None, help="sae: dictionary size (default: SAEConfig's)")
    t.add_argument("--k", type=int, default=None, help="sae: active latents per embedding, TopK (default: SAEConfig's)")
    t.add_argument("--dead-after", type=int, default=None,
                   help="sae: training samples without firing after which a latent is dead, for AuxK (default: "
                        "SAEConfig's)")
    t.add_argument("--init-from", default=None, help="weights (.safetensors) to start from instead of random")
    t.add_argument("--captions", default="grammar", help="prior, ar-prior, decoder: 'grammar' (world.captions.caption) or 'wide' "
                   "(wide_caption: wider wordings, never the held-out ones of world/wordings.py; issue 24)")
    t.add_argument("--prior-condition", type=float, default=0.0, metavar="FRACTION",
                   help="decoder: share of each batch conditioned on the diffusion prior's sample (from the --clip "
                        "folder's prior) of its caption instead of the true image embedding (issue 24; default 0)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_cmd_train)
