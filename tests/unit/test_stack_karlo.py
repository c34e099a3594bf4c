"""Karlo v1 alpha behind the stack protocol, on tiny random models in the public repos' layouts.

What this file shows: the stack's DDPM path reproduces diffusers' own Karlo pipelines (prior,
decoder, super-res), its DDIM inversion lines up with its DDIM decode, the public component
configs build to the published sizes and pass the loader's layout check, bad input is one
sentence; tests/unit/test_stack_conformance.py runs the protocol's own tests on it.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as tf
from diffusers import PriorTransformer, UNet2DConditionModel, UNet2DModel, UnCLIPScheduler
from diffusers.pipelines.deprecated.unclip import UnCLIPImageVariationPipeline, UnCLIPPipeline, UnCLIPTextProjModel
from PIL import Image

from _tiny_clip import write_clip_towers
from _tiny_karlo import tiny_karlo
from unclip_probe import world
from unclip_probe.backends.karlo import KARLO_DEFAULTS, Karlo, load
from unclip_probe.backends.karlo_parts import check_layout
from unclip_probe.diffusion.from_diffusers import linspace_timesteps, schedule_from_config
from unclip_probe.errors import ProbeInputError

pytestmark = pytest.mark.unit

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real_configs" / "karlo"
L = {"local_files_only": True}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("karlo")
    return tiny_karlo(root), tiny_karlo(root, variations=True)


@pytest.fixture(scope="module")
def karlo(folders) -> Karlo:
    return load(folders[0], image_encoder=folders[1], device="cpu")




def _float64_tables(scheduler: UnCLIPScheduler) -> UnCLIPScheduler:
    """The same scheduler with its tables in float64: its float32 betas, cumulated in float64."""
    scheduler.betas = scheduler.betas.double()
    scheduler.alphas = 1 - scheduler.betas
    scheduler.alphas_cumprod = torch.cumprod(scheduler.alphas, 0)
    scheduler.one = torch.tensor(1.0, dtype=torch.float64)
    return scheduler


def _pipeline_parts(folder: Path, float64: bool) -> dict:
    """Each component loaded afresh by its own class (the stack's modules are not shared)."""
    sched = lambda sub: UnCLIPScheduler.from_pretrained(folder / sub)  # noqa: E731
    parts = {"decoder": UNet2DConditionModel.from_pretrained(folder / "decoder", **L),
             "text_encoder": tf.CLIPTextModelWithProjection.from_pretrained(folder / "text_encoder", **L),
             "tokenizer": tf.CLIPTokenizer.from_pretrained(folder / "tokenizer", **L),
             "text_proj": UnCLIPTextProjModel.from_pretrained(folder / "text_proj", **L),
             "super_res_first": UNet2DModel.from_pretrained(folder / "super_res_first", **L),
             "super_res_last": UNet2DModel.from_pretrained(folder / "super_res_last", **L),
             "decoder_scheduler": sched("decoder_scheduler"), "super_res_scheduler": sched("super_res_scheduler")}
    if (folder / "prior").is_dir():
        parts.update(prior=PriorTransformer.from_pretrained(folder / "prior", **L),
                     prior_scheduler=sched("prior_scheduler"))
    if float64:
        for k in ("decoder_scheduler", "super_res_scheduler", "prior_scheduler"):
            if k in parts:
                _float64_tables(parts[k])
    return parts


def _as_tensor(images) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2)  # (B, H, W, 3) in [0, 1] -> (B, 3, H, W)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return (x * 0.5 + 0.5).clamp(0, 1)  # the pipelines' output range


# ----------------------------------------------------------------------------- 1. the pipelines' DDPM

def _final_step_coefficient() -> float:
    """UnCLIPScheduler's x0 coefficient on its last step (t = 0 -> data): beta_0 / (1 - alphas_cumprod_0),
    exactly 1, evaluated in the scheduler's float32: 1 - (1 - beta_0) cancels (beta_0 ~ 4e-5)."""
    sch = UnCLIPScheduler()
    return float(sch.betas[0] / (1 - sch.alphas_cumprod[0]))


