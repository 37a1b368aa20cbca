"""Exercise checks: run the learner's function on small fixed inputs and compare it with the reference.

    snr = dc.checks.snr(snr)    # ✓ message and your function back, or CheckFailed saying what is wrong

A check tells *which property* failed: the type of the result, its shape, dtype or device, a NaN, or the
first wrong value (index, expected, got). When the exercise is still blank (the function raises
NotImplementedError) the check prints a short note and returns the reference implementation, so a
student notebook runs top to bottom with every exercise blank.

Layout: ``framework.py`` holds the machinery (Check, compare, CheckFailed, the case helpers), and each
notebook has its own module, ``nbNN_topic.py``, whose ``CHECKS`` lists its checks in the order the notebook
uses them. ``ALL`` maps every check's name to it, notebook by notebook. Adding a check for a new exercise
is one line in its notebook's module (and a name in that module's ``CHECKS``)::

    ddim_step = Check("ddim_step", reference_fn, cases_fn)    # cases_fn() -> list of case(label, *args)

``TIME_LIMIT_S`` here is a copy: `compare` reads ``ddpm_course.checks.framework.TIME_LIMIT_S``.
"""

from __future__ import annotations

from . import (
    framework,
    nb00_welcome,
    nb01_forward,
    nb02_noise_prediction,
    nb03_ddpm,
    nb04_ddim,
    nb05_fast_samplers,
    nb06_evaluation,
    nb07_few_step,
    nb08_guidance,
    nb09_consistency,
    nb10_flow,
)
from .framework import (
    TIME_LIMIT_S,
    TOLERANCES,
    Case,
    Check,
    CheckFailed,
    CheckTimeout,
    case,
    compare,
    diagnose,
    exact,
    is_reference,
    time_limit,
    whose,
)
from .nb00_welcome import snr
from .nb01_forward import alpha_bars, log_snr, q_sample
from .nb02_noise_prediction import simple_loss, timestep_embedding
from .nb03_ddpm import DDPM_VARIANCES, ddpm_step, eps_to_x0, posterior_mean_variance, score_fd
from .nb04_ddim import ddim_sampler, ddim_step, slerp
from .nb05_fast_samplers import (
    SigmaEps,
    ancestral_sigmas,
    dpmpp_2m_sampler_from_update,
    dpmpp_2m_update,
    euler_ancestral_sampler_from_step,
    euler_ancestral_step,
    heun_sampler_from_step,
    heun_step,
    karras_sigmas,
)
from .nb05_fast_samplers import _dpmpp_2m_update_reference as _dpmpp_2m_update_reference  # for tests
from .nb05_fast_samplers import _euler_ancestral_step_reference as _euler_ancestral_step_reference
from .nb05_fast_samplers import _heun_step_reference as _heun_step_reference
from .nb06_evaluation import fit_cost, frechet_distance, inception_score, mmd2_unbiased
from .nb07_few_step import distill_target, loss_weight, two_ddim_steps
from .nb08_guidance import GuidedWith, class_mixture, drop_labels, guided_eps, per_digit_accuracy
from .nb09_consistency import cd_target, multistep, skip_out
from .nb10_flow import flow_pair, straightness, vp_to_flow

NOTEBOOKS = (nb00_welcome, nb01_forward, nb02_noise_prediction, nb03_ddpm, nb04_ddim, nb05_fast_samplers,
             nb06_evaluation, nb07_few_step, nb08_guidance, nb09_consistency,
             nb10_flow)

# Every check, name -> Check, in notebook order (a new notebook's module goes into NOTEBOOKS above).
ALL: dict[str, Check] = {c.name: c for module in NOTEBOOKS for c in module.CHECKS}

__all__ = [
    "ALL", "NOTEBOOKS", "TIME_LIMIT_S", "TOLERANCES", "Case", "Check", "CheckFailed", "CheckTimeout", "case",
    "compare", "diagnose", "exact", "is_reference", "time_limit", "whose", "framework",
    # helpers the notebooks and tests use
    "DDPM_VARIANCES", "SigmaEps", "heun_sampler_from_step", "dpmpp_2m_sampler_from_update", "class_mixture",
    "GuidedWith", "ancestral_sigmas", "euler_ancestral_sampler_from_step",
    # the checks, in notebook order
    "snr", "alpha_bars", "q_sample", "log_snr", "simple_loss", "timestep_embedding",
    "posterior_mean_variance", "ddpm_step", "eps_to_x0", "score_fd", "ddim_step", "ddim_sampler", "slerp",
    "heun_step", "dpmpp_2m_update", "karras_sigmas", "euler_ancestral_step", "frechet_distance",
    "mmd2_unbiased", "inception_score", "fit_cost", "two_ddim_steps", "distill_target", "loss_weight",
    "drop_labels", "guided_eps", "per_digit_accuracy", "skip_out", "cd_target", "multistep",
    "flow_pair", "vp_to_flow", "straightness",
]
