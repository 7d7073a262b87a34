"""The denoiser the samplers call (:class:`DiffusionModel`) and what conditions it (:class:`Conditioning`).

A :class:`DiffusionModel` is an unmodified diffusers network of a registered family (its
:class:`~flexdiff.backbones.base.Backbone` says how to call it), its noise schedule and the shape of one sample (for
latent models: one latent, and an optional decoder that turns latents into images).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from flexdiff.backbones import Backbone, Layout, backbone_of
from flexdiff.errors import FlexdiffError
from flexdiff.noise import Noise, initial_noise, scheduler_fingerprint
from flexdiff.samplers import PIPELINE
from flexdiff.schedule import Binding
from flexdiff.utils.hashing import weights_hash

#: The weights file of a diffusers model folder (safetensors; flexdiff never unpickles weights).
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


def entry_rows(tensor: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` rows of a per-entry tensor: one entry is broadcast, otherwise image ``i`` takes entry ``i mod P``."""
    if tensor.shape[0] in (1, n):
        return tensor.expand(n, *tensor.shape[1:]) if tensor.shape[0] == 1 else tensor
    return tensor[torch.arange(n, device=tensor.device) % tensor.shape[0]]


@dataclass
class Conditioning:
    """What a conditional UNet sees besides ``x_t`` and ``t``: text encoder states (with classifier-free guidance,
    Ho & Salimans 2022) or class labels.

    ``cond`` is (P, L, D) encoder states, ``labels`` (P,) class labels: one row per *entry* (a prompt or a label);
    image ``i`` of a run takes entry ``i mod P``. ``uncond`` (1 or P, L, D) is the negative prompt. With
    ``guidance_scale != 1`` both halves run in one UNet call on a batch of 2N (uncond first), so the partial-step
    cache holds both halves. ``seeds`` (one per entry, ``None`` = the run's seed + entry index) makes each entry's
    initial noise its own: see :meth:`noise`. ``description`` records where it came from (prompts, labels).
    """

    cond: torch.Tensor | None = None
    uncond: torch.Tensor | None = None
    guidance_scale: float = 1.0
    labels: torch.Tensor | None = None
    seeds: tuple[int | None, ...] | None = None
    description: dict[str, Any] = field(default_factory=dict)
    #: (K, 3, H, W) ControlNet conditioning images in [0, 1]: image ``i`` of a run takes control image ``i mod K``
    control: torch.Tensor | None = None

    @property
    def guided(self) -> bool:
        return self.uncond is not None and self.guidance_scale != 1.0

    @property
    def entries(self) -> int:
        """P: the number of prompts or labels images cycle through."""
        rows = self.cond if self.cond is not None else self.labels
        return 1 if rows is None else int(rows.shape[0])

    def select(self, start: int, stop: int) -> "Conditioning":
        """The conditioning of images ``start .. stop - 1`` of a run (one batch of ``generate``)."""
        if self.entries == 1:
            return self
        index = torch.arange(start, stop) % self.entries
        pick = lambda t: t if t is None or t.shape[0] == 1 else t[index.to(t.device)]  # noqa: E731
        return replace(self, cond=pick(self.cond), uncond=pick(self.uncond), labels=pick(self.labels))

    def noise(self, n: int, shape: tuple[int, ...], seed: int, start: int = 0) -> torch.Tensor:
        """Initial noise of images ``start .. start + n - 1`` of a run when entries carry seeds.

        Entry ``e`` has seed ``s_e`` (its own, or ``seed + e``); its images ``e, e + P, e + 2P ...`` are the rows of
        ``torch.randn((k, C, H, W), generator=torch.Generator().manual_seed(s_e))`` — so with one entry and no seed of
        its own this is exactly :func:`flexdiff.noise.initial_noise`. Image ``j`` is row ``j // P`` of its entry's
        stream: a later ``start`` continues each stream, never repeating a row of the images before it.
        """
        if self.seeds is None:
            return initial_noise(start + n, shape, seed)[start:]
        out = torch.empty((n, *shape))
        entries = len(self.seeds)
        for e, own in enumerate(self.seeds):
            images = [i for i in range(n) if (start + i) % entries == e]
            if images:
                rows = [(start + i) // entries for i in images]
                out[images] = initial_noise(rows[-1] + 1, shape, own if own is not None else seed + e)[rows]
        return out

    def key(self) -> str:
        """A short string that changes whenever anything that changes the images does (teacher-reference key)."""
        # the prompt file's path is left out (its prompts, seeds and encoder states are in): the same file elsewhere,
        # or named another way, must give the same key, or a resumed or shared study would be refused
        described = {k: v for k, v in self.description.items() if k not in ("prompt_file", "control_images")}  # their contents are in
        digest = hashlib.sha256(json.dumps({**described, "guidance": self.guidance_scale, "seeds": self.seeds}, sort_keys=True, default=str).encode())
        for t in (self.cond, self.uncond if self.guided else None, self.labels, self.control):
            digest.update(b"|" if t is None else t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        kind = "text" if self.cond is not None else "labels" if self.labels is not None else "none"
        return f"{kind} P={self.entries} guidance={self.guidance_scale:g} #{digest.hexdigest()[:16]}"


@dataclass
class DiffusionModel:
    """A denoiser that predicts noise, with everything the samplers need to drive it."""

    denoiser: torch.nn.Module  # the unmodified diffusers network (a UNet today)
    noise: Noise
    sample_shape: tuple[int, ...]  # (C, H, W) of one sample; a pipeline-driven model's latents as its pipeline prepares them
    name: str
    path: Path | None = None
    scheduler_config: dict[str, Any] = field(default_factory=dict)
    conditioning: Conditioning | None = None
    #: latents -> images in [-1, 1] (the VAE of a latent pipeline); None for pixel models.
    decoder: Callable[[torch.Tensor], torch.Tensor] | None = None
    #: prompts -> (P, L, D) encoder states (the text encoder of a text-to-image pipeline); None otherwise.
    prompt_encoder: Callable[[list[str]], torch.Tensor] | None = None
    #: the diffusers pipeline over these modules (the user's own object, or built on demand by ``pipeline_of``).
    pipeline: Any = None
    #: True for pipelines only their own call can drive (SDXL's added conditions, ControlNet): sampler "pipeline" only.
    pipeline_only: bool = False
    #: set for ``pipeline_only`` models: the pipeline's first denoiser call (its added conditions, ControlNet residuals,
    #: rotary ids), replayed per image of ``x``: what the cost model measures in place of ``eps``.
    replay: Callable[[torch.Tensor, int], torch.Tensor] | None = None
    #: what every call of the pipeline gets besides prompts, noise and steps (height, width, num_frames, the user's
    #: ``--pipeline-kwargs``): ``sample_shape`` is the latents the pipeline prepares with them
    call_options: dict[str, Any] = field(default_factory=dict)
    #: the pipeline's ``encode_prompt`` answers, by their arguments: text encoders run once per prompt batch of a run
    #: (:func:`flexdiff.models.pipelines.prompts_encoded_once`)
    prompt_embeddings: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def scheduler_class(self) -> str:
        """The diffusers scheduler class the folder configures (DDPM's when its config names none)."""
        return str(self.scheduler_config.get("_class_name", "DDPMScheduler"))

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    def initial_noise(self, n: int, seed: int, start: int = 0) -> torch.Tensor:
        """x_T of images ``start .. start + n - 1`` of the stream of ``seed``: :func:`flexdiff.noise.initial_noise`
        (its rows from ``start`` on), or per entry when prompts carry seeds (:meth:`Conditioning.noise`)."""
        if self.conditioning is None:
            return initial_noise(start + n, self.sample_shape, seed)[start:]
        return self.conditioning.noise(n, self.sample_shape, seed, start)

    @contextmanager
    def for_images(self, start: int, stop: int) -> Iterator[None]:
        """Within the block, the model conditions images ``start .. stop - 1`` of the run (their prompts / labels)."""
        whole = self.conditioning
        if whole is None:
            yield
            return
        self.conditioning = whole.select(start, stop)
        try:
            yield
        finally:
            self.conditioning = whole

    @property
    def backbone(self) -> Backbone:
        """The denoiser's family: its units and branches, and how to call it."""
        return backbone_of(self.denoiser)

    @property
    def layout(self) -> Layout:
        """The denoiser's units and branches (its backbone's layout)."""
        return self.backbone.layout(self.denoiser)

    def binding(self, sampler: str) -> Binding:
        """What a schedule run on this model with ``sampler`` is made for (see :mod:`flexdiff.schedule.binding`): flexdiff's
        own loop (``flexdiff:<sampler>``), or with :data:`~flexdiff.samplers.PIPELINE` the folder's diffusers scheduler
        class, exactly what ``flexdiff.enable(pipe, ...)`` finds on the pipeline."""
        if sampler == PIPELINE:  # the scheduler as the pipeline runs it (its constructor may rewrite the folder's config)
            config = dict(self.pipeline.scheduler.config) if self.pipeline is not None else self.scheduler_config
            return denoiser_binding(self.denoiser, scheduler_fingerprint(config), self.scheduler_class)
        return denoiser_binding(self.denoiser, self.noise.fingerprint(), f"flexdiff:{sampler}")

    @torch.no_grad()
    def eps(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """epsilon-hat(x_t, t) for a batch ``x`` (N, C, H, W) at integer timestep ``t`` -- for a flow-matching model the
        velocity at sigma ``t``, what its samplers integrate (``noise.to_prediction``). The samplers work in float32;
        a half-precision denoiser (``torch_dtype``) gets its input in its own dtype and returns float32."""
        if self.pipeline_only:  # the pipeline's first denoiser call, replayed: what a step costs, not a prediction
            if self.replay is None:
                raise FlexdiffError(
                    self.name,
                    "a model flexdiff's own loop can drive",
                    f"{type(self.denoiser).__name__} runs through its pipeline's own call: pass --sampler pipeline",
                )
            return self.replay(x, t)
        n, c, backbone = x.shape[0], self.conditioning, self.backbone
        dtype = next(self.denoiser.parameters()).dtype

        def call(xt: torch.Tensor, timesteps: torch.Tensor, **conditioning: Any) -> torch.Tensor:
            return backbone.call(self.denoiser, xt.to(dtype), timesteps, **conditioning).float()

        value = self.noise.model_timestep(t)  # an int (int64 tensor) or flow's sigma * 1000 (float32 tensor)
        steps = lambda k: torch.full((k,), value, device=x.device)  # noqa: E731
        if c is None:
            output = call(x, steps(n))
        elif c.cond is None:  # class-conditional UNet2DModel
            output = call(x, steps(n), class_labels=entry_rows(c.labels, n))
        elif not c.guided:
            output = call(x, steps(n), encoder_hidden_states=entry_rows(c.cond, n))
        else:
            states = torch.cat([entry_rows(c.uncond, n), entry_rows(c.cond, n)])
            out_uncond, out_cond = call(torch.cat([x, x]), steps(2 * n), encoder_hidden_states=states).chunk(2)
            output = out_uncond + c.guidance_scale * (out_cond - out_uncond)  # CFG, eq. 6 of Ho & Salimans
        return self.noise.to_prediction(output, x, t)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.denoiser.parameters())


def denoiser_binding(denoiser: torch.nn.Module, noise: str, scheduler: str) -> Binding:
    """A denoiser's binding: its weights fingerprint and branch labels, with the given noise fingerprint and scheduler."""
    return Binding(weights_hash(denoiser)[:16], backbone_of(denoiser).layout(denoiser).labels, noise, scheduler)
