"""The held-out wordings (issue 24) and the two oracle readings every text -> image row reports."""
import pytest
import torch

from unclip_probe import world
from unclip_probe.clip.tokenizer import WorldTokenizer
from unclip_probe.errors import ProbeInputError
from unclip_probe.eval.pipeline import PAIR_OUTCOMES, pair_outcome, pair_outcomes, prompts_to_image, readings, text_to_image
from unclip_probe.world import Obj, Scene, caption, shows_held_out_pair
from unclip_probe.world.wordings import PER_TEMPLATE, TEMPLATES, fill, heldout_prompts

pytestmark = pytest.mark.unit
RED_CIRCLE = Obj("circle", "red", "small", "top left")
BLUE_SQUARE = Obj("square", "blue", "large", "center")
RED_STAR = Obj("star", "red", "large", "right")  # a held-out pair (WorldConfig.holdout)


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_the_set_is_fixed_and_balanced(kind):
    ps = heldout_prompts(kind)
    n_in, n_held = PER_TEMPLATE[kind]
    assert ps == heldout_prompts(kind)  # the same set on every call
    assert len(ps) == len(TEMPLATES[kind]) * (n_in + n_held)
    for name in TEMPLATES[kind]:
        mine = [p for p in ps if p.template == name]
        # in-distribution scenes first, never a held-out pair; then held-out-pair scenes, each showing one
        assert [shows_held_out_pair(p.scene) for p in mine] == [False] * n_in + [True] * n_held
    assert all(len(p.scene.objects) == (1 if kind == "single" else 2) for p in ps)


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_every_prompt_is_inside_the_world_vocabulary(kind):
    tok = WorldTokenizer(world.vocabulary(), context_length=40)
    tok([p.text for p in heldout_prompts(kind)])  # an unknown word raises


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_the_caption_grammar_never_writes_a_held_out_prompt(kind):
    """Every caption the grammar writes of a prompt's own scene, over many seeds, differs from it
    (the grammar's sentences for one scene are a few hundred; 600 seeds draw each many times)."""
    for p in heldout_prompts(kind)[::7]:
        said = {caption(p.scene, seed=k) for k in range(600)}
        assert p.text not in said, (p.template, p.text)


def test_the_grammar_check_can_fail():
    """The check above finds a prompt the grammar does write: the short form 'a red circle'."""
    s = Scene((RED_CIRCLE,), "gray")
    assert "a red circle" in {caption(s, seed=k) for k in range(600)}


def test_fill_says_articles_and_word_orders():
    orange = Scene((Obj("circle", "orange", "small", "left"),), "dark")
    assert fill("{a} {c} {s}", orange) == "an orange circle"
    assert fill("{a} {s} that is {c}", orange) == "a circle that is orange"
    assert fill("{a} {c} {z} {s} on the {bg} background", orange) == "an orange small circle on the dark background"
    pair = Scene((Obj("diamond", "green", "large", "left"), Obj("star", "orange", "small", "right")), "gray")
    assert fill(TEMPLATES["pair"]["there_are"], pair) == "there are two objects: a green diamond and an orange star"


def test_readings_exact_and_any_match_split_by_held_out_pairs():
    wanted = [Scene((RED_CIRCLE,), "gray"), Scene((RED_CIRCLE,), "gray"), Scene((RED_STAR,), "gray"),
              Scene((RED_CIRCLE,), "gray")]
    reads = [Scene((RED_CIRCLE,), "dark"),  # exactly right (background not scored)
             Scene((RED_CIRCLE, BLUE_SQUARE), "gray"),  # the object is there, and an extra one
             Scene((RED_STAR,), "gray"),  # held-out pair, exactly right
             Scene((BLUE_SQUARE,), "gray")]  # wrong
    r = readings(wanted, reads, groups=["a", "b", "a", "b"])
    assert (r["n"], r["exact"], r["any_match"]) == (4, 0.5, 0.75)
    assert r["in_distribution"] == {"n": 3, "exact": round(1 / 3, 4), "any_match": round(2 / 3, 4)}
    assert r["held_out_pairs"] == {"n": 1, "exact": 1.0, "any_match": 1.0}
    assert r["by_group"] == {"a": {"n": 2, "exact": 1.0, "any_match": 1.0}, "b": {"n": 2, "exact": 0.0, "any_match": 0.5}}
    assert readings(wanted[:1], reads[:1])["held_out_pairs"] == {"n": 0, "exact": None, "any_match": None}


