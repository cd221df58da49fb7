"""Latent diffusion: training targets, samplers and classifier-free guidance (InstructME,
arXiv 2308.14360, Method: latent diffusion).

Noise schedules and solvers come from ``diffusers``: a ``DDPMScheduler`` defines the forward
process used in training (``z_t = sqrt(a_t) z_0 + sqrt(1 - a_t) eps``); sampling uses one of
the samplers of :data:`instructme.samplers.SAMPLERS` (DPM-Solver++, DDIM, ancestral DDPM),
all built from the same training schedule. The model predicts ``epsilon`` or the velocity
``v = sqrt(a_t) eps - sqrt(1 - a_t) z_0`` (``prediction_type``).

Samplers take any denoiser callable ``(z_t [B, ...], t [B] long) -> prediction`` so they can
be tested with an analytic denoiser; the editor's, with classifier-free guidance on the
instruction, is :class:`instructme.editing.guidance.GuidedDenoiser`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from instructme.samplers import lookup, sampler_names

PREDICTION_TYPES = ("epsilon", "v_prediction")

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ProgressCallback = Callable[[int, int], None]


class Diffusion:
    """Forward process, training loss and samplers for one noise schedule.

    ``beta_schedule``: a ``diffusers`` schedule name (``squaredcos_cap_v2`` = cosine,
    ``scaled_linear``, ``linear``).
    """

    def __init__(self, prediction_type: str = "v_prediction", num_train_timesteps: int = 1000,
                 beta_schedule: str = "squaredcos_cap_v2") -> None:
        from diffusers import DDPMScheduler

        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, "
                             f"got {prediction_type!r}")
        self.prediction_type = prediction_type
        self.num_train_timesteps = num_train_timesteps
        self.beta_schedule = beta_schedule
        self.scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps,
                                       beta_schedule=beta_schedule,
                                       prediction_type=prediction_type, clip_sample=False)
        self.alphas_cumprod = self.scheduler.alphas_cumprod.float()

    @classmethod
    def from_config(cls, config: Any) -> Diffusion:
        """From any config with ``prediction_type``, ``num_train_timesteps``, ``beta_schedule``
        (e.g. :class:`~instructme.models.unet.EditorConfig`)."""
        return cls(config.prediction_type, config.num_train_timesteps, config.beta_schedule)

    # ------------------------------------------------------------------ training
    def _coeffs(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``sqrt(a_t)``, ``sqrt(1 - a_t)`` shaped ``[B, 1, ...]`` like ``like``."""
        ac = self.alphas_cumprod.to(like.device)[t.to(like.device).long()]
        shape = (-1,) + (1,) * (like.dim() - 1)
        return ac.sqrt().view(shape).to(like.dtype), (1 - ac).sqrt().view(shape).to(like.dtype)

    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None,
                         device: torch.device | str = "cpu") -> torch.Tensor:
        """Uniform training timesteps ``[B]`` (long)."""
        gdev = generator.device if generator is not None else "cpu"
        t = torch.randint(0, self.num_train_timesteps, (batch,), generator=generator, device=gdev)
        return t.to(device)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``z_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise``."""
        a, s = self._coeffs(t, x0)
        return a * x0 + s * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the model is trained to predict: ``noise`` or ``v``."""
        if self.prediction_type == "epsilon":
            return noise
        a, s = self._coeffs(t, x0)
        return a * noise - s * x0

    def predict_x0(self, pred: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Clean-sample estimate from a model prediction at ``x_t``."""
        a, s = self._coeffs(t, x_t)
        if self.prediction_type == "epsilon":
            return (x_t - s * pred) / a.clamp_min(1e-8)
        return a * x_t - s * pred

    def training_loss(self, model: Denoiser, x0: torch.Tensor,
                      generator: torch.Generator | None = None,
                      t: torch.Tensor | None = None,
                      noise: torch.Tensor | None = None) -> torch.Tensor:
        """Mean-squared error of ``model(z_t, t)`` against :meth:`target` (a scalar).

        ``t [B]`` and ``noise`` (shaped like ``x0``) are drawn from ``generator`` unless
        given (in this order: timesteps, then noise)."""
        if t is None:
            t = self.sample_timesteps(x0.shape[0], generator, x0.device)
        if noise is None:
            gdev = generator.device if generator is not None else x0.device
            noise = torch.randn(x0.shape, generator=generator, device=gdev, dtype=x0.dtype)
        noise = noise.to(x0.device, x0.dtype)
        pred = model(self.add_noise(x0, noise, t), t)
        return F.mse_loss(pred.float(), self.target(x0, noise, t).float())

    # ------------------------------------------------------------------ sampling
    def make_sampler(self, sampler: str = "dpm", steps: int = 50) -> Any:
        """A fresh ``diffusers`` scheduler for ``sampler`` (a name of
        :data:`instructme.samplers.SAMPLERS`) with ``steps`` timesteps set."""
        spec = lookup(sampler)
        if spec is None:
            raise ValueError(f"unknown sampler {sampler!r} (known: "
                             f"{', '.join(sampler_names())})")
        common: dict[str, Any] = dict(num_train_timesteps=self.num_train_timesteps,
                                      beta_schedule=self.beta_schedule,
                                      prediction_type=self.prediction_type,
                                      timestep_spacing="trailing")
        sched = spec.build(common)
        if steps < 1:
            raise ValueError(f"sampling steps must be >= 1, got {steps}")
        with warnings.catch_warnings():  # diffusers' np.array(tensor) under NumPy 2
            warnings.simplefilter("ignore", DeprecationWarning)
            sched.set_timesteps(min(steps, self.num_train_timesteps))
        return sched

    @torch.no_grad()
    def sample(self, denoiser: Denoiser, shape: tuple[int, ...], *, sampler: str = "dpm",
               steps: int = 50, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
               noise: torch.Tensor | None = None,
               callback: ProgressCallback | None = None) -> torch.Tensor:
        """Draw ``x0 [shape]`` by integrating from pure noise with ``denoiser``.

        ``noise`` overrides the initial sample; ``callback(step, total)`` is called after every
        step (for a progress bar). Deterministic given ``generator`` (DDPM draws its per-step
        noise from it too).
        """
        sched = self.make_sampler(sampler, steps)
        stochastic = lookup(sampler).stochastic  # type: ignore[union-attr]
        gdev = generator.device if generator is not None else "cpu"
        if noise is None:
            noise = torch.randn(shape, generator=generator, device=gdev, dtype=torch.float32)
        x = noise.to(device, torch.float32) * sched.init_noise_sigma
        timesteps = sched.timesteps
        for i, t in enumerate(timesteps):
            tb = torch.full((shape[0],), int(t), device=device, dtype=torch.long)
            model_in = sched.scale_model_input(x, t)
            pred = denoiser(model_in.to(dtype), tb).float()
            if stochastic:  # its per-step noise comes from the caller's generator
                x = sched.step(pred, t, x, generator=generator).prev_sample
            else:
                x = sched.step(pred, t, x).prev_sample
            if callback is not None:
                callback(i + 1, len(timesteps))
        return x

