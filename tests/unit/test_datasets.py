"""The published benchmarks' loaders, scorers and embedding cache, on fixtures the tests write in each
release's exact layout (tests/unit/_benchmark_fixtures.py), scored by a random open_clip ViT-B-32
and by the shipped world CLIP."""
import json
import os
import warnings

import numpy as np
import pytest

import unclip_probe as up
from unclip_probe import datasets
from unclip_probe.datasets import aro
from unclip_probe.errors import ProbeInputError
from unclip_probe.world import SHAPES, COLORS
import _benchmark_fixtures as fx

pytestmark = pytest.mark.unit
ORDER_TAGS = {**{s: "NN" for s in SHAPES}, **{c: "JJ" for c in COLORS}, "left": "NN", "right": "NN"}


def tagger(text):
    """A dictionary part-of-speech tagger for world captions (spaCy's en_core_web_sm is not here)."""
    return [(w, ORDER_TAGS.get(w.strip(".,").lower(), "DT")) for w in text.split()]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Every benchmark as a small copy in its release's layout, captions in the world's words."""
    root = tmp_path_factory.mktemp("benchmarks")
    pairs = fx.world_pairs(3, seed=1)
    rel = fx.world_pairs(3, seed=2, kind="relation")
    out = {"winoground": fx.write_winoground(root / "winoground", [(a, c, b, d, tag) for (a, c, b, d), tag
                                                                   in zip(pairs, ["Object", "Relation", "Both"])])}
    out["vg-relation"] = fx.write_vg(root / "vg", "relation", [
        (a, (0, 0, 64, 48), c, d, name) for (a, c, _, d), name in zip(rel, ["to the left of", "above", "next to"])])
    fx.write_vg(root / "vg", "attribution", [(a, (8, 8, 48, 48), c, d, ["red", "blue"]) for a, c, _, d in pairs])
    out["vg-attribution"] = root / "vg"
    out["coco-order"] = fx.write_order(root / "coco", "coco-order", [(a, [c, d]) for a, c, _, d in pairs])
    out["flickr30k-order"] = fx.write_order(root / "flickr", "flickr30k-order", [(a, [c]) for a, c, _, _ in rel])
    out["sugarcrepe"] = fx.write_sugarcrepe(root / "sugarcrepe", {
        "swap_att": [(a, c, d) for a, c, _, d in pairs], "replace_rel": [(a, c, d) for a, c, _, d in rel[:2]],
        "add_obj": []})
    objs = fx.world_objects(4, seed=3)
    words = ["star", "cross", "circle", "square"]
    named = [(fx.attacked(im, w), shape, w) for (im, shape), w in zip(objs, words) if w != shape]
    out["rta-100"] = fx.write_named(root / "rta100", named)
    out["paint"] = fx.write_named(root / "paint" / "typographic_attacks", named).parent
    scam = [(fx.attacked(im, w), "SCAM", shape, w) for (im, shape), w in zip(objs, words)]
    scam += [(im, "NoSCAM", shape, w) for (im, shape), w in zip(objs, words)]
    out["scam"] = fx.write_scam(root / "scam", scam)
    return out


def _options(name):
    return {"tagger": tagger, "tokenize": str.split} if name.endswith("-order") else {}


@pytest.fixture(scope="module")
def world_clip():
    return up.load_clip("checkpoints/world")


# ---------------------------------------------------------------------------- loaders
def test_winoground_items_index_their_images_and_captions(sets):
    data = datasets.load_benchmark("winoground", sets["winoground"])
    assert len(data) == 3 and data.image_index.shape == (3, 2) and data.caption_index.shape == (3, 2)
    line = json.loads((sets["winoground"] / "examples.jsonl").read_text().splitlines()[1])
    assert data.captions[data.caption_index[1, 0]] == line["caption_0"]
    assert data.images[data.image_index[1, 1]].path.name == "ex_1_img_1.png"
    assert data.groups == ["Object", "Relation", "Both"]


def test_winoground_finds_the_data_folder_of_the_dataset_root(sets, tmp_path):
    os.symlink(sets["winoground"], tmp_path / "data")
    assert len(datasets.load_benchmark("winoground", tmp_path)) == 3


def test_vg_crops_to_the_box_and_offers_false_then_true(sets):
    data = datasets.load_benchmark("vg-relation", sets["vg-relation"])
    rec = json.loads((sets["vg-relation"] / "visual_genome_relation.json").read_text())[0]
    assert data.captions[data.caption_index[0, 0]] == rec["false_caption"] and data.answer == 1
    assert data.images[0].open().size == (64, 48)
    attrs = datasets.load_benchmark("vg-attribution", sets["vg-attribution"])
    assert set(attrs.groups) == {"red_blue"} and attrs.images[0].open().size == (48, 48)


def test_order_sets_give_five_options_the_caption_first():
    perturb = aro.Perturber(0, tagger, str.split)
    options = perturb.options("A red circle to the left of a blue square.")
    assert options[0] == "a red circle to the left of a blue square"  # pre_caption: lower case, no period
    words = sorted(options[0].split())
    assert all(sorted(o.split()) == words for o in options[1:])  # shuffles keep the words
    nouns = perturb.nouns_and_adjectives("red circle blue square")  # nouns and adjectives stay in their slots
    assert {nouns.split()[0], nouns.split()[2]} == {"red", "blue"}
    assert aro.Perturber(0, tagger, str.split).options("a b c d e f g") == \
        aro.Perturber(0, tagger, str.split).options("a b c d e f g")  # one seed, one draw


def test_pre_caption_is_the_releases():
    assert aro.pre_caption('A "dog"; running!  Fast.') == "a dog running fast"
    assert aro.pre_caption(" ".join(["w"] * 40)) == " ".join(["w"] * 30)


def test_order_without_a_tagger_says_what_to_install(sets):
    import importlib.util

    if importlib.util.find_spec("spacy") is not None:
        pytest.skip("spaCy is installed here")
    with pytest.raises(ProbeInputError, match="^tagger: .*spaCy"):
        datasets.load_benchmark("coco-order", sets["coco-order"])


def test_sugarcrepe_reads_the_splits_present_and_keeps_the_empty_one(sets):
    data = datasets.load_benchmark("sugarcrepe", sets["sugarcrepe"])
    assert data.meta["splits"] == ["replace_rel", "swap_att", "add_obj"]
    assert len(data) == 5 and "add_att" in data.meta["missing_splits"]


def test_typographic_names_and_scam_columns(sets):
    data = datasets.load_benchmark("rta-100", sets["rta-100"])
    assert data.true_labels[0] != data.attack_words[0] and set(data.classes) == set(data.true_labels) | set(
        data.attack_words)
    assert len(datasets.load_benchmark("paint", sets["paint"])) == len(data)  # the folder inside is found
    scam = datasets.load_benchmark("scam", sets["scam"], variant="NoSCAM")
    assert len(scam) == 4 and scam.images[0].open().size == (64, 64)


# ---------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("which", ["world_clip", "vit_b_32"])
@pytest.mark.parametrize("name", list(datasets.BENCHMARKS))
def test_every_benchmark_runs_end_to_end_and_a_second_run_reads_the_cache(sets, name, which, request, tmp_path):
    clip = request.getfixturevalue(which)
    kw = _options(name)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        first = datasets.run_benchmark(name, clip, sets[name], cache=tmp_path, progress=False, batch_size=3, **kw)
    world_scam = name == "scam" and which == "world_clip"
    if world_scam:  # SCAM's 32 templates have words the world never writes: said, and the rest scored
        assert any("two-way protocol not scored" in str(w.message) for w in said)
    elif name == "scam":
        assert first.table["two_way_accuracy"].notna().all()
    n_images = 8 if name == "scam" else len(datasets.load_benchmark(name, sets[name], **kw).images)  # SCAM: 2 variants
    assert first.meta["cache"]["images_read"] == n_images  # each image read once, a second metric included (SCAM)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        second = datasets.run_benchmark(name, clip, sets[name], cache=tmp_path, progress=False, **kw)
    assert second.meta["cache"]["images_read"] == 0 and second.meta["cache"]["texts_encoded"] == 0
    # every lookup served from the cache: SCAM's second protocol looks each image up again
    assert second.meta["cache"]["image_hits"] == n_images * (2 if name == "scam" and not world_scam else 1)
    assert first.table.notna().any(axis=None)
    for k in first.meta["similarities"]:
        np.testing.assert_array_equal(first.meta["similarities"][k], second.meta["similarities"][k])
    assert first.table.equals(second.table)
    assert first.to_html().count("<table") == 1 + len(first.extra_tables)


def test_the_world_binding_pairs_score_the_same_through_the_winoground_loader(sets, world_clip):
    """The probe's CLIP side and the published-set path are one metric: the same 3 world pairs
    written as a Winoground copy give the probe's own figures."""
    from unclip_probe.probes import clip_binding

    probe = clip_binding(world_clip, n=3, seed=1, swaps=["color"]).table.loc["color"]
    res = datasets.run_benchmark("winoground", world_clip, sets["winoground"], cache=False, progress=False)
    for k in ("text", "image", "group"):
        assert res.table.iloc[0][k] == pytest.approx(probe[f"winoground_{k}"])