def test_pair_outcomes_say_why_a_pair_is_not_exact():
    red_circle, blue_square = Obj("circle", "red", "small", "left"), Obj("square", "blue", "large", "right")
    pair = Scene((red_circle, blue_square), "gray")
    def read(*objs):
        return Scene(tuple(Obj(s, c, "small", "center") for s, c in objs), "dark")  # size, place, background unscored
    cases = {"exact": read(("square", "blue"), ("circle", "red")),
             "count": read(("circle", "red")),
             "swapped": read(("circle", "blue"), ("square", "red")),
             "shapes": read(("circle", "red"), ("star", "blue")),
             "colours": read(("circle", "red"), ("square", "green")),
             "shapes_and_colours": read(("star", "green"), ("circle", "red"))}
    assert {k: pair_outcome(pair, r) for k, r in cases.items()} == {k: k for k in cases}
    assert pair_outcome(pair, read(("circle", "red"), ("square", "blue"), ("star", "green"))) == "count"
    shares = pair_outcomes([pair] * 7, list(cases.values()) + [cases["exact"]])
    assert tuple(shares) == PAIR_OUTCOMES and shares["exact"] == round(2 / 7, 4) and abs(sum(shares.values()) - 1) < 1e-3
    with pytest.raises(ProbeInputError, match="scene"):
        pair_outcome(Scene((red_circle,), "gray"), cases["count"])


def test_text_to_image_reads_typed_prompts_against_their_scenes():
    """With prompts=, what is typed is what the prior reads, and the readings compare with the scenes."""
    ps = heldout_prompts("single")[:3]

    class Stack:
        class clip:
            encode_image = staticmethod(lambda ims: torch.eye(len(ims), 4))
            encode_text = staticmethod(lambda ts: torch.eye(len(ts), 4))

        seen: list = []
        decoded_with: list = []

        def prior(self, prompts, **kw):
            self.seen.extend(prompts)
            return self.clip.encode_text(prompts)

        def decode(self, z, prompts=None, **kw):
            self.decoded_with.append(prompts)
            return [world.render(self.scenes[i]) for i in range(len(z))]

    stack = Stack()
    stack.scenes = [p.scene for p in ps]
    res = prompts_to_image(stack, ps, seed=0, batch=3, priors=("diffusion",))
    assert stack.seen == [p.text for p in ps]
    assert res["diffusion_prior"]["readings"]["by_group"] == {ps[0].template: {"n": 3, "exact": 1.0, "any_match": 1.0}}
    assert res["diffusion_prior"]["readings"]["exact"] == 1.0 and res["diffusion_prior"]["objects_right"] == 1.0
    assert "pair_outcomes" not in res["diffusion_prior"]  # single objects
    assert stack.decoded_with == [[p.text for p in ps]] * 3  # z_t, true z_i and the prior: each read with its caption
    stack.decoded_with.clear()
    prompts_to_image(stack, ps, seed=0, batch=3, priors=("diffusion",), decode_caption=False)
    assert stack.decoded_with == [None] * 3  # the embedding alone
    with pytest.raises(ProbeInputError, match="decode_caption"):
        prompts_to_image(stack, ps, seed=0, batch=3, priors=("diffusion",), decode_caption=1)
    with pytest.raises(ProbeInputError, match="prompts"):
        text_to_image(stack, [p.scene for p in ps], prompts=["a red circle"], seed=0)
    pairs = heldout_prompts("pair")[:2]
    stack.scenes = [pairs[0].scene, pairs[0].scene]  # the second decode shows the first prompt's scene
    res = prompts_to_image(stack, pairs, seed=0, batch=2, priors=("diffusion",), baselines=False)
    objs = [sorted((o.shape, o.color) for o in p.scene.objects) for p in pairs]
    assert objs[0] != objs[1] and res["diffusion_prior"]["pair_outcomes"]["exact"] == 0.5


