"""UnCLIP end to end on a tiny random stack saved to a folder (seconds)."""
from dataclasses import replace

import pytest
import torch
from PIL import Image

from unclip_probe import world
from unclip_probe.errors import ProbeInputError
from unclip_probe import manipulations as M
from unclip_probe.backends.world.stack import UnCLIP
from unclip_probe.manipulations import slerp

pytestmark = pytest.mark.unit


def test_text_to_image_is_deterministic(pipe):
    a = pipe(["a red circle", "a blue star"], seed=3, steps=3, prior_steps=4)
    b = pipe(["a red circle", "a blue star"], seed=3, steps=3, prior_steps=4)
    assert [im.size for im in a] == [(64, 64), (64, 64)]
    assert [im.tobytes() for im in a] == [im.tobytes() for im in b]
    c = pipe(["a red circle", "a blue star"], seed=4, steps=3, prior_steps=4)
    assert a[0].tobytes() != c[0].tobytes()


def test_variations_interpolations_and_text_diffs(pipe):
    img = world.render(world.sample_scenes(1, seed=2)[0])
    assert len(M.variations(pipe, img, n=2, steps=3)) == 2
    assert len(M.interpolate(pipe, img, img.transpose(Image.FLIP_LEFT_RIGHT), n=3, steps=3)) == 3
    assert len(M.text_diff(pipe, img, "a red circle", "a blue circle", thetas=[0.0, 0.5], steps=3)) == 2


def test_text_diff_caption_reaches_the_decoder(pipe):
    from unclip_probe.backends.world.stack import TEXT_DIFF_GUIDANCE

    img = world.render(world.sample_scenes(1, seed=2)[0])
    inv = M.invert(pipe, img, steps=3)
    plain = M.text_diff(pipe, img, "a red circle", "a blue circle", thetas=[0.5], steps=3, inverted=inv)
    read = M.text_diff(pipe, img, "a red circle", "a blue circle", thetas=[0.5], steps=3, inverted=inv,
                          caption="a blue circle")
    z_t = pipe.clip.encode_text(["a red circle", "a blue circle"])
    z = slerp(inv[1], torch.nn.functional.normalize(z_t[1] - z_t[0], dim=-1)[None], 0.5)
    by_hand = pipe.decode(z, x_T=inv[0].clone(), steps=3, guidance=TEXT_DIFF_GUIDANCE, prompts=["a blue circle"],
                          sampler=pipe.defaults.text_diff.sampler)  # DDIM: the sampler the inversion reverses
    assert read[0].tobytes() == by_hand[0].tobytes() != plain[0].tobytes()


def test_slerp_ends_and_norm():
    a, b = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    assert torch.allclose(slerp(a, b, 0.3).norm(), torch.tensor(1.0), atol=1e-5)


def test_grayscale_rgba_and_oblong_images_are_converted_with_a_note_where_it_matters(pipe):
    import warnings

    img = world.render(world.sample_scenes(1, seed=2)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # grey to RGB loses nothing: no note
        assert len(M.variations(pipe, img.convert("L"), n=1, steps=2)) == 1
    with pytest.warns(UserWarning, match="^image: mode RGBA converted to RGB; transparency is dropped"):
        assert len(M.variations(pipe, img.convert("RGBA"), n=1, steps=2)) == 1
    wide = Image.new("RGB", (96, 64), "white")
    wide.paste(img, (16, 0))  # the scene in the middle, white bands at the sides
    with pytest.warns(UserWarning, match="^image: 96x64 is not square; its centre 64x64 is used"):
        x0, z = pipe._pixels(wide), pipe.encode_image(wide)
    x_ref, z_ref = pipe._pixels(img), pipe.encode_image(img)
    assert torch.equal(x0, x_ref) and torch.allclose(z, z_ref, atol=1e-5)  # exactly the centre crop


@pytest.mark.parametrize("call, arg", [
    (lambda p: p([], steps=2), "prompts"),
    (lambda p: p(["a red circle"], prior="gan", steps=2), "prior"),  # __call__'s argument is `prior`
    (lambda p: p.prior(["a red circle"], kind="ar"), "kind"),  # not in this stack
    (lambda p: M.text_diff(p, world.render(world.sample_scenes(1)[0]), "a red circle", "a blue circle", thetas=[1.5]), "thetas"),
    (lambda p: M.text_diff(p, world.render(world.sample_scenes(1)[0]), " ", "a blue circle"), "src"),
    (lambda p: M.text_diff(p, world.render(world.sample_scenes(1)[0]), "a red circle", "a blue circle", caption=""),
     "caption"),
    (lambda p: p.with_decoder("decoder_text"), "name"),
    (lambda p: M.variations(p, "/no/such/file.png"), "image"),
    (lambda p: p.decode(torch.randn(2, 7)), "z"),
])
def test_bad_input_is_named(pipe, call, arg):
    with pytest.raises(ProbeInputError) as err:
        call(pipe)
    assert str(err.value).startswith(arg)


def test_cuda_request_without_cuda_is_named(stack):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ProbeInputError, match="^device"):
        UnCLIP.from_pretrained(stack, device="cuda")


