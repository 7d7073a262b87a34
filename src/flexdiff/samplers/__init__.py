"""Samplers: small generators over an explicit decreasing list of timesteps (k-diffusion style), one per module.

Each module registers its generator (:func:`register_sampler`) with what it needs; adding a sampler is adding a file
here. The registry, the shared checks and the protocol are in :mod:`._base`; see its docstring for the contract.
"""

from flexdiff.samplers._base import (
    AUTO,
    DEFAULT_SAMPLERS,
    PIPELINE,
    SAMPLERS,
    Denoise,
    NoiseSampler,
    Sampler,
    SamplerInfo,
    SamplerSteps,
    Steps,
    alpha_sigma_lambda,
    check_eta,
    check_sampler,
    check_sampler_for,
    check_sigmas,
    check_timesteps,
    get_sampler,
    register_sampler,
    resolve_sampler,
    run_steps,
    same_trajectory,
    sampler_info,
    sampler_names,
    whole_loop,
)
from flexdiff.samplers.timesteps import uniform_timesteps
from flexdiff.utils.registry import import_submodules

import_submodules(__name__, __path__)

from flexdiff.samplers.ddim import ddim  # noqa: E402 - after the registry is filled
from flexdiff.samplers.ddim_2m import ddim_2m, teacher_error_share  # noqa: E402
from flexdiff.samplers.dpmpp_2m import dpmpp_2m, multistep_2m  # noqa: E402
from flexdiff.samplers.flow_dpmpp_2m import flow_dpmpp_2m  # noqa: E402
from flexdiff.samplers.flow_euler import flow_euler  # noqa: E402

__all__ = [
    "AUTO",
    "DEFAULT_SAMPLERS",
    "PIPELINE",
    "SAMPLERS",
    "Denoise",
    "NoiseSampler",
    "Sampler",
    "SamplerInfo",
    "SamplerSteps",
    "Steps",
    "alpha_sigma_lambda",
    "check_eta",
    "check_sampler_for",
    "check_sigmas",
    "check_sampler",
    "check_timesteps",
    "ddim",
    "ddim_2m",
    "dpmpp_2m",
    "flow_dpmpp_2m",
    "flow_euler",
    "get_sampler",
    "multistep_2m",
    "register_sampler",
    "resolve_sampler",
    "run_steps",
    "same_trajectory",
    "sampler_info",
    "sampler_names",
    "teacher_error_share",
    "uniform_timesteps",
    "whole_loop",
]
