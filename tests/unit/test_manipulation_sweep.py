"""benchmarks/manipulation_sweep.py on the tiny random stack: --parts runs only the parts asked for."""
import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "manipulation_sweep.py"


def _sweep_module():
    spec = importlib.util.spec_from_file_location("manipulation_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parts_sweeps_only_what_is_asked(stack, tmp_path):
    sweep = _sweep_module()
    out_path = tmp_path / "sweep.json"
    out = sweep.main([str(stack), "--n", "1", "--parts", "text_diff", "--out", str(out_path)])
    assert set(out["text_diff"]) == ({f"guidance_{g:g}" for g in sweep.TEXT_DIFF_GUIDANCE}
                                     | {f"guidance_{g:g}_caption_dst" for g in sweep.TEXT_DIFF_CAPTION_GUIDANCE})
    assert {r["decoder_caption"] for r in out["text_diff"].values()} == {None, "a blue circle"}
    assert all(0 <= r["theta_0.5"]["blue_circle"] <= 1 for r in out["text_diff"].values())
    # the skipped parts measured nothing and claim no time
    assert out["variations"] == {} and out["interpolation"] == {}
    assert set(out["seconds"]) == {"text_diff"}
    assert json.loads(out_path.read_text()) == out


def test_unknown_part_is_refused(stack, tmp_path, capsys):
    with pytest.raises(SystemExit):
        _sweep_module().main([str(stack), "--parts", "colours", "--out", str(tmp_path / "x.json")])
    assert "--parts" in capsys.readouterr().err
