"""Loading the diffusion stages of a world stack (docs/design.md §5).

Each stage is `<name>.safetensors` + `<name>.json` in the stack folder. Loading
validates the config, names the file and the tensors when shapes disagree, and
refuses a stage trained against a different CLIP than the folder's
(`clip_checksum` in its config), because its conditioning would be meaningless.
"""
from __future__ import annotations

from pathlib import Path

from unclip_probe.checkpoints import file_checksum, load_config, load_state_into, load_weights, require_files
from unclip_probe.errors import bad_input
from unclip_probe.models.configs import DecoderConfig, UpsamplerConfig
from unclip_probe.models.unet import UNet


def load_unet_stage(folder: str | Path, name: str, cls, *, clip_checksum: str | None = None, device="cpu",
                    build=lambda cfg: UNet(cfg.unet)):
    """(network in eval mode, config) for stage `name` of `folder`; `build(cfg)` makes the network.

    clip_checksum: the checksum of the CLIP this stage must belong to (default: the
    folder's own clip.safetensors, when the stage records one).
    """
    folder = Path(folder)
    require_files(folder, [f"{name}.json", f"{name}.safetensors"])
    cfg = load_config(cls, folder / f"{name}.json")
    want = getattr(cfg, "clip_checksum", "")
    if want:
        have = clip_checksum
        if have is None and (folder / "clip.safetensors").is_file():
            have = file_checksum(folder / "clip.safetensors")
        if have is not None and have != want:
            raise bad_input(name, f"{folder / (name + '.safetensors')} was trained against the CLIP with checksum "
                                  f"{want}, but this stack's CLIP has checksum {have}; retrain the stage or use its own CLIP")
    net = build(cfg)
    path = folder / f"{name}.safetensors"
    load_state_into(net, load_weights(path), source=str(path))
    return net.to(device).eval(), cfg


def load_decoder(folder: str | Path, name: str = "decoder", **kw) -> tuple[UNet, DecoderConfig]:
    return load_unet_stage(folder, name, DecoderConfig, **kw)


def load_upsampler(folder: str | Path, name: str = "upsampler", **kw) -> tuple[UNet, UpsamplerConfig]:
    return load_unet_stage(folder, name, UpsamplerConfig, **kw)
