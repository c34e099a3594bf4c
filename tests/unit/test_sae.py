"""The TopK sparse autoencoder (Gao et al. 2024): TopK codes, unit-norm decoder rows through training,
exact resume, AuxK, the metrics, learning a sparse dictionary, bad input, IO, the CLI stage, activations."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

import _torchrun
from unclip_probe import checkpoints as ck
from unclip_probe.cli import main
from unclip_probe.errors import ProbeInputError
from unclip_probe.sae import (SAEConfig, SAERecipe, TopKSAE, collect_activations, dead_fraction, evaluate_sae, fvu, l0,
                              load_sae, save_sae, topk_codes)
from unclip_probe.train import TrainConfig, train

pytestmark = pytest.mark.unit


def sparse_data(n: int = 2000, d: int = 16, features: int = 32, active: int = 2, seed: int = 0) -> torch.Tensor:
    """Rows that are sums of `active` of `features` unit directions with positive weights: what an SAE
    with that many latents can explain almost entirely."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(features, d, generator=g), dim=1)
    codes = torch.zeros(n, features)
    idx = torch.stack([torch.randperm(features, generator=g)[:active] for _ in range(n)])
    codes.scatter_(1, idx, torch.rand(n, active, generator=g) + 0.5)
    return codes @ dirs  # (n, d), rank <= d, `active`-sparse in the dictionary


def _cfg(steps: int, **kw) -> TrainConfig:
    return TrainConfig(**{"steps": steps, "batch_size": 32, "lr": 3e-3, "warmup_steps": 2, "ema_decay": 0.0,
                          "checkpoint_every": 3, "log_every": 1, **kw})


# ----------------------------------------------------------------------------- the model
def test_topk_keeps_exactly_k_nonzeros_and_fewer_when_fewer_are_positive():
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=8, n_latents=32, k=5))
    x = torch.randn(20, 8)
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # every pre-activation positive: exactly k survive
    pre, codes = sae.pre_activations(x), sae.encode(x)
    assert ((codes != 0).sum(1) == 5).all() and (codes >= 0).all()
    assert torch.equal((codes != 0).nonzero()[:, 1].view(20, 5).sort(1).values, pre.topk(5, 1).indices.sort(1).values)
    torch.testing.assert_close(codes.gather(1, pre.topk(5, 1).indices), pre.topk(5, 1).values)
    with torch.no_grad():
        sae.b_enc.fill_(-10.0)
        sae.b_enc[[3, 17]] = 10.0  # only two latents can be positive
    codes = sae.encode(x)
    assert ((codes != 0).sum(1) == 2).all() and set((codes != 0).nonzero()[:, 1].tolist()) == {3, 17}
    crafted = topk_codes(torch.tensor([[3.0, -1.0, 2.0, 5.0], [-1.0, -2.0, 0.5, -3.0]]), 2)
    assert torch.equal(crafted, torch.tensor([[3.0, 0.0, 0.0, 5.0], [0.0, 0.0, 0.5, 0.0]]))


def test_init_has_unit_decoder_rows_and_the_encoder_as_their_transpose():
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=16, n_latents=64, k=4))
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(64))
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    x = torch.randn(5, 16)
    out = sae(x)
    assert out.recon.shape == (5, 16) and out.codes.shape == out.pre_acts.shape == (5, 64)
    torch.testing.assert_close(out.recon, sae.decode(sae.encode(x)))


def test_the_parallel_gradient_is_removed():
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=16, n_latents=32, k=4))
    sae(torch.randn(8, 16)).recon.pow(2).sum().backward()
    before = sae.W_dec.grad.clone()
    sae.remove_parallel_grad_()
    w = sae.W_dec.detach()
    assert (before * w).sum(1).abs().max() > 0.1  # there was a parallel part to remove
    assert (sae.W_dec.grad * w).sum(1).abs().max() < 1e-5 * before.norm(dim=1).max()


