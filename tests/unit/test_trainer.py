"""The shared trainer: exact resume, crash-safe checkpoints, budget stop, EMA, DDP, bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import _torchrun
from _toy_recipe import ToyConfig, ToyRecipe

from unclip_probe import checkpoints as ck
from unclip_probe.errors import ProbeInputError
from unclip_probe.train import TrainConfig, lr_at, resolve_device, train
from unclip_probe.train import resume as resume_mod

pytestmark = pytest.mark.unit

CFG = TrainConfig(steps=20, batch_size=8, lr=1e-2, warmup_steps=3, checkpoint_every=5, log_every=5, ema_decay=0.9)


def _state(out: Path, prefix: str) -> dict[str, torch.Tensor]:
    tensors = ck.load_weights(out / "toy.train.safetensors")
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 20-step run every resume test compares against."""
    out = tmp_path_factory.mktemp("straight")
    summary = train(ToyRecipe(), CFG, out, progress=False)
    assert summary.finished and summary.steps_done == 20 and summary.start_step == 0
    return out


def _assert_matches_straight(out: Path, straight: Path) -> None:
    for prefix in ("model.", "ema.", "opt.state."):
        _assert_same(_state(out, prefix), _state(straight, prefix))
    _assert_same(ck.load_weights(out / "toy.safetensors"), ck.load_weights(straight / "toy.safetensors"))