def test_vit_b_32_runs_with_non_ascii_captions(vit_b_32, tmp_path):
    (a, c, b, d), = fx.world_pairs(1, seed=4)
    folder = fx.write_winoground(tmp_path / "w", [(a, c + " — café naïve", b, d + " ✓", "Object")])
    res = datasets.run_benchmark("winoground", vit_b_32, folder, cache=tmp_path / "cache", progress=False)
    s = res.meta["similarities"]["winoground"]
    assert s.shape == (1, 2, 2) and np.isfinite(s).all()
    line = json.loads((folder / "examples.jsonl").read_text(encoding="utf-8"))
    assert datasets.load_benchmark("winoground", folder).captions[0] == line["caption_0"]
    expected = vit_b_32.encode_text([line["caption_0"]]) @ vit_b_32.encode_image([a]).T
    assert s[0, 0, 0] == pytest.approx(float(expected), abs=1e-5)


def test_the_empty_split_has_a_row_and_no_accuracy(sets, world_clip):
    res = datasets.run_benchmark("sugarcrepe", world_clip, sets["sugarcrepe"], cache=False, progress=False)
    assert res.extra_tables["sugarcrepe: per split"].loc["add_obj", "n"] == 0
    assert np.isnan(res.table.loc["sugarcrepe", "add_obj"]) and res.table.loc["sugarcrepe", "n"] == 5