def test_ddpm_path_reproduces_the_image_variation_pipeline(karlo, folders):
    """Our steps (sample_ddpm_at: ddpm_step's mean, the learned-range variance, UnCLIPScheduler's
    timesteps, the pipelines' guidance and conditioning, super_res_first/last) against
    UnCLIPImageVariationPipeline given image_embeddings, at its own DDPM settings.

    With the scheduler's tables in float64 the two agree to float32 rounding (< 1e-5): the
    algorithms are the same. The stock scheduler keeps them in float32, where the last step's x0
    coefficient beta_0 / (1 - alphas_cumprod_0), exactly 1, comes out 1 - 5.3e-4 (1 - (1 - beta_0)
    cancels, beta_0 ~ 4e-5); our samplers compute coefficients in float64. That step maps the
    clipped x0 (|x0| <= 1) to the image, so it alone moves a pixel by up to |c - 1| / 2 in [0, 1]:
    the bound asserted (measured on these models: 6.0e-8 with float64 tables; 2.6533e-4 stock
    against |c - 1| / 2 = 2.6384e-4). Three decoder steps, not two: a decode that jumps from
    t = 999, where x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab) amplifies any difference 2e4 times
    before the clip, turns even that rounding into pixel flips (0.99 measured at 2 + 2 steps)."""
    var = folders[1]
    g = torch.Generator().manual_seed(0)
    B, D = 2, karlo.embed_dim
    emb = 3 * torch.randn(B, D, generator=g)  # raw embeddings, as the pipeline takes them
    x_T, sr_x_T = torch.randn(B, *karlo.noise_shape, generator=g), torch.randn(B, 3, 32, 32, generator=g)
    kw = {"decoder_num_inference_steps": 3, "super_res_num_inference_steps": 2, "decoder_guidance_scale": 8.0}
    ours = _unit(karlo.decode_raw(emb, x_T=x_T, sr_x_T=sr_x_T, steps=3, upsample_steps=2, guidance=8.0,
                                  sampler="ddpm", generator=torch.Generator().manual_seed(7)))
    diffs = {}
    for float64 in (True, False):
        pipe = UnCLIPImageVariationPipeline(
            **_pipeline_parts(var, float64),
            image_encoder=tf.CLIPVisionModelWithProjection.from_pretrained(var / "image_encoder", **L),
            feature_extractor=tf.CLIPImageProcessor.from_pretrained(var / "feature_extractor"))
        pipe.set_progress_bar_config(disable=True)
        ref = pipe(image_embeddings=emb, decoder_latents=x_T.clone(), super_res_latents=sr_x_T.clone(),
                   generator=torch.Generator().manual_seed(7), output_type="np", **kw).images
        diffs[float64] = (_as_tensor(ref) - ours).abs().max().item()
    assert diffs[True] < 1e-5, diffs
    c = _final_step_coefficient()
    assert 1e-4 < abs(c - 1) < 1e-3  # the float32 cancellation the stock scheduler makes
    assert diffs[False] <= abs(c - 1) / 2 + 1e-5, diffs  # the super-res' last step, in [0, 1] pixels
    # and the DDIM path (the stack's default) is a different sampler: it does not reproduce DDPM
    ddim = _unit(karlo.decode_raw(emb, x_T=x_T, sr_x_T=sr_x_T, steps=3, upsample_steps=2, guidance=8.0))
    assert (ddim - ours).abs().max() > 1e-2


def test_ddpm_path_reproduces_the_text_to_image_pipeline(karlo, folders):
    """Prior (x0 prediction, clip range 5, clip_std / clip_mean), then decoder reading the prompts,
    then super-res, one generator through all three, against UnCLIPPipeline (float64 tables)."""
    prompts = ["a red circle", "a blue star above a green square"]
    g = torch.Generator().manual_seed(1)
    p_T = torch.randn(2, karlo.embed_dim, generator=g)
    x_T, sr_x_T = torch.randn(2, *karlo.noise_shape, generator=g), torch.randn(2, 3, 32, 32, generator=g)
    pipe = UnCLIPPipeline(**_pipeline_parts(folders[0], float64=True))
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompts, prior_latents=p_T.clone(), decoder_latents=x_T.clone(), super_res_latents=sr_x_T.clone(),
               generator=torch.Generator().manual_seed(9), prior_num_inference_steps=3, decoder_num_inference_steps=3,
               super_res_num_inference_steps=2, output_type="np").images
    gen = torch.Generator().manual_seed(9)
    z_raw = karlo.prior_raw(prompts, x_T=p_T, steps=3, sampler="ddpm", generator=gen)
    ours = karlo.decode_raw(z_raw, prompts=prompts, x_T=x_T, sr_x_T=sr_x_T, steps=3, upsample_steps=2,
                            sampler="ddpm", generator=gen)
    assert (_as_tensor(ref) - _unit(ours)).abs().max() < 1e-5