def test_resume_equals_uninterrupted_run(tmp_path: Path, straight: Path) -> None:
    first = train(ToyRecipe(), CFG, tmp_path, progress=False, stop_after=7)
    assert (first.steps_done, first.finished) == (7, False)
    assert json.loads((tmp_path / "toy.train.json").read_text())["step"] == 7
    second = train(ToyRecipe(), CFG, tmp_path, progress=False)
    assert (second.start_step, second.steps_done, second.finished) == (7, 20, True)
    assert second.total_seconds >= second.wall_seconds
    _assert_matches_straight(tmp_path, straight)
    ema = _state(tmp_path, "ema.")
    assert any(not torch.allclose(ema[k], v) for k, v in _state(tmp_path, "model.").items())
    log = [json.loads(line) for line in (tmp_path / "toy.log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5, 7, 10, 15, 20] and "mse" in log[-1]["metrics"]
    meta = ck.load_metadata(tmp_path / "toy.safetensors")
    assert meta["stage"] == "toy" and meta["step"] == "20"
    assert ck.load_config(ToyConfig, tmp_path / "toy.json") == ToyConfig()


@pytest.mark.parametrize("kill_at", ["tensors", "json"])
def test_checkpoint_killed_mid_write_keeps_previous(tmp_path: Path, straight: Path, kill_at: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    train(ToyRecipe(), CFG, tmp_path, progress=False, stop_after=10)

    class Killed(BaseException):  # like SIGKILL: nothing in the trainer may catch it
        pass

    def half_then_die(f, data: bytes) -> None:
        f.write(data[: len(data) // 2])
        raise Killed

    if kill_at == "tensors":  # dies while the new train.safetensors is half written
        real = resume_mod.save_weights

        def dying_save(*args, **kwargs):
            monkeypatch.setattr(ck, "_write_chunks", half_then_die)
            real(*args, **kwargs)
        monkeypatch.setattr(resume_mod, "save_weights", dying_save)
    else:  # the new tensors file is in place, its JSON never written: the pair is torn
        real_write = resume_mod.atomic_write_bytes

        def dying_write(path, data):
            if Path(path).name == "toy.train.json":
                raise Killed
            real_write(path, data)
        monkeypatch.setattr(resume_mod, "atomic_write_bytes", dying_write)
    with pytest.raises(Killed):
        train(ToyRecipe(), CFG, tmp_path, progress=False)
    monkeypatch.undo()
    assert json.loads((tmp_path / "toy.train.json").read_text())["step"] == 10
    if kill_at == "json":
        with pytest.warns(UserWarning, match="resuming from the previous one at step 10"):
            summary = train(ToyRecipe(), CFG, tmp_path, progress=False)
    else:
        summary = train(ToyRecipe(), CFG, tmp_path, progress=False)
    assert (summary.start_step, summary.steps_done) == (10, 20)
    _assert_matches_straight(tmp_path, straight)


def test_no_complete_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    train(ToyRecipe(), CFG, tmp_path, progress=False, stop_after=5)
    (tmp_path / "toy.train.safetensors").write_bytes(b"garbage")
    (tmp_path / "toy.train.prev.json").write_text("{}")
    with pytest.raises(ProbeInputError, match=r"toy\.train\.json: no complete training checkpoint.*resume=False"):
        train(ToyRecipe(), CFG, tmp_path, progress=False)
    fresh = train(ToyRecipe(), CFG, tmp_path, progress=False, resume=False, stop_after=3)
    assert fresh.start_step == 0 and fresh.steps_done == 3


def test_budget_stop_checkpoints_then_resume_finishes(tmp_path: Path) -> None:
    stopped = train(ToyRecipe(), CFG, tmp_path, progress=False, budget_minutes=1e-9)
    assert (stopped.steps_done, stopped.finished) == (1, False)
    assert json.loads((tmp_path / "toy.train.json").read_text())["step"] == 1
    assert not (tmp_path / "toy.summary.json").exists()
    (tmp_path / "toy.train.safetensors.tmp-99999").write_bytes(b"left by a killed run")
    with open(tmp_path / "toy.log.jsonl", "a") as f:
        f.write('{"step": 9, "lo')  # a line torn by a kill mid-append
    done = train(ToyRecipe(), CFG, tmp_path, progress=False, budget_minutes=10)
    assert done.finished and done.steps_done == 20 and "eval_mse" in done.eval
    record = json.loads((tmp_path / "toy.summary.json").read_text())
    assert record["steps_done"] == 20 and record["weights_checksum"] == ck.load_checked(tmp_path / "toy.safetensors")[1]
    assert "torch" in record["machine"] and record["train_config"]["steps"] == 20
    assert not list(tmp_path.glob("*.tmp-*"))
    assert [json.loads(line)["step"] for line in (tmp_path / "toy.log.jsonl").read_text().splitlines()] == [
        1, 5, 10, 15, 20]


@pytest.mark.parametrize("ema_start", [0, 3])
def test_ema_matches_manual_computation(tmp_path: Path, ema_start: int) -> None:
    cfg = replace(CFG, steps=6, ema_decay=0.8, ema_start=ema_start)
    torch.manual_seed(cfg.seed)
    raw = [{k: v.clone() for k, v in ToyRecipe().build_model().state_dict().items()}]  # w_0
    for k in range(1, cfg.steps + 1):
        train(ToyRecipe(), cfg, tmp_path, progress=False, stop_after=k)
        raw.append(_state(tmp_path, "model."))
    ema = dict(raw[0])
    for step in range(cfg.steps):  # the update after 0-based step `step` sees w_{step+1}
        d = cfg.ema_decay if step >= ema_start else 0.0
        ema = {k: d * ema[k] + (1 - d) * raw[step + 1][k] for k in ema}
    _assert_same(_state(tmp_path, "ema."), ema)
    assert not torch.allclose(ema["0.weight"], raw[-1]["0.weight"])


def test_optional_step_hooks_run_around_the_optimizer_step(tmp_path: Path) -> None:
    """before_step sees the complete gradients (and may change them), after_step the stepped weights."""
    calls = []

    class Hooked(ToyRecipe):
        def before_step(self, model):
            calls.append(("before", all(p.grad is not None for p in model.parameters()), torch.is_grad_enabled()))
            model[3].weight.grad.zero_()  # AdamW with zero gradients and no weight decay leaves a weight as it is
            model[3].bias.grad.zero_()

        def after_step(self, model):
            calls.append(("after", None, torch.is_grad_enabled()))
            model[0].weight.clamp_(-0.05, 0.05)

    cfg = replace(CFG, steps=4, checkpoint_every=4)
    train(Hooked(), cfg, tmp_path, progress=False)
    assert calls == [("before", True, False), ("after", None, False)] * 4
    torch.manual_seed(cfg.seed)
    built = ToyRecipe().build_model().state_dict()
    for prefix in ("model.", "ema."):  # the EMA starts from the built weights, so only the raw ones are clamped
        state = _state(tmp_path, prefix)
        assert torch.equal(state["3.weight"], built["3.weight"]) and torch.equal(state["3.bias"], built["3.bias"])
        assert not torch.equal(state["0.bias"], built["0.bias"])
    assert _state(tmp_path, "model.")["0.weight"].abs().max() <= 0.05 < built["0.weight"].abs().max()


def test_lr_schedule() -> None:
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10)
    assert lr_at(cfg, 0) == pytest.approx(0.1) and lr_at(cfg, 9) == pytest.approx(1.0)
    assert lr_at(cfg, 10) == pytest.approx(1.0) and lr_at(cfg, 100) == pytest.approx(0.1)
    assert lr_at(replace(cfg, lr_schedule="constant"), 99) == 1.0


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ProbeInputError, match=r"^device: expected 'auto'.*got 'gpu'"):
        train(ToyRecipe(), CFG, tmp_path, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ProbeInputError, match=r"device: .cuda. was requested but this machine has no CUDA"):
            resolve_device("cuda")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ProbeInputError, match="TrainConfig.lr_schedule"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ProbeInputError, match="budget_minutes"):
        train(ToyRecipe(), CFG, tmp_path, budget_minutes=0)
    train(ToyRecipe(), CFG, tmp_path, progress=False, stop_after=2)
    with pytest.raises(ProbeInputError, match=r"cfg: differs from the checkpoint .*toy\.train\.json in lr"):
        train(ToyRecipe(), replace(CFG, lr=0.5), tmp_path, progress=False)
    with pytest.raises(ProbeInputError, match=r"toy\.train\.json: was trained with a different model config.*width"):
        train(ToyRecipe(ToyConfig(width=8)), CFG, tmp_path, progress=False)
    assert train(ToyRecipe(), replace(CFG, steps=3), tmp_path, progress=False).steps_done == 3  # steps may change


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_training_and_resume(tmp_path: Path) -> None:
    cfg = replace(CFG, steps=8, checkpoint_every=4)
    straight = train(ToyRecipe(), cfg, tmp_path / "a", device="cuda", progress=False)
    assert straight.finished and straight.device.startswith("cuda") and "eval_mse" in straight.eval
    assert torch.cuda.get_device_name() in straight.machine
    train(ToyRecipe(), cfg, tmp_path / "b", device="cuda", progress=False, stop_after=3)
    resumed = train(ToyRecipe(), cfg, tmp_path / "b", device="auto", progress=False)
    assert (resumed.start_step, resumed.steps_done) == (3, 8)
    assert {"cpu.0", "loss.0", "cuda.0"} <= set(_state(tmp_path / "b", "rng."))
    for prefix in ("model.", "ema."):
        a, b = _state(tmp_path / "a", prefix), _state(tmp_path / "b", prefix)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-4, msg=k)


@pytest.mark.slow
def test_ddp_two_gloo_ranks_agree(tmp_path: Path) -> None:
    _torchrun.two_ranks("_ddp_worker.py", tmp_path)
    _assert_same(ck.load_weights(tmp_path / "rank0.safetensors"), ck.load_weights(tmp_path / "rank1.safetensors"))
    _assert_same(ck.load_weights(tmp_path / "rank0.safetensors"), _state(tmp_path / "run", "model."))
    info = json.loads((tmp_path / "run" / "toy.train.json").read_text())
    assert info["world_size"] == 2 and info["step"] == 6
    assert {"loss.0", "loss.1"} <= set(_state(tmp_path / "run", "rng."))


def test_ema_keeps_infinite_buffers_such_as_causal_masks_intact():
    """open_clip's text tower keeps its causal mask (-inf above the diagonal) as a float buffer;
    averaging it would turn it into NaN and the EMA text tower would output NaN."""
    import torch
    from torch import nn
    from unclip_probe.train.ema import EMA

    m = nn.Linear(2, 2)
    m.register_buffer("mask", torch.full((2, 2), float("-inf")).triu(1), persistent=False)
    ema = EMA(m)
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m, 0.9)
    assert torch.equal(ema.model.mask, m.mask)
    assert torch.allclose(ema.model.weight, 0.9 * (m.weight - 1.0) + 0.1 * m.weight)


