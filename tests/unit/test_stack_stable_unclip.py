"""Stable unCLIP 2.1 (H and L) as stacks (``backends/stable_unclip.py``), on tiny random models saved
in the public repositories' layouts (``_tiny_real.py``): decodes equal diffusers' own
StableUnCLIPImg2ImgPipeline, inversion lines up with decoding, the published sizes load on the
meta device, bad input is one sentence."""
import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _tiny_real import single_thread  # noqa: F401  (autouse: one thread)
from _tiny_real import (REAL, STABLE_UNCLIP, as_array, check_raw_embeddings, check_size, copy_without, meta_parameters,
                        open_clip_parameters, round_trip, tiny_clip_text, tiny_kandinsky,
                        tiny_stable_unclip, world_images)
from unclip_probe.backends import latent, stable_unclip
from unclip_probe.errors import ProbeInputError

pytestmark = pytest.mark.unit
STEPS = 2  # sampling steps everywhere: these tests check the arithmetic, not image quality
NAMES = {"h": "stable-unclip-h", "l": "stable-unclip-l"}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """{variant: (folder, clip text folder)}, built once."""
    root = tmp_path_factory.mktemp("stable-unclip")
    return {v: (tiny_stable_unclip(root, v), tiny_clip_text(root, v)) for v in ("h", "l")}


@pytest.fixture(scope="module")
def stacks(made):
    return {v: stable_unclip.load(folder, device="cpu", name=NAMES[v], clip_text=text)
            for v, (folder, text) in made.items()}


@pytest.fixture(scope="module")
def stack(stacks):
    return stacks["h"]


def _pipeline(folder):
    """diffusers' own img2img pipeline, loaded by diffusers from the folder, with its DDIM scheduler."""
    from diffusers import StableUnCLIPImg2ImgPipeline

    pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ----------------------------------------------------------------------------- 1. equal to the reference
@pytest.mark.parametrize("variant, guidance, noise_level, prompts, eta", [
    ("h", 10.0, 0, None, 0.0),                                  # the pipeline's defaults
    ("h", 10.0, 250, ["a red circle", "a blue square"], 0.0),   # noise augmentation, a caption
    ("h", 1.0, 100, None, 0.5),                                 # unguided, stochastic DDIM
    ("l", 10.0, 100, ["a red circle", "a blue square"], 0.0),
])
def test_decode_equals_the_diffusers_pipeline(stacks, made, variant, guidance, noise_level, prompts, eta):
    s, pipe = stacks[variant], _pipeline(made[variant][0])
    z = s.encode_image(world_images(2))  # raw projected embeddings (B, D)
    x_T, seed = s.noise(2, seed=5), 5
    S = s.image_size

    def reference(z, noise_level):  # the stack draws the embedding's and eta's noise from seed + 1
        return pipe(prompt=prompts or [""] * 2, image_embeds=z, noise_level=noise_level, latents=x_T.clone(),
                    generator=torch.Generator().manual_seed(seed + 1), num_inference_steps=STEPS,
                    guidance_scale=guidance, eta=eta, height=S, width=S, output_type="np").images

    with torch.no_grad():
        ours = s._decode(z, seed=seed, x_T=x_T, prompts=prompts, steps=STEPS, guidance=guidance,
                         noise_level=noise_level, eta=eta)
    ref = reference(z, noise_level)
    assert ours.shape == (2, 3, S, S) and ref.std() > 0.05
    assert np.abs(as_array(ours) - ref).max() < 1e-5  # measured: 0.0
    # the comparison can fail: another noise level, or a renormalised embedding, draw otherwise
    assert np.abs(reference(z, noise_level + 200) - ref).max() > 1e-3
    assert np.abs(reference(F.normalize(z, dim=-1), noise_level) - ref).max() > 1e-3


def test_noise_level_is_a_stack_field(made, stack):
    assert stack.noise_level == 0 and stack.defaults.decode.guidance == 10.0 and stack.defaults.decode.steps == 20
    z, x_T = stack.encode_image(world_images(1)), stack.noise(1, seed=2)
    other = copy.copy(stack)
    other.noise_level = 300
    with torch.no_grad():
        a = other._decode(z, x_T=x_T, steps=STEPS)
        b = stack._decode(z, x_T=x_T, steps=STEPS, noise_level=300)
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------- 2. inversion lines up
@pytest.mark.parametrize("variant", ["h", "l"])
def test_inversion_lines_up_with_decode(stacks, variant):
    """v-prediction: a zero output is not a zero eps, so the DDIM step is no identity map; the
    inversion solves the scheduler's own affine step exactly."""
    error, moved = round_trip(stacks[variant], world_images(2), STEPS)
    assert error < 1e-5  # measured: 2e-8
    assert moved > 0.1  # the inversion moved the latents: the comparison can fail