def test_text_to_image_feeds_the_priors_raw_embedding(karlo):
    """__call__ = prior at its own scale -> decoder reading the prompt -> super-res (as UnCLIPPipeline);
    prior() is that embedding normalised, and decode() rescales unit embeddings to embedding_norm."""
    ims = karlo(["a red circle"], seed=4, steps=2, prior_steps=2, upsample_steps=2)
    z_raw = karlo.prior_raw(["a red circle"], seed=4, steps=2)
    x = karlo.decode_raw(z_raw, prompts=["a red circle"], seed=4, steps=2, upsample_steps=2)
    from unclip_probe.imaging import signed_to_pil
    assert ims[0].tobytes() == signed_to_pil(x)[0].tobytes()
    z = karlo.prior(["a red circle"], seed=4, steps=2)
    assert torch.allclose(z, torch.nn.functional.normalize(z_raw, dim=-1))
    mean, std = karlo.prior_net.clip_mean.detach(), karlo.prior_net.clip_std.detach()
    assert karlo.embedding_norm == pytest.approx(float((mean**2).sum() + (std**2).sum()) ** 0.5)
    a = karlo.decode(z, seed=2, steps=2, upsample=False)
    b = signed_to_pil(karlo.decode_raw(karlo.embedding_norm * z, seed=2, steps=2, upsample=False))
    assert a[0].tobytes() == b[0].tobytes()


def test_timesteps_and_schedule_are_the_schedulers():
    sch = UnCLIPScheduler()
    for steps in (2, 3, 7, 25, 50):
        sch.set_timesteps(steps)
        assert linspace_timesteps(1000, steps) == sch.timesteps.tolist()
    S = schedule_from_config(sch.config)
    assert torch.equal(S.betas.float(), sch.betas)
    assert (S.alphas_cumprod - sch.alphas_cumprod.double()).abs().max() < 1e-6


# ----------------------------------------------------------------------------- 2. inversion

def test_inversion_then_decode_returns_the_input(folders):
    """With the decoder's output layer zeroed, DDIM inversion and the eta 0, guidance 1 decode over
    the same steps are exact inverses (< 1e-5): first with eps = 0 everywhere (the schedule's ends,
    the scaling and the pixel conversion), then with an output that ignores the sample but not the
    timestep, eps = 0.02 sin(pi t / 999) and v = -0.7 (so the eps channels and the very timesteps
    both directions visit must agree: a sample-free output makes DDIM exact only on the same path).
    eps vanishes at t = 999 because float32 keeps x_0 in x_999 = 4.9e-5 x_0 + eps only to ~1e-3;
    it is small and the pixels stay inside [-0.7, 0.7] so that no x0 the decode predicts on the
    way reaches the decoder scheduler's clip at +-1 (a clipped step is not invertible)."""
    stack = load(folders[0], image_encoder=folders[1], device="cpu")
    with torch.no_grad():
        stack.decoder.conv_out.weight.zero_()
        stack.decoder.conv_out.bias.zero_()
    rng = np.random.default_rng(5)
    images = [Image.fromarray(rng.integers(40, 216, (16, 16, 3), dtype=np.uint8)) for _ in range(2)]
    x_0, z = stack._pixels(images), stack.encode_image(images)

    def round_trip(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        x_T = stack.invert(images, steps=steps, z=z)
        back = stack.decode_raw(stack._raw(z), x_T=x_T, steps=steps, guidance=1.0, eta=0.0, upsample=False)
        return x_T, back

    for steps in (2, 3):
        x_T, back = round_trip(steps)
        assert (back - x_0).abs().max() < 1e-5
        pil = stack.decode(z, x_T=x_T, steps=steps, guidance=1.0, upsample=False)
        assert [p.tobytes() for p in pil] == [im.tobytes() for im in images]
    with torch.no_grad():
        stack.decoder.conv_out.bias.copy_(torch.tensor([0.0] * 3 + [-0.7] * 3))
    seen = {}

    def add_g_of_t(module, inputs, out):  # out + 0.02 sin(pi t / 999), t from the U-Net's call
        return out + 0.02 * torch.sin(torch.pi * seen["t"].double() / 999).float().view(-1, 1, 1, 1)

    hooks = [stack.decoder.register_forward_pre_hook(lambda m, args: seen.update(t=args[1])),
             stack.decoder.conv_out.register_forward_hook(add_g_of_t)]
    try:
        for steps in (2, 3):
            x_T, back = round_trip(steps)
            assert (back - x_0).abs().max() < 1e-5
            assert (x_T - x_0).abs().max() > 0.5  # x_T is noise-level, not the image
        x_T = stack.invert(images, steps=3, z=z)  # and the decode must take the inversion's timesteps
        off = stack.decode_raw(stack._raw(z), x_T=x_T, steps=4, guidance=1.0, upsample=False)
        assert (off - x_0).abs().max() > 5e-3
    finally:
        for h in hooks:
            h.remove()


def test_explicit_timestep_samplers_invert_each_other():
    """sample_ddim_at / invert_ddim_at over the same timesteps are exact inverses for an output that
    depends on t only (to float rounding), and not over different ones; sample_ddpm_at's noise-free
    last step equals DDIM's."""
    from unclip_probe.diffusion.from_diffusers import invert_ddim_at, sample_ddim_at, sample_ddpm_at

    S = schedule_from_config(UnCLIPScheduler().config)
    def den(x, t):  # eps = 0.02 sin(pi t / 999): depends on t only (see the test above)
        return (0.02 * torch.sin(torch.pi * t.double() / 999)).view(-1, 1, 1, 1).to(x.dtype).expand_as(x)

    x_0 = 0.7 * (2 * torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) - 1)
    for steps in (2, 3, 25):
        ts = linspace_timesteps(1000, steps)
        x_T = invert_ddim_at(den, x_0, S, ts)
        assert (sample_ddim_at(den, x_T, S, ts, clip_x0=1.0) - x_0).abs().max() < 1e-5
        if steps > 2:
            assert (sample_ddim_at(den, x_T, S, ts[:1] + ts[2:], clip_x0=1.0) - x_0).abs().max() > 1e-2
    last = sample_ddpm_at(den, x_0, S, [0], generator=torch.Generator())
    assert torch.allclose(last, sample_ddim_at(den, x_0, S, [0]), atol=1e-6)


