"""Tiny random Kandinsky 2.2 and Stable unCLIP 2.1 folders in the public repositories' layouts.

Each network is the published config (``tests/fixtures/real_configs``) with only its size keys
made small (diffusers' own test sizes), randomly initialised and saved with ``save_pretrained``;
schedulers, the image-normaliser path, tokenizer settings and the CLIP embedding widths (1280 for
Kandinsky 2.2's ViT-bigG-14, 1024 for ViT-H-14, 768 for ViT-L/14) are the real ones, so the
stacks' width checks speak of the real CLIPs. Latents 4 x 8 x 8 decode to 32 px images. The
tokenizer is a byte-level CLIP BPE with no merges over a 514-entry vocabulary written here:
nothing is downloaded.

    tiny_kandinsky(tmp_path)            -> {"decoder": DIR, "prior": DIR}
    tiny_stable_unclip(tmp_path, "h")   -> DIR   ("l" for the ViT-L/14 variant)
    tiny_clip_text(tmp_path, "h")       -> DIR   the matching CLIP text tower, for stable unCLIP's clip_text

and the helpers the stacks' tests share: ``one_thread``, ``as_array`` (float images as the pipelines'
``output_type="np"``), ``zero_output_layer``, ``round_trip`` (inversion against decoding),
``meta_parameters`` / ``open_clip_parameters`` / ``check_size`` (the published sizes on the meta
device), ``copy_without``, ``world_images``, ``check_raw_embeddings``.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

import pytest
import torch

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real_configs"
KANDINSKY = ("kandinsky-2-2-decoder", "kandinsky-2-2-prior")
STABLE_UNCLIP = {"h": "stable-diffusion-2-1-unclip", "l": "stable-diffusion-2-1-unclip-small"}
IMAGE = 32   # px of every tiny decoder's images and of the tiny CLIP's input
LATENT = 8   # latent side: both tiny autoencoders downsample by 4


def real_config(model: str, component: str, file: str = "config.json") -> dict:
    """A published component config (the fixture), without the keys diffusers writes itself."""
    cfg = json.loads((REAL / model / component / file).read_text())
    return {k: v for k, v in cfg.items() if k not in ("_diffusers_version", "_name_or_path", "architectures",
                                                       "torch_dtype", "transformers_version")}


def _perturb(module: torch.nn.Module, seed: int, scale: float = 0.02) -> torch.nn.Module:
    """Random weights everywhere, zero-initialised layers included, so no output is trivially zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return module.eval()


def write_tokenizer(folder: Path, model: str, component: str = "tokenizer") -> Path:
    """A CLIP BPE tokenizer in the public layout (vocab.json, merges.txt, tokenizer_config.json): every
    byte as a token, alone and word-final, then the start and end tokens last (as CLIP's 49406, 49407)."""
    from tokenizers.pre_tokenizers import ByteLevel

    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(real_config(model, component, "tokenizer_config.json"), indent=2))
    return folder


VOCAB = 2 * 256 + 2


def _vision(model: str, component: str, seed: int):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = {**real_config(model, component), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
           "num_attention_heads": 4, "image_size": IMAGE, "patch_size": 8}
    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**cfg)).eval()


def _text(cls_name: str, model: str, component: str, seed: int, **sizes):
    import transformers

    cfg = {**real_config(model, component), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
           "num_attention_heads": 4, "vocab_size": VOCAB, **sizes}
    torch.manual_seed(seed)
    return getattr(transformers, cls_name)(transformers.CLIPTextConfig(**cfg)).eval()


def _image_processor(model: str, component: str):
    from transformers import CLIPImageProcessor

    cfg = {**real_config(model, component, "preprocessor_config.json"),
           "size": {"shortest_edge": IMAGE}, "crop_size": {"height": IMAGE, "width": IMAGE}}
    return CLIPImageProcessor(**{k: v for k, v in cfg.items() if not k.endswith("_type")})


def _scheduler(cls_name: str, model: str, component: str = "scheduler"):
    import diffusers

    return getattr(diffusers, cls_name).from_config(real_config(model, component, "scheduler_config.json"))


def _save_pipeline(pipe, folder: Path, tokenizer_from: tuple[str, str] | None = None) -> Path:
    """save_pretrained, then the tokenizer rewritten as the public repos hold it (vocab + merges)."""
    pipe.save_pretrained(folder, safe_serialization=True)
    if tokenizer_from is not None:
        for f in (folder / "tokenizer").iterdir():
            f.unlink()
        write_tokenizer(folder / "tokenizer", *tokenizer_from)
    return folder


def _tokenizer(folder: Path, model: str):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(write_tokenizer(folder, model), local_files_only=True)