def test_auxk_is_zero_without_dead_latents_and_positive_with_some():
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=16, n_latents=64, k=4, aux_k=8, dead_after=100))
    x = torch.randn(32, 16)
    assert sae(x).aux_loss.item() == 0.0 and not sae.dead_latents().any()
    with torch.no_grad():
        sae.since_fired[:20] = 100  # these 20 have been silent for dead_after samples
    sae.eval()  # no counting here: the dead set stays as set
    out = sae(x)
    assert out.aux_loss.item() > 0 and sae.dead_latents().sum() == 20
    out.aux_loss.backward()
    grad = sae.W_enc.grad.abs().sum(0)  # (n_latents,): AuxK reaches only the dead latents' encoder
    assert (grad[:20] > 0).any() and (grad[20:] == 0).all()


def test_the_counter_counts_recorded_samples_and_forward_leaves_it_alone():
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=8, n_latents=16, k=2, dead_after=10))
    fired = torch.zeros(16, dtype=torch.bool)
    fired[[0, 1]] = True
    sae.record_firing_(fired, 4)
    sae.record_firing_(fired, 4)
    assert sae.since_fired[:2].tolist() == [0, 0] and (sae.since_fired[2:] == 8).all()
    sae(torch.randn(4, 8))
    assert (sae.since_fired[2:] == 8).all()
    sae.record_firing_(fired, 4)
    assert sae.dead_latents().sum() == 14
    recipe = SAERecipe(torch.randn(40, 8), n_latents=16, k=2, batch_size=6)
    model = recipe.build_model()
    recipe.loss(model, recipe.batch(0, 0, 1, torch.device("cpu")), torch.Generator())
    assert model.since_fired.max() == 6  # the recipe records each batch


# ----------------------------------------------------------------------------- metrics
def test_fvu_of_a_perfect_reconstruction_is_0_and_of_the_mean_is_1():
    x = torch.randn(50, 8)
    assert fvu(x, x) == 0.0
    assert fvu(x, x.mean(0, keepdim=True).expand_as(x)) == pytest.approx(1.0, abs=1e-9)
    assert fvu(x, torch.zeros_like(x)) > 1.0
    assert l0(torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]])) == 1.5


def test_evaluate_and_dead_fraction():
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=8, n_latents=16, k=2))
    with torch.no_grad():
        sae.b_enc.fill_(-10.0)
        sae.b_enc[[0, 1, 2, 3]] = 10.0  # 12 of 16 latents can never fire
    x = torch.randn(40, 8)
    figures = evaluate_sae(sae, x, batch_size=7)
    assert figures["dead_fraction"] == dead_fraction(sae, x) == 0.75
    assert figures["l0"] == 2.0
    assert figures["fvu"] == pytest.approx(fvu(x, sae(x).recon), rel=1e-6)
    assert sae.training  # evaluate left the mode as it found it


# ----------------------------------------------------------------------------- training
class _Recording(SAERecipe):
    """Records the decoder row norms every step starts from (the state the previous step left)."""

    def loss(self, model, batch, generator):
        self.norms.append(model.W_dec.detach().norm(dim=1).clone())
        return super().loss(model, batch, generator)


def test_decoder_rows_are_unit_norm_after_every_training_step(tmp_path: Path):
    recipe = _Recording(torch.randn(300, 16), n_latents=64, k=4, batch_size=32)
    recipe.norms = []
    train(recipe, _cfg(6), tmp_path, progress=False)
    assert len(recipe.norms) == 6
    for norms in recipe.norms:
        torch.testing.assert_close(norms, torch.ones(64), atol=1e-6, rtol=0)
    state = ck.load_weights(tmp_path / "sae.train.safetensors")
    shipped = ck.load_weights(tmp_path / "sae.safetensors")
    torch.manual_seed(0)
    assert not torch.allclose(state["model.W_dec"], TopKSAE(recipe.config).W_dec, atol=1e-3)  # training moved them
    for w in (state["model.W_dec"], state["ema.W_dec"], shipped["W_dec"]):
        torch.testing.assert_close(w.norm(dim=1), torch.ones(64), atol=1e-6, rtol=0)


