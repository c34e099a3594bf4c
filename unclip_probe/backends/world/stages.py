"""Loading the diffusion stages of a world stack (docs/design.md §5).

Each stage is `<name>.safetensors` + `<name>.json` in the stack folder. Loading
validates the config, refuses a weights file whose tensors do not match the
checksum recorded when it was saved ("corrupted", naming the file), names the
file and the tensors when shapes disagree, and refuses a stage trained against a
different CLIP than the folder's (`clip_checksum` in its config), because its
conditioning would be meaningless.

A stack saved before weights checksums existed loads with a warning;
``python -m unclip_probe.backends.world.seal FOLDER`` records them without changing a weight.
"""
from __future__ import annotations

from pathlib import Path

from unclip_probe.checkpoints import (checksum_of, file_checksum, load_checked, load_config, load_state_into,
                                      recorded_checksum, require_files)
from unclip_probe.errors import bad_input
from unclip_probe.models.configs import DecoderConfig, UpsamplerConfig
from unclip_probe.models.unet import UNet


def clip_matches(recorded: str, clip_checksum: str, clip_file: Path | None) -> bool:
    """Whether a stage's recorded ``clip_checksum`` names this CLIP: its weights checksum, or (stacks
    saved before issue 21 recorded the file's bytes) the sha256 of its clip.safetensors."""
    if recorded == clip_checksum:
        return True
    return clip_file is not None and clip_file.is_file() and recorded == file_checksum(clip_file)


def load_unet_stage(folder: str | Path, name: str, cls, *, clip_checksum: str | None = None, device="cpu",
                    build=lambda cfg: UNet(cfg.unet)):
    """(network in eval mode, config) for stage `name` of `folder`; `build(cfg)` makes the network.

    clip_checksum: the weights checksum of the CLIP this stage must belong to (default: the
    folder's own clip.safetensors, when the stage records one).
    """
    folder = Path(folder)
    require_files(folder, [f"{name}.json", f"{name}.safetensors"])
    cfg = load_config(cls, folder / f"{name}.json")
    path = folder / f"{name}.safetensors"
    state, _ = load_checked(path, warn_unrecorded=True)  # a damaged file is refused here, as corrupted
    want = getattr(cfg, "clip_checksum", "")
    clip_file = folder / "clip.safetensors"
    if want:
        have = clip_checksum
        if have is None and clip_file.is_file():
            have = checksum_of(clip_file)
        if have is not None and not clip_matches(want, have, clip_file if clip_file.is_file() else None):
            unsealed = clip_file.is_file() and recorded_checksum(clip_file) is None
            maybe = (f"; {clip_file} records no checksum of its own, so it may also be damaged" if unsealed else "")
            raise bad_input(name, f"{path} was trained against the CLIP with checksum {want}, but this stack's "
                                  f"CLIP has checksum {have}; retrain the stage or use its own CLIP{maybe}")
    net = build(cfg)
    load_state_into(net, state, source=str(path))
    return net.to(device).eval(), cfg


def load_decoder(folder: str | Path, name: str = "decoder", **kw) -> tuple[UNet, DecoderConfig]:
    return load_unet_stage(folder, name, DecoderConfig, **kw)


def load_upsampler(folder: str | Path, name: str = "upsampler", **kw) -> tuple[UNet, UpsamplerConfig]:
    return load_unet_stage(folder, name, UpsamplerConfig, **kw)