# ---------------------------------------------------------------- the widened training grammar
from unclip_probe.world.captions import wide_caption  # noqa: E402
from unclip_probe.world.dataset import restyled_captions  # noqa: E402


@pytest.mark.parametrize("kind", ["single", "pair"])
def test_the_wide_grammar_never_writes_a_held_out_prompt(kind):
    for p in heldout_prompts(kind)[::5]:
        said = {wide_caption(p.scene, seed=k) for k in range(1500)}
        assert p.text not in said, (p.template, p.text)


def test_wide_captions_stay_in_the_vocabulary_and_say_where_or_on_what():
    """Every wide caption tokenizes, and one in a form `caption` never writes says a position, the
    background or the note (the rule that keeps the held-out wordings out of training)."""
    tok = WorldTokenizer(world.vocabulary(), context_length=48)
    places = ("left", "right", "top", "bottom", "center", "middle", "background", "note")
    scenes = world.sample_scenes(300, seed=8)
    caps = [wide_caption(s, seed=i) for i, s in enumerate(scenes)]
    tok(caps)
    assert caps == [wide_caption(s, seed=i) for i, s in enumerate(scenes)]  # a pure function of the seed
    wide = [wide_caption(s, seed=i, wide=True) for i, s in enumerate(scenes)]
    tok(wide)
    assert all(any(w in c for w in places) for c in wide)
    assert sum(c != wide_caption(s, seed=i, wide=False) for i, (c, s) in enumerate(zip(caps, scenes))) > 100
    single = world.Scene((RED_CIRCLE,), "gray")
    forms = {wide_caption(single, seed=k, wide=True) for k in range(300)}
    assert {"there is the red circle in the top left", "a circle that is red in the top left on a gray background"} & forms


def test_restyled_captions_are_fixed_by_stream_position():
    scenes = world.sample_scenes(6, seed=2)
    base = [caption(s) for s in scenes]
    assert restyled_captions(scenes, base, "grammar", 3, 0) == base
    wide = restyled_captions(scenes, base, "wide", 3, 10)
    assert wide == restyled_captions(scenes, base, "wide", 3, 10) != restyled_captions(scenes, base, "wide", 3, 11)
    assert restyled_captions(scenes[2:], base[2:], "wide", 3, 12) == wide[2:]  # a batch split anywhere agrees
    with pytest.raises(ProbeInputError, match="captions"):
        restyled_captions(scenes, base, "fancy", 3, 0)


def test_train_refuses_caption_styles_outside_the_caption_stages(capsys):
    from unclip_probe.cli import main

    for stage in ("upsampler", "clip"):
        assert main(["train", stage, "--captions", "wide", "--steps", "1"]) == 2
        assert "--captions" in capsys.readouterr().err


def test_train_names_a_bad_prior_condition(capsys, tmp_path):
    from unclip_probe.cli import main

    for args, named in ((["decoder", "--prior-condition", "2"], "--prior-condition"),
                        (["prior", "--prior-condition", "0.5"], "--prior-condition"),
                        (["decoder", "--prior-condition", "0.5", "--clip", str(tmp_path)], "--clip")):  # no prior there
        assert main(["train", *args, "--steps", "1", "--out", str(tmp_path / "o")]) == 2
        assert named in capsys.readouterr().err


def test_heldout_prompts_bad_input_names_the_argument():
    with pytest.raises(ProbeInputError, match="kind"):
        heldout_prompts("triple")
    with pytest.raises(ProbeInputError, match="seed"):
        heldout_prompts("single", seed=-1)
    fresh = heldout_prompts("single", seed=777_170)
    assert [p.template for p in fresh] == [p.template for p in heldout_prompts("single")]
    assert [p.scene for p in fresh] != [p.scene for p in heldout_prompts("single")]
