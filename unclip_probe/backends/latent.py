"""What the latent-space unCLIP decoders share (Kandinsky 2.2, Stable unCLIP 2.1; later others).

A real stack is a diffusers U-Net over autoencoder latents, conditioned on a CLIP image embedding
(paper §2.1). This module holds, once for all of them:

- reading a local diffusers folder: ``check_folder`` (the layout, refused with one sentence),
  ``load_component`` (``from_pretrained(local_files_only=True)``, errors as one sentence);
- ``sample``: the DDIM loop with classifier-free guidance, one batched U-Net call per step on
  [unconditional; conditional] as the pipelines make it;
- ``invert``: DDIM inversion of latents (paper §3.1);
- ``LatentStack``: the Stack protocol members that do not depend on the decoder; a subclass
  supplies its conditioning, its U-Net call and its autoencoder.

**Sampler.** Sampling runs diffusers' own ``DDIMScheduler`` (or, with ``sampler=``, its
``DDPMScheduler`` or ``DPMSolverMultistepScheduler`` as DPM-Solver++(2M), the scheduler this
package's ``sample_dpmpp_2m`` equals step for step), built afresh per call from the folder's
scheduler config (``DDIMScheduler.from_config``), not this package's samplers
(``diffusion/samplers.py``): those use "trailing" timesteps and alpha_bar = 1 after the last
step, while these models' configs ask for "leading" timesteps with ``steps_offset`` 1 and, for
Stable unCLIP, ``set_alpha_to_one=False``; matching the pipelines to 1e-5 means taking their
timesteps and final alpha, and the scheduler is the one place that defines them.

**Inversion** runs the same scheduler's step backwards. With eta = 0 a DDIM step is affine in
its sample for a fixed model output, ``x_prev = a x_t + b out``; ``a`` and ``b`` are read off
the scheduler's own ``step`` (so every prediction type and final-alpha rule is the scheduler's),
and the inverse step solves it for x_t with ``out = unet(x_prev, t)``: the usual approximation
unet(x_t, t) ~ unet(x_prev, t) (Song et al. 2021 §4.3), exact when the output does not depend on
the sample. Clipped or thresholded schedulers are not affine and are refused.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from PIL import Image
from torch import Tensor

from unclip_probe import imaging, validate
from unclip_probe.backends.base import PRIOR_KINDS, Sampling, StackDefaults, missing, unit_norm
from unclip_probe.checkpoints import file_checksum
from unclip_probe.device import sampling
from unclip_probe.diffusion import check_sampler, resolve_sampler
from unclip_probe.errors import ProbeInputError, bad_input
from unclip_probe.imaging import pil_to_signed, signed_to_pil

# The CLIPs the real decoders read, by image-embedding width: (CLIP, the stacks that take it).
CLIP_WIDTHS = {1280: ("ViT-bigG-14", ("kandinsky-2.2",)), 1024: ("ViT-H-14", ("stable-unclip-h",)),
               768: ("ViT-L/14", ("stable-unclip-l", "karlo"))}
WEIGHT_SUFFIXES = (".safetensors", ".bin")

# The settings of decodes from an inverted x_T, the same for every latent stack until measured on real
# weights (none here): such a decode retraces the inversion only unguided; the variation eta starts
# at the world stack's measured value; text diffs unguided, so that theta 0 reproduces the image.
INVERTED_GUIDANCE = 1.0
VARIATION_ETA = 0.1
UNUSED = Sampling(guidance=1.0, steps=0)  # a sampler the stack lacks (no AR prior, no upsampler)


def stack_defaults(decode: Sampling, inversion_steps: int, prior: Sampling = UNUSED) -> StackDefaults:
    """A latent stack's StackDefaults from its fresh-noise decode, its inversion steps and its prior."""
    inverted = Sampling(guidance=INVERTED_GUIDANCE, steps=inversion_steps)
    return StackDefaults(decode=decode, prior=prior, ar_prior=UNUSED, inversion=inverted,
                         variations=Sampling(INVERTED_GUIDANCE, inversion_steps, eta=VARIATION_ETA),
                         interpolation=inverted,  # with fixed noise, interpolate uses decode.guidance
                         text_diff=inverted, upsample_steps=0)


