"""The sampler registry: every name a sampler goes by, and how its scheduler is built.

InstructME (arXiv 2308.14360, Method: latent diffusion) samples the target latents with a
few-step solver of the training schedule. :data:`SAMPLERS` is the one table of samplers:
the ``instructme edit`` / ``pipeline`` / ``eval generate`` choices, the web studio's check,
:class:`~instructme.editing.settings.EditSettings` and :meth:`instructme.diffusion.Diffusion.
make_sampler` all read it. Each entry builds a fresh ``diffusers`` scheduler from the training
schedule (``timestep_spacing="trailing"``, so the last step reaches ``t = 0``).

This module does not import torch or diffusers until a scheduler is built (the CLI reads
the names when it parses its arguments).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["SAMPLERS", "Sampler", "sampler_names", "lookup"]


def _dpm(common: dict[str, Any]) -> Any:
    from diffusers import DPMSolverMultistepScheduler

    # the cosine schedule's last alphas are ~0: clip lambda there, as diffusers advises
    clip = -5.1 if common["beta_schedule"] == "squaredcos_cap_v2" else -float("inf")
    return DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                       lambda_min_clipped=clip)


def _ddim(common: dict[str, Any]) -> Any:
    from diffusers import DDIMScheduler

    return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True)


def _ddpm(common: dict[str, Any]) -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler(**common, clip_sample=False)


@dataclass(frozen=True)
class Sampler:
    """One sampler of the registry.

    ``name``: what users type; ``scheduler``: the algorithm's own name (recorded in
    ``generate.json`` of ``instructme eval generate``); ``aliases``: other names accepted;
    ``stochastic``: each step draws noise from the caller's generator; ``build(common)``: a
    ``diffusers`` scheduler from the training schedule's keyword arguments (``common``:
    ``num_train_timesteps``, ``beta_schedule``, ``prediction_type``, ``timestep_spacing``),
    timesteps not yet set.
    """

    name: str
    scheduler: str
    summary: str
    build: Callable[[dict[str, Any]], Any]
    aliases: tuple[str, ...] = ()
    stochastic: bool = False


#: The samplers, by name (the first is listed first in help texts).
SAMPLERS: dict[str, Sampler] = {s.name: s for s in (
    Sampler("dpm", "dpmsolver++", "DPM-Solver++ (2nd order multistep)", _dpm,
            aliases=("dpmsolver++",)),
    Sampler("ddim", "ddim", "DDIM (eta = 0, deterministic)", _ddim),
    Sampler("ddpm", "ddpm", "ancestral DDPM (stochastic; needs many steps)", _ddpm,
            stochastic=True),
)}


def sampler_names() -> list[str]:
    """The names users choose from (``dpm``, ``ddim``, ``ddpm``), without aliases."""
    return list(SAMPLERS)


def lookup(name: object) -> Sampler | None:
    """The sampler called ``name`` (a name or an alias), else None."""
    if not isinstance(name, str):
        return None
    found = SAMPLERS.get(name)
    if found is None:
        found = next((s for s in SAMPLERS.values() if name in s.aliases), None)
    return found