def test_generate_command_writes_a_grid_and_names_bad_arguments(stack, tmp_path, capsys):
    from unclip_probe.cli import main

    out = tmp_path / "grid.png"
    assert main(["generate", "a red circle", "a blue star", "--n", "2", "--steps", "2", "--checkpoints", str(stack),
                 "--device", "cpu", "--out", str(out)]) == 0
    grid = Image.open(out)
    assert grid.width > 2 * 64 and grid.height > 2 * 64  # 2 x 2 captioned tiles
    assert main(["generate", "a red circle", "--prior-kind", "ar", "--checkpoints", str(stack), "--device", "cpu",
                 "--out", str(out)]) == 2
    assert "no 'ar' prior" in capsys.readouterr().err
    assert main(["generate", "a red circle", "--n", "0", "--checkpoints", str(stack), "--out", str(out)]) == 2
    assert "--n" in capsys.readouterr().err


def test_bf16_autocast_samples_close_to_fp32_and_bad_dtypes_are_named(stack, pipe):
    import numpy as np

    bf = UnCLIP.from_pretrained(stack, device="cpu", dtype="bf16")
    assert bf.amp_dtype == torch.bfloat16 and pipe.amp_dtype is None  # "auto" is fp32 on the CPU
    a = np.asarray(pipe(["a red circle"], seed=1, steps=3, prior_steps=4)[0], dtype=np.float32)
    b = np.asarray(bf(["a red circle"], seed=1, steps=3, prior_steps=4)[0], dtype=np.float32)
    assert np.abs(a - b).mean() < 8.0 and (a != b).any()  # the same picture up to bf16 rounding (of 255)
    for dtype, words in (("fp16", "needs a CUDA device"), ("half", "expected 'auto'")):
        with pytest.raises(ProbeInputError, match=f"dtype.*{words}"):
            UnCLIP.from_pretrained(stack, device="cpu", dtype=dtype)


def test_drawn_is_a_multiset_of_shape_and_colour():
    from unclip_probe.eval.pipeline import drawn
    from unclip_probe.world import Obj, Scene

    a, b = Obj("circle", "red", "small", "top left"), Obj("square", "blue", "large", "center")
    assert drawn([a], Scene((replace(a, position="bottom right", size="large"),)), exact_count=True)  # not asked
    assert drawn([a], Scene((a, b)), exact_count=False) and not drawn([a], Scene((a, b)), exact_count=True)
    assert not drawn([a, a], Scene((a, b)), exact_count=False)  # two red circles asked, one drawn
    assert not drawn([a], Scene((Obj("circle", "blue", "small", "top left"),)), exact_count=False)


class _PerfectDecoder:
    """The pipeline with a decoder that draws the prompt's true scene: every read must come back right."""

    def __init__(self, pipe, scenes):
        from unclip_probe.world import caption

        self.pipe, self.clip, self.priors = pipe, pipe.clip, pipe.priors
        self.by_prompt = {caption(s, seed=seed): s for s in scenes for seed in range(200)}

    def prior(self, prompts, **kw):
        return self.pipe.prior(prompts, steps=2, **kw)

    def decode(self, z, seed=0, prompts=None, **kw):
        return [world.render(self.by_prompt[p]) for p in prompts]