# ----------------------------------------------------------------------------- 3. real sizes

def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _cfg(sub: str) -> dict:
    return json.loads((REAL / sub).read_text())


def test_public_configs_build_to_the_published_sizes():
    """Each public component from its config, on the meta device (no weights), counted.

    Published figures: Karlo's README (github.com/kakaobrain/karlo, table "#param": prior 1B,
    decoder 900M, SR 700M + 700M; config files prior_1B_vit_l.yaml, decoder_900M_vit_l.yaml,
    improved_sr_64_256_1.4B.yaml) and open_clip's docs/model_profile.csv (ViT-L-14: image
    303.97 M, text 123.65 M). Karlo's are rounded to one or two significant digits: the decoder
    (U-Net + text_proj, both from Karlo's decoder checkpoint) is within 1 % of 900M, but the prior
    (1.022 B) is 2.2 % above "1B" and each SR U-Net (691.6 M) 1.2 % below "700M", so those two are
    checked at the precision they were published with, and pinned exactly: Karlo's own modules
    (karlo/modules/xf.py, unet.py at kakaobrain/karlo 3c68a50) built from its yaml configs on the
    meta device count 1,022,028,544 (clip_mean / clip_std are buffers there: 1,536 fewer),
    893,318,086 and 691,579,523 (measured once; that code is not part of this project)."""
    A = "karlo-v1-alpha"
    with torch.device("meta"):
        prior = PriorTransformer.from_config(_cfg(f"{A}/prior/config.json"))
        decoder = UNet2DConditionModel.from_config(_cfg(f"{A}/decoder/config.json"))
        text_proj = UnCLIPTextProjModel.from_config(_cfg(f"{A}/text_proj/config.json"))
        sr_first = UNet2DModel.from_config(_cfg(f"{A}/super_res_first/config.json"))
        sr_last = UNet2DModel.from_config(_cfg(f"{A}/super_res_last/config.json"))
        text = tf.CLIPTextModelWithProjection(tf.CLIPTextConfig(**_cfg(f"{A}/text_encoder/config.json")))
        vision = tf.CLIPVisionModelWithProjection(tf.CLIPVisionConfig(
            **_cfg("karlo-v1-alpha-image-variations/image_encoder/config.json")))
    assert decoder.config.out_channels == 2 * decoder.config.in_channels  # learned variance
    n_dec = _count(decoder) + _count(text_proj)
    assert abs(n_dec / 900e6 - 1) < 0.01 and n_dec == 893_318_086
    n_prior = _count(prior)
    assert round(n_prior / 1e9) == 1 and n_prior == 1_022_028_544 + 2 * 768  # "1B"
    for sr in (sr_first, sr_last):
        assert round(_count(sr) / 1e8) == 7 and _count(sr) == 691_579_523  # "700M"
    assert round((_count(sr_first) + _count(sr_last)) / 1e8) == 14  # "1.4B"
    assert abs(_count(text) / 123.65e6 - 1) < 0.01 and abs(_count(vision) / 303.97e6 - 1) < 0.01


