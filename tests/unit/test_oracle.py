"""The oracle reads scenes back from pixels (docs/design.md §4). The full 2,000-scene figures
come from benchmarks/oracle_accuracy.py; these tests assert floors on smaller sets."""
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from unclip_probe import world
from unclip_probe.world.spec import WorldConfig

pytestmark = pytest.mark.unit
SCENES = world.sample_scenes(150, seed=2024, config=WorldConfig(note_prob=0.4))


def _accuracy(images):
    exact = [world.detect(img).key == s.key for img, s in zip(images, SCENES)]
    return float(np.mean(exact))


def test_reads_64px_renders_exactly():
    assert _accuracy([world.render(s, 64) for s in SCENES]) >= 0.99


def test_reads_32px_renders():
    assert _accuracy([world.render(s, 32) for s in SCENES]) >= 0.97


def test_reads_noisy_blurred_renders():
    rng = np.random.default_rng(0)
    imgs = []
    for s in SCENES:
        a = gaussian_filter(np.asarray(world.render(s), dtype=np.float32) / 255, sigma=(0.5, 0.5, 0))
        imgs.append(np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1))
    assert _accuracy(imgs) >= 0.95


def test_reads_the_note_word_and_background():
    for s in SCENES[:60]:
        d = world.detect(world.render(s))
        assert d.background == s.background
        assert (d.note is None) == (s.note is None)
        if s.note:
            assert d.note.word == s.note.word


def test_accepts_tensors_arrays_paths_and_other_modes(tmp_path):
    s = SCENES[0]
    img = world.render(s)
    t = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    img.save(tmp_path / "a.png")
    for x in (img, np.asarray(img), t, tmp_path / "a.png", str(tmp_path / "a.png"), img.convert("RGBA"),
              img.resize((128, 128), Image.NEAREST)):
        assert world.detect(x).key == s.key


def test_empty_scene_reads_as_empty_and_a_detected_scene_renders_back():
    empty = world.Scene((), "dark")
    assert world.detect(world.render(empty)).objects == ()
    s = SCENES[5]
    again = world.render(world.detect(world.render(s)))
    assert np.abs(np.asarray(again, dtype=int) - np.asarray(world.render(s), dtype=int)).max() <= 1


def test_draw_note_overlays_a_readable_word():
    s = world.Scene((world.Obj("circle", "red", "large", "center"),), "gray")
    attacked = world.draw_note(world.render(s), "dog", (12, 2, 52, 16))
    d = world.detect(attacked)
    assert d.note is not None and d.note.word == "dog"
    assert [o.key for o in d.objects] == [o.key for o in s.objects]