def test_text_to_image_scores_a_perfect_decoder_as_right_and_true_embeddings_at_cosine_one(pipe):
    from unclip_probe.eval.pipeline import PAIR, text_to_image

    scenes = world.sample_scenes(6, seed=5, config=PAIR)
    res = text_to_image(_PerfectDecoder(pipe, scenes), scenes, seed=0, batch=4, priors=("diffusion",), exact_count=True)
    assert set(res) == {"text_embedding", "true_image_embedding", "diffusion_prior"}
    assert all(r["objects_right"] == 1.0 for r in res.values())
    assert res["true_image_embedding"]["cosine_to_true_image_embedding"] == pytest.approx(1.0, abs=1e-4)
    assert res["text_embedding"]["cosine_to_true_image_embedding"] < 0.999


def test_prior_guidance_defaults_per_kind_and_reaches_text_to_image(pipe):
    from unclip_probe.eval.pipeline import text_to_image
    from unclip_probe.backends.world.prior_sampling import PRIOR_GUIDANCE

    prompts = ["a red circle", "a blue star"]
    default = pipe.prior(prompts, seed=1, steps=3)
    assert torch.equal(default, pipe.prior(prompts, seed=1, steps=3, guidance=PRIOR_GUIDANCE["diffusion"]))
    assert not torch.allclose(default, pipe.prior(prompts, seed=1, steps=3, guidance=PRIOR_GUIDANCE["diffusion"] + 2))
    # The sweep's path: only the prior's row, and the guidance it was given.
    scenes = world.sample_scenes(4, seed=5)
    seen = []

    class Spy(_PerfectDecoder):
        def prior(self, prompts, **kw):
            seen.append(kw["guidance"])
            return super().prior(prompts, **kw)

    res = text_to_image(Spy(pipe, scenes), scenes, seed=0, batch=4, priors=("diffusion",), baselines=False,
                        prior_guidance=4.0)
    assert set(res) == {"diffusion_prior"} and seen == [4.0]


class _Stub:
    """A pipeline whose manipulations return fixed pictures, so the metrics' verdicts are known."""

    def __init__(self, variation=None, ends=None, diffed=None):
        self.variation, self.ends, self.diffed = variation, ends, diffed

    def variations(self, image, n, seed=0, **kw):
        return [self.variation or image] * n

    def interpolate(self, a, b, n, seed=0, **kw):
        return [a] + [a] * (n - 2) + [b] if self.ends is None else self.ends(a, b, n)

    def text_diff(self, image, src, dst, thetas, seed=0, **kw):
        return [image if t == 0 else self.diffed for t in thetas]


def test_manipulation_metrics_give_known_verdicts(monkeypatch):
    from unclip_probe.eval import pipeline as ev
    from unclip_probe.eval.pipeline import PAIR, SINGLE, interpolation_ends, text_diff_turns, variations_kept

    for name in ("variations", "interpolate", "text_diff"):  # the metrics call the manipulations of their stack
        monkeypatch.setattr(ev, name, lambda stack, *a, _name=name, **kw: getattr(stack, _name)(*a, **kw))

    pairs = world.sample_scenes(3, seed=1, config=PAIR)
    same = variations_kept(_Stub(), pairs)  # variations identical to the source: kept, no pixel change
    assert same["kept_shapes_and_colours"] == 1.0 and same["mean_abs_pixel_change_vs_source"] == 0.0
    blank = world.render(world.Scene(objects=()))  # an empty canvas keeps nothing and changes pixels
    other = variations_kept(_Stub(variation=blank), pairs)
    assert other["kept_shapes_and_colours"] == 0.0 and other["mean_abs_pixel_change_vs_source"] > 0

    singles = world.sample_scenes(4, seed=2, config=SINGLE)
    pairs_ab = list(zip(singles[::2], singles[1::2]))
    assert interpolation_ends(_Stub(), pairs_ab)["ends_reproduce_input"] == 1.0
    assert interpolation_ends(_Stub(ends=lambda a, b, n: [b] * n), pairs_ab)["ends_reproduce_input"] == 0.5

    one = singles[0]
    blue_circle = world.render(replace(one, objects=(replace(one.objects[0], shape="circle", color="blue"),)))
    td = text_diff_turns(_Stub(diffed=blue_circle), singles)
    assert td["theta_0.5"] == {"circle": 1.0, "blue": 1.0, "blue_circle": 1.0}
    assert td["theta_0"]["blue"] == 0.0 and td["theta_0"]["circle"] == 1.0  # the red circle itself


