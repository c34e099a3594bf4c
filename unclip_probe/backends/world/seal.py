"""Record weights checksums in a world stack saved before they existed (issue 21), changing no weight.

    python -m unclip_probe.backends.world.seal checkpoints/world

Every ``*.safetensors`` of the folder that records no checksum is rewritten with the same
tensors and metadata plus the checksums (docs/design.md §5), and every stage config whose
``clip_checksum`` names the folder's CLIP by its file bytes gets the CLIP's weights checksum.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from unclip_probe.checkpoints import (atomic_write_bytes, file_checksum, load_checked, load_metadata,
                                      recorded_checksum, save_weights)
from unclip_probe.errors import bad_input


def seal_stack(folder: str | Path) -> dict[str, str]:
    """Record weights checksums in a stack folder saved before they existed; returns {file: checksum}.

    Every ``*.safetensors`` without a recorded checksum is rewritten with the same tensors (read
    back and checked equal, value for value) and the same metadata plus the
    checksums; every ``*.json`` whose ``clip_checksum`` names the folder's CLIP by its file bytes
    gets the CLIP's weights checksum instead. Files that already record one are left alone."""
    folder = Path(folder)
    clip_file = folder / "clip.safetensors"
    old_clip = file_checksum(clip_file) if clip_file.is_file() else None
    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        if recorded_checksum(path) is not None:
            continue
        state, _ = load_checked(path)
        meta = load_metadata(path)
        out[path.name] = save_weights(state, path, metadata=meta)
        back, checksum = load_checked(path)
        if checksum != out[path.name] or back.keys() != state.keys() or not all(
                back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in state.items()):
            raise bad_input(str(path), "sealing changed a tensor; restore the file from version control")
    if old_clip is not None:
        new_clip = recorded_checksum(clip_file)
        for path in sorted(folder.glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("clip_checksum") == old_clip != new_clip:
                data["clip_checksum"] = new_clip
                atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))
                out[path.name] = f"clip_checksum {old_clip} -> {new_clip}"
    return out


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m unclip_probe.backends.world.seal FOLDER")
    for file, what in seal_stack(sys.argv[1]).items():
        print(f"{file}: {what}")
