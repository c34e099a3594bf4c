"""`unclip-probe embed`: sharded, resumable, rank-split image embeddings and their loader."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unclip_probe import embed, world
from unclip_probe.cli import main
from unclip_probe.embed import INDEX, embed_folder, embed_world, load_embeddings, scenes_of, shard_name
from unclip_probe.errors import ProbeInputError

pytestmark = pytest.mark.unit

N, SHARD, SEED = 10, 4, 3  # three shards: 4, 4 and 2 images


@pytest.fixture(scope="module")
def single(pipe, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("embed") / "single"
    res = embed_world(pipe, out, N, seed=SEED, shard_size=SHARD, batch_size=3, progress=False)
    assert (res.written, res.kept, res.index_written) == ([0, 1, 2], [], True)
    return out


def _bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_shards_and_index_hold_the_stacks_image_embeddings_and_the_scenes(single: Path, pipe):
    assert sorted(p.name for p in single.iterdir()) == [INDEX] + [shard_name(i) for i in range(3)]
    z, meta = load_embeddings(single)
    scenes = world.sample_scenes(N, seed=SEED)
    expected = pipe.encode_image([world.render(s) for s in scenes])
    assert z.shape == (N, pipe.embed_dim) and z.dtype == torch.float32
    torch.testing.assert_close(z, expected.cpu(), atol=1e-5, rtol=1e-5)
    assert [s["count"] for s in meta["shards"]] == [4, 4, 2] and meta["dim"] == pipe.embed_dim
    assert meta["ids"] == list(range(N)) and meta["source"] == {"kind": "world", "n": N, "seed": SEED, "size": 64}
    assert scenes_of(meta) == scenes
    assert meta["stack"] == "world" and meta["checksums"] == pipe.checksums
    assert meta["clip_checksum"] == pipe.clip.checksum and meta["activation"] == "image_embeds"
    z2, _ = load_embeddings(single / INDEX)
    assert torch.equal(z, z2)


def test_a_rerun_rewrites_only_the_missing_shard(single: Path, pipe, tmp_path: Path):
    import shutil

    out = tmp_path / "rerun"
    shutil.copytree(single, out)
    before = _bytes(out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / shard_name(1)).unlink()
    res = embed_world(pipe, out, N, seed=SEED, shard_size=SHARD, batch_size=3, progress=False)
    assert (res.written, res.kept, res.index_written) == ([1], [0, 2], True)
    for i in (0, 2):
        assert (out / shard_name(i)).stat().st_mtime_ns == mtimes[shard_name(i)]
    assert _bytes(out) == before  # the same shard, byte for byte, and the same index
    again = embed_world(pipe, out, N, seed=SEED, shard_size=SHARD, progress=False)
    assert (again.written, again.kept) == ([], [0, 1, 2])


def test_two_ranks_write_disjoint_shards_whose_union_is_the_single_run(single: Path, pipe, tmp_path: Path):
    out = tmp_path / "ranks"
    r0 = embed_world(pipe, out, N, seed=SEED, shard_size=SHARD, batch_size=3, rank=0, world_size=2, progress=False)
    assert (r0.written, r0.index_written) == ([0, 2], False)  # rank 1's shard is not there yet
    assert not (out / INDEX).exists()
    with pytest.raises(ProbeInputError, match="without index.json is incomplete"):
        load_embeddings(out)
    r1 = embed_world(pipe, out, N, seed=SEED, shard_size=SHARD, batch_size=3, rank=1, world_size=2, progress=False)
    assert (r1.written, r1.index_written) == ([1], True)  # the last to finish writes the index
    assert _bytes(out) == _bytes(single)
    assert torch.equal(load_embeddings(out)[0], load_embeddings(single)[0])


def test_torchruns_environment_picks_the_rank(pipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    res = embed_world(pipe, tmp_path, N, seed=SEED, shard_size=SHARD, progress=False)
    assert res.written == [1] and sorted(p.name for p in tmp_path.iterdir()) == [shard_name(1)]


def test_another_model_or_image_set_in_the_folder_is_refused(single: Path, pipe, tmp_path: Path):
    import shutil

    out = tmp_path / "other"
    shutil.copytree(single, out)
    with pytest.raises(ProbeInputError, match="^out: .*another model, image set or shard size"):
        embed_world(pipe, out, N, seed=SEED + 1, shard_size=SHARD, progress=False)
    (out / INDEX).unlink()
    with pytest.raises(ProbeInputError, match="^out: .*shard-00000.safetensors.* holds embeddings of another"):
        embed_world(pipe, out, N, seed=SEED + 1, shard_size=SHARD, progress=False)


def test_a_damaged_shard_is_refused_on_load_and_embedded_again(single: Path, pipe, tmp_path: Path):
    import shutil

    out = tmp_path / "damaged"
    shutil.copytree(single, out)
    data = bytearray((out / shard_name(2)).read_bytes())
    data[-3] ^= 0xFF
    (out / shard_name(2)).write_bytes(bytes(data))
    with pytest.raises(ProbeInputError, match="corrupted"):
        load_embeddings(out)
    with pytest.warns(UserWarning, match="damaged, embedding it again"):
        res = embed_world(pipe, out, N, seed=SEED, shard_size=SHARD, batch_size=3, progress=False)
    assert res.written == [2] and _bytes(out) == _bytes(single)


def test_a_folder_of_images_is_embedded_in_name_order(pipe, tmp_path: Path):
    folder = tmp_path / "images"
    folder.mkdir()
    scenes = world.sample_scenes(5, seed=9)
    for name, s in zip(["e.png", "b.png", "d.jpg", "a.png", "c.png"], scenes):
        world.render(s).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    res = embed_folder(pipe, folder, tmp_path / "out", shard_size=2, progress=False)
    assert res.index_written
    z, meta = load_embeddings(tmp_path / "out")
    names = ["a.png", "b.png", "c.png", "d.jpg", "e.png"]
    assert meta["ids"] == names and "scenes" not in meta and meta["source"]["kind"] == "folder"
    torch.testing.assert_close(z, pipe.encode_image([folder / n for n in names]).cpu(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ProbeInputError, match="^meta: holds no scenes"):
        scenes_of(meta)


def test_a_single_safetensors_file_of_embeddings_loads_too(tmp_path: Path):
    from unclip_probe.checkpoints import save_weights

    x = torch.randn(7, 5)
    save_weights({"embeddings": x}, tmp_path / "acts.safetensors", metadata={"activation": "visual.hook_out"})
    z, meta = load_embeddings(tmp_path / "acts.safetensors")
    assert torch.equal(z, x) and meta["activation"] == "visual.hook_out"
    save_weights({"other": x}, tmp_path / "bad.safetensors")
    with pytest.raises(ProbeInputError, match="holds no float tensor 'embeddings'"):
        load_embeddings(tmp_path / "bad.safetensors")


@pytest.mark.parametrize("call, phrase", [
    (lambda p, t: embed_world(p, t, 0), "n: expected an integer >= 1"),
    (lambda p, t: embed_world(p, t, 4, shard_size=0), "shard_size: expected an integer >= 1"),
    (lambda p, t: embed_world(p, t, 4, rank=2, world_size=2), "rank: expected an integer from 0 to 1"),
    (lambda p, t: embed_world(object(), t, 4), "stack: expected a stack"),
    (lambda p, t: embed_folder(p, t / "nope", t / "out"), "folder: "),
    (lambda p, t: embed_world(p, t / "f.txt", 4), "out: "),
])
def test_bad_input_is_one_sentence(pipe, tmp_path: Path, call, phrase):
    (tmp_path / "f.txt").write_text("a file")
    with pytest.raises(ProbeInputError) as err:
        call(pipe, tmp_path)
    assert str(err.value).startswith(phrase) and "\n" not in str(err.value)


def test_the_cli_subcommand(stack, tmp_path: Path, capsys):
    out = tmp_path / "cli"
    argv = ["embed", "--images", "world", "--n", "6", "--shard-size", "4", "--checkpoints", str(stack),
            "--device", "cpu", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert "index.json written" in capsys.readouterr().out
    z, meta = load_embeddings(out)
    assert z.shape == (6, 16) and len(meta["scenes"]) == 6 and len(meta["shards"]) == 2
    for bad, phrase in ((["--images", "wrold"], "--images: expected 'world' or a folder of images, got 'wrold'"),
                        (["--images", str(tmp_path), "--n", "3"], "--n: only --images world takes it"),
                        (["--images", "world", "--n", "0"], "--n: expected an integer >= 1"),
                        (["--images", "world", "--shard-size", "0"], "--shard-size: expected an integer >= 1")):
        code = main(["embed", *bad, "--checkpoints", str(stack), "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith(f"unclip-probe embed: {phrase}") and "\n" not in err, err
    assert json.loads((out / INDEX).read_text())["source"]["n"] == 6


def test_the_cli_names_the_shard_size():
    from unclip_probe import cli

    assert cli.SHARD_SIZE == embed.SHARD_SIZE
