"""Schedules against their closed forms (step t is 1-based; s = t - 1 updates done)."""

import math

import pytest

from reglab.config import MethodConfig
from reglab.engine.schedules import learning_rate, momentum


def test_every_learning_rate_schedule_starts_at_the_initial_rate():
    for kind in ("constant", "exponential", "step", "inverse_t"):
        m = MethodConfig("m", lr=0.3, lr_schedule=kind, lr_decay=0.5, lr_decay_steps=7)
        assert learning_rate(m, 1) == 0.3


@pytest.mark.parametrize("step", [1, 2, 11, 101, 1001, 25_000])
def test_learning_rate_schedules_match_their_closed_forms(step):
    s, T = step - 1, 100
    kw = dict(lr=0.01, lr_decay=0.5, lr_decay_steps=T)
    assert learning_rate(MethodConfig("c", **kw), step) == 0.01
    assert learning_rate(MethodConfig("e", lr_schedule="exponential", **kw), step) == pytest.approx(
        0.01 * 0.5 ** (s / T), rel=1e-12)
    assert learning_rate(MethodConfig("s", lr_schedule="step", **kw), step) == pytest.approx(
        0.01 * 0.5 ** math.floor(s / T), rel=1e-12)
    assert learning_rate(MethodConfig("i", lr_schedule="inverse_t", **kw), step) == pytest.approx(
        0.01 / (1 + s / T), rel=1e-12)


def test_deepnet_recipes_halve_every_10k_steps_and_decay_as_one_over_one_plus_t():
    l2_baseline = MethodConfig("l2", lr=0.01, lr_schedule="step", lr_decay=0.5, lr_decay_steps=10_000)
    assert learning_rate(l2_baseline, 10_000) == 0.01
    assert learning_rate(l2_baseline, 10_001) == 0.005
    assert learning_rate(l2_baseline, 20_001) == 0.0025
    dropout_net = MethodConfig("d", lr=1.0, lr_schedule="inverse_t", lr_decay_steps=10_000)
    assert learning_rate(dropout_net, 10_001) == pytest.approx(0.5)
    assert learning_rate(dropout_net, 30_001) == pytest.approx(0.25)


def test_momentum_without_a_ramp_is_constant():
    m = MethodConfig("m", momentum=0.9)
    assert momentum(m, 1) == momentum(m, 10**6) == 0.9
    ramp_without_steps = MethodConfig("m", momentum=0.9, momentum_initial=0.5, momentum_ramp_steps=0)
    assert momentum(ramp_without_steps, 1) == 0.9


def test_linear_momentum_ramp_goes_from_initial_to_final_over_its_steps_then_stays():
    m = MethodConfig("m", momentum=0.9, momentum_initial=0.5, momentum_ramp_steps=100)
    assert momentum(m, 1) == 0.5
    assert momentum(m, 51) == pytest.approx(0.7)
    assert momentum(m, 101) == pytest.approx(0.9)
    assert momentum(m, 10_000) == pytest.approx(0.9)


def test_exponential_momentum_ramp_is_deepnets_099_minus_049_exp():
    m = MethodConfig("m", momentum=0.99, momentum_initial=0.5, momentum_ramp_steps=100_000,
                     momentum_ramp="exponential")
    for step in (1, 2, 50_001, 100_001, 1_000_000):
        assert momentum(m, step) == pytest.approx(0.99 - 0.49 * math.exp(-(step - 1) / 100_000), rel=1e-12)
