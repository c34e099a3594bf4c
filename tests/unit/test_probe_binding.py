"""Attribute binding probe (paper §7, Figs. 14-15): metrics on stand-in encoders with known verdicts,
the tiny random stack, a random open_clip ViT-B-32, and bad input."""
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unclip_probe import world
from unclip_probe.checkpoints import load_config, save_config, save_weights
from unclip_probe.errors import ProbeInputError
from unclip_probe.models.configs import DecoderConfig
from unclip_probe.models.unet import UNet
from unclip_probe.backends.world.stack import UnCLIP
from unclip_probe.probes.binding import (SWAPS, _read_stack, binding_scenes, clip_binding, generation_binding,
                                         read_binding, stacked_scenes, swapped_pair)
from unclip_probe.world import Obj, Scene
from unclip_probe.world.parse import parse_caption
from unclip_probe.world.scenes import relations

pytestmark = pytest.mark.unit


class FeatureClip:
    """A stand-in CLIP whose embeddings are the oracle's reading (images) or the parse (captions).

    binds=True: features are (shape, colour) objects and (object, relation, object) triples, so it
    tells every swap apart. binds=False: a bag of colours and shapes, which cannot.
    """

    def __init__(self, binds: bool):
        self.binds = binds

    def _vec(self, objects, rels) -> torch.Tensor:
        feats = [f"{o.color} {o.shape}" if self.binds else w for o in objects
                 for w in ((o.color, o.shape) if not self.binds else (None,))]
        if self.binds:
            feats += [f"{objects[i].color} {objects[i].shape} {r} {objects[j].color} {objects[j].shape}"
                      for i, r, j in rels]
        v = torch.zeros(4096)
        for f in feats:
            v[hash(f) % 4096] += 1
        return v

    def encode_image(self, images):
        reads = [world.detect(im) for im in images]
        return F.normalize(torch.stack([self._vec(r.objects, relations(r)) for r in reads]), dim=-1)

    def encode_text(self, texts):
        specs = [parse_caption(t) for t in texts]
        return F.normalize(torch.stack([self._vec(s.objects, s.relations) for s in specs]), dim=-1)


def test_swaps_change_only_the_binding():
    for s in binding_scenes(20, seed=3):
        a, b = s.objects
        assert a.color != b.color and a.shape != b.shape and s.note is None
        cap0, twin, cap1 = swapped_pair(s, "color")
        assert sorted(o.color for o in twin.objects) == sorted(o.color for o in s.objects)
        assert [o.position for o in twin.objects] == [o.position for o in s.objects]
        assert sorted(cap0.split()) == sorted(cap1.split()) and cap0 != cap1  # the same words, bound otherwise
        cap0, twin, cap1 = swapped_pair(s, "relation")
        assert parse_caption(cap0).score(s)["relations"] and parse_caption(cap1).score(twin)["relations"]
        assert not parse_caption(cap1).score(s)["relations"]


def test_clip_side_scores_one_for_a_binding_encoder_and_zero_for_a_bag_of_words():
    good = clip_binding(FeatureClip(binds=True), n=12, seed=1)
    assert list(good.table.index) == list(SWAPS)
    assert (good.table[["aro_two_way", "winoground_text", "winoground_image", "winoground_group"]] == 1.0).all().all()
    bag = clip_binding(FeatureClip(binds=False), n=12, seed=1)  # ties are not wins
    assert (bag.table[["aro_two_way", "winoground_group"]] == 0.0).all().all()


def test_clip_side_runs_on_a_random_open_clip_vit_b_32(vit_b_32):
    res = clip_binding(vit_b_32, n=6)
    t = res.table
    assert list(t.index) == list(SWAPS) and (t["n"] == 6).all()
    assert ((t["winoground_group"] <= t["winoground_text"]) & (t["winoground_group"] <= t["winoground_image"])).all()
    assert ((t["winoground_text"] <= t["aro_two_way"])).all()  # text score needs the ARO win and one more


def test_read_binding_and_stack_reading():
    want = (Obj("circle", "red", "large", "left"), Obj("square", "blue", "large", "right"))
    read = lambda *objs: Scene(tuple(Obj(s, c, "large", p) for s, c, p in objs))  # noqa: E731
    assert read_binding(want, read(("circle", "red", "left"), ("square", "blue", "right")))["bound"]
    swapped = read_binding(want, read(("circle", "blue", "left"), ("square", "red", "right")))
    assert swapped == {"bound": False, "attributes": True, "swapped": True}
    assert read_binding(want, read(("circle", "red", "left"))) == {"bound": False, "attributes": False, "swapped": False}
    for s in stacked_scenes():
        assert _read_stack(s, world.detect(world.render(s)))["bound"]
        flipped = Scene((Obj(s.objects[0].shape, "blue", "large", "top"), Obj(s.objects[0].shape, "red", "large", "center")))
        assert _read_stack(s, world.detect(world.render(flipped)))["swapped"]


@pytest.fixture(scope="module")
def text_stack(stack, tmp_path_factory):
    """The tiny stack plus a tiny text-only decoder (clip_dim = 0), as `train decoder-text` ships it."""
    folder = tmp_path_factory.mktemp("text_stack")
    for f in stack.iterdir():
        shutil.copy(f, folder / f.name)
    base = load_config(DecoderConfig, stack / "decoder.json")
    cfg = replace(base, unet=replace(base.unet, clip_dim=0), clip_dropout=0.0)
    torch.manual_seed(1)
    save_weights(UNet(cfg.unet).state_dict(), folder / "decoder_text.safetensors")
    save_config(cfg, folder / "decoder_text.json")
    return folder


def test_generation_side_on_the_tiny_stack(text_stack):
    pipe = UnCLIP.from_pretrained(text_stack, device="cpu")
    res = generation_binding(pipe, n=3, steps=2, stack_seeds=1)
    settings = res.table.loc["two-object prompts"]
    assert set(settings["decoder"]) == {"decoder", "decoder_text"} and res.meta["skipped"] == ["decoder_twin"]
    assert (settings["n"] == 3).all() and ((0 <= settings["bound"]) & (settings["bound"] <= 1)).all()
    stacks = res.table.loc["red X above blue X (Fig. 15)"]
    assert list(stacks["decoder"]) == ["decoder"] and stacks["n"].iloc[0] == len(world.SHAPES)  # text-only: no embedding
    assert all(im.size == (32, 32) for im in res.images) and len(res.images) == 3 * 3 + len(world.SHAPES)
    assert "<table" in res.to_html()
    # The same seed gives every setting the same noise: two runs agree image for image.
    again = generation_binding(pipe, n=3, steps=2, stack_seeds=1)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(res.images, again.images))


@pytest.mark.parametrize("prompts, words", [
    (["a red circle"], "names 1 object"),
    (["a red circle and a red square"], "different colours"),
    ("a red circle and a blue square", "list"),
])
def test_bad_prompts_are_named(pipe, prompts, words):
    with pytest.raises(ProbeInputError, match=f"^prompts.*{words}"):
        generation_binding(pipe, prompts=prompts, steps=2)
