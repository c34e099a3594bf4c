"""`unclip-probe report`: one self-contained page with every probe's figure and tables (tiny stack, quick sizes)."""
import re

import pytest

from unclip_probe.cli import main

pytestmark = pytest.mark.unit


def test_report_has_every_probe_with_inline_figures(stack, tmp_path, capsys):
    assert main(["report", "--checkpoints", str(stack), "--out", str(tmp_path / "r"), "--quick"]) == 0
    page = (tmp_path / "r" / "index.html").read_text()
    titles = re.findall(r"<section><h2>([^<]+)</h2>", page)
    assert titles == ["PCA reconstruction", "Typographic attack", "Attribute binding"]
    assert page.count('src="data:image/png;base64,') == 3 and page.count("<table") >= 5
    assert "QUICK sizes" in page and "wrote" in capsys.readouterr().out


def test_report_scores_the_stacks_clip_on_a_published_benchmark(stack, tmp_path, capsys):
    import _benchmark_fixtures as fx

    wino = fx.write_winoground(tmp_path / "wino", [(a, c, b, d, "Object") for a, c, b, d in fx.world_pairs(2)])
    assert main(["report", "--checkpoints", str(stack), "--out", str(tmp_path / "r"), "--quick",
                 "--benchmark", f"winoground={wino}"]) == 0
    page = (tmp_path / "r" / "index.html").read_text()
    titles = re.findall(r"<section><h2>([^<]+)</h2>", page)
    assert titles[-1] == "Winoground (Thrush et al. 2022)" and "winoground: per tag" in page


def test_report_names_a_missing_stack(tmp_path, capsys):
    assert main(["report", "--checkpoints", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    assert "folder" in capsys.readouterr().err


def _real_stack_flags(kind: str, root) -> list[str]:
    """--stack and folder flags for a tiny random stack of `kind` in its public repositories' layout."""
    import _tiny_real

    if kind == "kandinsky-2.2":
        f = _tiny_real.tiny_kandinsky(root)
        return ["--stack", kind, "--decoder", str(f["decoder"]), "--prior", str(f["prior"])]
    return ["--stack", kind, "--decoder", str(_tiny_real.tiny_stable_unclip(root, kind[-1])),
            "--clip-text", str(_tiny_real.tiny_clip_text(root, kind[-1]))]  # its folder has no CLIP text tower


@pytest.mark.parametrize("kind", ["kandinsky-2.2", "stable-unclip-h"])
def test_report_on_a_real_stack_and_a_users_images(kind, tmp_path, capsys):
    """A real stack (tiny random models in its repositories' layout) with a folder of pictures and labels."""
    import _tiny_real
    from unclip_probe import world

    flags = _real_stack_flags(kind, tmp_path / "models")
    pics = tmp_path / "pics"
    pics.mkdir()
    for i, s in enumerate(world.sample_scenes(3, seed=4)):
        world.render(s).save(pics / f"{i}.png")
    with _tiny_real.one_thread():
        code = main(["report", *flags, "--images", str(pics), "--labels", "circle,square,star",
                     "--out", str(tmp_path / "r"), "--quick"])
    assert code == 0, capsys.readouterr().err
    page = (tmp_path / "r" / "index.html").read_text()
    assert re.findall(r"<section><h2>([^<]+)</h2>", page) == ["PCA reconstruction", "Typographic attack",
                                                              "Attribute binding"]
    assert f"stack {kind}" in page and "label_kept" in page and "clip_two_way" in page


def test_report_flags_are_checked_before_anything_loads(tmp_path, capsys):
    assert main(["report", "--stack", "kandinsky-2.3", "--out", str(tmp_path / "r")]) == 2
    assert "--stack: got 'kandinsky-2.3'" in capsys.readouterr().err
    assert main(["report", "--stack", "kandinsky-2.2", "--clip-text", ".", "--out", str(tmp_path / "r")]) == 2
    assert "--clip-text: the 'kandinsky-2.2' stack takes no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", "--checkpoints", "checkpoints/world", "--images", str(tmp_path / "empty"),
                 "--labels", "a,b", "--out", str(tmp_path / "r")]) == 2
    assert "--images: " in capsys.readouterr().err
    from unclip_probe import world

    pics = tmp_path / "one"
    pics.mkdir()
    world.render(world.sample_scenes(1)[0]).save(pics / "a.png")
    assert main(["report", "--images", str(pics), "--out", str(tmp_path / "r")]) == 2
    assert "--labels: a report on your images needs at least two" in capsys.readouterr().err