def test_cache_is_keyed_by_model(sets, world_clip, vit_b_32, tmp_path):
    datasets.run_benchmark("rta-100", world_clip, sets["rta-100"], cache=tmp_path, progress=False)
    other = datasets.run_benchmark("rta-100", vit_b_32, sets["rta-100"], cache=tmp_path, progress=False)
    assert other.meta["cache"]["image_hits"] == 0 and len(list(tmp_path.iterdir())) == 2


def test_an_edited_image_is_embedded_again(sets, world_clip, tmp_path):
    import shutil

    folder = tmp_path / "rta"
    shutil.copytree(sets["rta-100"], folder)
    datasets.run_benchmark("rta-100", world_clip, folder, cache=tmp_path / "c", progress=False)
    first = sorted(folder.iterdir())[0]
    os.utime(first, ns=(1, 1))
    res = datasets.run_benchmark("rta-100", world_clip, folder, cache=tmp_path / "c", progress=False)
    assert res.meta["cache"]["images_read"] == 1


# ---------------------------------------------------------------------------- bad input
def test_wrong_folder_names_the_expected_layout(sets):
    with pytest.raises(ProbeInputError, match=r"^folder: .*examples\.jsonl' not found; Winoground expects a folder "
                                              r"with examples\.jsonl"):
        datasets.load_benchmark("winoground", sets["sugarcrepe"])
    with pytest.raises(ProbeInputError, match="^folder: .* is not a folder; SugarCrepe expects"):
        datasets.load_benchmark("sugarcrepe", sets["sugarcrepe"] / "nothing")
    with pytest.raises(ProbeInputError, match="^folder: .* holds none of the split files"):
        datasets.load_benchmark("sugarcrepe", sets["winoground"] / "images", images=sets["winoground"])
    with pytest.raises(ProbeInputError, match="^folder: .* holds no .parquet files; SCAM expects"):
        datasets.load_benchmark("scam", sets["winoground"])
    with pytest.raises(ProbeInputError, match="^name: got 'winogrond', expected one of .*did you mean 'winoground'"):
        datasets.load_benchmark("winogrond", sets["winoground"])


def test_a_missing_image_is_named(sets, tmp_path):
    import shutil

    folder = tmp_path / "w"
    shutil.copytree(sets["winoground"], folder)
    (folder / "images" / "ex_2_img_1.png").unlink()
    with pytest.raises(ProbeInputError, match=r"^folder: Winoground lists '.*ex_2_img_1\.png', not found"):
        datasets.load_benchmark("winoground", folder)


def test_a_record_without_its_keys_is_named(sets, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "visual_genome_relation.json").write_text(json.dumps([{"image_path": "x.jpg"}]))
    with pytest.raises(ProbeInputError, match="^folder: record 0 of .* lacks the key\\(s\\) 'bbox_x'"):
        datasets.load_benchmark("vg-relation", tmp_path)


def test_a_label_missing_from_the_class_list_is_named(sets):
    data = datasets.load_benchmark("rta-100", sets["rta-100"])
    with pytest.raises(ProbeInputError, match=f"^classes: the label '{data.true_labels[0]}' of 'label="):
        datasets.load_benchmark("rta-100", sets["rta-100"], classes=[c for c in data.classes
                                                                     if c != data.true_labels[0]])


def test_a_badly_named_typographic_file_is_named(tmp_path):
    fx.world_objects(1)[0][0].save(tmp_path / "label=dog.png")
    with pytest.raises(ProbeInputError, match="^folder: .*label=dog.png' is not named label=<object>_text=<word>"):
        datasets.load_benchmark("rta-100", tmp_path)