def test_loader_accepts_the_public_layout(tmp_path):
    """The layout check reads only JSON: the public configs pass it; loading them stops with one
    sentence at the first file a real download has and the fixture lacks."""
    layout = check_layout(REAL / "karlo-v1-alpha", image_encoder=REAL / "karlo-v1-alpha-image-variations")
    assert layout.embed_dim == 768 and layout.learned_variance
    assert layout.image_encoder.name == "image_encoder" and layout.feature_extractor.name == "feature_extractor"
    assert set(layout.configs) >= {"prior", "decoder", "text_proj", "super_res_first", "super_res_last"}
    sub = check_layout(REAL / "karlo-v1-alpha", REAL / "karlo-v1-alpha-image-variations" / "image_encoder")
    assert sub.image_encoder == layout.image_encoder  # the repo's root or its image_encoder/ itself
    with pytest.raises(ProbeInputError, match=r"^folder: .* has no tokenizer/vocab\.json"):
        load(REAL / "karlo-v1-alpha", device="cpu")


# ----------------------------------------------------------------------------- 4. bad input

def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_wrong_folder_kind(folders, tmp_path):
    with pytest.raises(ProbeInputError, match=r"^folder: .*image-variations layout.*pass this one as image_encoder="):
        load(folders[1], device="cpu")
    with pytest.raises(ProbeInputError, match=r"^folder: .* not a diffusers pipeline folder.*karlo-v1-alpha layout"):
        load(tmp_path, device="cpu")
    other = _copy(REAL / "karlo-v1-alpha", tmp_path / "sd")
    (other / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ProbeInputError, match=r"^folder: .* holds a 'StableDiffusionPipeline' pipeline"):
        load(other, device="cpu")
    with pytest.raises(ProbeInputError, match=r"^image_encoder: .* holds no CLIP image encoder"):
        load(folders[0], image_encoder=tmp_path, device="cpu")


def test_missing_component(folders, tmp_path):
    broken = _copy(folders[0], tmp_path / "karlo")
    shutil.rmtree(broken / "super_res_last")
    with pytest.raises(ProbeInputError, match=r"^folder: .* has no super_res_last/config\.json; a karlo-v1-alpha"):
        load(broken, device="cpu")
    (broken / "decoder" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ProbeInputError, match=r"^folder: decoder/ holds a 'UNet2DModel', expected"):
        check_layout(broken)
    weights = _copy(folders[0], tmp_path / "karlo2")
    (weights / "decoder" / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ProbeInputError, match=r"^folder: .*decoder' could not be loaded as a UNet2DConditionModel"):
        load(weights, device="cpu")


def test_wrong_embedding_width(folders, tmp_path):
    towers = write_clip_towers(tmp_path / "vit16", dim=16)  # a CLIP whose embedding is 16 wide, not 32
    with pytest.raises(ProbeInputError, match=r"^image_encoder: .* 16 wide, but Karlo's decoder reads 32-wide .*"
                                              r"OpenAI CLIP ViT-L/14, 768"):
        load(folders[0], image_encoder=towers["image_encoder"], device="cpu")
    real = _copy(REAL / "karlo-v1-alpha-image-variations", tmp_path / "vith")
    cfg = json.loads((real / "image_encoder" / "config.json").read_text())
    (real / "image_encoder" / "config.json").write_text(json.dumps({**cfg, "projection_dim": 1024}))
    with pytest.raises(ProbeInputError, match=r"^image_encoder: .* 1024 wide.*reads 768-wide"):
        check_layout(REAL / "karlo-v1-alpha", image_encoder=real)
    text = _copy(REAL / "karlo-v1-alpha", tmp_path / "text1024")
    cfg = json.loads((text / "text_encoder" / "config.json").read_text())
    (text / "text_encoder" / "config.json").write_text(json.dumps({**cfg, "projection_dim": 1024}))
    with pytest.raises(ProbeInputError, match=r"^folder: text_encoder/ \(projection_dim\) is 1024 wide"):
        check_layout(text)