def test_resume_is_exact(tmp_path: Path):
    x = sparse_data(400)

    def recipe():  # a small dead_after, so the dead-latent counter and AuxK matter to the run
        return SAERecipe(x, n_latents=64, k=2, aux_k=8, dead_after=40, batch_size=32)

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(recipe(), _cfg(6), straight, progress=False)
    first = train(recipe(), _cfg(6), resumed, progress=False, stop_after=3)
    assert first.steps_done == 3 and not first.finished
    second = train(recipe(), _cfg(6), resumed, progress=False)
    assert second.start_step == 3 and second.finished
    a, b = ck.load_weights(straight / "sae.train.safetensors"), ck.load_weights(resumed / "sae.train.safetensors")
    keys = [k for k in a if k.startswith(("model.", "ema.", "opt.state."))]
    assert "model.since_fired" in keys and a["model.since_fired"].max() > 0
    for k in keys:
        assert torch.equal(a[k], b[k]), k
    log = (straight / "sae.log.jsonl").read_text()
    assert '"aux": 0.0' not in log.splitlines()[-1]  # AuxK was active by the end


def test_a_brief_training_learns_a_sparse_dictionary(tmp_path: Path):
    x = sparse_data(2000)
    recipe = SAERecipe(x, n_latents=64, k=4, batch_size=128, holdout=0.1)
    torch.manual_seed(0)
    untrained = evaluate_sae(recipe.build_model(), recipe.x_eval)["fvu"]
    summary = train(recipe, _cfg(200, batch_size=128, lr=3e-3, warmup_steps=10, checkpoint_every=200), tmp_path,
                    progress=False)
    assert untrained > 0.5
    assert summary.eval["fvu"] < 0.25, summary.eval
    assert summary.eval["l0"] <= 4.0
    sae = load_sae(tmp_path)
    assert evaluate_sae(sae, recipe.x_eval)["fvu"] == pytest.approx(summary.eval["fvu"], rel=1e-5)


def test_batches_are_a_pure_function_of_the_step_and_cover_each_epoch():
    recipe = SAERecipe(torch.randn(25, 4), n_latents=8, k=2, batch_size=8, holdout=0.2)  # 20 training rows
    again = SAERecipe(recipe.data, n_latents=8, k=2, batch_size=8, holdout=0.2)
    dev = torch.device("cpu")
    for step in (0, 1, 2, 7):
        assert torch.equal(recipe.batch(step, 0, 1, dev), again.batch(step, 0, 1, dev))
    first_epoch = torch.cat([recipe.batch(s, 0, 1, dev) for s in range(3)])[:20]  # 24 positions, 20 rows
    assert torch.equal(first_epoch.sort(0).values, recipe.x_train.sort(0).values)
    halves = torch.cat([recipe.batch(1, r, 2, dev) for r in range(2)])
    assert torch.equal(halves, recipe.batch(1, 0, 1, dev))


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("make, phrase", [
    (lambda: SAEConfig(n_latents=512, k=600), "SAEConfig.k: expected an int from 1 to n_latents (512)"),
    (lambda: SAEConfig(d_in=0), "SAEConfig.d_in: expected a positive int"),
    (lambda: SAEConfig(aux_k=1000), "SAEConfig.aux_k: expected None or an int from 1 to n_latents"),
    (lambda: SAEConfig(aux_coef=-1.0), "SAEConfig.aux_coef: expected a finite number >= 0"),
    (lambda: SAEConfig(input_norm="unti"), "SAEConfig.input_norm: got 'unti'"),
    (lambda: TopKSAE(SAEConfig(d_in=16, n_latents=32, k=4)).encode(torch.randn(3, 8)),
     "x: expected inputs as a float tensor (N, 16), got shape (3, 8)"),
    (lambda: TopKSAE(SAEConfig(d_in=16, n_latents=32, k=4)).decode(torch.randn(3, 16)),
     "codes: expected codes as a float tensor (N, 32)"),
    (lambda: fvu(torch.randn(4, 3), torch.randn(4, 2)), "recon: expected the shape of x (4, 3)"),
    (lambda: SAERecipe(torch.randn(2, 8)), "data: expected a float tensor (N, D) with N >= 3"),
    (lambda: SAERecipe("/no/such/embeddings"), "/no/such/embeddings: no such embeddings folder or file"),
])
def test_bad_input_is_one_sentence_naming_the_argument(make, phrase):
    with pytest.raises(ProbeInputError) as err:
        make()
    message = str(err.value)
    assert message.startswith(phrase) and "\n" not in message


