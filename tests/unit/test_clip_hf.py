"""HFClipModel: transformers CLIP towers behind the ClipModel interface (encoders, zero-shot, hooks)."""
import pytest
import torch
import transformers as tf
from PIL import Image

from unclip_probe.clip.hf import HFClipModel
from unclip_probe.errors import ProbeInputError

from _tiny_clip import write_clip_towers

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    return write_clip_towers(tmp_path_factory.mktemp("hfclip"))


@pytest.fixture(scope="module")
def clip(towers):
    return HFClipModel.from_folders(**towers, name="tiny")


def _images():
    return [Image.new("RGB", (40, 48), (200, 10, 10)), Image.new("RGB", (32, 32), (10, 10, 200))]


def test_embeddings_are_the_towers_own(clip, towers):
    vision = tf.CLIPVisionModelWithProjection.from_pretrained(towers["image_encoder"], local_files_only=True).eval()
    proc = tf.CLIPImageProcessor.from_pretrained(towers["image_processor"], local_files_only=True)
    square = Image.new("RGB", (32, 32), (10, 200, 10))  # at the tower's size the resize is the identity
    with torch.no_grad():
        ref = vision(pixel_values=proc(images=[square], return_tensors="pt")["pixel_values"]).image_embeds
    assert torch.allclose(clip.image_embeds([square]), ref, atol=1e-5)  # raw: what decoders condition on
    z = clip.encode_image(_images())
    assert z.shape == (2, 16) and torch.allclose(z.norm(dim=-1), torch.ones(2), atol=1e-5)
    text = tf.CLIPTextModelWithProjection.from_pretrained(towers["text_encoder"], local_files_only=True).eval()
    ids = clip.tokenize(["a red circle"])
    with torch.no_grad():
        assert torch.allclose(clip.text_embeds(["a red circle"]), text(input_ids=ids).text_embeds, atol=1e-5)
    hidden, mask = clip.encode_text_tokens(["a red circle"])
    assert hidden.shape == (1, 32, 32) and int(mask.sum()) == len("a red circle") - 2 + 2  # chars, no spaces, + sot/eot


def test_zero_shot_and_hooks_as_the_open_clip_wrapper(clip):
    table = clip.zero_shot(_images(), ["circle", "square"])
    assert list(table.columns) == ["circle", "square", "prediction"]
    assert abs(table[["circle", "square"]].to_numpy().sum(1) - 1).max() < 1e-5  # a softmax per image
    out, cache = clip.run_with_cache(images=_images(), texts=["a b"], names_filter=lambda n: n.endswith("resid_post"))
    assert set(cache) == {f"{t}.blocks.{i}.hook_resid_post" for t in ("visual", "text") for i in (0, 1)}
    assert torch.allclose(out["image_embeds"].norm(dim=-1), torch.ones(2), atol=1e-5)
    zero = lambda t, hook: torch.zeros_like(t)  # noqa: E731
    with clip.hooks([("visual.hook_out", zero)]):
        assert torch.all(clip.image_embeds(_images()) == 0)  # a hook's return replaces the activation
    assert not torch.all(clip.image_embeds(_images()) == 0)  # and leaves when the block ends


def test_bad_input_is_one_sentence_naming_the_argument(clip, towers, tmp_path):
    with pytest.raises(ProbeInputError, match="^prompts: .* tokens but tiny's text context is 32"):
        clip.encode_text(["a" * 40])
    with pytest.raises(ProbeInputError, match="^image_encoder: .* is not a transformers CLIP vision folder"):
        HFClipModel.from_folders(image_encoder=tmp_path)
    text_only = HFClipModel.from_folders(text_encoder=towers["text_encoder"], tokenizer=towers["tokenizer"])
    with pytest.raises(ProbeInputError, match="^images: the CLIP .* has no vision tower"):
        text_only.encode_image(_images())