Denoise = Callable[[Tensor, Tensor, dict], Tensor]  # (x (N, C, h, w), t, cond of batch N) -> output (N, C, h, w)


# ----------------------------------------------------------------------------- folders
@dataclass(frozen=True)
class Layout:
    """A diffusers folder as a public repository holds it: ``model_index.json``'s ``_class_name`` and,
    per component folder, the file that marks it."""

    pipeline: str                 # e.g. "KandinskyV22Pipeline"
    repo: str                     # e.g. "kandinsky-community/kandinsky-2-2-decoder"
    components: Mapping[str, str]  # folder -> marker file ("config.json", "scheduler_config.json", ...)

    def describe(self) -> str:
        return (f"a local copy of {self.repo} (model_index.json with _class_name {self.pipeline}, and "
                f"{', '.join(c + '/' for c in self.components)})")


def offline() -> None:
    """Nothing here downloads: the hub libraries are told so before they load anything."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def check_folder(folder: object, argument: str, layout: Layout, others: Mapping[str, str] | None = None) -> Path:
    """``folder`` as a Path when it holds ``layout``; else one sentence naming ``argument`` and the layout.
    others: other pipelines' ``_class_name`` -> what that folder is and where it goes (a hint)."""
    if not isinstance(folder, (str, os.PathLike)) or not Path(folder).is_dir():
        raise bad_input(argument, f"{str(folder)!r} is not a folder; expected {layout.describe()}")
    folder = Path(folder)
    index = folder / "model_index.json"
    try:
        name = json.loads(index.read_text())["_class_name"]
    except (OSError, ValueError, KeyError, TypeError):
        what = "has no model_index.json" if not index.is_file() else "has an unreadable model_index.json"
        raise bad_input(argument, f"{str(folder)!r} {what}; expected {layout.describe()}") from None
    if name != layout.pipeline:
        hint = f": that is {others[name]}" if others and name in others else ""
        raise bad_input(argument, f"{str(folder)!r} holds a {name}, not a {layout.pipeline}{hint}; "
                                  f"expected {layout.describe()}")
    for component, marker in layout.components.items():
        if not (folder / component / marker).is_file():
            raise bad_input(argument, f"{str(folder)!r} lacks {component}/{marker}; expected {layout.describe()}")
    return folder


def check_tower(folder: object, argument: str, what: str) -> Path:
    """A transformers model folder with its tokenizer (config.json, vocab.json, weights), else one sentence."""
    path = Path(folder) if isinstance(folder, (str, os.PathLike)) else None
    lacking = [f for f in ("config.json", "vocab.json") if path is None or not (path / f).is_file()]
    if path is not None and path.is_dir() and not any(f.suffix in WEIGHT_SUFFIXES for f in path.iterdir()):
        lacking.append("a weights file")
    if lacking:
        raise bad_input(argument, f"{str(folder)!r} lacks {', '.join(lacking)}; expected a local copy of {what} "
                                  "(a transformers folder with its tokenizer)")
    return path


def read_config(folder: Path, component: str, marker: str = "scheduler_config.json") -> dict:
    """A component's JSON config (the layout check has seen it exists)."""
    return json.loads((folder / component / marker).read_text())


def require_weights(folder: Path, component: str, argument: str) -> None:
    """A component folder with a weights file, else one sentence naming ``argument``."""
    path = folder / component
    if not any(f.suffix in WEIGHT_SUFFIXES for f in path.iterdir()):
        raise bad_input(argument, f"{str(path)!r} has a config but no weights file (*.safetensors or *.bin)")


@contextlib.contextmanager
def loading(path: Path, what: str, argument: str) -> Iterator[None]:
    """Loading errors of the hub libraries (a truncated or corrupt file) as one sentence naming ``argument``."""
    try:
        yield
    except ProbeInputError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise bad_input(argument, f"{str(path)!r} could not be loaded as a {what} ({type(e).__name__}); "
                                  "its files may be incomplete or corrupt") from None


