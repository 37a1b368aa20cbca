"""Checks of notebook 10 (flow matching and rectified flow): flow_pair (the straight path and its velocity,
the flow-matching target), vp_to_flow (the change of variables from the course's VP state to flow time) and
straightness (Liu et al.'s measure on a discretised path). Each case's label names the property it tests."""

from __future__ import annotations

import torch

from .. import flow
from ..schedule import NoiseSchedule
from .framework import Case, Check, _gen, _randn, case, exact


# --- exercise 10.1: the straight path and its velocity ---------------------------------------------------
def _flow_pair_cases() -> list[Case]:
    g = _gen(100)
    x0, eps = _randn(g, 4, 2).double(), _randn(g, 4, 2).double()
    img0, img1 = _randn(g, 3, 1, 5, 5), _randn(g, 3, 1, 5, 5)
    return [
        case("τ = 0: the path starts at the data, x_τ = x_0", x0, eps, 0.0),
        case("τ = 1: the path ends at the noise, x_τ = ε", x0, eps, 1.0),
        case("τ = 0.3, points (4,2): x_τ = (1 − τ) x_0 + τ ε and u = ε − x_0", x0, eps, 0.3),
        case("per-sample τ (3,) for images (3,1,5,5)", img0, img1, torch.tensor([0.1, 0.5, 0.9])),
    ]


def _flow_pair_reference(x0, eps, tau):
    """(x_τ, u) = ((1 − τ) x_0 + τ ε, ε − x_0): ddpm_course.flow.interpolate and velocity_target."""
    return flow.interpolate(x0, eps, tau), flow.velocity_target(x0, eps)


# --- exercise 10.2: VP state → flow time -----------------------------------------------------------------
def _vp_to_flow_cases() -> list[Case]:
    g, s = _gen(101), NoiseSchedule.linear(1000)
    t = torch.tensor([0, 250, 500, 999])
    z, img = _randn(g, 4, 2).double(), _randn(g, 4, 1, 4, 4)
    return [
        case("ᾱ = 1/2: equal signal and noise, τ = 1/2", z, torch.full((4,), 0.5, dtype=torch.float64)),
        case("the linear schedule at t = 0, 250, 500, 999: τ = σ/(1 + σ) with σ = √((1 − ᾱ)/ᾱ)", z,
             s.alpha_bars[t]),
        case("float32 images (4,1,4,4): x_τ keeps the dtype of z", img, s.alpha_bars[t]),
    ]


def _vp_to_flow_reference(z, ab):
    """x_τ = z/(√ᾱ + √(1 − ᾱ)), τ = √(1 − ᾱ)/(√ᾱ + √(1 − ᾱ)): ddpm_course.flow.vp_to_flow."""
    return flow.vp_to_flow(z, ab)


# --- exercise 10.3: straightness ---------------------------------------------------------------------------
def _straightness_cases() -> list[Case]:
    g = _gen(102)
    taus = flow.uniform_taus(4)
    a, b = _randn(g, 6, 2).double(), _randn(g, 6, 2).double()
    line = [flow.interpolate(b, a, float(t)) for t in taus]
    wiggle = [p + (0.3 * _randn(g, 6, 2).double() if 0 < k < 4 else 0) for k, p in enumerate(line)]
    uneven = torch.tensor([1.0, 0.9, 0.5, 0.2, 0.0], dtype=torch.float64)
    bend = [torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 0.0]])]
    return [
        case("a straight line at constant speed: S = 0", line, taus),
        case("a bend (2,0) → (1,1) → (0,0) over τ = 1, 0.5, 0: S = 4", bend,
             torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)),
        case("a wiggly path of 6 points, 5 equal levels", wiggle, taus),
        case("uneven levels τ = 1, 0.9, 0.5, 0.2, 0: each segment weighted by its Δτ", wiggle, uneven),
    ]


def _straightness_reference(path, taus):
    """S = Σ_k Δτ_k E‖chord − u_k‖² / (τ_max − τ_min): ddpm_course.flow.straightness."""
    return flow.straightness(path, taus)


flow_pair = Check(
    "flow_pair", exact(_flow_pair_reference), _flow_pair_cases, outputs=("x_tau", "u"),
    doc="flow_pair(x0, eps, tau) -> (x_tau, u): x_tau = (1 − tau)·x0 + tau·eps and u = eps − x0; tau a "
        "number or a tensor (B,) (rectified flow, Liu et al. 2023).")
vp_to_flow = Check(
    "vp_to_flow", _vp_to_flow_reference, _vp_to_flow_cases, outputs=("x_tau", "tau"),  # τ: ab's dtype
    doc="vp_to_flow(z, ab) -> (x_tau, tau): x_tau = z / (√ab + √(1 − ab)) and tau = √(1 − ab) / (√ab + "
        "√(1 − ab)), ab a float64 tensor (B,).")
straightness = Check(
    "straightness", _straightness_reference, _straightness_cases,
    doc="straightness(path, taus) -> float: with chord = (path[0] − path[-1])/(taus[0] − taus[-1]) and "
        "u_k = (path[k] − path[k+1])/Δτ_k, S = Σ_k Δτ_k · mean over the batch of ‖chord − u_k‖² (summed over "
        "the other dimensions), divided by taus[0] − taus[-1].")

CHECKS = (flow_pair, vp_to_flow, straightness)   # in notebook order: ddpm_course.checks.ALL
