"""Checkpoint IO: roundtrips, clear errors naming the file, atomic writes (docs/design.md §5, §7)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from torch import nn

from unclip_probe import checkpoints as ck
from unclip_probe.errors import ProbeInputError

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Inner:
    widths: tuple[int, ...] = (8, 16)
    pairs: tuple[tuple[int, int], ...] = ((1, 2), (3, 4))


@dataclass(frozen=True)
class Outer:
    depth: int
    lr: float = 1e-3
    inner: Inner = field(default_factory=Inner)
    betas: tuple[float, float] | None = (0.9, 0.99)
    loose: object = ((1, 2), 3)  # no useful annotation: the default's tuple-ness decides


def test_weights_roundtrip_with_metadata(tmp_path: Path) -> None:
    base = torch.randn(4, 6)
    state = {"w": base.t(), "b": torch.arange(3), "tied": base, "half": torch.randn(2, dtype=torch.bfloat16)}
    ck.save_weights(state, tmp_path / "m.safetensors", metadata={"stage": "toy", "step": "7"})
    back = ck.load_weights(tmp_path / "m.safetensors")
    assert set(back) == set(state)
    for k in state:
        assert torch.equal(back[k], state[k]) and back[k].dtype == state[k].dtype
    assert ck.load_metadata(tmp_path / "m.safetensors") == {"stage": "toy", "step": "7"}
    assert len(ck.file_checksum(tmp_path / "m.safetensors")) == 16
    assert not list(tmp_path.glob("*.tmp-*"))


def test_truncated_and_missing_weights_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    ck.save_weights({"w": torch.randn(64, 64)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProbeInputError, match=r"m\.safetensors.*(truncated|corrupt)"):
        ck.load_weights(path)
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ProbeInputError, match=r"m\.safetensors"):
        ck.load_weights(path)
    with pytest.raises(ProbeInputError, match=r"nope\.safetensors.*not found"):
        ck.load_weights(tmp_path / "nope.safetensors")


def test_config_roundtrip_restores_tuples_and_nested_dataclasses(tmp_path: Path) -> None:
    cfg = Outer(depth=3, inner=Inner((1, 2, 3), ((5, 6),)), betas=(0.5, 0.25), loose=((7,), 8))
    ck.save_config(cfg, tmp_path / "c.json")
    text = (tmp_path / "c.json").read_text()
    assert text.index('"betas"') < text.index('"depth"')  # sorted keys
    back = ck.load_config(Outer, tmp_path / "c.json")
    assert back == cfg
    assert isinstance(back.inner.pairs[0], tuple) and isinstance(back.loose[0], tuple)
    assert ck.load_config(Outer, {"depth": 1, "betas": None}).betas is None
    assert ck.load_config(Outer, {"depth": 1, "lr": 1}).lr == 1.0
    assert ck.load_config(dict, tmp_path / "c.json")["depth"] == 3


def test_config_errors_name_file_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"depth": 2, "dpeth": 3, "colour": 1}')
    with pytest.raises(ProbeInputError) as e:
        ck.load_config(Outer, path)
    msg = str(e.value)
    assert "c.json" in msg and "'colour'" in msg and "'dpeth'" in msg and "valid keys are depth, lr" in msg
    path.write_text('{"lr": 0.1}')
    with pytest.raises(ProbeInputError, match=r"c\.json.*missing required key.*'depth'"):
        ck.load_config(Outer, path)
    path.write_text('{"depth": 2, "inner": {"widths": [1], "bogus": 0}}')
    with pytest.raises(ProbeInputError, match=r"c\.json \(inner\).*'bogus'"):
        ck.load_config(Outer, path)
    path.write_text('{"depth": "two"}')
    with pytest.raises(ProbeInputError, match=r"c\.json \(depth\): expected int"):
        ck.load_config(Outer, path)
    path.write_text("{broken")
    with pytest.raises(ProbeInputError, match=r"c\.json: not valid JSON"):
        ck.load_config(Outer, path)
    with pytest.raises(ProbeInputError, match="cfg.lr"):
        ck.save_config({"lr": object()}, path)


def test_load_state_into_lists_shape_mismatches(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["0.weight"] = torch.zeros(9, 4)
    with pytest.raises(ProbeInputError) as e:
        ck.load_state_into(model, state, source="ckpt/decoder.safetensors")
    msg = str(e.value)
    assert msg.startswith("ckpt/decoder.safetensors:") and "0.weight file (9, 4) vs model (8, 4)" in msg
    del state["0.weight"]
    state["extra"] = torch.zeros(1)
    with pytest.raises(ProbeInputError, match=r"missing tensor.*0\.weight.*unexpected tensor.*extra"):
        ck.load_state_into(model, state, source="x")
    good = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()}
    ck.load_state_into(model, good, source="x")
    assert torch.all(model[0].weight == 0.5)


def test_require_files(tmp_path: Path) -> None:
    (tmp_path / "clip.json").write_text("{}")
    ck.require_files(tmp_path, ["clip.json"])
    with pytest.raises(ProbeInputError, match=r"missing clip\.safetensors"):
        ck.require_files(tmp_path, ["clip.json", "clip.safetensors"])
    with pytest.raises(ProbeInputError, match="not found"):
        ck.require_files(tmp_path / "absent", ["clip.json"])


def test_atomic_write_failing_midway_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.safetensors"
    ck.save_weights({"w": torch.ones(3)}, path)
    old = path.read_bytes()

    def half_then_fail(f, data: bytes) -> None:
        f.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(ck, "_write_chunks", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        ck.save_weights({"w": torch.zeros(1000)}, path)
    assert path.read_bytes() == old
    assert not list(tmp_path.glob("*.tmp-*"))


def test_atomic_write_killed_midway_keeps_old_file(tmp_path: Path) -> None:
    """A process SIGKILLed halfway through writing leaves the old file loadable (and a stray tmp)."""
    path = tmp_path / "w.safetensors"
    ck.save_weights({"w": torch.ones(3)}, path)
    old = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, signal, torch
        from unclip_probe import checkpoints as ck
        def half_then_die(f, data):
            f.write(data[: len(data) // 2]); f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        ck._write_chunks = half_then_die
        ck.save_weights({{"w": torch.zeros(100000)}}, {str(path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], timeout=60)
    assert proc.returncode != 0
    assert list(tmp_path.glob("w.safetensors.tmp-*"))  # the partial write really happened
    assert path.read_bytes() == old
    assert torch.equal(ck.load_weights(path)["w"], torch.ones(3))