# ----------------------------------------------------------------------------- 3. the published sizes
H, L = STABLE_UNCLIP["h"], STABLE_UNCLIP["l"]
SD21_UNET = 865_910_724  # SD 2.x U-Net: the SDXL paper (Podell et al. 2023, arXiv 2307.01952), Table 1: 865M


def _class_projection(width: int) -> int:
    """The unCLIP U-Net's addition to SD 2.1's: class_embedding = Linear(2 D, 1280), SiLU, Linear(1280, 1280)."""
    return 2 * width * 1280 + 1280 + 1280 * 1280 + 1280


# (exact count of our build, published figure, relative tolerance, source of the figure)
PUBLISHED = {
    (H, "unet"): (870_173_124, 865e6, 0.01, "SDXL paper Table 1 (865M for SD 2.x) + the class projection"),
    (L, "unet"): (869_517_764, 865e6, 0.01, "SDXL paper Table 1 (865M for SD 2.x) + the class projection"),
    (H, "vae"): (83_653_863, 83.65e6, 0.01, "the SD KL-f8 autoencoder's commonly quoted 83.65M"),
    (H, "image_encoder"): (632_076_800, 632.08e6, 0.01,
                           "open_clip docs/model_profile.csv, ViT-H-14 image params 632.08 M"),
    (L, "image_encoder"): (303_966_208, 303.97e6, 0.01,
                           "open_clip docs/model_profile.csv, ViT-L-14 image params 303.97 M"),
    (H, "text_encoder"): (340_387_840, 354.03e6 - 12.596e6 - 1.049e6, 0.01,
                          "open_clip's ViT-H-14 text params 354.03 M less its last block and its projection "
                          "(SD 2.x keeps 23 of 24 layers and drops the projection)"),
}


@pytest.mark.parametrize("key", list(PUBLISHED), ids=lambda k: "/".join(k))
def test_published_sizes_build_on_meta(key):
    check_size(*key, *PUBLISHED[key])


def test_unet_is_sd21s_plus_the_class_projection():
    for model, width in ((H, 1024), (L, 768)):
        assert meta_parameters(model, "unet") == SD21_UNET + _class_projection(width)


def test_clip_configs_match_open_clips_own():
    """transformers' towers from the fixture configs against open_clip's own builds of the same CLIPs."""
    vit_h, vit_l = open_clip_parameters("ViT-H-14"), open_clip_parameters("ViT-L-14")
    assert meta_parameters(H, "image_encoder") == vit_h["visual"]
    assert meta_parameters(L, "image_encoder") == vit_l["visual"]
    assert meta_parameters(H, "text_encoder") == vit_h["text"] - vit_h["text_last_block"] - vit_h["text_projection"]


def test_loader_accepts_the_published_layout():
    for variant in ("h", "l"):
        folder = REAL / STABLE_UNCLIP[variant]
        assert latent.check_folder(folder, "decoder", stable_unclip.layout(NAMES[variant])) == folder
        with pytest.raises(ProbeInputError, match=r"^decoder: '.*unet' has a config but no weights file"):
            stable_unclip.load(folder, device="cpu", name=NAMES[variant])


# ----------------------------------------------------------------------------- 4. bad input
def test_wrong_folder_kinds(made, tmp_path):
    h, l = made["h"][0], made["l"][0]
    with pytest.raises(ProbeInputError, match=r"^decoder: .* reads ViT-L/14 embeddings \(768 wide\), not the "
                                              r"1024-wide ones of stable-unclip-h; load it as 'stable-unclip-l'$"):
        stable_unclip.load(l, device="cpu", name="stable-unclip-h")
    k = tiny_kandinsky(tmp_path)["decoder"]
    with pytest.raises(ProbeInputError, match=r"^decoder: .* holds a KandinskyV22Pipeline, not a "
                                              r"StableUnCLIPImg2ImgPipeline: that is Kandinsky 2.2's decoder"):
        stable_unclip.load(k, device="cpu")
    (tmp_path / "sd").mkdir()
    (tmp_path / "sd" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ProbeInputError, match=r"^decoder: .*plain Stable Diffusion, which reads no image"):
        stable_unclip.load(tmp_path / "sd", device="cpu")
    with pytest.raises(ProbeInputError, match=r"^prior: the 'stable-unclip-h' stack has no prior"):
        stable_unclip.load(h, tmp_path, device="cpu")
    with pytest.raises(ProbeInputError, match=r"^name: got 'stable-unclip-g'.*did you mean"):
        stable_unclip.load(h, device="cpu", name="stable-unclip-g")


