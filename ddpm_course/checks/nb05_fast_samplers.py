"""Checks of notebook 05 (fast samplers): heun_step, dpmpp_2m_update and euler_ancestral_step, each also run
as a whole sampler, and karras_sigmas (the EDM step schedule)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import samplers, schedule
from ..samplers import ancestral_sigmas
from ..schedule import NoiseSchedule
from ..toy import GaussianOracle, MixtureOracle
from .framework import TOLERANCES, Case, Check, CheckFailed, _compare_tensors, _gen, _randn, case, exact


# Both exercises live in σ-space: x̃ = x/√ᾱ = x_0 + σ ε, where the probability-flow ODE is dx̃/dσ = ε̂(x̃, σ)
# (Karras et al. 2022, eq. 4). The references are written from the math of ddpm_course/samplers.py; after the
# fixed cases, a correct step is also run as a whole sampler and compared with dc.sample (see _SolverCheck).
def _heun_step_reference(x, sigma: float, sigma_next: float, eps):
    """One step of Heun's method on dx̃/dσ = ε̂ (Karras et al. 2022, Algorithm 1, deterministic):
        d = ε̂(x̃_i, σ_i),  x̃' = x̃_i + (σ_{i+1} − σ_i) d                       (an Euler step)
        if σ_{i+1} ≠ 0:  d' = ε̂(x̃', σ_{i+1}),  x̃_{i+1} = x̃_i + (σ_{i+1} − σ_i)(d + d')/2   (the correction)
    ε̂ is not defined at σ = 0, so the last step to σ = 0 is the Euler step alone."""
    d = eps(x, sigma)
    x_next = x + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_next
    return x + (sigma_next - sigma) * (d + eps(x_next, sigma_next)) / 2


def _dpmpp_2m_update_reference(x, sigma: float, sigma_next: float, D, D_prev, h_prev):
    """One DPM-Solver++(2M) update (Lu et al. 2022, Algorithm 2) from σ_i to σ_{i+1} > 0, in λ = −log σ:
        h = λ_{i+1} − λ_i = log(σ_i/σ_{i+1}),   x̃_{i+1} = (σ_{i+1}/σ_i) x̃_i − (e^{−h} − 1) D̂,
        D̂ = (1 + 1/(2r)) D_i − 1/(2r) D_{i−1},  r = h_{i−1}/h;   first step (D_prev None): D̂ = D_i."""
    if not sigma > sigma_next > 0:
        raise ValueError(f"need sigma > sigma_next > 0, got sigma={sigma}, sigma_next={sigma_next} "
                         "(the last step to σ = 0 is x̃ = D, done by the sampler loop)")
    h = math.log(sigma / sigma_next)
    D_hat = D if D_prev is None else (1 + h / (2 * h_prev)) * D - h / (2 * h_prev) * D_prev
    return (sigma_next / sigma) * x - math.expm1(-h) * D_hat


def _karras_sigmas_reference(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """EDM eq. 5, n levels from σ_max to σ_min uniform in σ^{1/ρ}, then 0: ddpm_course.schedule."""
    return schedule.karras_sigmas(n, sigma_min, sigma_max, rho)


def _karras_sigmas_cases() -> list[Case]:
    s = NoiseSchedule.linear(1000)
    lo, hi = float(s.sigmas[0]), float(s.sigmas[-1])
    return [
        case(f"n = 10, the course schedule's σ_min = {lo:.4f}, σ_max = {hi:.1f}, ρ = 7", 10, lo, hi, 7.0),
        case("n = 5, σ_min = 0.002, σ_max = 80 (EDM's), ρ = 7", 5, 0.002, 80.0, 7.0),
        case("n = 4, ρ = 1: uniform in σ", 4, 0.5, 8.0, 1.0),
        case("n = 1: σ_max, then 0", 1, 0.01, 10.0, 7.0),
    ]


def _euler_ancestral_step_reference(x, sigma: float, sigma_next: float, eps, z):
    """One Euler-ancestral step (k-diffusion's sample_euler_ancestral; = DDIM η = 1 = DDPM's β̃ step):
        x̃_{i+1} = x̃_i + (σ_down − σ_i) ε̂(x̃_i, σ_i) + σ_up z."""
    down, up = ancestral_sigmas(sigma, sigma_next)
    return x + (down - sigma) * eps(x, sigma) + up * z


class SigmaEps:
    """ε̂(x̃, σ) = (x̃ − D(x̃, σ))/σ in σ-space from an exact oracle of `ddpm_course.toy` (its `denoise`).
    ε̂ is not defined at σ = 0: calling it there raises a ValueError that says why."""

    def __init__(self, oracle, label: str):
        self.oracle, self.label = oracle, label

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        sigma = float(sigma)                                                   # a number or a 0-dim tensor
        if sigma <= 0:
            raise ValueError(f"{self.label} was called at σ = {sigma}: ε̂ is not defined at σ = 0, so the "
                             "last step to σ = 0 is the Euler step alone (Karras et al. 2022, Algorithm 1)")
        return (x - self.oracle.denoise(x, sigma)) / sigma

    def __repr__(self) -> str:
        return self.label


def _nb05_oracles():
    gauss = SigmaEps(GaussianOracle(None, mean=0.5, std=0.5), "ε̂ of Gaussian data N(0.5, 0.5²)")
    mix = SigmaEps(MixtureOracle(None, means=[[-1.0, 0.0], [1.0, 0.5], [0.0, -1.5]], stds=[0.15, 0.3, 0.2],
                                 weights=[0.5, 0.3, 0.2]), "ε̂ of a 3-component Gaussian mixture")
    return gauss, mix


def _heun_step_cases() -> list[Case]:
    g, (gauss, mix) = _gen(50), _nb05_oracles()
    return [
        case("Gaussian data, points (6,2), σ: 2.0 → 1.0", 0.5 + 2.0 * _randn(g, 6, 2), 2.0, 1.0, gauss),
        case("mixture, float64 points (5,2), σ: 10 → 4", 10.0 * _randn(g, 5, 2).double(), 10.0, 4.0, mix),
        case("mixture, points (6,2), a short step σ: 0.5 → 0.4", 0.5 * _randn(g, 6, 2), 0.5, 0.4, mix),
        case("Gaussian data, images (2,1,4,4), σ: 80 → 20", 80.0 * _randn(g, 2, 1, 4, 4), 80.0, 20.0, gauss),
        case("mixture, points (6,2), the last step σ: 0.3 → 0 (no correction)", 0.3 * _randn(g, 6, 2),
             0.3, 0.0, mix),
    ]


def _dpmpp_2m_update_cases() -> list[Case]:
    g = _gen(51)
    pts = [_randn(g, 6, 2) for _ in range(3)]
    img = [_randn(g, 2, 1, 4, 4).double() for _ in range(3)]
    h_prev = math.log(20.0 / 8.0)
    return [
        case("first step (D_prev=None, h_prev=None): the DDIM step, σ: 20 → 8", 20 * pts[0], 20.0, 8.0,
             pts[1], None, None),
        case("points (6,2), σ: 8 → 3, h_prev = log(20/8)", 8 * pts[0], 8.0, 3.0, pts[1], pts[2], h_prev),
        case("float64 images (2,1,4,4), σ: 1.0 → 0.2, h_prev = 0.3 (r = h_prev/h far from 1)", img[0], 1.0,
             0.2, img[1], img[2], 0.3),
        case("float64 images (2,1,4,4), equal steps in λ: σ: 0.5 → 0.25, h_prev = log 2", img[2], 0.5, 0.25,
             img[0], img[1], math.log(2.0)),
    ]


def _euler_ancestral_step_cases() -> list[Case]:
    g, (gauss, mix) = _gen(53), _nb05_oracles()
    return [
        case("Gaussian data, points (6,2), σ: 2.0 → 1.0", 0.5 + 2.0 * _randn(g, 6, 2), 2.0, 1.0, gauss,
             _randn(g, 6, 2)),
        case("mixture, float64 points (5,2), σ: 10 → 4", 10.0 * _randn(g, 5, 2).double(), 10.0, 4.0, mix,
             _randn(g, 5, 2).double()),
        case("mixture, points (6,2), a short step σ: 0.5 → 0.45", 0.5 * _randn(g, 6, 2), 0.5, 0.45, mix,
             _randn(g, 6, 2)),
        case("Gaussian data, images (2,1,4,4), σ: 80 → 20", 80.0 * _randn(g, 2, 1, 4, 4), 80.0, 20.0, gauss,
             _randn(g, 2, 1, 4, 4)),
        case("mixture, points (6,2), the last step σ: 0.3 → 0 (σ_up = 0: no noise)", 0.3 * _randn(g, 6, 2),
             0.3, 0.0, mix, _randn(g, 6, 2)),
    ]


def _which_part_of_the_ancestral_step(student_fn) -> str:
    """Name the part of an Euler-ancestral step that is wrong: the deterministic move (run with z = 0) or
    the noise (the change when z is added), with the slips seen most often."""
    gauss = _nb05_oracles()[0]
    x, z, sig, nxt = 0.5 + 2.0 * _randn(_gen(54), 6, 2), _randn(_gen(55), 6, 2), 2.0, 1.0
    down, up = ancestral_sigmas(sig, nxt)
    d = gauss(x, sig)
    try:
        still = student_fn(x.clone(), sig, nxt, gauss, torch.zeros_like(z))
        again = student_fn(x.clone(), sig, nxt, gauss, torch.zeros_like(z))
        moved = student_fn(x.clone(), sig, nxt, gauss, z.clone())
    except Exception:                                                 # the cases already said what raised
        return ""
    if not all(isinstance(v, torch.Tensor) and v.shape == x.shape for v in (still, again, moved)):
        return ""
    close = lambda a, b: bool(torch.allclose(a.double(), b.double(), rtol=1e-4, atol=1e-6))  # noqa: E731
    if not close(still, again):
        return ("two calls with the same inputs and z = 0 gave different results: the step must use the z it "
                "is given (the sampler draws it), not noise of its own")
    if not close(still, x + (down - sig) * d):
        if close(still, x + (nxt - sig) * d):
            return ("with z = 0 your step is the plain Euler step to σ_{i+1}; the deterministic part must "
                    f"stop at σ_down = √(σ_{{i+1}}² − σ_up²) (here {down:.4g}, not {nxt:g}), because the "
                    "noise σ_up z brings the state back up to σ_{i+1}")
        return f"with z = 0 your step is not the Euler step x̃ + (σ_down − σ_i) ε̂ to σ_down = {down:.4g}"
    noise = moved - still
    ratio = float((noise.double() * z.double()).sum() / z.double().pow(2).sum())
    if close(noise, ratio * z):
        for name, value in (("σ_{i+1}", nxt), ("σ_i", sig), ("σ_up²", up**2), ("√(σ_i² − σ_{i+1}²)",
                                                                               math.sqrt(sig**2 - nxt**2))):
            if math.isclose(ratio, value, rel_tol=1e-4):
                return f"the deterministic part is right; the noise is scaled by {name} = {value:.4g} " \
                       f"instead of σ_up = {up:.4g}"
        return f"the deterministic part is right; the noise is scaled by {ratio:.4g}, not σ_up = {up:.4g}"
    return "the deterministic part is right; the noise added is not a multiple of z (use the z you are given)"


class _AncestralCheck(Check):
    """euler_ancestral_step: the fixed cases; on a failure, which part of the step is wrong; once the
    cases pass, the step run as a whole seeded sampler against dc.sample(sampler="euler_ancestral")."""

    def _run(self, student_fn: Callable) -> Callable:
        try:
            fn = super()._run(student_fn)
        except CheckFailed as err:
            part = _which_part_of_the_ancestral_step(student_fn)
            raise CheckFailed(err.args[0] + (f"\nwhich part is wrong: {part}" if part else "")) from err
        if fn is not student_fn:                                      # blank exercise: the reference
            return fn
        s = NoiseSchedule.linear(1000)
        mixture = MixtureOracle(s, means=[[-1.0, 0.0], [1.0, 0.5]], stds=[0.2, 0.4])
        x_T = torch.randn(16, 2, generator=_gen(56), dtype=torch.float64)
        sigmas = s.grid(8, "karras").sigmas.tolist()
        expected = samplers.sample(mixture, s, x_T, sampler="euler_ancestral", steps=8, spacing="karras",
                                   generator=_gen(57))
        where = f"{self.name}(iterated over an 8-step Karras grid, mixture data, seeded noise)"
        eps = SigmaEps(mixture, "ε̂ of a 2-component mixture")
        try:
            got = euler_ancestral_sampler_from_step(student_fn, eps, x_T * math.sqrt(1 + sigmas[0] ** 2),
                                                    sigmas, _gen(57))
        except Exception as err:
            raise CheckFailed(f"{where} raised {type(err).__name__}: {err}") from err
        _compare_tensors(where + " vs dc.sample(sampler='euler_ancestral')", got, expected, TOLERANCES)
        print("✓ euler_ancestral_step: run as a whole sampler with the same noise it reproduces "
              "dc.sample(sampler='euler_ancestral', spacing='karras', steps=8)")
        return student_fn


def euler_ancestral_sampler_from_step(step, eps, x, sigmas, generator):
    """Euler ancestral from a step function, z ~ N(0, I) drawn from ``generator`` on every step that adds
    noise (σ_{i+1} > 0) in the order dc.sample draws it."""
    for sig, sig_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype) if sig_next > 0 else torch.zeros_like(x)
        x = step(x, sig, sig_next, eps, z)
    return x


def heun_sampler_from_step(step, eps, x, sigmas):
    """Heun's sampler (Algorithm 1) from a step function: x̃_{i+1} = step(x̃_i, σ_i, σ_{i+1}, eps)."""
    for sig, sig_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        x = step(x, sig, sig_next, eps)
    return x


def dpmpp_2m_sampler_from_update(update, eps, x, sigmas):
    """DPM-Solver++(2M) (Algorithm 2) from an update function: D_i = x̃_i − σ_i ε̂ each step, the update
    while σ_{i+1} > 0, and x̃ = D_i on the last step to σ = 0."""
    D_prev = h_prev = None
    for sig, sig_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        D = x - sig * eps(x, sig)                                              # data prediction x̂_0
        if sig_next == 0:
            return D
        x = update(x, sig, sig_next, D, D_prev, h_prev)
        D_prev, h_prev = D, math.log(sig / sig_next)
    return x


class _SolverCheck(Check):
    """A step check that, once every case agrees, also runs the learner's step as a whole sampler on a
    Karras grid with an exact mixture denoiser and compares the sample with ``dc.sample(sampler=...)``."""

    def __init__(self, name, reference, cases, *, sampler: str, loop: Callable, steps: int, doc: str):
        super().__init__(name, reference, cases, doc=doc)
        self.sampler, self.loop, self.steps = sampler, loop, steps

    def whole_sampler(self, x_T: torch.Tensor):
        """The package's sample from x_T on the Karras grid, and what a loop needs to redo it in σ-space:
        (sample, ε̂(x̃, σ), x̃ at σ_max, the list of σ ending in 0)."""
        s = NoiseSchedule.linear(1000)
        mixture = MixtureOracle(s, means=[[-1.0, 0.0], [1.0, 0.5]], stds=[0.2, 0.4])
        sigmas = s.grid(self.steps, "karras").sigmas.tolist()
        x_s = x_T * math.sqrt(1 + sigmas[0] ** 2)                              # x̃ = x/√ᾱ, ᾱ = 1/(1 + σ²)
        expected = samplers.sample(mixture, s, x_T, sampler=self.sampler, steps=self.steps, spacing="karras")
        return expected, SigmaEps(mixture, "ε̂ of a 2-component mixture"), x_s, sigmas

    def __call__(self, student_fn: Callable) -> Callable:
        fn = super().__call__(student_fn)
        if fn is not student_fn:                                               # blank exercise: the reference
            return fn
        x_T = torch.randn(16, 2, generator=_gen(52), dtype=torch.float64)
        expected, eps, x_s, sigmas = self.whole_sampler(x_T)
        where = f"{self.name}(iterated over a {self.steps}-step Karras grid, mixture data)"
        try:
            got = self.loop(student_fn, eps, x_s, sigmas)
        except Exception as err:
            raise CheckFailed(f"{where} raised {type(err).__name__}: {err}") from err
        _compare_tensors(where + f" vs dc.sample(sampler={self.sampler!r})", got, expected, TOLERANCES)
        print(f"✓ {self.name}: run as a whole sampler it reproduces dc.sample(sampler={self.sampler!r}, "
              f"spacing='karras', steps={self.steps})")
        return student_fn


heun_step = _SolverCheck(
    "heun_step", exact(_heun_step_reference), _heun_step_cases, sampler="heun", loop=heun_sampler_from_step,
    steps=6, doc="heun_step(x, sigma, sigma_next, eps) -> x̃_{i+1}: Euler step with slope eps(x, sigma), then "
                 "the trapezoidal correction with eps at sigma_next unless sigma_next == 0 (Karras Alg. 1).")
dpmpp_2m_update = _SolverCheck(
    "dpmpp_2m_update", exact(_dpmpp_2m_update_reference), _dpmpp_2m_update_cases, sampler="dpmpp_2m",
    loop=dpmpp_2m_sampler_from_update, steps=8,
    doc="dpmpp_2m_update(x, sigma, sigma_next, D, D_prev, h_prev) -> (sigma_next/sigma) x - expm1(-h) D_hat, "
        "h = log(sigma/sigma_next), D_hat = (1 + 1/(2r)) D - D_prev/(2r), r = h_prev/h; D_hat = D if D_prev "
        "is None (Lu et al. 2022, Algorithm 2).")


euler_ancestral_step = _AncestralCheck(
    "euler_ancestral_step", exact(_euler_ancestral_step_reference), _euler_ancestral_step_cases,
    doc="euler_ancestral_step(x, sigma, sigma_next, eps, z) -> x + (sigma_down - sigma) * eps(x, sigma) + "
        "sigma_up * z, sigma_up = sqrt(sigma_next² (sigma² - sigma_next²) / sigma²), sigma_down = "
        "sqrt(sigma_next² - sigma_up²) (k-diffusion's Euler ancestral).")


karras_sigmas = Check(
    "karras_sigmas", _karras_sigmas_reference, _karras_sigmas_cases,
    doc="karras_sigmas(n, sigma_min, sigma_max, rho=7.0) -> float64 tensor of n + 1 levels: "
        "(sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho for i = 0..n-1, then 0 "
        "(Karras et al. 2022, eq. 5; n = 1 gives sigma_max, 0).")


CHECKS = (heun_step, dpmpp_2m_update, karras_sigmas, euler_ancestral_step)   # in notebook order: checks.ALL
