"""Shared unit fixtures: a tiny random world stack saved to a folder, and its pipeline (seconds to build)."""
import open_clip
import pytest
import torch

from unclip_probe.checkpoints import save_config, save_weights
from unclip_probe.clip import ClipModel, build_clip_model, save_clip
from unclip_probe.models.configs import DecoderConfig, PriorConfig, UpsamplerConfig
from unclip_probe.models.prior import PriorNetConfig, PriorTransformer
from unclip_probe.models.unet import UNet, UNetConfig
from unclip_probe.backends.world.stack import UnCLIP
from unclip_probe.train.recipes.clip import world_clip_config


@pytest.fixture(scope="session", autouse=True)
def embedding_cache(tmp_path_factory):
    """The benchmarks' default embedding cache in a temporary folder: tests never write to ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("UNCLIP_PROBE_CACHE", str(tmp_path_factory.mktemp("embedding-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stack")
    torch.manual_seed(0)
    ccfg = world_clip_config(width=32, layers=1, text_width=32, text_layers=1, embed_dim=16)
    checksum = save_clip(build_clip_model(ccfg), ccfg, folder)
    unet = UNetConfig(image_size=32, channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(16,),
                      head_channels=16, clip_dim=16, text_dim=32)
    dcfg = DecoderConfig(unet=unet, clip_checksum=checksum)
    ucfg = UpsamplerConfig(unet=UNetConfig(image_size=64, in_channels=6, channels=8, channel_mult=(1, 2),
                                           num_res_blocks=1, attention_resolutions=(), head_channels=8))
    pcfg = PriorConfig(net=PriorNetConfig(embed_dim=16, text_dim=32, max_text_len=48, width=32, layers=1, heads=2),
                       clip_checksum=checksum)
    for name, cfg, net in (("decoder", dcfg, UNet(unet)), ("upsampler", ucfg, UNet(ucfg.unet)),
                           ("prior", pcfg, PriorTransformer(pcfg.net))):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.02 * torch.randn_like(p))
        save_weights(net.state_dict(), folder / f"{name}.safetensors")
        save_config(cfg, folder / f"{name}.json")
    return folder


@pytest.fixture(scope="session")
def pipe(stack):
    return UnCLIP.from_pretrained(stack, device="cpu")




@pytest.fixture(scope="session")
def vit_b_32():
    """A randomly initialised open_clip ViT-B-32 as a ClipModel: the probes' CLIP-side code must serve
    a real model a user loads (no weights can be downloaded here)."""
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    return ClipModel(model, open_clip.get_tokenizer("ViT-B-32"), image_mean=open_clip.OPENAI_DATASET_MEAN,
                     image_std=open_clip.OPENAI_DATASET_STD)