def test_manipulation_metrics_run_on_the_tiny_stack(pipe):
    from unclip_probe.eval.pipeline import SINGLE, interpolation_ends, text_diff_turns, variations_kept

    sc = world.sample_scenes(2, seed=1, config=SINGLE)
    v = variations_kept(pipe, sc[:1], steps=2)
    assert 0 <= v["kept_shapes_and_colours"] <= 1 and v["mean_abs_pixel_difference_between_variations"] > 0
    assert interpolation_ends(pipe, [(sc[0], sc[1])], steps=2)["n_pairs"] == 1
    td = text_diff_turns(pipe, sc, steps=2)
    assert td["n_seeds"] == 2 and set(td["theta_0.5"]) == {"circle", "blue", "blue_circle"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_cuda_same_seed_same_images(stack, dtype):
    import numpy as np

    gpu = UnCLIP.from_pretrained(stack, device="cuda", dtype=dtype)
    assert gpu.device.type == "cuda"
    run = lambda seed: [np.asarray(im) for im in gpu(["a red circle", "a blue star"], seed=seed, steps=4, prior_steps=4)]
    a, b, c = run(3), run(3), run(4)
    assert all((x == y).all() for x, y in zip(a, b))  # issue 5: same seed, same device -> same images
    assert any((x != z).any() for x, z in zip(a, c))  # and the seed matters


def test_variations_reuse_an_inversion(pipe):
    import numpy as np

    img = world.render(world.sample_scenes(1, seed=2)[0])
    fresh = M.variations(pipe, img, n=2, steps=2, seed=3)
    reused = M.variations(pipe, img, n=2, steps=2, seed=3, inverted=M.invert(pipe, img, steps=2))
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(fresh, reused))


def _same_images(xs, ys) -> bool:
    import numpy as np

    return len(xs) == len(ys) and all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(xs, ys))


def test_text_diffs_reuse_an_inversion_and_take_guidance(pipe):
    img = world.render(world.sample_scenes(1, seed=2)[0])
    kw = dict(thetas=[0.0, 0.5], steps=2, seed=1)
    fresh = M.text_diff(pipe, img, "a red circle", "a blue circle", **kw)
    reused = M.text_diff(pipe, img, "a red circle", "a blue circle", inverted=M.invert(pipe, img, steps=2), **kw)
    assert _same_images(fresh, reused)
    assert not _same_images(fresh, M.text_diff(pipe, img, "a red circle", "a blue circle", guidance=3.0, **kw))


def test_interpolation_with_inverted_noise_is_unguided_by_default(pipe):
    from unclip_probe.backends.world.stack import DECODER_GUIDANCE, INVERTED_GUIDANCE

    a = world.render(world.sample_scenes(2, seed=2)[0])
    b = world.render(world.sample_scenes(2, seed=2)[1])
    kw = dict(n=3, steps=2, seed=1, noise="inverted")
    default = M.interpolate(pipe, a, b, **kw)
    assert _same_images(default, M.interpolate(pipe, a, b, guidance=INVERTED_GUIDANCE, **kw))
    assert not _same_images(default, M.interpolate(pipe, a, b, guidance=3.0, **kw))
    fixed = dict(kw, noise="fixed")  # fresh noise keeps the decoder's generation guidance
    assert _same_images(M.interpolate(pipe, a, b, **fixed), M.interpolate(pipe, a, b, guidance=DECODER_GUIDANCE, **fixed))


def test_inversions_reused_inverts_each_image_once_and_changes_nothing(pipe):
    from unclip_probe.eval.pipeline import inversions_reused

    img = world.render(world.sample_scenes(1, seed=2)[0])
    plain = [M.variations(pipe, img, n=1, steps=2, seed=s, eta=0.5) for s in (0, 1)]
    calls = []
    real = pipe.invert
    pipe.invert = lambda images, steps=None, z=None: calls.append(steps) or real(images, steps=steps, z=z)
    try:
        with inversions_reused(pipe):
            reused = [M.variations(pipe, img, n=1, steps=2, seed=s, eta=0.5) for s in (0, 1)]
            M.text_diff(pipe, img, "a red circle", "a blue circle", thetas=[0.5], steps=2)
        assert calls == [2]  # one inversion served three manipulations
    finally:
        del pipe.invert
    assert all(_same_images(p, r) for p, r in zip(plain, reused))
    assert "invert" not in vars(pipe)  # the block leaves the pipeline as it found it