def load_component(cls: Any, folder: Path, component: str, argument: str, **kwargs) -> Any:
    """``cls.from_pretrained(folder / component)`` from the local files only, in eval mode when a module."""
    if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
        require_weights(folder, component, argument)
        if cls.__module__.startswith("diffusers") and importlib.util.find_spec("accelerate") is None:
            kwargs.setdefault("low_cpu_mem_usage", False)  # else diffusers says it wants accelerate on every load
    with loading(folder / component, cls.__name__, argument):
        out = cls.from_pretrained(folder / component, local_files_only=True, **kwargs)
    return out.eval() if isinstance(out, torch.nn.Module) else out


def weight_checksums(folders: Mapping[str, Path]) -> dict[str, str]:
    """{"<label>/<component>/<file>": checksum} for every weights file of the folders: what a measurement names."""
    out = {}
    for label, folder in folders.items():
        for f in sorted(folder.glob("*/*")):
            if f.suffix in WEIGHT_SUFFIXES:
                out[f"{label}/{f.parent.name}/{f.name}"] = file_checksum(f)
    return out


# ----------------------------------------------------------------------------- arguments
def check_z(z: object, dim: int, stack: str, clip: str, argument: str = "z") -> Tensor:
    """Image embeddings (B, dim) as float32; the wrong width is refused naming the CLIP that fits it."""
    if isinstance(z, Tensor) and z.ndim == 2 and z.shape[1] != dim:
        clip_fits, stacks = CLIP_WIDTHS.get(int(z.shape[1]), ("", ()))
        stacks = [s for s in stacks if s != stack]
        hint = f": that is {clip_fits}'s width, which {' and '.join(stacks)} take{'s' * (len(stacks) == 1)}" \
            if stacks else ""
        raise bad_input(argument, f"expected {clip} image embeddings (B, {dim}) for {stack}, got "
                                  f"{tuple(z.shape)}{hint}")
    return validate.embeddings(z, dim, argument)


def squares(images: object, size: int, argument: str = "images") -> list[Image.Image]:
    """Images as RGB size x size squares (``imaging.squares``), warnings pointing at the caller's caller."""
    return imaging.squares(images, size, argument, stacklevel=4)


