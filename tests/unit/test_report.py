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


def test_report_names_a_missing_stack(tmp_path, capsys):
    assert main(["report", "--checkpoints", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    assert "folder" in capsys.readouterr().err
