"""The autoregressive prior (paper §2.2): PCA codebook, teacher forcing, sampling (tiny, random)."""
import pytest
import torch
import torch.nn.functional as F

from unclip_probe.models.ar_prior import ARPrior, ARPriorConfig
from unclip_probe.backends.world.prior_sampling import sample_ar_prior

pytestmark = pytest.mark.unit
CFG = ARPriorConfig(embed_dim=16, text_dim=8, max_text_len=6, components=6, buckets=64, dot_buckets=4, width=32,
                    layers=1, heads=2)


def _fitted():
    torch.manual_seed(0)
    z_i = F.normalize(torch.randn(400, 16) @ torch.diag(torch.linspace(3, 0.001, 16)), dim=-1)
    z_t = F.normalize(z_i + 0.3 * torch.randn(400, 16), dim=-1)
    m = ARPrior(CFG)
    return m, m.fit_codebook(z_i, z_t), z_i, z_t


def test_codebook_round_trip_and_explained_variance():
    m, ev, z_i, _ = _fitted()
    S = torch.linalg.svdvals(z_i - z_i.mean(0)) ** 2
    assert abs(ev - float(S[:6].sum() / S.sum())) < 1e-5
    codes = m.encode(z_i[:50])
    assert codes.shape == (50, 6) and codes.min() >= 0 and codes.max() < 64
    # quantising into 64 buckets loses little beyond what dropping components loses
    proj = F.normalize(m.pca_mean + ((z_i[:50] - m.pca_mean) @ m.pca_components.T) @ m.pca_components, dim=-1)
    best = (proj * z_i[:50]).sum(-1).mean()
    assert (m.decode(codes) * z_i[:50]).sum(-1).mean() > best - 0.02


def test_causal_prediction_ignores_later_codes():
    m, _, z_i, z_t = _fitted()
    m.eval()
    codes = m.encode(z_i[:2])
    dot = m.dot_bucket((z_i[:2] * z_t[:2]).sum(-1))
    text, mask = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    a = m(codes, dot, z_t[:2], text, mask)
    changed = codes.clone()
    changed[:, 4:] = (changed[:, 4:] + 7) % 64
    b = m(changed, dot, z_t[:2], text, mask)
    assert a.shape == (2, 6, 64)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-5)  # logits for code j see codes < j only


def test_cached_one_code_at_a_time_equals_teacher_forcing():
    m, _, z_i, z_t = _fitted()
    m.eval()
    codes = m.encode(z_i[:3])
    dot = m.dot_bucket((z_i[:3] * z_t[:3]).sum(-1))
    text = torch.randn(3, 4, 8)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)  # last: caption dropped
    full = m(codes, dot, z_t[:3], text, mask)  # (3, 6, 64)
    logits, cache = m.start(dot, z_t[:3], text, mask)
    steps = [logits]
    for j in range(CFG.components - 1):
        logits, cache = m.next_logits(codes[:, j], cache)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_trailing_caption_padding_changes_nothing():
    # Codes sit at the same positions however long the batch's captions are (the GPU run at batch
    # 256 learnt positions counted on from ~40 text tokens and sampled garbage after short captions).
    m, _, z_i, z_t = _fitted()
    m.eval()
    codes, dot = m.encode(z_i[:2]), m.dot_bucket((z_i[:2] * z_t[:2]).sum(-1))
    text, mask = torch.randn(2, 2, 8), torch.ones(2, 2, dtype=torch.bool)
    padded_text = torch.cat([text, torch.randn(2, 3, 8)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(m(codes, dot, z_t[:2], padded_text, padded_mask), m(codes, dot, z_t[:2], text, mask),
                               atol=1e-5, rtol=1e-5)


def test_sampling_is_deterministic_and_unit_norm():
    m, _, _, z_t = _fitted()
    m.eval()
    text, mask = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    a = sample_ar_prior(m, z_t[:2], text, mask, generator=torch.Generator().manual_seed(3))
    b = sample_ar_prior(m, z_t[:2], text, mask, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.allclose(a.norm(dim=-1), torch.ones(2), atol=1e-5)