def test_prompt_past_the_context(karlo):
    long = "a red circle " * 10  # 100 characters: past the 77-token context
    for call in (lambda: karlo.prior([long], steps=2), lambda: karlo([long], steps=2),
                 lambda: karlo.decode(karlo.encode_text(["a"]), prompts=[long], steps=2)):
        with pytest.raises(ProbeInputError, match=r"^prompts: .* tokens but karlo's text context is 77"):
            call()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(folders):
    with pytest.raises(ProbeInputError, match=r"^device: 'cuda' was requested but this machine has no CUDA"):
        load(folders[0], device="cuda")


def test_without_an_image_encoder(folders, karlo):
    text_only = load(folders[0], device="cpu")
    image = world.render(world.sample_scenes(1, seed=1)[0])
    for call in (lambda: text_only.encode_image([image]), lambda: text_only.invert([image], steps=2)):
        with pytest.raises(ProbeInputError, match=r"^images: the 'karlo' stack has no image encoder.*image_encoder="):
            call()
    z = karlo.encode_image([image])  # an embedding from elsewhere inverts without the vision tower
    assert text_only.invert([image], steps=2, z=z).shape == (1, *text_only.noise_shape)
    assert text_only.prior_kinds == ("diffusion",) and len(text_only.decode(z, steps=2, upsample=False)) == 1


def test_other_bad_arguments(karlo):
    z = karlo.encode_text(["a red circle"])
    with pytest.raises(ProbeInputError, match=r"^z: expected OpenAI CLIP ViT-L/14 image embeddings \(B, 32\) for "
                                              r"karlo, got \(1, 1024\): that is ViT-H-14's width"):
        karlo.decode(torch.zeros(1, 1024))
    with pytest.raises(ProbeInputError, match=r"^x_T: expected a tensor of shape \(1, 3, 16, 16\)"):
        karlo.decode(z, x_T=torch.zeros(1, 3, 64, 64))
    with pytest.raises(ProbeInputError, match=r"^prompts: expected one prompt per embedding"):
        karlo.decode(z, prompts=["a", "b"], steps=2)
    with pytest.raises(ProbeInputError, match=r"^name: the 'karlo' stack has one decoder"):
        karlo.with_decoder("decoder_text")
    assert karlo.with_decoder("decoder") is karlo
    with pytest.raises(ProbeInputError, match=r"^kind: the 'karlo' stack has no 'ar' prior"):
        karlo.prior(["a"], kind="ar")
    with pytest.raises(ProbeInputError, match=r"^sampler: got 'euler'"):
        karlo.decode_raw(z, sampler="euler", steps=2)
    with pytest.raises(ProbeInputError, match=r"^steps: expected an integer from 1 to 1000"):
        karlo.decode(z, steps=0)
    with pytest.raises(ProbeInputError, match=r"^prior_steps: expected an integer"):
        karlo(["a red circle"], prior_steps=1.5)
    with pytest.raises(ProbeInputError, match=r"^prior: got 'gan', expected one of"):
        karlo(["a red circle"], prior="gan")
    with pytest.raises(ProbeInputError, match=r"^seed: expected an integer seed"):
        karlo.noise(1, seed=-1)
    with pytest.raises(ProbeInputError, match=r"^eta: expected a fraction from 0 to 1"):
        karlo.decode(z, eta=2.0, steps=2)


def test_facts_of_the_tiny_and_the_real_stack(karlo):
    assert karlo.name == "karlo" and karlo.embed_dim == 32 and karlo.noise_shape == (3, 16, 16)
    assert karlo.image_size == 32 and karlo.reads_caption and karlo.reads_embedding
    sums = karlo.checksums  # the CLIP's tensors, then every weights file by folder / component / file
    assert "clip" in sums and "karlo/decoder/diffusion_pytorch_model.safetensors" in sums
    assert "image_encoder/image_encoder/model.safetensors" in sums and len(sums) == 1 + 6 + 1
    d = KARLO_DEFAULTS  # Karlo's published settings (README, karlo/sampler/template.py)
    assert (d.prior.guidance, d.prior.steps, d.decode.guidance, d.decode.steps, d.upsample_steps) == (4, 25, 8, 25, 7)
