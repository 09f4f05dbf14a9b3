"""The path-aware rule on a path whose exact integrated gradients are known: a sigmoid of a
linear function that jumps from 0 to 1 over ~2 % of the path, as the trained demo model does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr._utils.approximation_methods import approximation_parameters

from raysattr.attribution.quadrature import (
    INITIAL_PANELS,
    PathSettings,
    PathSpace,
    RowRule,
    integrate,
    place_panels,
)

SHARPNESS = 400.0  # in units of the path: the jump is ~1/100 of [0, 1] wide
STEPS_AT = (0.65, 0.3, 0.9)  # where each row's F jumps


def step_path(n_tokens: int = 7, hidden: int = 5):
    """Rows whose F(α) = sigmoid(SHARPNESS * (α - a_row)), F linear-in-values inside.

    Returns:
        `(space, exact [rows, n_tokens])`: IG of a sigmoid of u.v is
        u * (x - x') / (u . (x - x')) * (F(x) - F(x')), exactly.
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(len(STEPS_AT), n_tokens, hidden, generator=gen, dtype=torch.float64)
    u = torch.randn(n_tokens, hidden, generator=gen, dtype=torch.float64)
    scale = (x * u).sum(dim=(1, 2))  # u . (x - x'), baseline 0
    at = torch.tensor(STEPS_AT, dtype=torch.float64)

    def run(values, rows):
        z = (values[0] * u).sum(dim=(1, 2)) / scale[rows]  # = α on the path
        return torch.sigmoid(SHARPNESS * (z - at[rows]))

    mask = torch.ones(len(STEPS_AT), n_tokens)
    space = PathSpace((x,), (torch.zeros_like(x),), run, mask)
    gap = torch.sigmoid(SHARPNESS * (1 - at)) - torch.sigmoid(-SHARPNESS * at)
    exact = (u * x).sum(-1) / scale.view(-1, 1) * gap.view(-1, 1)
    return space, exact


def relative_l2(a, b) -> np.ndarray:
    return (np.linalg.norm(a - b, axis=-1) / np.linalg.norm(b, axis=-1)).astype(float)


def test_path_rule_finds_the_jump_that_fixed_rules_miss():
    space, exact = step_path()
    result = integrate(space, PathSettings(tolerance=0.01, max_evals=200), chunk=64)
    attr = result.parts.sum(dim=1).numpy()
    assert relative_l2(attr, exact.numpy()).max() < 0.01
    assert (np.abs(result.delta.numpy()) < 0.01).all()
    assert result.nodes.max() < 60  # nodes where F changes, not everywhere
    # Captum's 50-node Gauss-Legendre rule on the same integrals: sum_k w_k dF/dα(α_k).
    weights, alphas = (np.array(f(50)) for f in approximation_parameters("gausslegendre"))
    for a in STEPS_AT:
        f = 1 / (1 + np.exp(-SHARPNESS * (alphas - a)))
        gl = (weights * SHARPNESS * f * (1 - f)).sum()
        assert abs(gl - 1) > 0.1  # off by more than 10 % of F(x) - F(x')


def test_rows_at_the_cap_stop_there():
    space, _ = step_path()
    result = integrate(space, PathSettings(tolerance=1e-9, max_evals=20), chunk=64)
    # The sweep (17 forwards ~ 6 units) and the first 9 nodes, then 2 nodes per bisection.
    assert (result.nodes <= 2 * INITIAL_PANELS + 1 + 6).all()
    assert result.grad_evals == result.nodes.sum()


def test_panels_are_narrow_where_f_changes_and_cover_the_rest():
    sweep = np.r_[np.zeros(11), np.ones(6)]  # jumps between α = 10/16 and 11/16
    edges = place_panels(sweep, 8, floor=0.25)
    assert edges[0] == 0 and edges[-1] == 1 and (np.diff(edges) > 0).all()
    inside = ((edges > 10 / 16) & (edges < 11 / 16)).sum()
    assert inside >= 4  # most of the 8 panels split the one interval where F moved
    assert np.diff(edges).max() < 0.7  # the floor: flat stretches still get panels
    flat = place_panels(np.zeros(17), 4)
    np.testing.assert_allclose(flat, [0, 0.25, 0.5, 0.75, 1])


def test_refinement_is_nested_and_weights_stay_a_quadrature():
    rule = RowRule([(0.0, 0.5), (0.5, 1.0)])
    before = set(rule.nodes())
    rule.f = {x: 0.0 for x in before}
    added = rule.refine(np.array([0.3, 0.01]), max_new=10)
    assert added == 2 and before < set(rule.nodes())
    assert rule.missing() == [0.125, 0.375]  # only the bisected panel's quarter points
    weights = rule.weights()
    assert sum(weights.values()) == pytest.approx(1.0) and min(weights.values()) > 0
    assert rule.refine(np.array([0.3, 0.1, 0.01]), max_new=1) == 0  # no room for two nodes
