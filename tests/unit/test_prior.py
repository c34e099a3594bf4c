"""The diffusion prior network and its sampler (paper §2.2), tiny and random."""
import pytest
import torch

from unclip_probe.errors import ProbeInputError
from unclip_probe.models.configs import PriorConfig
from unclip_probe.models.prior import PriorNetConfig, PriorTransformer
from unclip_probe.models.unet import timestep_embedding
from unclip_probe.backends.world.prior_sampling import sample_diffusion_prior

pytestmark = pytest.mark.unit
NET = PriorNetConfig(embed_dim=16, text_dim=12, max_text_len=10, width=32, layers=2, heads=2)


def _net():
    torch.manual_seed(0)
    return PriorTransformer(NET).eval()


def test_reads_only_real_text_tokens_and_survives_a_dropped_caption():
    net = _net()
    z, t, zt = torch.randn(2, 16), torch.tensor([5, 900]), torch.randn(2, 16)
    text, mask = torch.randn(2, 6, 12), torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    out = net(z, t, zt, text, mask)
    assert out.shape == (2, 16)
    text2 = text.clone()
    text2[0, 3:] = torch.randn(3, 12)  # padding positions of caption 0
    assert torch.allclose(net(z, t, zt, text2, mask)[0], out[0], atol=1e-5)
    dropped = net(z, t, torch.zeros_like(zt), text, torch.zeros_like(mask))
    assert dropped.isfinite().all()


def one_pass(net, z_noisy, t, z_text, text, text_mask):
    """The paper's sequence in one pass through the net's nn.TransformerEncoder: the reference that
    encode_prefix + forward_prefixed (the KV-cached split) must equal."""
    B, L = text.shape[:2]
    w, heads = net.cfg.width, net.cfg.heads
    seq = torch.cat([net.text_proj(text), net.ztext_proj(z_text)[:, None],
                     net.time_proj(timestep_embedding(t, w))[:, None], net.zimg_proj(z_noisy)[:, None],
                     net.query.expand(B, 1, -1)], dim=1) + net.pos[: L + 4]
    T = L + 4
    pad = torch.cat([~text_mask.bool(), torch.zeros(B, 4, dtype=torch.bool)], dim=1)  # (B, T)
    blocked = torch.ones(T, T, dtype=torch.bool).triu(1)[None] | pad[:, None, :]
    blocked &= ~torch.eye(T, dtype=torch.bool)[None]
    h = net.blocks(seq, mask=blocked.repeat_interleave(heads, dim=0))
    return net.out(net.norm(h[:, -1]))


@pytest.mark.parametrize("train", [False, True])
def test_prefix_cached_forward_equals_the_one_pass_sequence(train):
    net = _net().train(train)  # dropout is 0, so train mode differs only in the encoder's code path
    z, t, zt = torch.randn(3, 16), torch.tensor([0, 500, 999]), torch.randn(3, 16)
    text = torch.randn(3, 5, 12)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)  # last: dropped
    torch.testing.assert_close(net(z, t, zt, text, mask), one_pass(net, z, t, zt, text, mask), atol=1e-5, rtol=1e-5)
    prefix = net.encode_prefix(zt, text, mask)
    assert prefix["kv"].shape == (3, NET.layers, 2, NET.heads, 6, NET.width // NET.heads)
    z2, t2 = torch.randn(3, 16), torch.tensor([10, 20, 30])  # the same prefix serves any step
    torch.testing.assert_close(net.forward_prefixed(z2, t2, prefix), one_pass(net, z2, t2, zt, text, mask),
                               atol=1e-5, rtol=1e-5)


def test_sampler_returns_unit_embeddings_and_keeps_the_best_candidate():
    net = _net()
    cfg = PriorConfig(net=NET)
    zt = torch.nn.functional.normalize(torch.randn(3, 16), dim=-1)
    text, mask = torch.randn(3, 4, 12), torch.ones(3, 4, dtype=torch.bool)
    a = sample_diffusion_prior(net, cfg, zt, text, mask, generator=torch.Generator().manual_seed(1), steps=5)
    b = sample_diffusion_prior(net, cfg, zt, text, mask, generator=torch.Generator().manual_seed(1), steps=5)
    assert torch.equal(a, b) and torch.allclose(a.norm(dim=-1), torch.ones(3), atol=1e-5)
    seen = []
    many = sample_diffusion_prior(net, cfg, zt, text, mask, generator=torch.Generator().manual_seed(1), steps=5,
                                  candidates=8, callback=seen.append)
    # The 8 candidates per caption are the sampler's last state; the kept one has the highest z_i . z_t.
    cands = torch.nn.functional.normalize(seen[-1]["x"], dim=-1).view(3, 8, 16)
    dots = (cands * zt[:, None]).sum(-1)  # (3, 8)
    torch.testing.assert_close(many, cands[torch.arange(3), dots.argmax(1)])


def test_wrong_widths_are_named():
    net = _net()
    with pytest.raises(ProbeInputError, match="z_noisy"):
        net(torch.randn(2, 15), torch.tensor([1, 2]), torch.randn(2, 16), torch.randn(2, 3, 12),
            torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ProbeInputError, match="text"):
        net(torch.randn(2, 16), torch.tensor([1, 2]), torch.randn(2, 16), torch.randn(2, 11, 12),
            torch.ones(2, 11, dtype=torch.bool))
