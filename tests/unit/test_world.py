"""The shape world: sampling, rendering, captions, parser, datasets (docs/design.md §4)."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch.utils.data import DataLoader

from unclip_probe import world
from unclip_probe.errors import ProbeInputError
from unclip_probe.world.captions import TEMPLATES
from unclip_probe.world.dataset import world_batch
from unclip_probe.world.spec import CELL_EDGES, MIN_GAP, WorldConfig

pytestmark = pytest.mark.unit


def test_scenes_follow_the_world_rules():
    for s in world.sample_scenes(500, seed=3):
        assert 1 <= len(s.objects) <= 3
        assert len({o.position for o in s.objects}) == len(s.objects)
        for o in s.objects:
            row, col = world.POSITIONS.index(o.position) // 3, world.POSITIONS.index(o.position) % 3
            x0, y0, x1, y1 = o.box
            # every object lies wholly inside its grid cell (the oracle relies on it)
            assert CELL_EDGES[col] <= x0 and x1 <= CELL_EDGES[col + 1]
            assert CELL_EDGES[row] <= y0 and y1 <= CELL_EDGES[row + 1]
        boxes = [o.box for o in s.objects] + ([s.note.box] if s.note else [])
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                assert max(a[0] - b[2], b[0] - a[2], a[1] - b[3], b[1] - a[3]) >= MIN_GAP


def test_note_probability_is_configurable():
    never = world.sample_scenes(200, seed=1, config=WorldConfig(note_prob=0.0))
    always = world.sample_scenes(200, seed=1, config=WorldConfig(note_prob=1.0))
    assert all(s.note is None for s in never)
    assert all(s.note is not None and s.note.word in world.NOTE_WORDS for s in always)


def test_train_split_never_shows_heldout_pairs_and_heldout_split_always_does():
    cfg = WorldConfig()
    held = set(cfg.holdout)
    train = world.sample_scenes(2000, seed=5, split="train")
    assert not any((o.shape, o.color) in held for s in train for o in s.objects)
    heldout = world.sample_scenes(300, seed=5, split="heldout")
    assert all(any((o.shape, o.color) in held for o in s.objects) for s in heldout)
    # the full world does show them, so the split is doing the work
    assert any((o.shape, o.color) in held for s in world.sample_scenes(2000, seed=5) for o in s.objects)


def test_render_sizes_are_box_filtered_from_64():
    s = world.sample_scenes(1, seed=11)[0]
    big = np.asarray(world.render(s, 64), dtype=np.float64)
    small = np.asarray(world.render(s, 32), dtype=np.float64)
    assert small.shape == (32, 32, 3)
    assert np.abs(big.reshape(32, 2, 32, 2, 3).mean((1, 3)) - small).max() <= 1.0


def test_objects_are_drawn_in_their_colour():
    s = world.Scene((world.Obj("square", "red", "large", "center"),), "gray")
    img = np.asarray(world.render(s))
    assert tuple(img[32, 32]) == world.COLORS["red"]
    assert tuple(img[2, 2]) == world.BACKGROUNDS["gray"]


def _script(seed):
    return ("from unclip_probe import world;import hashlib;"
            f"s=world.sample_scenes(50, seed={seed});"
            "h=hashlib.sha256(b''.join(world.render(x).tobytes() for x in s));"
            "[h.update(world.caption(x, seed=i).encode()) for i,x in enumerate(s)];print(h.hexdigest())")


def test_same_seed_gives_identical_images_and_captions_across_processes():
    a = subprocess.run([sys.executable, "-c", _script(7)], capture_output=True, text=True, check=True).stdout
    b = subprocess.run([sys.executable, "-c", _script(7)], capture_output=True, text=True, check=True).stdout
    c = subprocess.run([sys.executable, "-c", _script(8)], capture_output=True, text=True, check=True).stdout
    assert a == b and a != c


def test_two_dataloader_workers_give_no_duplicates_and_match_the_stream():
    ds = world.WorldDataset(seed=2, size=32, split="all", length=64)
    loader = DataLoader(ds, batch_size=8, num_workers=2)
    seen = [i for batch in loader for i in batch["index"].tolist()]
    assert sorted(seen) == list(range(64))
    batch = next(iter(DataLoader(world.WorldDataset(seed=2, size=32, split="all", length=8), batch_size=8)))
    imgs, caps = world_batch(2, range(8), size=32)
    assert torch.equal(batch["image"], imgs) and batch["caption"] == caps
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (8, 3, 32, 32)


def test_ddp_ranks_split_the_stream():
    r0 = [it["index"] for it in world.WorldDataset(seed=0, length=20, rank=0, world_size=2)]
    r1 = [it["index"] for it in world.WorldDataset(seed=0, length=20, rank=1, world_size=2)]
    assert not set(r0) & set(r1) and sorted(r0 + r1) == list(range(20))


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**6), index=st.integers(0, 10**6), cap_seed=st.integers(0, 10**6),
       template=st.sampled_from(TEMPLATES))
def test_parse_caption_inverts_caption_for_every_template(seed, index, cap_seed, template):
    scene = world.sample_scene(seed, index)
    spec = world.parse_caption(world.caption(scene, seed=cap_seed, template=template))
    assert len(spec.objects) == len(scene.objects)
    assert spec.note == (scene.note.word if scene.note else None)
    assert spec.matches(scene)


def test_parse_reads_relations_and_a_wrong_scene_fails_them():
    spec = world.parse_caption("a red circle to the left of a blue square")
    assert spec.relations == ((0, "left of", 1),)
    left = world.Scene((world.Obj("circle", "red", "small", "left"), world.Obj("square", "blue", "small", "right")))
    swapped = world.Scene((world.Obj("circle", "red", "small", "right"), world.Obj("square", "blue", "small", "left")))
    assert spec.matches(left) and not spec.matches(swapped)
    assert spec.score(swapped)["color"] and not spec.score(swapped)["relations"]


@pytest.mark.parametrize("prompt, words", [
    ("a magenta circle", ["prompt", "colour", "magenta"]),
    ("a red hexagon", ["prompt", "shape", "hexagon"]),
    ("a red circle to the left a blue square", ["prompt", "relation"]),
    ("a red circle left of", ["prompt", "relation"]),
    ("a red circle on a plaid background", ["prompt", "background", "plaid"]),
    ("", ["prompt"]),
])
def test_bad_prompts_get_one_sentence_naming_the_problem(prompt, words):
    with pytest.raises(ProbeInputError) as err:
        world.parse_caption(prompt)
    msg = str(err.value)
    assert all(w in msg for w in words) and "\n" not in msg


@pytest.mark.parametrize("call, arg", [
    (lambda: world.sample_scenes(0), "n"),
    (lambda: world.sample_scenes(-3), "n"),
    (lambda: world.sample_scenes(2, split="test"), "split"),
    (lambda: world.render(world.sample_scenes(1)[0], size=48), "size"),
    (lambda: world.detect("not an image at all"), "image"),
    (lambda: world.detect(42), "image"),
    (lambda: world.detect(np.zeros((64, 64))), "image"),
])
def test_bad_arguments_are_named(call, arg):
    with pytest.raises(ProbeInputError) as err:
        call()
    assert str(err.value).startswith(f"{arg}:")


def test_detect_rejects_a_file_that_is_not_an_image(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    with pytest.raises(ProbeInputError, match="image"):
        world.detect(p)