# ----------------------------------------------------------------------------- io and the CLI stage
def test_save_load_round_trip_and_ema_rows_are_renormalised_with_a_warning(tmp_path: Path):
    torch.manual_seed(0)
    sae = TopKSAE(SAEConfig(d_in=8, n_latents=16, k=2, activation="visual.hook_out", clip_checksum="abc"))
    save_sae(sae, tmp_path / "one")
    back = load_sae(tmp_path / "one" / "sae.json")
    assert back.config == sae.config and not back.training
    for k, v in sae.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    with torch.no_grad():
        sae.W_dec.mul_(0.9)  # what an EMA of rotating unit rows looks like
    save_sae(sae, tmp_path / "two")
    with pytest.warns(UserWarning, match="renormalised"):
        back = load_sae(tmp_path / "two")
    torch.testing.assert_close(back.W_dec.norm(dim=1), torch.ones(16))
    with pytest.raises(ProbeInputError, match="^path: expected a folder"):
        load_sae(tmp_path / "two" / "sae.txt")


def test_the_train_cli_sae_stage_trains_on_embed_output(tmp_path: Path, pipe, capsys):
    from unclip_probe.embed import embed_world

    embed_world(pipe, tmp_path / "emb", 24, shard_size=10, progress=False)
    out = tmp_path / "sae"
    argv = ["train", "sae", "--embeddings", str(tmp_path / "emb"), "--out", str(out), "--steps", "4",
            "--batch-size", "8", "--n-latents", "32", "--k", "4", "--checkpoint-every", "2", "--device", "cpu",
            "--quiet"]
    assert main(argv) == 0
    sae = load_sae(out)
    assert sae.config.d_in == pipe.embed_dim and sae.config.n_latents == 32 and sae.config.k == 4
    assert sae.config.clip_checksum == pipe.clip.checksum and sae.config.activation == "image_embeds"
    assert ck.load_config(dict, out / "sae.train.json")["train_config"]["ema_decay"] == 0.0
    summary = ck.load_config(dict, out / "sae.summary.json")
    assert set(summary["eval"]) == {"fvu", "l0", "dead_fraction", "dead_tracked"}
    capsys.readouterr()
    assert main(["train", "sae", "--embeddings", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unclip-probe train: --embeddings: the sae stage trains on") and "\n" not in err
    assert main(["train", "sae", "--embeddings", str(tmp_path / "emb"), "--n-latents", "4", "--k", "8",
                 "--out", str(out)]) == 2
    assert "--k: expected an integer from 1 to 4" in capsys.readouterr().err


def test_hooked_activations_pool_to_rows_an_sae_trains_on(pipe):
    from unclip_probe import world

    images = [world.render(s) for s in world.sample_scenes(5, seed=1)]
    clip = pipe.clip
    name = "visual.blocks.0.hook_resid_post"
    rows = collect_activations(clip, images, name, batch_size=2)
    _, cache = clip.run_with_cache(images=images, names_filter=[name])
    torch.testing.assert_close(rows, cache[name][:, 0].float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(collect_activations(clip, images, name, pool="mean"), cache[name].mean(1),
                               atol=1e-5, rtol=1e-5)
    out = collect_activations(clip, images, "visual.hook_out")
    assert out.shape == (5, pipe.embed_dim)
    recipe = SAERecipe(rows, n_latents=16, k=2, batch_size=4, activation=name)
    assert recipe.config.d_in == rows.shape[1] and recipe.config.activation == name
    with pytest.raises(ProbeInputError, match="^name: expected a hook name of the image tower"):
        collect_activations(clip, images, "text.hook_out")
    with pytest.raises(ProbeInputError, match="^name: "):
        collect_activations(clip, images, "visual.blocks.0.attn.hook_pattern")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ProbeInputError, match="^name: "):
            collect_activations(clip, images, "visual.blocks.99.hook_resid_post")


def test_ddp_ranks_agree_on_the_weights_and_the_dead_latent_counter(tmp_path: Path):
    """Each rank sees its share of the batch; the counter must still count the global batch on every rank."""
    _torchrun.two_ranks("_sae_ddp_worker.py", tmp_path)
    a, b = ck.load_weights(tmp_path / "rank0.safetensors"), ck.load_weights(tmp_path / "rank1.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a["since_fired"].max() > 0 and (a["since_fired"] % 16 == 0).all()  # whole global batches
    torch.testing.assert_close(a["W_dec"].norm(dim=1), torch.ones(32), atol=1e-6, rtol=0)