def test_the_same_run_in_another_process_writes_byte_identical_weights(tmp_path: Path, straight: Path) -> None:
    """Byte stability (issue 21): the same tiny run, in a fresh interpreter, writes the same bytes,
    so the weights checksum in the summary, the train state and the header agree across processes."""
    script = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "from _toy_recipe import ToyRecipe\nfrom unclip_probe.train import TrainConfig, train\n"
              f"train(ToyRecipe(), TrainConfig(**{json.dumps(CFG.__dict__)}), {str(tmp_path)!r}, progress=False)\n")
    script = script.replace('"betas": [0.9, 0.99]', '"betas": (0.9, 0.99)')
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    subprocess.run([sys.executable, "-c", script], env=env, timeout=180, check=True)
    for name in ("toy.safetensors", "toy.train.safetensors"):
        assert (tmp_path / name).read_bytes() == (straight / name).read_bytes(), name
    sums = [json.loads((d / "toy.summary.json").read_text())["weights_checksum"] for d in (tmp_path, straight)]
    assert sums[0] == sums[1] == ck.recorded_checksum(straight / "toy.safetensors")
    assert json.loads((tmp_path / "toy.train.json").read_text())["weights_checksum"] == \
        ck.recorded_checksum(tmp_path / "toy.train.safetensors")


def test_a_damaged_training_checkpoint_falls_back_to_the_previous_one(tmp_path: Path, straight: Path) -> None:
    train(ToyRecipe(), CFG, tmp_path, progress=False, stop_after=10)  # pairs at step 5 (prev) and 10
    path = tmp_path / "toy.train.safetensors"
    data = bytearray(path.read_bytes())
    data[-64:] = bytes(b ^ 0xFF for b in data[-64:])  # bit rot in the tensors, the header intact
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"incomplete .*corrupted.*resuming from the previous one at step 5"):
        summary = train(ToyRecipe(), CFG, tmp_path, progress=False)
    assert (summary.start_step, summary.steps_done) == (5, 20)
    _assert_matches_straight(tmp_path, straight)
