"""Named hook points, run_with_cache and the hooks() context manager (docs/design.md §8)."""
import copy

import open_clip
import pytest
import torch
from torch import nn

from unclip_probe.clip import ClipConfig, ClipModel, build_clip_model
from unclip_probe.clip import hooks as clip_hooks
from unclip_probe.clip.hooks import attention_pattern
from unclip_probe.errors import ProbeInputError
from unclip_probe.clip.tokenizer import WorldTokenizer

pytestmark = pytest.mark.unit

WORDS = ("a", "red", "blue", "circle", "square", "star", "and", "left", "of")
TEXTS = ["a red circle", "a blue square left of a star"]


@pytest.fixture(scope="module")
def clip() -> ClipModel:
    torch.manual_seed(0)
    oc = {"embed_dim": 32,
          "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
          "text_cfg": {"context_length": 16, "vocab_size": WorldTokenizer(WORDS, 16).vocab_size,
                       "width": 64, "heads": 2, "layers": 2}}
    cfg = ClipConfig("world-clip-hooks-unit", oc, WORDS, 16, (0.5,) * 3, (0.25,) * 3)
    return ClipModel(build_clip_model(cfg), cfg.tokenizer(), image_mean=cfg.image_mean, image_std=cfg.image_std)


def _no_hooks_left(clip: ClipModel) -> bool:
    mods = [*clip.model.modules(), clip._text_out]
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in mods)


def test_run_with_cache_shapes(clip):
    x = torch.rand(3, 3, 32, 32)
    out, cache = clip.run_with_cache(images=x, texts=TEXTS)
    assert set(out) == {"image_embeds", "text_embeds", "logits"} and out["logits"].shape == (3, 2)
    assert set(cache) == set(clip.hook_names())
    T, L = 1 + 16, 16  # class token + (32/8)^2 patches; text context
    expected = {"visual.hook_embed": (3, T, 64), "visual.blocks.1.hook_resid_post": (3, T, 64),
                "visual.blocks.0.attn.hook_pattern": (3, 2, T, T), "visual.blocks.0.hook_attn_out": (3, T, 64),
                "visual.blocks.1.hook_mlp_out": (3, T, 64), "visual.hook_out": (3, 32),
                "text.hook_embed": (2, L, 64), "text.blocks.0.hook_resid_pre": (2, L, 64),
                "text.blocks.1.attn.hook_pattern": (2, 2, L, L), "text.hook_ln_final": (2, L, 64),
                "text.hook_out": (2, 32)}
    for name, shape in expected.items():
        assert tuple(cache[name].shape) == shape, name
    # hook_out is the embedding before normalisation
    assert torch.allclose(nn.functional.normalize(cache["visual.hook_out"], dim=-1), out["image_embeds"], atol=1e-6)
    assert torch.allclose(nn.functional.normalize(cache["text.hook_out"], dim=-1), out["text_embeds"], atol=1e-6)
    _, only = clip.run_with_cache(texts=TEXTS, names_filter=["text.hook_out"])
    assert list(only) == ["text.hook_out"] and _no_hooks_left(clip)


def test_attention_patterns_sum_to_one_and_text_is_causal(clip):
    _, cache = clip.run_with_cache(images=torch.rand(2, 3, 32, 32), texts=TEXTS)
    for name in [n for n in cache if n.endswith("hook_pattern")]:
        assert torch.allclose(cache[name].sum(-1), torch.ones(()), atol=1e-5), name
    text = cache["text.blocks.0.attn.hook_pattern"]
    assert text.triu(diagonal=1).abs().max() == 0  # no attention to later tokens
    assert cache["visual.blocks.0.attn.hook_pattern"].triu(diagonal=1).abs().max() > 0


def test_pattern_matches_torch_attention_weights(clip):
    block = clip.model.transformer.resblocks[0]
    x = block.ln_1(torch.randn(2, 16, 64))
    mask = clip.model.attn_mask
    _, w = block.attn(x, x, x, need_weights=True, attn_mask=mask, average_attn_weights=False)
    assert torch.allclose(attention_pattern(block.attn, x, x, mask), w, atol=1e-6)