def tiny_kandinsky(tmp_path: Path, seed: int = 0) -> dict[str, Path]:
    """Tiny Kandinsky 2.2 decoder and prior folders (layouts of kandinsky-community/kandinsky-2-2-*)."""
    from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline, PriorTransformer, UNet2DConditionModel, \
        VQModel

    dec, pri = KANDINSKY
    tmp_path = Path(tmp_path)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config({
        **real_config(dec, "unet"), "block_out_channels": [32, 64], "layers_per_block": 1, "attention_head_dim": 8,
        "down_block_types": ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
        "up_block_types": ["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"], "cross_attention_dim": 32,
        "sample_size": LATENT})  # encoder_hid_dim stays 1280: it reads ViT-bigG-14's embedding
    movq = VQModel.from_config({
        **real_config(dec, "movq"), "block_out_channels": [32, 32, 64], "layers_per_block": 1,
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        "up_block_types": ["AttnUpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
        "num_vq_embeddings": 16, "sample_size": IMAGE})
    decoder = _save_pipeline(KandinskyV22Pipeline(unet=_perturb(unet, seed), scheduler=_scheduler("DDPMScheduler", dec),
                                                  movq=movq.eval()), tmp_path / dec)
    width = real_config(pri, "prior")["embedding_dim"]
    prior = PriorTransformer.from_config({**real_config(pri, "prior"), "num_attention_heads": 2,
                                          "attention_head_dim": 8, "num_layers": 1})
    _perturb(prior, seed + 1)
    with torch.no_grad():  # the CLIP statistics the prior un-normalises with (zeros when untrained)
        prior.clip_std.copy_(0.5 + torch.rand(prior.clip_std.shape, generator=torch.Generator().manual_seed(seed)))
    text = _text("CLIPTextModelWithProjection", pri, "text_encoder", seed + 2, hidden_size=width,
                 num_hidden_layers=1)  # its token features enter the prior at the prior's width
    pipe = KandinskyV22PriorPipeline(prior=prior, image_encoder=_vision(pri, "image_encoder", seed + 3),
                                     text_encoder=text, tokenizer=_tokenizer(tmp_path / pri / "tokenizer", pri),
                                     scheduler=_scheduler("UnCLIPScheduler", pri),
                                     image_processor=_image_processor(pri, "image_processor"))
    return {"decoder": decoder, "prior": _save_pipeline(pipe, tmp_path / pri, (pri, "tokenizer"))}


def tiny_stable_unclip(tmp_path: Path, variant: str = "h", seed: int = 0) -> Path:
    """A tiny Stable unCLIP 2.1 folder (layout of stabilityai/stable-diffusion-2-1-unclip, or -small for "l")."""
    from diffusers import AutoencoderKL, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer

    model = STABLE_UNCLIP[variant]
    tmp_path = Path(tmp_path)
    width = real_config(model, "image_normalizer")["embedding_dim"]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config({
        **real_config(model, "unet"), "block_out_channels": [32, 64], "layers_per_block": 1,
        "attention_head_dim": [2, 4], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 32,
        "sample_size": LATENT})  # projection_class_embeddings_input_dim stays 2 x the CLIP width
    vae = AutoencoderKL.from_config({
        **real_config(model, "vae"), "block_out_channels": [32, 32, 64], "layers_per_block": 1,
        "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
        "sample_size": IMAGE})
    normalizer = StableUnCLIPImageNormalizer(embedding_dim=width)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # CLIP embedding statistics (zeros / ones when untrained)
        normalizer.mean.copy_(0.1 * torch.randn(normalizer.mean.shape, generator=g))
        normalizer.std.copy_(0.5 + torch.rand(normalizer.std.shape, generator=g))
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=_image_processor(model, "feature_extractor"),
        image_encoder=_vision(model, "image_encoder", seed + 1), image_normalizer=normalizer,
        image_noising_scheduler=_scheduler("DDPMScheduler", model, "image_noising_scheduler"),
        tokenizer=_tokenizer(tmp_path / model / "tokenizer", model),
        text_encoder=_text("CLIPTextModel", model, "text_encoder", seed + 2),
        unet=_perturb(unet, seed + 3), scheduler=_scheduler("DDIMScheduler", model), vae=vae.eval())
    return _save_pipeline(pipe, tmp_path / model, (model, "tokenizer"))


def tiny_clip_text(tmp_path: Path, variant: str = "h", seed: int = 0) -> Path:
    """The CLIP text tower that projects into stable unCLIP's image-embedding space (in the real world a
    local copy of laion/CLIP-ViT-H-14-laion2B-s32B-b79K or openai/clip-vit-large-patch14): a
    CLIPTextModelWithProjection and its tokenizer in one folder."""
    model = STABLE_UNCLIP[variant]
    folder = Path(tmp_path) / f"clip-text-{variant}"
    text = _text("CLIPTextModelWithProjection", model, "text_encoder", seed + 4, num_hidden_layers=2,
                 projection_dim=real_config(model, "image_normalizer")["embedding_dim"])
    text.save_pretrained(folder, safe_serialization=True)
    write_tokenizer(folder, model)
    return folder