@pytest.mark.parametrize("drop, message", [
    ("image_normalizer", r"^decoder: .* lacks image_normalizer/config.json; expected a local copy of "
                         r"stabilityai/stable-diffusion-2-1-unclip "),
    ("vae/diffusion_pytorch_model.safetensors", r"^decoder: .*vae' has a config but no weights file"),
    ("model_index.json", r"^decoder: .* has no model_index.json"),
])
def test_missing_components(made, tmp_path, drop, message):
    folder = copy_without(made["h"][0], tmp_path, drop)
    with pytest.raises(ProbeInputError, match=message):
        stable_unclip.load(folder, device="cpu")


def test_clip_text_dir_must_fit(made, tmp_path):
    with pytest.raises(ProbeInputError, match=r"^clip_text: .* lacks config.json, vocab.json"):
        stable_unclip.load(made["h"][0], device="cpu", clip_text=tmp_path)
    with pytest.raises(ProbeInputError, match=r"^clip_text: expected ViT-H-14's CLIP text tower .* into "
                                              r"1024-wide embeddings\), got a CLIPTextModelWithProjection 768 wide"):
        stable_unclip.load(made["h"][0], device="cpu", clip_text=made["l"][1])


def test_wrong_embedding_width_names_the_clip_that_fits(stacks):
    with pytest.raises(ProbeInputError, match=r"^z: expected ViT-H-14 image embeddings \(B, 1024\) for "
                                              r"stable-unclip-h, got \(1, 768\): that is ViT-L/14's width, which "
                                              r"stable-unclip-l and karlo take$"):
        stacks["h"].decode(torch.zeros(1, 768))
    with pytest.raises(ProbeInputError, match=r"^z: expected ViT-L/14 image embeddings \(B, 768\) for "
                                              r"stable-unclip-l, got \(1, 1280\): that is ViT-bigG-14's width, which "
                                              r"kandinsky-2.2 takes$"):
        stacks["l"].decode(torch.zeros(1, 1280))


def test_prompt_past_the_context_is_refused(stack):
    long = " ".join(["a red circle"] * 30)
    z = stack.encode_image(world_images(1))
    for call in (lambda: stack.decode(z, prompts=[long], steps=STEPS), lambda: stack.encode_text([long])):
        with pytest.raises(ProbeInputError, match=r"^prompts: .* tokens but .* text context is 77"):
            call()


@pytest.mark.parametrize("noise_level", [-1, 1000, 2.5])
def test_noise_level_out_of_range(stack, noise_level):
    with pytest.raises(ProbeInputError, match=r"^noise_level: expected an integer from 0 to 999"):
        stack.decode(stack.encode_image(world_images(1)), noise_level=noise_level, steps=STEPS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(made):
    with pytest.raises(ProbeInputError, match=r"^device: 'cuda' was requested but this machine has no CUDA"):
        stable_unclip.load(made["h"][0], device="cuda")


# ----------------------------------------------------------------------------- protocol facts
@pytest.mark.parametrize("variant, width", [("h", 1024), ("l", 768)])
def test_facts(stacks, variant, width):
    s = stacks[variant]
    assert (s.name, s.embed_dim, s.clip.embed_dim, s.noise_shape, s.image_size) == \
        (NAMES[variant], width, width, (4, 8, 8), 32)
    assert (s.prior_kinds, s.reads_caption, s.reads_embedding) == ((), True, True)


def test_encode_image_is_the_raw_embedding_decode_takes(stack):
    check_raw_embeddings(stack, world_images(2))  # asserts raw, unnormalised rows
    assert torch.allclose(stack.encode_text(["a red circle"]).norm(dim=-1), torch.ones(1), atol=1e-5)


def test_what_the_stack_lacks(made, stack):
    for call in (lambda: stack.prior(["a red circle"]), lambda: stack.prior(["a red circle"], kind="ar")):
        with pytest.raises(ProbeInputError, match=r"^kind: the 'stable-unclip-h' stack has no '(diffusion|ar)' prior"):
            call()
    with pytest.raises(ProbeInputError, match=r"^prior: the 'stable-unclip-h' stack has no 'diffusion' prior"):
        stack(["a red circle"])
    with pytest.raises(ProbeInputError, match=r"^name: no decoder 'decoder_text'"):
        stack.with_decoder("decoder_text")
    bare = stable_unclip.load(made["h"][0], device="cpu")  # no clip_text: no text side in CLIP space
    with pytest.raises(ProbeInputError, match=r"^prompts: the 'stable-unclip-h' stack has no CLIP text tower in "
                                              r"its image-embedding space; load it with clip_text="):
        bare.encode_text(["a red circle"])
    z = bare.encode_image(world_images(1))
    assert len(bare.decode(z, prompts=["a red circle"], steps=STEPS)) == 1  # the caption encoder is there
