"""The decoder U-Net and upsampler networks, and sampling through them (tiny, random)."""
import pytest
import torch

from unclip_probe.backends.world.decode import decode_images, upsample_images
from unclip_probe.models.configs import DecoderConfig, UpsamplerConfig
from unclip_probe.models.unet import UNet, UNetConfig

pytestmark = pytest.mark.unit
TINY = UNetConfig(image_size=16, channels=16, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8,),
                  head_channels=16, clip_dim=8, text_dim=12)


def _perturbed(cfg):
    torch.manual_seed(0)
    net = UNet(cfg)
    with torch.no_grad():  # zero-initialised output layers would hide the conditioning
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def test_shapes_and_that_every_condition_reaches_the_output():
    net = _perturbed(TINY)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3, 500])
    z, text, mask = torch.randn(2, 8), torch.randn(2, 5, 12), torch.ones(2, 5, dtype=torch.bool)
    out = net(x, t, clip_emb=z, text=text, text_mask=mask)
    assert out.shape == (2, 3, 16, 16)
    assert not torch.allclose(out, net(x, t, clip_emb=torch.zeros_like(z), text=text, text_mask=mask))
    assert not torch.allclose(out, net(x, t, clip_emb=z, text=text, text_mask=torch.zeros_like(mask)))
    # masked-out text tokens are ignored entirely: changing them changes nothing
    dropped = torch.zeros_like(mask)
    a = net(x, t, clip_emb=z, text=text, text_mask=dropped)
    b = net(x, t, clip_emb=z, text=torch.randn_like(text), text_mask=dropped)
    assert torch.allclose(a, b, atol=1e-6)


def test_upsampler_is_conv_only_and_runs_at_any_size():
    cfg = UpsamplerConfig().unet
    net = UNet(cfg)
    assert not any("attn" in n.lower() or "Attention" in type(m).__name__ for n, m in net.named_modules())
    for size in (32, 64):
        assert net(torch.randn(1, 6, size, size), torch.tensor([10])).shape == (1, 3, size, size)


def test_wrong_embedding_width_and_batch_mismatch_are_named():
    net = UNet(TINY)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3, 5])
    text, mask = torch.randn(2, 5, 12), torch.ones(2, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="clip_emb"):
        net(x, t, clip_emb=torch.randn(2, 9), text=text, text_mask=mask)
    with pytest.raises(ValueError, match="clip_emb"):
        net(x, t, clip_emb=torch.randn(3, 8), text=text, text_mask=mask)


def test_decode_and_upsample_are_deterministic_and_in_range():
    cfg = DecoderConfig(unet=TINY)
    net = _perturbed(TINY)
    z, text, mask = torch.randn(2, 8), torch.randn(2, 5, 12), torch.ones(2, 5, dtype=torch.bool)
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    a = decode_images(net, cfg, z, text, mask, x_T=x_T, steps=4, guidance=2.0)
    b = decode_images(net, cfg, z, text, mask, x_T=x_T, steps=4, guidance=2.0)
    assert torch.equal(a, b) and a.shape == (2, 3, 16, 16) and a.abs().max() <= 1.0
    up_cfg = UpsamplerConfig(unet=UNetConfig(image_size=32, in_channels=6, channels=16, channel_mult=(1, 2),
                                             num_res_blocks=1, attention_resolutions=(), head_channels=16))
    hi = upsample_images(_perturbed(up_cfg.unet), up_cfg, a, x_T=torch.randn(2, 3, 32, 32), steps=3)
    assert hi.shape == (2, 3, 32, 32)


def test_bad_sampling_arguments_are_named():
    from unclip_probe.backends.world.decode import invert_images
    from unclip_probe.errors import ProbeInputError

    cfg = DecoderConfig(unet=TINY)
    net = UNet(TINY)
    z, text, mask = torch.randn(2, 8), torch.randn(2, 5, 12), torch.ones(2, 5, dtype=torch.bool)
    x_T = torch.randn(2, 3, 16, 16)
    cases = [
        ("clip_emb", lambda: decode_images(net, cfg, torch.randn(3, 8), text, mask, x_T=x_T, steps=2)),  # batch mismatch
        ("clip_emb", lambda: decode_images(net, cfg, torch.randn(2, 7), text, mask, x_T=x_T, steps=2)),  # wrong width
        ("steps", lambda: decode_images(net, cfg, z, text, mask, x_T=x_T, steps=0)),
        ("steps", lambda: decode_images(net, cfg, z, text, mask, x_T=x_T, steps=cfg.diffusion.T + 1)),
        ("eta", lambda: decode_images(net, cfg, z, text, mask, x_T=x_T, steps=2, eta=-0.5)),
        ("x_0", lambda: invert_images(net, cfg, torch.randn(2, 3, 32, 32), z, steps=2)),  # wrong size for inversion
        ("x_T", lambda: decode_images(net, cfg, z, text, mask, x_T=torch.randn(2, 3, 8, 8), steps=2)),
    ]
    for arg, call in cases:
        with pytest.raises(ProbeInputError) as err:
            call()
        assert str(err.value).startswith(arg), (arg, str(err.value))


def test_inversion_round_trip_of_a_smooth_random_decoder():
    from unclip_probe.backends.world.decode import invert_images

    cfg = DecoderConfig(unet=TINY)
    net = _perturbed(TINY)
    x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    z = torch.randn(2, 8)
    empty_text, empty_mask = torch.zeros(2, 1, 12), torch.zeros(2, 1, dtype=torch.bool)
    x_T = invert_images(net, cfg, x0, z, steps=50)
    back = decode_images(net, cfg, z, empty_text, empty_mask, x_T=x_T, steps=50, guidance=1.0)
    mse = float(((back - x0) ** 2).mean())
    assert mse < 1e-2  # > 26 dB on [-1, 1]


def test_a_residual_upsampler_adds_its_scaled_output_to_the_bicubic_base():
    from unclip_probe.backends.world.decode import upsample_base

    cfg = UpsamplerConfig(unet=UNetConfig(image_size=32, in_channels=6, channels=16, channel_mult=(1, 2),
                                          num_res_blocks=1, attention_resolutions=()), residual_scale=4.0)
    low = torch.rand(2, 3, 16, 16) * 2 - 1
    zero = UNet(cfg.unet).eval()  # zero-initialised output layer: v = 0, so x0_hat = 0 at the zero-SNR step
    with torch.no_grad():
        out = upsample_images(zero, cfg, low, x_T=torch.randn(2, 3, 32, 32), steps=1)
        base = upsample_base(low, 32, "bicubic")
        torch.testing.assert_close(out, base)
        zero.out[-1].bias.fill_(-1.0)  # now v = -1 everywhere; at the zero-SNR step x0_hat = -v = 1 ...
        one = upsample_images(zero, cfg, low, x_T=torch.randn(2, 3, 32, 32), steps=1)
    torch.testing.assert_close(one, (base + 1.0 / cfg.residual_scale).clamp(-1, 1))  # ... divided by the scale