def test_patching_an_unchanged_pattern_keeps_outputs(clip):
    x = torch.rand(2, 3, 32, 32)
    ref_img, ref_txt = clip.encode_image(x), clip.encode_text(TEXTS)
    same = [("visual.blocks.0.attn.hook_pattern", lambda p, hook: p.clone()),
            ("text.blocks.1.attn.hook_pattern", lambda p, hook: p.clone())]
    with clip.hooks(same):
        assert torch.allclose(clip.encode_image(x), ref_img, atol=1e-5)
        assert torch.allclose(clip.encode_text(TEXTS), ref_txt, atol=1e-5)
    uniform = [("visual.blocks.1.attn.hook_pattern", lambda p, hook: torch.full_like(p, 1 / p.shape[-1]))]
    with clip.hooks(uniform):
        assert not torch.allclose(clip.encode_image(x), ref_img, atol=1e-4)


def test_zeroing_a_residual_changes_the_output(clip):
    x = torch.rand(2, 3, 32, 32)
    ref_img, ref_txt = clip.encode_image(x), clip.encode_text(TEXTS)
    seen = []

    def zero(t, hook):
        seen.append(hook.name)
        return torch.zeros_like(t)
    with clip.hooks([("visual.blocks.0.hook_resid_post", zero), ("text.blocks.0.hook_resid_post", zero)]):
        img, txt = clip.encode_image(x), clip.encode_text(TEXTS)
    assert seen == ["visual.blocks.0.hook_resid_post", "text.blocks.0.hook_resid_post"]
    assert not torch.allclose(img, ref_img, atol=1e-4) and not torch.allclose(txt, ref_txt, atol=1e-4)
    assert torch.equal(clip.encode_image(x), ref_img) and _no_hooks_left(clip)  # gone after the block


def test_hooks_are_removed_after_an_exception(clip):
    pairs = [(n, lambda t, hook: None) for n in clip.hook_names()]
    with pytest.raises(RuntimeError, match="boom"):
        with clip.hooks(pairs):
            assert not _no_hooks_left(clip)
            raise RuntimeError("boom")
    assert _no_hooks_left(clip)

    def bad(t, hook):
        return t[:, :1]  # wrong shape: a clear error, and still no hooks left behind
    with pytest.raises(ProbeInputError, match=r"^hooks: the hook on visual.hook_embed returned shape"):
        with clip.hooks([("visual.hook_embed", bad)]):
            clip.encode_image(torch.rand(1, 3, 32, 32))
    assert _no_hooks_left(clip)


def test_unknown_hook_name_lists_close_matches(clip):
    with pytest.raises(ProbeInputError, match=r"^hooks: unknown hook name 'visual.blocks.0.hook_resid'.*"
                                              r"close matches: .*visual.blocks.0.hook_resid_p"):
        with clip.hooks([("visual.blocks.0.hook_resid", lambda t, hook: None)]):
            pass
    with pytest.raises(ProbeInputError, match=r"^names_filter: unknown hook name 'text.hook_outt'.*"
                                              r"close matches: text.hook_out"):
        clip.run_with_cache(texts=TEXTS, names_filter=["text.hook_outt"])
    with pytest.raises(ProbeInputError, match=r"^names_filter: 'text.hook_out' belongs to a tower that does "
                                              r"not run; pass texts too$"):
        clip.run_with_cache(images=torch.rand(1, 3, 32, 32), names_filter=["text.hook_out"])
    with pytest.raises(ProbeInputError, match=r"^names_filter: got int, expected a hook name"):
        clip.run_with_cache(texts=TEXTS, names_filter=3)
    assert _no_hooks_left(clip)


def test_vit_b_32_hook_points():
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    assert model.visual.transformer.batch_first  # open_clip 3.3 runs its transformers batch-first
    clip = ClipModel(model, open_clip.get_tokenizer("ViT-B-32"),
                     image_mean=open_clip.OPENAI_DATASET_MEAN, image_std=open_clip.OPENAI_DATASET_STD)
    names = clip.hook_names()
    assert "visual.blocks.11.attn.hook_pattern" in names and "text.blocks.11.hook_resid_post" in names
    out, cache = clip.run_with_cache(images=torch.rand(1, 3, 224, 224), texts=["a dog"],
                                     names_filter=["visual.blocks.11.attn.hook_pattern",
                                                   "text.blocks.0.attn.hook_pattern", "visual.hook_embed"])
    assert cache["visual.blocks.11.attn.hook_pattern"].shape == (1, 12, 50, 50)
    assert cache["text.blocks.0.attn.hook_pattern"].shape == (1, 8, 77, 77)
    assert cache["visual.hook_embed"].shape == (1, 50, 768) and _no_hooks_left(clip)


