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
    meta = ck.load_metadata(tmp_path / "m.safetensors")
    assert meta == {"stage": "toy", "step": "7", "weights_checksum": ck.weights_checksum(state),
                    "metadata_checksum": meta["metadata_checksum"]}
    assert len(ck.file_checksum(tmp_path / "m.safetensors")) == 16 and len(meta["weights_checksum"]) == 16
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


# ----------------------------------------------------------------------------- checksums: weights prove they are
def _tensor_span(path: Path, name: str) -> tuple[int, int]:
    """Byte range of tensor `name` in a safetensors file (header intact)."""
    import json
    import struct

    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    begin, end = json.loads(data[8:8 + n])[name]["data_offsets"]
    return 8 + n + begin, 8 + n + end


def _largest(path: Path) -> str:
    state = ck.load_weights(path)
    return max(state, key=lambda k: state[k].numel())


def test_weights_checksum_names_the_tensors_not_the_bytes(tmp_path: Path) -> None:
    state = {"b": torch.arange(6).view(2, 3), "a": torch.randn(4)}
    one = ck.save_weights(state, tmp_path / "one.safetensors", metadata={"x": "1", "y": "2"})
    two = ck.save_weights(dict(reversed(state.items())), tmp_path / "two.safetensors", metadata={"y": "2", "x": "1"})
    assert one == two == ck.weights_checksum(state) == ck.recorded_checksum(tmp_path / "one.safetensors")
    assert (tmp_path / "one.safetensors").read_bytes() == (tmp_path / "two.safetensors").read_bytes()  # byte-stable
    assert ck.weights_checksum({**state, "a": state["a"].double()}) != one  # dtype counts
    assert ck.weights_checksum({**state, "b": state["b"].view(3, 2)}) != one  # shape counts
    assert ck.weights_checksum({"c": state["a"], "b": state["b"]}) != one  # names count
    from safetensors.torch import save

    legacy = tmp_path / "legacy.safetensors"  # saved before checksums: loads, its checksum computed
    legacy.write_bytes(save(state, metadata={"x": "1"}))
    tensors, checksum = ck.load_checked(legacy)
    assert checksum == one and ck.recorded_checksum(legacy) is None
    with pytest.warns(UserWarning, match="records no weights checksum"):
        ck.load_checked(legacy, warn_unrecorded=True)


def test_a_fresh_process_writes_the_same_bytes(tmp_path: Path) -> None:
    """safetensors' own writer orders metadata differently in each process; ours does not."""
    script = textwrap.dedent(f"""
        import torch
        from unclip_probe import checkpoints as ck
        g = torch.Generator().manual_seed(0)
        ck.save_weights({{"w": torch.randn(8, 8, generator=g), "b": torch.zeros(3, dtype=torch.bfloat16)}},
                        {str(tmp_path)!r} + "/child.safetensors", metadata={{"stage": "s", "step": "3", "name": "n"}})
    """)
    subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2], timeout=120, check=True)
    g = torch.Generator().manual_seed(0)
    ck.save_weights({"b": torch.zeros(3, dtype=torch.bfloat16), "w": torch.randn(8, 8, generator=g)},
                    tmp_path / "here.safetensors", metadata={"name": "n", "step": "3", "stage": "s"})
    assert (tmp_path / "child.safetensors").read_bytes() == (tmp_path / "here.safetensors").read_bytes()


@pytest.fixture
def copy_of(stack, tmp_path):
    """A fresh copy of the tiny world stack (conftest) to damage."""
    import shutil

    folder = tmp_path / "stack"
    shutil.copytree(stack, folder)
    return folder


def _load(folder: Path):
    from unclip_probe.backends import load_stack

    return load_stack("world", folder, device="cpu")


@pytest.mark.parametrize("name", ["clip", "decoder", "prior"])
def test_flipped_tensor_bytes_are_refused_as_corrupted(copy_of, name):
    path = copy_of / f"{name}.safetensors"
    lo, hi = _tensor_span(path, _largest(path))
    data = bytearray(path.read_bytes())
    for i in range(lo, min(hi, lo + 4096)):  # 4 KiB of one tensor flipped; the header untouched
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ProbeInputError, match=rf"{name}\.safetensors: corrupted: its tensors do not match") as e:
        _load(copy_of)
    assert "trained against" not in str(e.value)  # a damaged CLIP is not "another CLIP"


