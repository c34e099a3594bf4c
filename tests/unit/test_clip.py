"""load_clip / ClipModel on a tiny random world CLIP and a random ViT-B-32; no network anywhere."""
import json
import shutil
import socket

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from unclip_probe import checkpoints as ckpt
from unclip_probe.clip.model import ClipConfig, ClipModel, build_clip_model, load_clip, resolve_device, save_clip
from unclip_probe.errors import ProbeInputError
from unclip_probe.clip.tokenizer import WorldTokenizer

pytestmark = pytest.mark.unit

WORDS = ("a", "red", "blue", "green", "circle", "square", "star", "note", "that", "says", "and", "left", "of")
MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.26, 0.27)


def tiny_config(name: str = "world-clip-unit") -> ClipConfig:
    vocab = WorldTokenizer(WORDS, 16).vocab_size
    oc = {"embed_dim": 32,
          "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
          "text_cfg": {"context_length": 16, "vocab_size": vocab, "width": 64, "heads": 2, "layers": 2}}
    return ClipConfig(name, oc, WORDS, 16, MEAN, STD)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(in-memory ClipModel, loaded ClipModel, folder) for one tiny random world CLIP."""
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_clip_model(cfg)
    folder = tmp_path_factory.mktemp("world")
    save_clip(model, cfg, folder)
    ref = ClipModel(model, cfg.tokenizer(), image_mean=MEAN, image_std=STD)
    return ref, load_clip(folder), folder


@pytest.fixture(scope="module")
def vit(tmp_path_factory, vit_b_32):
    """(in-memory random ViT-B-32 ClipModel, the same loaded from a local .safetensors file)."""
    path = tmp_path_factory.mktemp("vit") / "vit-b-32.safetensors"
    ckpt.save_weights(vit_b_32.model.state_dict(), path)
    return vit_b_32, load_clip("ViT-B-32", pretrained=str(path))


def _rgb(size=32, seed=0) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(arr)


# ----------------------------------------------------------------------------- world checkpoints
def test_world_round_trip_gives_identical_embeddings(world):
    ref, loaded, folder = world
    texts, x = ["a red circle", "a blue star and a green square"], torch.rand(3, 3, 32, 32)
    assert torch.equal(ref.encode_text(texts), loaded.encode_text(texts))
    assert torch.equal(ref.encode_image(x), loaded.encode_image(x))
    assert loaded.checksum == ckpt.weights_checksum(ref.model.state_dict())  # names the tensors, not the bytes
    assert loaded.checksum == ckpt.recorded_checksum(folder / "clip.safetensors")
    assert "world checkpoint" in loaded.source and isinstance(loaded.tokenizer, WorldTokenizer)
    assert (loaded.embed_dim, loaded.image_size, loaded.context_length) == (32, (32, 32), 16)
    assert open_clip.create_model("world-clip-unit").visual.image_size == (32, 32)  # registered


def test_encode_text_is_normalised(world):
    z = world[1].encode_text(["a red circle", "a note that says blue", "star"])
    assert z.shape == (3, 32) and torch.allclose(z.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert world[1].encode_text("a red circle").shape == (1, 32)


def test_encode_text_tokens_shapes_and_mask(world):
    feats, mask = world[1].encode_text_tokens(["a red circle", 'a note that says "red".'])
    assert feats.shape == (2, 16, 64) and mask.shape == (2, 16) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [5, 10]  # sot + words/punctuation + eot
    assert mask[:, 0].all() and not mask[0, 5:].any()
    z, feats1, mask1 = world[1].encode_text_and_tokens(["a red circle", 'a note that says "red".'])  # one pass
    assert torch.equal(z, world[1].encode_text(["a red circle", 'a note that says "red".']))
    assert torch.equal(feats1, feats) and torch.equal(mask1, mask)


def test_encode_image_accepts_pil_list_path_tensor(world, tmp_path):
    clip = world[1]
    img = _rgb(48)  # odd size: resized and centre-cropped like the tensor path
    img.save(tmp_path / "img.png")
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float()[None] / 255
    z_pil, z_list = clip.encode_image(img), clip.encode_image([img, _rgb(32, 1)])
    z_path, z_tensor = clip.encode_image(tmp_path / "img.png"), clip.encode_image(x)
    assert z_pil.shape == (1, 32) and z_list.shape == (2, 32)
    assert torch.allclose(z_pil, z_tensor, atol=1e-5) and torch.allclose(z_pil, z_path, atol=1e-5)
    assert torch.allclose(z_list[:1], z_pil, atol=1e-5)
    assert clip.encode_image(torch.rand(2, 3, 40, 64)).shape == (2, 32)  # non-square tensor


def test_preprocess_tensor_is_differentiable(world):
    x = torch.rand(1, 3, 48, 48, requires_grad=True)
    world[1].preprocess_tensor(x).sum().backward()
    assert x.grad is not None and world[1].preprocess_tensor(x).shape == (1, 3, 32, 32)


def test_grayscale_and_rgba_are_converted_with_a_warning(world):
    with pytest.warns(UserWarning, match="converted 2 image.*RGB"):
        z = world[1].encode_image([_rgb().convert("L"), _rgb().convert("RGBA")])
    assert z.shape == (2, 32)


def test_zero_shot_rows_sum_to_one_and_average_templates(world):
    clip, x = world[1], torch.rand(2, 3, 32, 32)
    labels, templates = ["red circle", "blue square", "green star"], ("a {}", "a note that says {}")
    table = clip.zero_shot(x, labels, templates)
    assert list(table.columns) == [*labels, "prediction"] and len(table) == 2
    np.testing.assert_allclose(table[labels].sum(axis=1), 1.0, atol=1e-5)
    z = torch.stack([torch.nn.functional.normalize(clip.encode_text([t.format(l) for t in templates]).mean(0), dim=0)
                     for l in labels])
    probs = (clip.model.logit_scale.exp() * clip.encode_image(x) @ z.T).softmax(-1)
    np.testing.assert_allclose(table[labels].to_numpy(), probs.detach().numpy(), atol=1e-5)
    assert table["prediction"].tolist() == [labels[i] for i in probs.argmax(1)]
    assert clip.logits(x, ["a red circle"]).shape == (2, 1)


def test_zero_shot_empty_labels(world):
    with pytest.raises(ProbeInputError, match="^labels: "):
        world[1].zero_shot(torch.rand(1, 3, 32, 32), [])


# ----------------------------------------------------------------------------- open_clip names
def test_vit_b_32_from_local_file_matches_in_memory(vit):
    ref, loaded = vit
    x, texts = torch.rand(1, 3, 224, 224), ["a photo of a dog", "a diagram"]
    assert torch.allclose(ref.encode_image(x), loaded.encode_image(x), atol=1e-6)
    assert torch.allclose(ref.encode_text(texts), loaded.encode_text(texts), atol=1e-6)
    assert loaded.checksum is None and "weights from" in loaded.source and loaded.embed_dim == 512


def test_prompt_longer_than_bpe_context(vit):
    with pytest.raises(ProbeInputError, match=r"^texts: .* is 10[0-9] tokens but the context length is 77"):
        vit[1].encode_text("a photo of a " + "very " * 100 + "big dog")


def test_unknown_model_name_lists_close_matches():
    with pytest.raises(ProbeInputError, match=r"^source: 'ViT-B-33' is neither .*close matches: .*ViT-B-32"):
        load_clip("ViT-B-33")


def test_unknown_pretrained_tag_lists_known_tags():
    with pytest.raises(ProbeInputError, match=r"^pretrained: 'laion9000' is not a pretrained tag .*openai"):
        load_clip("ViT-B-32", pretrained="laion9000")


def test_uncached_tag_is_one_clear_sentence_without_network(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise AssertionError("load_clip tried to open a network connection")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(ProbeInputError) as info:
        load_clip("ViT-B-32", pretrained="openai")
    msg = str(info.value)
    assert msg.startswith("pretrained: weights for ViT-B-32/openai are not on this machine")
    assert "load_clip('ViT-B-32', pretrained='/path/to/weights.safetensors')" in msg and "\n" not in msg


def test_random_init_says_so():
    assert "randomly initialised" in load_clip("RN50").source  # a small-ish other architecture


def test_pickled_or_unknown_weights_files(tmp_path):
    bad = tmp_path / "weights.pt"
    torch.save({"not": ProbeInputError("x")}, bad)  # needs unpickling arbitrary classes
    with pytest.raises(ProbeInputError, match=r"weights.pt: cannot be read with torch.load\(weights_only=True\)"):
        load_clip("ViT-B-32", pretrained=str(bad))
    (tmp_path / "weights.npz").write_bytes(b"x")
    with pytest.raises(ProbeInputError, match=r"^pretrained: .*weights.npz' must end in .safetensors"):
        load_clip("ViT-B-32", pretrained=str(tmp_path / "weights.npz"))


# ----------------------------------------------------------------------------- bad checkpoint folders
@pytest.fixture
def copy(world, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(world[2], folder)
    return folder


def test_truncated_safetensors_names_the_file(copy):
    data = (copy / "clip.safetensors").read_bytes()
    (copy / "clip.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ProbeInputError, match=r"clip\.safetensors: .*truncated or corrupt"):
        load_clip(copy)


def test_corrupt_safetensors_names_the_file(copy):
    (copy / "clip.safetensors").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ProbeInputError, match=r"clip\.safetensors: "):
        load_clip(copy)


def test_missing_config_names_folder_and_file(copy):
    (copy / "clip.json").unlink()
    with pytest.raises(ProbeInputError, match=r"ckpt: .*missing clip\.json"):
        load_clip(copy)


def test_config_with_unknown_key_names_the_key(copy):
    cfg = json.loads((copy / "clip.json").read_text())
    (copy / "clip.json").write_text(json.dumps({**cfg, "patch_sise": 8}))
    with pytest.raises(ProbeInputError, match=r"clip\.json.*unknown key.*'patch_sise'"):
        load_clip(copy)


def test_config_vocab_must_match_tokenizer():
    cfg = tiny_config()
    with pytest.raises(ProbeInputError, match="^open_clip_config: text_cfg needs vocab_size"):
        ClipConfig("x", cfg.open_clip_config, WORDS[:-1], 16, MEAN, STD)


# ----------------------------------------------------------------------------- bad input
def test_prompt_longer_than_world_context(world):
    with pytest.raises(ProbeInputError, match=r"^texts: .* is 21 tokens .* context length is 16"):
        world[1].encode_text("a red circle and a blue square and a green star left of a red circle and a star")


def test_unknown_word(world):
    with pytest.raises(ProbeInputError, match=r"^texts: the word 'triangle'"):
        world[1].encode_text("a red triangle")


def test_image_path_that_does_not_exist(world, tmp_path):
    with pytest.raises(ProbeInputError, match=r"^images: '.*nope\.png' does not exist"):
        world[1].encode_image(tmp_path / "nope.png")


def test_file_that_is_not_an_image(world, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ProbeInputError, match=r"^images: '.*notes\.png' is not an image"):
        world[1].encode_image([str(tmp_path / "notes.png")])


def test_tensor_outside_unit_range(world):
    with pytest.raises(ProbeInputError, match=r"^images: tensor values must be in \[0, 1\]"):
        world[1].encode_image(torch.rand(1, 3, 32, 32) * 255)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_machine(world):
    with pytest.raises(ProbeInputError, match="^device: 'cuda' was requested but this machine has no CUDA"):
        load_clip(world[2], device="cuda")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ProbeInputError, match="^device: "):
        resolve_device("gpu")


def test_config_that_fails_its_own_checks_names_the_file(copy):
    cfg = json.loads((copy / "clip.json").read_text())
    cfg["context_length"] = 12
    (copy / "clip.json").write_text(json.dumps(cfg))
    with pytest.raises(ProbeInputError, match=r"clip\.json: .*context_length=12"):
        load_clip(copy)