def test_hook_receives_the_point_as_hook_keyword(clip):
    got = []

    def record(t, *, hook):  # keyword-only: fails unless called fn(tensor, hook=point)
        got.append((hook.name, hook.kind, type(hook.module).__name__, tuple(t.shape)))
    names = ["visual.hook_embed", "visual.blocks.0.attn.hook_pattern", "text.hook_out"]
    with clip.hooks([(n, record) for n in names]):
        clip.encode_image(torch.rand(2, 3, 32, 32))
        clip.encode_text(TEXTS)
    assert got == [("visual.hook_embed", "pre", "Transformer", (2, 17, 64)),
                   ("visual.blocks.0.attn.hook_pattern", "pattern", "MultiheadAttention", (2, 2, 17, 17)),
                   ("text.hook_out", "post", "HookPoint", (2, 32))]
    assert all(isinstance(p, clip_hooks.Point) for p in clip._points().values())


def test_old_two_positional_hook_is_refused_up_front(clip):
    with pytest.raises(ProbeInputError, match=r"^hooks: the function for 'visual.hook_out' cannot be called "
                                              r"fn\(tensor, hook=point\)"):
        with clip.hooks([("visual.hook_out", lambda t, name: None)]):
            pass
    assert _no_hooks_left(clip)


def test_names_filter_list_str_and_predicate(clip):
    x = torch.rand(2, 3, 32, 32)
    _, one = clip.run_with_cache(images=x, names_filter="visual.blocks.1.hook_resid_post")
    assert list(one) == ["visual.blocks.1.hook_resid_post"]
    _, listed = clip.run_with_cache(images=x, texts=TEXTS, names_filter=("text.hook_out", "visual.hook_embed"))
    assert sorted(listed) == ["text.hook_out", "visual.hook_embed"]
    _, patterns = clip.run_with_cache(images=x, texts=TEXTS, names_filter=lambda n: n.endswith("hook_pattern"))
    assert sorted(patterns) == ["text.blocks.0.attn.hook_pattern", "text.blocks.1.attn.hook_pattern",
                                "visual.blocks.0.attn.hook_pattern", "visual.blocks.1.attn.hook_pattern"]
    # a predicate sees only the towers that run: text names are not an error with images alone
    _, vis = clip.run_with_cache(images=x, names_filter=lambda n: n.endswith("hook_pattern"))
    assert sorted(vis) == ["visual.blocks.0.attn.hook_pattern", "visual.blocks.1.attn.hook_pattern"]
    assert _no_hooks_left(clip)


def test_predicate_selecting_nothing_is_refused(clip):
    with pytest.raises(ProbeInputError, match=r"^names_filter: the predicate selected no hook name of the "
                                              r"towers that run \(visual\)"):
        clip.run_with_cache(images=torch.rand(1, 3, 32, 32), names_filter=lambda n: n.startswith("text."))
    with pytest.raises(ProbeInputError, match=r"^names_filter: the predicate selected no hook name"):
        clip.run_with_cache(texts=TEXTS, names_filter=lambda n: False)
    assert _no_hooks_left(clip)


def test_hook_point_map_is_built_once(clip, monkeypatch):
    fresh = ClipModel(clip.model, clip.tokenizer, image_mean=(0.5,) * 3, image_std=(0.25,) * 3)
    calls = []
    real = clip_hooks.hook_points

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(clip_hooks, "hook_points", counting)
    x = torch.rand(1, 3, 32, 32)
    for _ in range(3):
        fresh.run_with_cache(images=x, texts=TEXTS)
        fresh.encode_text_and_tokens(TEXTS)
        with fresh.hooks([("visual.hook_out", lambda t, hook: None)]):
            fresh.encode_image(x)
        fresh.hook_names()
    assert len(calls) == 1 and fresh.hook_names() == clip.hook_names()
    # the kept map points at the live modules (ClipModel.to moves them in place)
    attn = fresh.model.visual.transformer.resblocks[0].attn
    assert fresh._points()["visual.blocks.0.attn.hook_pattern"].module is attn
    fresh.model = copy.deepcopy(clip.model)  # a replaced network gets its own map
    assert fresh._points()["visual.hook_out"].module is fresh.model.visual and len(calls) == 2