def test_truncated_file_is_refused_as_corrupted(copy_of):
    path = copy_of / "decoder.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ProbeInputError, match=r"decoder\.safetensors: corrupted: not a readable safetensors file"):
        _load(copy_of)


def test_a_tensor_from_another_file_is_refused_as_corrupted(copy_of):
    """The twin decoder has the same layout; one tensor's bytes spliced from it into the decoder."""
    state = ck.load_weights(copy_of / "decoder.safetensors")
    twin = {k: v + 0.01 for k, v in state.items()}
    ck.save_weights(twin, copy_of / "decoder_twin.safetensors")
    name = _largest(copy_of / "decoder.safetensors")
    lo, hi = _tensor_span(copy_of / "decoder.safetensors", name)
    assert (lo, hi) == _tensor_span(copy_of / "decoder_twin.safetensors", name)
    data = bytearray((copy_of / "decoder.safetensors").read_bytes())
    data[lo:hi] = (copy_of / "decoder_twin.safetensors").read_bytes()[lo:hi]
    (copy_of / "decoder.safetensors").write_bytes(bytes(data))
    with pytest.raises(ProbeInputError, match=r"decoder\.safetensors: corrupted: its tensors do not match"):
        _load(copy_of)


@pytest.mark.parametrize("edit", ["stage value", "recorded checksum", "tensor shape"])
def test_an_edited_header_is_refused_as_corrupted(copy_of, edit):
    path = copy_of / "upsampler.safetensors"
    data = path.read_bytes()
    meta = ck.load_metadata(path)
    if edit == "stage value":  # metadata the loader does not otherwise read, edited in place
        ck.save_weights(ck.load_weights(path), path, metadata={"stage": "upsampler", "step": "1"})
        data = path.read_bytes().replace(b'"step":"1"', b'"step":"9"')
    elif edit == "recorded checksum":
        data = data.replace(meta["weights_checksum"].encode(), b"0" * 16)
    else:  # a (2, 8) tensor read as (8, 2): same bytes, another tensor
        state = ck.load_weights(path)
        ck.save_weights({**state, "extra": torch.randn(2, 8)}, path)
        data = path.read_bytes().replace(b'"shape":[2,8]', b'"shape":[8,2]')
    path.write_bytes(data)
    with pytest.raises(ProbeInputError, match=r"upsampler\.safetensors: corrupted: its (metadata|tensors) ") as e:
        ck.load_weights(path)
    assert str(path) in str(e.value)


def test_an_untouched_stack_still_loads_and_names_its_weights(copy_of):
    s = _load(copy_of)
    assert s.checksums == {p.stem: ck.recorded_checksum(p) for p in sorted(copy_of.glob("*.safetensors"))}
    assert s.clip.checksum == s.checksums["clip"] == ck.load_checked(copy_of / "clip.safetensors")[1]


def test_a_stack_saved_before_checksums_loads_with_a_warning_and_can_be_sealed(copy_of):
    """Old files (no recorded checksum; a stage's clip_checksum naming the CLIP file's bytes) load
    with a warning; sealing records checksums without changing a tensor."""
    import json

    from safetensors.torch import save

    from unclip_probe.backends.world.seal import seal_stack

    before = {p.name: ck.load_weights(p) for p in copy_of.glob("*.safetensors")}
    for p in copy_of.glob("*.safetensors"):
        p.write_bytes(save(before[p.name], metadata={"stage": p.stem}))
    old_clip = ck.file_checksum(copy_of / "clip.safetensors")
    for cfg in ("decoder.json", "prior.json"):
        data = json.loads((copy_of / cfg).read_text())
        (copy_of / cfg).write_text(json.dumps({**data, "clip_checksum": old_clip}))
    with pytest.warns(UserWarning, match="records no weights checksum"):
        _load(copy_of)
    done = seal_stack(copy_of)
    assert set(done) == {p.name for p in copy_of.glob("*.safetensors")} | {"decoder.json", "prior.json"}
    for p in copy_of.glob("*.safetensors"):
        after = ck.load_weights(p)
        assert after.keys() == before[p.name].keys()
        assert all(torch.equal(after[k], v) for k, v in before[p.name].items())
        assert ck.load_metadata(p)["stage"] == p.stem
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sealed: no warning any more
        s = _load(copy_of)
    assert json.loads((copy_of / "decoder.json").read_text())["clip_checksum"] == s.clip.checksum
    assert seal_stack(copy_of) == {}  # sealing twice changes nothing
