"""PCA reconstruction probe (paper §4, Fig. 7) on the tiny random stack; the PCA algebra exactly."""
import pytest
import torch

from unclip_probe import world
from unclip_probe.errors import ProbeInputError
from unclip_probe.probes.pca import ATTRIBUTES, fit_pca, pca_reconstruction, reconstruct, scaled_ks

pytestmark = pytest.mark.unit


def test_the_paper_schedule_scales_to_our_width():
    assert scaled_ks(1024) == [20, 30, 40, 80, 120, 160, 200, 320]
    assert scaled_ks(128) == [2, 4, 5, 10, 15, 20, 25, 40]


def test_all_components_rebuild_the_embedding_and_fewer_lose_it():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(200, 16) @ torch.diag(torch.linspace(3, 0.1, 16)), dim=-1)
    mean, comps, ratio = fit_pca(z)
    assert torch.allclose(ratio.sum(), torch.tensor(1.0)) and (ratio[:-1] >= ratio[1:]).all()
    torch.testing.assert_close(reconstruct(z, mean, comps, 16), z, atol=1e-5, rtol=1e-5)
    cos = [(reconstruct(z, mean, comps, k) * z).sum(-1).mean() for k in (1, 4, 16)]
    assert cos[0] < cos[1] < cos[2]


def test_probe_table_grid_and_html(pipe):
    imgs = [world.render(s) for s in world.sample_scenes(2, seed=3)]
    res = pca_reconstruction(pipe, imgs, ks=[2, 8], n_fit=64, steps=2)
    D = pipe.clip.embed_dim
    assert list(res.table.index) == [2, 8, D] and set(ATTRIBUTES) <= set(res.table.columns)
    assert res.table.loc[D, "explained_variance"] == pytest.approx(1.0, abs=1e-5)
    assert res.table["explained_variance"].is_monotonic_increasing
    assert len(res.images) == 2 * 3 + 2  # 2 images x (2 ks + full), then the 2 sources
    # the same noise for every k: with k = D the probe's decode equals a plain decode of the image
    plain = pipe.decode(pipe.clip.encode_image(imgs), seed=0, steps=2)
    assert res.images[2].tobytes() == plain[0].tobytes()
    html = res.to_html()
    assert html.count("<img") == 1 and "data:image/png;base64," in html and "<table" in html


@pytest.mark.parametrize("kw, arg", [({"ks": [10_000]}, "ks"), ({"ks": [0]}, "ks"), ({"images": []}, "images")])
def test_bad_input_is_named(pipe, kw, arg):
    with pytest.raises(ProbeInputError, match=f"^{arg}"):
        pca_reconstruction(pipe, **{"images": [world.render(world.sample_scenes(1)[0])], **kw}, n_fit=16, steps=1)


def test_clip_side_runs_on_a_random_open_clip_vit_b_32(vit_b_32):
    from unclip_probe import world
    from unclip_probe.probes import pca_clip_side

    scenes = world.sample_scenes(40, seed=9)
    imgs = [world.render(s) for s in scenes[:6]]
    res = pca_clip_side(vit_b_32, imgs, list(world.SHAPES), fit_images=[world.render(s) for s in scenes], ks=[2, 8, 512])
    t = res.table
    assert list(t.index) == [2, 8, 512] and res.meta["width"] == 512
    assert t["explained_variance"].is_monotonic_increasing and t["cosine_to_full"].is_monotonic_increasing
    # The probed images are among the 40 fitted ones, so they lie in the fit's span: the full-width
    # reconstruction equals the embedding and keeps every zero-shot label.
    assert t.loc[512, "cosine_to_full"] > 0.999 and t.loc[512, "zero_shot_kept"] == 1.0
    with pytest.raises(ProbeInputError, match="^ks"):
        pca_clip_side(vit_b_32, imgs, ["circle"], fit_images=imgs, ks=[600])
