"""Typical mistakes in the exercises of notebook 10 (flow matching and rectified flow): flow_pair, vp_to_flow,
straightness, each caught with a message naming the property that failed; the references are
ddpm_course.flow's functions. The contract every check keeps is in tests/test_checks.py."""

import pytest
import torch

from ddpm_course import checks, flow
from ddpm_course.checks import CheckFailed


def pair_with_the_velocity_reversed(x0, eps, tau):
    x, u = checks.flow_pair.reference(x0, eps, tau)
    return x, -u                                                     # x_0 − ε: the direction of sampling


def pair_with_tau_reversed(x0, eps, tau):
    tau = torch.as_tensor(tau, dtype=x0.dtype).reshape(-1, *[1] * (x0.dim() - 1))
    return tau * x0 + (1 - tau) * eps, eps - x0                      # τ = 0 would be the noise


def pair_vp_interpolation(x0, eps, tau):
    tau = torch.as_tensor(tau, dtype=x0.dtype).reshape(-1, *[1] * (x0.dim() - 1))
    return (1 - tau**2).sqrt() * x0 + tau * eps, eps - x0            # variance-preserving, not straight


def vp_to_flow_without_rescaling(z, ab):
    return z, checks.vp_to_flow.reference(z, ab)[1]


def vp_to_flow_tau_is_one_minus_ab(z, ab):
    return checks.vp_to_flow.reference(z, ab)[0], 1 - ab


def straightness_unweighted(path, taus):
    taus = [float(t) for t in taus]
    chord = (path[0] - path[-1]).double() / (taus[0] - taus[-1])
    errs = []
    for k in range(len(path) - 1):
        u_k = (path[k] - path[k + 1]).double() / (taus[k] - taus[k + 1])
        errs.append(float((chord - u_k).pow(2).flatten(1).sum(1).mean()))
    return sum(errs) / len(errs)                                     # a plain average over segments


def straightness_of_displacements(path, taus):
    chord = (path[0] - path[-1]).double()
    n = len(path) - 1
    return sum(float((chord / n - (path[k] - path[k + 1]).double()).pow(2).flatten(1).sum(1).mean())
               for k in range(n))                                    # steps, not velocities


WRONG = [
    ("flow_pair", pair_with_the_velocity_reversed, "u: wrong value"),
    ("flow_pair", pair_with_tau_reversed, r"τ = 0: the path starts at the data.*x_tau: wrong value"),
    ("flow_pair", pair_vp_interpolation, r"τ = 0.3.*x_tau: wrong value"),
    ("vp_to_flow", vp_to_flow_without_rescaling, r"ᾱ = 1/2.*x_tau: wrong value"),
    ("vp_to_flow", vp_to_flow_tau_is_one_minus_ab, "the linear schedule.*tau: wrong value"),
    ("straightness", straightness_unweighted, "uneven levels.*weighted by its Δτ"),
    ("straightness", straightness_of_displacements, "a bend.*S = 4"),
]


@pytest.mark.parametrize(("name", "fn", "message"), WRONG, ids=[w[1].__name__ for w in WRONG])
def test_wrong_answers_fail_naming_the_property(name, fn, message):
    with pytest.raises(CheckFailed, match=message):
        getattr(checks, name)(fn)


def test_the_references_are_the_package_functions():
    for c in checks.flow_pair.cases():
        x, u = checks.flow_pair.reference(*c.args)
        torch.testing.assert_close(x, flow.interpolate(*c.args))
        torch.testing.assert_close(u, flow.velocity_target(*c.args[:2]))
    for c in checks.vp_to_flow.cases():
        for got, want in zip(checks.vp_to_flow.reference(*c.args), flow.vp_to_flow(*c.args), strict=True):
            torch.testing.assert_close(got, want.to(got.dtype))
    for c in checks.straightness.cases():
        assert checks.straightness.reference(*c.args) == flow.straightness(*c.args)


def test_straightness_cases_have_the_values_their_labels_state():
    cases = checks.straightness.cases()
    assert checks.straightness.reference(*cases[0].args) == pytest.approx(0.0, abs=1e-20)
    assert checks.straightness.reference(*cases[1].args) == pytest.approx(4.0)