def test_manipulation_scenes_are_the_documented_sets():
    from unclip_probe.eval.pipeline import manipulation_scenes

    sets = manipulation_scenes(3)
    assert [len(s.objects) for s in sets["variations"]] == [2, 2, 2]
    assert len(sets["interpolation"]) == 3 and all(len(a.objects) == len(b.objects) == 1 for a, b in sets["interpolation"])
    assert [len(s.objects) for s in sets["text_diff"]] == [1, 1, 1]
    assert manipulation_scenes(3) == sets  # seeded: pipeline_eval and the sweep see the same scenes


def test_pick_nearest_keeps_the_candidate_nearest_z_and_names_a_bad_z():
    from unclip_probe.backends.world.decode import pick_nearest

    K, B, D = 3, 2, 4
    cands = torch.linspace(-1, 1, K * B * 3 * 2 * 2).view(K, B, 3, 2, 2)
    # a fake CLIP: each image's embedding is a unit axis set by its candidate index k (flattened k * B + b)
    encode = lambda x: torch.eye(D)[torch.arange(x.shape[0]) // B]  # noqa: E731
    z = torch.stack([torch.eye(D)[2], torch.eye(D)[1] * 5])  # nearest: candidate 2 for b = 0, 1 for b = 1 (any scale)
    chosen, scores = pick_nearest(cands, z, encode)
    assert scores.shape == (K, B)
    assert torch.equal(chosen[0], cands[2, 0]) and torch.equal(chosen[1], cands[1, 1])
    tie = torch.stack([torch.eye(D)[3], torch.eye(D)[3]])  # every score 0: the first candidate, the plain decode
    assert torch.equal(pick_nearest(cands, tie, encode)[0], cands[0])
    with pytest.raises(ProbeInputError, match="^z"):
        pick_nearest(cands, torch.randn(3, D), encode)


def test_decode_candidates_keep_the_plain_decode_among_them_and_only_get_nearer_z(pipe):
    img = world.render(world.sample_scenes(1, seed=5)[0])
    z = pipe.encode_image([img, img.transpose(Image.FLIP_LEFT_RIGHT)])
    plain = pipe.decode(z, seed=7, steps=3, upsample=False)
    assert [a.tobytes() for a in plain] == [a.tobytes() for a in pipe.decode(z, seed=7, steps=3, upsample=False,
                                                                               candidates=1)]
    best = pipe.decode(z, seed=7, steps=3, upsample=False, candidates=4)
    cos = lambda ims: (pipe.clip.encode_image(ims) * torch.nn.functional.normalize(z, dim=-1)).sum(-1)  # noqa: E731
    assert (cos(best) >= cos(plain) - 1e-2).all()  # uint8 rounding of the PIL images aside
    assert len(pipe.decode(z, seed=7, steps=3, candidates=2)) == 2 and pipe.decode(z, seed=7, steps=3, candidates=2)[0].size == (64, 64)
    for bad in (0, 65, 2.0):
        with pytest.raises(ProbeInputError, match="^candidates"):
            pipe.decode(z, steps=2, candidates=bad)


def test_decode_scenes_first_candidates_are_the_plain_decodes(pipe):
    from unclip_probe.eval.decoder import decode_scenes

    scenes = world.sample_scenes(3, seed=9)
    kw = dict(steps=2, guidance=2.0, with_caption=False, seed=4, batch=2)
    plain = decode_scenes(pipe.decoder, pipe.decoder_cfg, pipe.clip, scenes, **kw)
    first: list = []
    best = decode_scenes(pipe.decoder, pipe.decoder_cfg, pipe.clip, scenes, candidates=3, first=first, **kw)
    # the same noise; a larger batch may round differently in the last bits
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(first, plain)) and len(best) == 3