# ----------------------------------------------------------------------------- sampling
def ddim(config: Mapping[str, Any], steps: int, device: torch.device, sampler: str = "ddim"):
    """A fresh diffusers scheduler from a folder's scheduler config, set to ``steps`` timesteps:
    DDIMScheduler ("ddim"), DDPMScheduler ("ddpm") or DPMSolverMultistepScheduler as DPM-Solver++(2M)
    ("dpm++2m"; equal to this package's ``sample_dpmpp_2m``, tests/unit/test_diffusers_equivalence.py)."""
    import diffusers

    check_sampler(sampler)
    if sampler == "dpm++2m":
        scheduler = diffusers.DPMSolverMultistepScheduler.from_config(
            dict(config), algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", final_sigmas_type="zero")
    else:
        scheduler = (diffusers.DDIMScheduler if sampler == "ddim" else diffusers.DDPMScheduler).from_config(dict(config))
    scheduler.set_timesteps(steps, device=device)
    return scheduler


def sample(denoise: Denoise, x_T: Tensor, cond: dict, uncond: dict, config: Mapping[str, Any], *, steps: int,
           guidance: float, eta: float = 0.0, generator: torch.Generator | None = None,
           callback: Callable[[dict], None] | None = None, sampler: str = "ddim") -> Tensor:
    """Latents x_0 (B, C, h, w) from noise x_T (B, C, h, w) by DDIM (eta as given) with classifier-free
    guidance ``out = out_u + guidance (out_c - out_u)``; guidance 1 runs the conditional branch alone
    (the pipelines also skip guidance below 1; here 0 is the unconditional branch, as the formula says).
    cond / uncond: {name: (B, ...) tensor} for ``denoise``. eta > 0 draws its noise from ``generator``.
    callback({"i", "t", "steps", "x"}) after each step. sampler: "ddim" (eta as given), "ddpm" or
    "dpm++2m" (the scheduler ``ddim`` builds; eta belongs to DDIM alone)."""
    scheduler = ddim(config, steps, x_T.device, sampler)
    step_kw = {"eta": eta} if sampler == "ddim" else {}
    guided = guidance != 1.0
    both = {k: torch.cat([uncond[k], cond[k]]) for k in cond} if guided else cond  # (2B, ...): [uncond; cond]
    x = x_T * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        inp = scheduler.scale_model_input(torch.cat([x, x]) if guided else x, t)
        out = denoise(inp, t, both).float()
        if guided:
            out_u, out_c = out.chunk(2)
            out = out_u + guidance * (out_c - out_u)
        x = scheduler.step(out, t, x, generator=generator, **step_kw).prev_sample
        if callback is not None:
            callback({"i": i, "t": int(t), "steps": steps, "x": x})
    return x


def _affine_step(scheduler, t: Tensor) -> tuple[Tensor, Tensor]:
    """(a, b) with ``scheduler.step(out, t, x).prev_sample == a x + b out`` (eta 0), from the step itself."""
    one, zero = torch.ones(1, dtype=torch.float32), torch.zeros(1, dtype=torch.float32)
    a = scheduler.step(zero, t, one, eta=0.0).prev_sample
    b = scheduler.step(one, t, zero, eta=0.0).prev_sample
    return a, b


def invert(denoise: Denoise, x_0: Tensor, cond: dict, config: Mapping[str, Any], *, steps: int,
           callback: Callable[[dict], None] | None = None) -> Tensor:
    """DDIM inversion (see the module docstring): latents x_0 (B, C, h, w) -> x_T (B, C, h, w) such that
    ``sample(..., guidance=1, eta=0)`` over the same steps and cond returns x_0, unguided."""
    scheduler = ddim(config, steps, x_0.device)
    if scheduler.config.clip_sample or scheduler.config.thresholding:
        raise bad_input("scheduler", "DDIM inversion needs a scheduler without clip_sample or thresholding "
                                     "(its step is then not invertible)")
    x = x_0
    for i, t in enumerate(reversed(scheduler.timesteps)):
        out = denoise(scheduler.scale_model_input(x, t), t, cond).float()
        a, b = (v.to(x.device) for v in _affine_step(scheduler, t.cpu()))
        x = (x - b * out) / a
        if callback is not None:
            callback({"i": i, "t": int(t), "steps": steps, "x": x})
    return x / scheduler.init_noise_sigma


# ----------------------------------------------------------------------------- the stack
class LatentStack:
    """The Stack protocol (``backends/base.py``) over a latent U-Net decoder: the members every such
    stack shares. A subclass sets ``name``, ``clip_name``, ``defaults`` and implements the hooks at
    the end (conditioning, the U-Net call, the autoencoder, the prior).

    Embeddings: ``encode_image`` returns, and ``decode`` / ``invert`` take, the raw projected CLIP
    image embedding the decoder was trained on (``clip.image_embeds``), never renormalised;
    ``clip.encode_image`` stays unit-norm (zero-shot, probes). ``encode_text`` is unit-norm
    (CLIP's text side, for text diffs and zero-shot)."""

    name: str
    clip_name: str  # the CLIP whose image embeddings decode takes, for messages ("ViT-H-14")

    def __init__(self, *, clip, unet, scheduler_config: Mapping[str, Any], embed_dim: int, latent_scale: int,
                 folders: Mapping[str, Path], device: torch.device, amp_dtype: torch.dtype | None = None):
        self.clip, self.unet, self.scheduler_config = clip, unet, dict(scheduler_config)
        self.device, self.amp_dtype = device, amp_dtype
        self.folders = dict(folders)  # label -> folder, for checksums
        self._embed_dim, self._latent_scale = int(embed_dim), int(latent_scale)
        self._checksums: dict[str, str] | None = None

    # ------------------------------------------------------------------ protocol facts
    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    @property
    def noise_shape(self) -> tuple[int, int, int]:
        s = int(self.unet.config.sample_size)
        return (int(self.unet.config.in_channels), s, s)

    @property
    def image_size(self) -> int:
        return self.noise_shape[-1] * self._latent_scale

    @property
    def reads_embedding(self) -> bool:
        return True

    @property
    def checksums(self) -> dict[str, str]:
        """{"clip": the CLIP's tensor checksum, "<folder>/<component>/<file>": file checksum}; hashed once."""
        if self._checksums is None:
            self._checksums = {"clip": self.clip.checksum, **weight_checksums(self.folders)}
        return self._checksums

    @property
    def train_steps(self) -> int:
        return int(self.scheduler_config.get("num_train_timesteps", 1000))

    def with_decoder(self, name: str) -> "LatentStack":
        raise bad_input("name", f"no decoder {name!r}: the {self.name!r} stack has one decoder, its unet/")

    # ------------------------------------------------------------------ encoders
    def encode_image(self, images) -> Tensor:
        """The raw projected CLIP image embeddings (B, D) that ``decode`` takes (not unit-norm): images
        (PIL, paths, or a (B, 3, H, W) tensor in [0, 1]) through CLIP's own preprocessing."""
        return self.clip.image_embeds(images)

    def encode_text(self, prompts) -> Tensor:
        """Unit-norm CLIP text embeddings (B, D); a prompt past the text context is refused."""
        with validate.renamed(texts="prompts"):
            return self.clip.encode_text(validate.prompts(prompts))

    def noise(self, n: int, seed: int) -> Tensor:
        """x_T (n, *noise_shape) drawn from `seed`: what decode uses when given none."""
        n, seed = validate.count(n, "n"), validate.seed(seed)
        return torch.randn(n, *self.noise_shape, generator=self._generator(seed), device=self.device)

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(int(seed))

    # ------------------------------------------------------------------ decoding
    def _check_prior_kind(self, kind: object, argument: str = "kind") -> str:
        kind = validate.choice(kind, PRIOR_KINDS, argument)
        if kind not in self.prior_kinds:
            raise missing(self.name, f"{kind!r} prior", argument,
                          f"its priors: {', '.join(self.prior_kinds)}" if self.prior_kinds else
                          "decode CLIP image embeddings instead, e.g. decode(encode_image(images))")
        return kind

    def _check_sampling(self, guidance, steps, eta=0.0, sampler=None) -> tuple[float, int, float, str]:
        d = self.defaults.decode
        guidance = validate.guidance(guidance, "guidance")
        steps = validate.steps(steps, "steps", self.train_steps)
        eta = validate.fraction(eta, "eta")
        sampler = resolve_sampler(sampler, d.sampler, eta)
        return d.guidance if guidance is None else guidance, d.steps if steps is None else steps, eta, sampler

    @sampling
    def decode(self, z: Tensor, *, seed: int = 0, x_T: Tensor | None = None, prompts: Sequence[str] | None = None,
               guidance: float | None = None, steps: int | None = None, eta: float = 0.0,
               upsample: bool = True, sampler: str | None = None) -> list[Image.Image]:
        """Images (image_size px) for raw CLIP image embeddings z (B, D), as the pipeline draws them.
        x_T (B, *noise_shape): the starting latents, drawn from `seed` when None; eta > 0 draws its
        noise from seed + 1. guidance / steps / sampler None: ``defaults.decode``. upsample: there is
        no upsampler, so it changes nothing."""
        return signed_to_pil(self._decode(z, seed=seed, x_T=x_T, prompts=prompts, guidance=guidance, steps=steps,
                                          eta=eta, upsample=upsample, sampler=sampler))

    def _decode(self, z, **kwargs) -> Tensor:
        """decode() before the PIL conversion: images (B, 3, S, S), nominally in [-1, 1] (unclamped)."""
        return self._to_pixels(self._latents(z, **kwargs))

    def _latents(self, z, *, seed=0, x_T=None, prompts=None, guidance=None, steps=None, eta=0.0, upsample=True,
                 sampler=None, **options) -> Tensor:
        """decode() before the autoencoder: latents (B, *noise_shape)."""
        z = check_z(z, self.embed_dim, self.name, self.clip_name).to(self.device)
        B, seed = z.shape[0], validate.seed(seed)
        x_T = self.noise(B, seed) if x_T is None else validate.noise(x_T, self.noise_shape, B).to(self.device)
        guidance, steps, eta, sampler = self._check_sampling(guidance, steps, eta, sampler)
        validate.flag(upsample, "upsample")
        if prompts is not None:
            if not self.reads_caption:
                raise missing(self.name, "caption input on its decoder", "prompts",
                              "it decodes from the image embedding alone")
            prompts = validate.prompts(prompts)
            if len(prompts) != B:
                raise bad_input("prompts", f"expected one prompt per embedding ({B}), got {len(prompts)}")
        if unit_norm(z, atol=1e-3):
            warnings.warn(f"z: unit-norm embeddings; the {self.name} decoder reads raw CLIP image embeddings "
                          "(stack.encode_image), not unit ones (clip.encode_image), and draws these as given",
                          stacklevel=5)  # the caller of decode
        g = self._generator(seed + 1)
        cond, uncond = self._conditions(z, prompts, g, **options)
        return sample(self._denoise, x_T, cond, uncond, self.scheduler_config, steps=steps, guidance=guidance,
                      eta=eta, generator=g, sampler=sampler)

    @sampling
    def invert(self, images, *, steps: int | None = None, z: Tensor | None = None) -> Tensor:
        """x_T (B, *noise_shape): the images (one or a list; squares at image_size) encoded by the
        autoencoder, then DDIM-inverted under the conditional decoder, unguided, given z (B, D)
        (default: the images' own raw embeddings). Decoding x_T with eta 0, guidance 1 and the same
        steps returns the images' latents."""
        steps = validate.steps(steps, "steps", self.train_steps)
        steps = self.defaults.inversion.steps if steps is None else steps
        z = None if z is None else check_z(z, self.embed_dim, self.name, self.clip_name).to(self.device)
        pil = squares(images, self.image_size)
        if z is not None and z.shape[0] != len(pil):
            raise bad_input("z", f"expected one embedding per image ({len(pil)}), got {z.shape[0]}")
        z = self.encode_image(pil).to(self.device) if z is None else z
        cond, _ = self._conditions(z, None, self._generator(0))
        return invert(self._denoise, self._to_latents(self._pixels(pil)), cond, self.scheduler_config, steps=steps)

    def _pixels(self, images: list[Image.Image]) -> Tensor:
        """(B, 3, S, S) in [-1, 1] on the stack's device, for squares of image_size."""
        return pil_to_signed(images).to(self.device)

    # ------------------------------------------------------------------ text -> image
    def __call__(self, prompts, *, seed: int = 0, prior: str = "diffusion", guidance: float | None = None,
                 steps: int | None = None, sampler: str | None = None,
                 prior_sampler: str | None = None) -> list[Image.Image]:
        """Text -> image embedding (the prior) -> images (the decoder). sampler / prior_sampler: the
        decoder's and the prior's (None: their defaults)."""
        self._check_prior_kind(prior, "prior")
        self._check_sampling(guidance, steps, 0.0, sampler)  # before the prior runs
        with validate.renamed(sampler="prior_sampler"):
            z = self.prior(prompts, seed=seed, kind=prior, sampler=prior_sampler)
        return self.decode(z, seed=seed, guidance=guidance, steps=steps, sampler=sampler)

    # ------------------------------------------------------------------ what a subclass supplies
    @property
    def prior_kinds(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def reads_caption(self) -> bool:
        raise NotImplementedError

    def prior(self, prompts, *, seed: int = 0, kind: str = "diffusion", guidance: float | None = None,
              steps: int | None = None, sampler: str | None = None) -> Tensor:
        raise NotImplementedError

    def _conditions(self, z: Tensor, prompts: list[str] | None, generator: torch.Generator,
                    **options) -> tuple[dict, dict]:
        """(cond, uncond) for ``sample``: {name: (B, ...)} each."""
        raise NotImplementedError

    def _denoise(self, x: Tensor, t: Tensor, cond: dict) -> Tensor:
        """The U-Net's prediction (N, C, h, w) for latents x (N, C, h, w) at t under cond (batch N)."""
        raise NotImplementedError

    def _to_latents(self, x: Tensor) -> Tensor:
        """Autoencoder: images (B, 3, S, S) in [-1, 1] -> latents (B, *noise_shape)."""
        raise NotImplementedError

    def _to_pixels(self, latents: Tensor) -> Tensor:
        """Autoencoder: latents (B, *noise_shape) -> images (B, 3, S, S), nominally in [-1, 1]."""
        raise NotImplementedError