def test_run_refuses_a_non_clip_and_a_bad_batch(sets, world_clip):
    with pytest.raises(ProbeInputError, match="^clip: "):
        datasets.run_benchmark("winoground", object(), sets["winoground"])
    with pytest.raises(ProbeInputError, match="^batch_size: "):
        datasets.run_benchmark("winoground", world_clip, sets["winoground"], batch_size=0)


def test_transformers_towers_of_a_real_stack_run_the_benchmarks(sets, tmp_path):
    """The CLIP of Kandinsky / Stable unCLIP / Karlo folders (HFClipModel over transformers towers)."""
    from _tiny_clip import write_clip_towers
    from unclip_probe.clip.hf import HFClipModel

    towers = write_clip_towers(tmp_path / "towers", context=96)  # one token per character
    clip = HFClipModel.from_folders(image_encoder=towers["image_encoder"], text_encoder=towers["text_encoder"],
                                    tokenizer=towers["tokenizer"], image_processor=towers["image_processor"])
    res = datasets.run_benchmark("vg-relation", clip, sets["vg-relation"], cache=tmp_path / "c", progress=False)
    s = res.meta["similarities"]["vg-relation"]
    data = datasets.load_benchmark("vg-relation", sets["vg-relation"])
    z = clip.encode_image([data.images[0].open()])  # the crop, embedded by the towers themselves
    t = clip.encode_text([data.captions[data.caption_index[0, 1]]])
    assert s.shape == (3, 2, 1) and s[0, 1, 0] == pytest.approx(float(t @ z.T), abs=1e-5)
    assert res.meta["cache"]["images_read"] == 3


# ---------------------------------------------------------------------------- CLI and report
def test_cli_benchmark_prints_and_writes_the_figures(sets, tmp_path, capsys):
    from unclip_probe.cli import main

    out = tmp_path / "wino.json"
    assert main(["benchmark", "winoground", "--data", str(sets["winoground"]), "--cache", str(tmp_path / "c"),
                 "--json", str(out), "--device", "cpu"]) == 0
    record = json.loads(out.read_text())
    again = datasets.run_benchmark("winoground", up.load_clip("checkpoints/world"), sets["winoground"],
                                   cache=tmp_path / "c", progress=False)
    assert record["figures"]["winoground"]["group"] == pytest.approx(again.table.loc["winoground", "group"])
    assert again.meta["cache"]["images_read"] == 0  # the CLI's run filled the same cache
    assert "Winoground" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["benchmark", "winoground", "--data", "/no/such/folder"], "--data: '/no/such/folder' is not a folder"),
    (["benchmark", "winoground", "--data", "."], "--data: 'examples.jsonl' not found; Winoground expects"),
    (["benchmark", "winoground", "--data", ".", "--variant", "SCAM"], "--variant: the 'winoground' benchmark takes"),
    (["benchmark", "sugarcrpe", "--data", "."], "name: got 'sugarcrpe'"),
    (["benchmark", "winoground", "--data", ".", "--batch-size", "0"], "--batch-size: expected an integer >= 1"),
    (["report", "--benchmark", "winoground", "--out", "/tmp/r"], "--benchmark: expected NAME=DIR"),
])
def test_cli_benchmark_bad_input_is_one_sentence(argv, message, capsys):
    from unclip_probe.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_benchmark_names_the_data_folder_in_layout_errors(tmp_path, capsys):
    from unclip_probe.cli import main

    assert main(["benchmark", "rta-100", "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("unclip-probe benchmark: --data: ")


def test_load_clip_reads_a_whole_transformers_clip_folder(tmp_path):
    """openai/clip-vit-large-patch14's layout: one folder with a CLIPModel, its tokenizer and processor."""
    import torch
    import transformers as tf
    from _tiny_clip import text_config, vision_config, write_tokenizer

    torch.manual_seed(0)
    model = tf.CLIPModel(tf.CLIPConfig(text_config=text_config().to_dict(), vision_config=vision_config().to_dict(),
                                       projection_dim=16))
    model.save_pretrained(tmp_path)
    write_tokenizer(tmp_path)
    tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    clip = up.load_clip(tmp_path)
    ids = clip.tokenize(["a red circle"])
    with torch.no_grad():
        text = model.get_text_features(input_ids=ids)
    text = getattr(text, "pooler_output", text)  # transformers 5 returns an output object
    torch.testing.assert_close(clip.encode_text(["a red circle"]), torch.nn.functional.normalize(text, dim=-1))


def test_the_cli_names_every_benchmark():
    from unclip_probe.cli import BENCHMARK_NAMES

    assert list(BENCHMARK_NAMES) == list(datasets.BENCHMARKS)
