"""probes.sae_features, steer and the SAE explorer on tiny random stacks (issue 23): the world stack of the
unit fixtures and a tiny random Kandinsky 2.2 (a real-decoder stack in its public layout)."""
import numpy as np
import pytest
import torch

from unclip_probe.backends import load_stack
from unclip_probe.errors import ProbeInputError
from unclip_probe.probes import sae_features, steer
from unclip_probe.probes import sae as psae
from unclip_probe.probes import sae_ground_truth as gt
from unclip_probe.sae import SAEConfig, TopKSAE
from unclip_probe.world import render, sample_scenes

import _tiny_real

pytestmark = pytest.mark.unit


def tiny_sae(dim: int, n: int = 12, k: int = 3, seed: int = 0) -> TopKSAE:
    torch.manual_seed(seed)
    sae = TopKSAE(SAEConfig(d_in=dim, n_latents=n, k=k))
    with torch.no_grad():
        sae.b_enc.fill_(1.0)  # every latent fires on something: a random SAE with no dead rows
    return sae.eval()


@pytest.fixture(scope="module")
def kandinsky(tmp_path_factory):
    f = _tiny_real.tiny_kandinsky(tmp_path_factory.mktemp("k"))
    return load_stack("kandinsky-2.2", decoder=f["decoder"], prior=f["prior"], device="cpu")


def test_moved_keeps_each_norm_and_goes_along_the_direction():
    z = torch.randn(3, 6) * torch.tensor([[1.0], [5.0], [20.0]])
    d = torch.nn.functional.normalize(torch.randn(6), dim=0)
    out = psae.moved(z, d, 0.7)
    torch.testing.assert_close(out.norm(dim=-1), z.norm(dim=-1))
    assert ((out / out.norm(dim=-1, keepdim=True)) @ d > (z / z.norm(dim=-1, keepdim=True)) @ d).all()
    torch.testing.assert_close(psae.moved(z, d, 0.0), z)


@pytest.mark.parametrize("which", ["world", "kandinsky"])
def test_sae_features_end_to_end(which, pipe, kandinsky):
    stack = pipe if which == "world" else kandinsky
    sae = tiny_sae(stack.embed_dim)
    images = [render(s) for s in sample_scenes(5, seed=2)]
    res = sae_features(stack, sae, images, n_features=2, n_top=3, alphas=(0.0, 1.0), labels=["circle", "star", "cat"],
                       steps=2)
    acts = psae.activations(sae, stack.encode_image(images).float())
    fires = (acts > 0).float().mean(0)
    assert res.meta["features"] == fires.argsort(descending=True)[:2].tolist()
    f0 = res.meta["features"][0]
    assert res.table.loc[f0, "fires_on"] == pytest.approx(float(fires[f0]))
    assert res.table.loc[f0, "top_images"] == acts[:, f0].argsort(descending=True)[:3].tolist()
    assert len(res.images) == 2 * (3 + 2 + 2)
    assert res.images[0].size == images[res.table.loc[f0, "top_images"][0]].size
    assert res.images[3].size == (stack.image_size, stack.image_size)
    assert len(res.table.loc[f0, "labels"].split(", ")) == 3
    assert "<img" in res.to_html()


def test_steer_at_alpha_zero_is_the_plain_decode_and_moves_otherwise(pipe):
    sae = tiny_sae(pipe.embed_dim)
    image = render(sample_scenes(1, seed=4)[0])
    out = steer(pipe, image, sae, 1, [0.0, 2.0], steps=2, seed=3)
    plain = pipe.decode(pipe.encode_image([image]), seed=3, steps=2)
    a, b, c = (np.asarray(im, dtype=np.int16) for im in (out[0], plain[0], out[1]))
    assert np.abs(a - b).max() <= 2  # the same decode, up to batch-size rounding in 8-bit pixels
    assert np.abs(c - a).mean() > 5 * max(np.abs(a - b).mean(), 0.01)


def test_nearest_labels_rank_by_cosine(pipe):
    sae = tiny_sae(pipe.embed_dim)
    labels = ["circle", "square", "star", "cross"]
    table = psae.nearest_labels(pipe, sae, labels, top=2)
    text = torch.nn.functional.normalize(pipe.encode_text([psae.LABEL_TEMPLATE.format(x) for x in labels]), dim=-1)
    best = (psae.directions(sae) @ text.T).argmax(-1)
    assert [row.split(", ")[0] for row in table["labels"]] == [labels[i] for i in best.tolist()]


@pytest.mark.parametrize("kw, argument", [({"feature": 99}, "feature"), ({"feature": "1"}, "feature"),
                                          ({"alpha": "big"}, "alphas")])
def test_steer_bad_input_is_named(pipe, kw, argument):
    args = {"feature": 1, "alpha": 1.0, **kw}
    with pytest.raises(ProbeInputError, match=argument):
        steer(pipe, render(sample_scenes(1, seed=0)[0]), tiny_sae(pipe.embed_dim), args["feature"], args["alpha"])


def test_an_sae_of_another_width_is_refused(pipe):
    with pytest.raises(ProbeInputError, match="^sae"):
        sae_features(pipe, tiny_sae(pipe.embed_dim + 1), [render(sample_scenes(1, seed=0)[0])])
    with pytest.raises(ProbeInputError, match="^sae"):
        sae_features(pipe, object(), [render(sample_scenes(1, seed=0)[0])])


def test_sae_scores_and_colour_steering_run_on_the_tiny_world(pipe):
    sae = tiny_sae(pipe.embed_dim)
    scenes = sample_scenes(30, seed=1)
    auc, alive = gt.sae_scores(sae, pipe.encode_image([render(s) for s in scenes]), scenes)
    assert auc.shape == (12, len(gt.attribute_names())) and alive.dtype == bool
    table = gt.colour_steering(pipe, sae, auc, alive, alphas=(1.0,), n_per_color=2, steps=2)
    assert len(table) == 7 * 2 and set(table["direction"]) == {"feature", "random"}
    assert table["reads_color"].between(0, 1).all()
    feats = gt.best_features(auc, alive, "color")
    assert (table.loc[table.direction == "feature", "feature"].tolist() == [feats[c] for c in table.color.unique()])


def test_explorer_updates_on_a_new_feature_and_alpha(pipe):
    from unclip_probe.widgets import SAEExplorer

    images = [render(s) for s in sample_scenes(4, seed=6)]
    ex = SAEExplorer(pipe, tiny_sae(pipe.embed_dim), images, steps=2)
    before = ex.image.value
    assert before and not ex.live.errors.outputs
    ex.alpha.value = 2.0
    ex.live.flush()
    assert ex.image.value != before and not ex.live.errors.outputs
    ex.feature.value = ex.feature.options[-1][1]
    ex.live.flush()
    assert not ex.live.errors.outputs and len(ex._cache) == 3
    with pytest.raises(ProbeInputError, match="features"):
        SAEExplorer(pipe, tiny_sae(pipe.embed_dim), images, features=[50])