# ----------------------------------------------------------------------------- helpers of the tests
@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside the block: tiny models spend longer in the thread pool's handoffs than
    in arithmetic, ten times longer on a busy 2-core machine (measured: 137 s -> 13 s for both stack files)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """A test module's autouse fixture (import it by name): tiny models run on one thread, where two
    threads on a busy 2-core machine cost ten times more than they give."""
    with one_thread():
        yield


def as_array(x: torch.Tensor):
    """Images (B, 3, H, W) nominally in [-1, 1] as the pipelines' output_type="np": (B, H, W, 3) in [0, 1]."""
    return ((x.detach().float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


def zero_output_layer(unet: torch.nn.Module) -> torch.nn.Module:
    """The U-Net with conv_out's weight and bias zeroed: its prediction is 0 whatever it reads."""
    with torch.no_grad():
        unet.conv_out.weight.zero_()
        unet.conv_out.bias.zero_()
    return unet


def meta_parameters(model: str, component: str) -> int:
    """Parameters of a published component built from its fixture config on the meta device (no memory)."""
    import diffusers
    import transformers

    cfg = real_config(model, component)
    with torch.device("meta"):
        if "_class_name" in cfg:
            net = getattr(diffusers, cfg["_class_name"]).from_config(cfg)
        else:
            arch = json.loads((REAL / model / component / "config.json").read_text())["architectures"][0]
            kind = transformers.CLIPVisionConfig if "Vision" in arch else transformers.CLIPTextConfig
            net = getattr(transformers, arch)(kind(**cfg))
    return sum(p.numel() for p in net.parameters())


def open_clip_parameters(name: str) -> dict[str, int]:
    """open_clip's own build of a CLIP from its shipped config, on the meta device: {"visual", "text",
    "text_last_block", "text_projection"} parameter counts, an implementation independent of transformers."""
    import open_clip

    with torch.device("meta"):
        model = open_clip.CLIP(**open_clip.get_model_config(name))
    visual = sum(p.numel() for p in model.visual.parameters())
    total = sum(p.numel() for p in model.parameters())
    return {"visual": visual, "text": total - visual - model.logit_scale.numel(),
            "text_last_block": sum(p.numel() for p in model.transformer.resblocks[-1].parameters()),
            "text_projection": model.text_projection.numel()}


def world_images(n: int, seed: int = 3) -> list:
    """n rendered world scenes (64 px PIL images): the inputs the stacks' tests encode and invert."""
    from unclip_probe import world

    return [world.render(s) for s in world.sample_scenes(n, seed=seed)]


def round_trip(stack, images, steps: int) -> tuple[float, float]:
    """(max |decode(invert(x)) - x|, max |x_T - x|) in latents, for a copy of a latent stack whose U-Net
    output is zeroed: decode at eta 0, guidance 1 and the same steps must retrace the inversion."""
    import copy

    from unclip_probe.backends.latent import squares

    s = copy.copy(stack)
    s.unet = zero_output_layer(copy.deepcopy(stack.unet))
    x_T = s.invert(images, steps=steps)
    assert x_T.shape == (len(images), *s.noise_shape)
    with torch.no_grad():
        x_0 = s._to_latents(s._pixels(squares(images, s.image_size)))  # (B, *noise_shape)
        back = s._latents(s.encode_image(images), x_T=x_T, guidance=1.0, steps=steps, eta=0.0)
    return (back - x_0).abs().max().item(), (x_T - x_0).abs().max().item()


def check_size(model: str, component: str, exact: int, figure: float, tolerance: float, source: str) -> None:
    """A published component built on meta has exactly ``exact`` parameters (our fixture unchanged),
    within ``tolerance`` (relative) of the published ``figure`` (``source`` says where it is printed)."""
    n = meta_parameters(model, component)
    assert n == exact, f"{model}/{component}: {n:,} parameters (the fixture config changed?)"
    assert abs(n / figure - 1) <= tolerance, f"{n:,} against {figure:,.0f}: {source}"


def copy_without(folder: Path, tmp_path: Path, drop: str | None = None) -> Path:
    """A copy of a model folder without one of its files or component folders (``drop``)."""
    import shutil

    out = Path(shutil.copytree(folder, Path(tmp_path) / folder.name))
    if drop is not None:
        (out / drop).unlink() if (out / drop).is_file() else shutil.rmtree(out / drop)
    return out


def check_raw_embeddings(stack, images) -> torch.Tensor:
    """A latent stack's ``encode_image`` is its CLIP's raw ``image_embeds`` (what decode takes), and
    ``clip.encode_image`` their unit-norm direction; returns the raw embeddings (B, D)."""
    z = stack.encode_image(images)
    assert torch.equal(z, stack.clip.image_embeds(images))
    assert torch.allclose(stack.clip.encode_image(images), torch.nn.functional.normalize(z, dim=-1), atol=1e-6)
    assert set(stack.checksums) >= {"clip", "decoder/unet/diffusion_pytorch_model.safetensors"}
    return z
