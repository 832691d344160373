"""The Monte-Carlo simulation of Adam's moments against the closed forms 1 - beta^t."""

import math

import numpy as np
import pytest
import torch

from reglab.adam.simulation import (DISTRIBUTIONS, GradientDistribution, SimulationConfig, recorded_steps,
                                    run_simulation, simulate_distribution)
from reglab.errors import ReglabError

BETAS = (0.9, 0.99, 0.999)


@pytest.fixture(scope="module")
def gaussian_run():
    # N(1, 1): the relative standard error of the run mean is largest at t = 1, where it is
    # sd(g^2)/E[g^2]/sqrt(n) = sqrt(6)/2/sqrt(300k) = 0.22% for v and 1/sqrt(300k) = 0.18% for m,
    # so 1% is more than 4.5 standard errors at every step.
    # beta 0.999 is Adam's default beta2, 0.9 its default beta1; both are checked for m and v
    return run_simulation(SimulationConfig(betas=(0.9, 0.999), n_steps=1000, n_runs=300_000,
                                           distributions=("gaussian",), seed=0))


@pytest.mark.parametrize("moment", ["v", "m"])
@pytest.mark.parametrize("t", [1, 10, 100, 1000])
def test_simulated_ratio_is_within_one_percent_of_one_minus_beta_to_the_t(gaussian_run, moment, t):
    for beta in (0.9, 0.999):
        estimate, half_width = gaussian_run.at("gaussian", moment, beta, t)
        closed_form = 1 - beta ** t
        assert abs(estimate / closed_form - 1) < 0.01, (moment, beta, t, estimate, closed_form)
        # the check is informative: the Monte-Carlo band itself is well inside 1%
        assert half_width / closed_form < 0.006


def test_every_distribution_agrees_with_the_closed_form_within_monte_carlo_error():
    sim = run_simulation(SimulationConfig(betas=BETAS, n_steps=200, n_runs=20_000, seed=1))
    for row in sim.largest_deviations():
        # the largest |z| over 200 correlated steps; 5 standard errors is far in the tail
        assert abs(row["z"]) < 5, row


def test_a_constant_gradient_gives_exactly_the_geometric_series():
    c = 1.7
    constant = GradientDistribution("constant", "g = 1.7", mean=c, second_moment=c * c,
                                    sample=lambda n, gen: torch.full((n,), c))
    res = simulate_distribution(constant, BETAS, 1000, 8, torch.Generator().manual_seed(0))
    t = recorded_steps(1000)
    expected = 1 - np.asarray(BETAS)[:, None] ** t[None, :]
    # float32 state: a few ulps of rounding per step
    np.testing.assert_allclose(res.m.estimate, expected, rtol=2e-5)
    np.testing.assert_allclose(res.v.estimate, expected, rtol=2e-5)
    assert np.all(res.v.half_width < 1e-5)


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_samplers_have_their_stated_mean_and_second_moment(name):
    dist = DISTRIBUTIONS[name]
    g = dist.sample(2_000_000, torch.Generator().manual_seed(3)).double()
    assert g.dtype == torch.float64 and g.shape == (2_000_000,)
    for sample_moment, stated, power in ((g.mean(), dist.mean, 1), (g.square().mean(), dist.second_moment, 2)):
        standard_error = float(g.pow(power).std()) / math.sqrt(len(g))
        assert abs(float(sample_moment) - stated) < 5 * standard_error, (name, power)
    assert dist.mean != 0  # E[m_t] / E[g] needs a non-zero mean


def test_the_sparse_distribution_is_mostly_exact_zeros():
    g = DISTRIBUTIONS["sparse"].sample(100_000, torch.Generator().manual_seed(0))
    assert 0.88 < float((g == 0).double().mean()) < 0.92


def test_same_seed_same_result_and_a_different_seed_differs():
    cfg = SimulationConfig(n_steps=50, n_runs=1000, seed=5)
    a, b = run_simulation(cfg), run_simulation(cfg)
    c = run_simulation(SimulationConfig(n_steps=50, n_runs=1000, seed=6))
    for name in DISTRIBUTIONS:
        np.testing.assert_array_equal(a.results[name].v.estimate, b.results[name].v.estimate)
        assert not np.array_equal(a.results[name].v.estimate, c.results[name].v.estimate)


def test_a_subset_of_distributions_reproduces_the_same_draws():
    full = run_simulation(SimulationConfig(n_steps=20, n_runs=500, seed=2))
    alone = run_simulation(SimulationConfig(n_steps=20, n_runs=500, seed=2, distributions=("sparse",)))
    np.testing.assert_array_equal(full.results["sparse"].m.estimate, alone.results["sparse"].m.estimate)


def test_simulation_leaves_torch_thread_count_as_it_was():
    before = torch.get_num_threads()
    run_simulation(SimulationConfig(n_steps=5, n_runs=100), threads=1)
    assert torch.get_num_threads() == before


def test_recorded_steps_hold_every_early_step_the_powers_of_ten_and_the_last():
    steps = recorded_steps(3000)
    assert list(steps[:100]) == list(range(1, 101))
    assert {1, 10, 100, 1000, 3000} <= set(steps.tolist())
    assert np.all(np.diff(steps) > 0)
    assert list(recorded_steps(7)) == list(range(1, 8))


@pytest.mark.parametrize("bad", [dict(betas=(1.0,)), dict(betas=()), dict(n_steps=0), dict(n_runs=1),
                                 dict(distributions=("cauchy",)), dict(seed=-1)])
def test_bad_simulation_settings_are_one_line_errors(bad):
    with pytest.raises(ReglabError) as e:
        SimulationConfig(**bad)
    assert "\n" not in str(e.value)


def test_asking_for_an_unrecorded_step_is_an_error():
    sim = run_simulation(SimulationConfig(n_steps=3000, n_runs=10, distributions=("gaussian",)))
    missing = sorted(set(range(1, 3001)) - set(sim.steps.tolist()))[0]
    for t in (0, missing, 3001):
        with pytest.raises(ReglabError):
            sim.at("gaussian", "v", 0.9, t)
