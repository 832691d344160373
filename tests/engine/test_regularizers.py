"""Penalties against closed forms, autograd and finite differences; max-norm's axis and ball; dropout masks."""

import math

import numpy as np
import pytest
import torch

from reglab.config import MethodConfig
from reglab.engine import regularizers as R


def _finite_difference(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central differences of a scalar function of a float64 tensor."""
    grad = torch.zeros_like(x)
    flat, gflat = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        up = f(x)
        flat[i] = old - eps
        down = f(x)
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


@pytest.fixture
def weights():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 5, 4, generator=g, dtype=torch.float64)


def test_l2_penalty_is_half_lambda_sum_of_squares_per_variant(weights):
    lam = 0.3
    expected = [0.5 * lam * float((weights[v] ** 2).sum()) for v in range(3)]
    assert R.l2_penalty(weights, lam).tolist() == pytest.approx(expected, rel=1e-12)


def test_l2_gradient_is_lambda_w_and_matches_finite_differences(weights):
    lam = 0.3
    grad = torch.zeros_like(weights)
    R.add_l2_grad_(grad, weights, lam)
    assert torch.allclose(grad, lam * weights, rtol=0, atol=0)
    fd = _finite_difference(lambda w: float(R.l2_penalty(w, lam).sum()), weights.clone())
    assert torch.allclose(grad, fd, atol=1e-8)


def test_penalty_gradients_of_a_list_of_layers_are_each_layers_own(weights):
    layers = [weights, weights[:, :2, 1:].contiguous() * 3]
    for add, lam in ((R.add_l2_grad_, 0.3), (R.add_l1_grad_, 0.07)):
        grads = [torch.randn_like(w) for w in layers]
        expected = [add(g.clone(), w, lam) for g, w in zip(grads, layers)]
        add(grads, layers, lam)
        for g, e in zip(grads, expected):
            assert torch.equal(g, e)
    assert torch.equal(R.add_l2_grad_(torch.zeros_like(weights), weights, 0.5), 0.5 * weights)


def test_l1_penalty_is_lambda_sum_of_abs_and_its_gradient_is_lambda_sign(weights):
    lam = 0.07
    expected = [lam * float(weights[v].abs().sum()) for v in range(3)]
    assert R.l1_penalty(weights, lam).tolist() == pytest.approx(expected, rel=1e-12)
    grad = torch.zeros_like(weights)
    R.add_l1_grad_(grad, weights, lam)
    fd = _finite_difference(lambda w: float(R.l1_penalty(w, lam).sum()), weights.clone())
    assert torch.allclose(grad, fd, atol=1e-8)   # no weight within 1e-6 of a kink
    at_zero = torch.zeros(1, 2, 2, dtype=torch.float64)
    assert R.add_l1_grad_(torch.zeros_like(at_zero), at_zero, lam).abs().sum() == 0


def test_late_l1_switches_on_after_the_given_fraction_of_steps():
    m = MethodConfig("late", l2=1e-3, l1=1e-4, l1_start=0.8)
    assert not R.l1_is_on(m, 800, 1000)
    assert R.l1_is_on(m, 801, 1000)
    assert R.l1_is_on(MethodConfig("always", l1=1e-4), 1, 1000)
    assert not R.l1_is_on(MethodConfig("none"), 1000, 1000)


def _kl_closed_form(m_hat: np.ndarray, rho: float, beta: float) -> np.ndarray:
    c = np.clip(m_hat, 1e-6, 1e6)
    q = c / (1 + c)
    return beta * (rho * np.log(rho / q) + (1 - rho) * np.log((1 - rho) / (1 - q))).sum(-1)


def test_kl_sparsity_value_matches_the_closed_form_on_the_squashed_batch_mean():
    g = torch.Generator().manual_seed(2)
    mean = torch.rand(2, 6, generator=g, dtype=torch.float64) * 3 + 0.01
    value, _, m_hat = R.kl_sparsity(mean, rho=0.05, beta=0.2)
    assert torch.equal(m_hat, mean)
    assert value.numpy() == pytest.approx(_kl_closed_form(mean.numpy(), 0.05, 0.2), rel=1e-12)


def test_kl_sparsity_gradient_matches_autograd_and_finite_differences():
    g = torch.Generator().manual_seed(3)
    mean = torch.rand(2, 6, generator=g, dtype=torch.float64) * 2 + 0.02
    _, grad, _ = R.kl_sparsity(mean, rho=0.1, beta=0.5)
    leaf = mean.clone().requires_grad_(True)
    R.kl_sparsity(leaf, rho=0.1, beta=0.5)[0].sum().backward()
    assert torch.allclose(grad, leaf.grad, rtol=1e-12)
    fd = _finite_difference(lambda m: float(R.kl_sparsity(m, rho=0.1, beta=0.5)[0].sum()), mean.clone())
    assert torch.allclose(grad, fd, rtol=1e-6, atol=1e-9)


def test_kl_gradient_through_relu_activations_matches_autograd():
    """dP/da_bj = (dP/dm_j) / B for the batch mean m_j of ReLU outputs a_bj."""
    g = torch.Generator().manual_seed(4)
    a = torch.relu(torch.randn(2, 8, 5, generator=g, dtype=torch.float64)).requires_grad_(True)
    value, grad, _ = R.kl_sparsity(a.mean(1), rho=0.05, beta=1.0)
    value.sum().backward()
    assert torch.allclose(a.grad, (grad / 8).unsqueeze(1).expand_as(a), rtol=1e-12)


def test_kl_moving_average_follows_hintons_recipe():
    """m_hat = ema * running + (1 - ema) * m; the gradient is dP/dm_hat evaluated at m_hat."""
    running = torch.tensor([[0.2, 0.05, 1.0]], dtype=torch.float64)
    mean = torch.tensor([[0.4, 0.01, 0.5]], dtype=torch.float64)
    value, grad, m_hat = R.kl_sparsity(mean, rho=0.1, beta=0.3, ema=0.9, running_mean=running)
    expected = 0.9 * running + 0.1 * mean
    assert torch.allclose(m_hat, expected, rtol=1e-14)
    assert value.numpy() == pytest.approx(_kl_closed_form(expected.numpy(), 0.1, 0.3), rel=1e-12)
    leaf = expected.clone().requires_grad_(True)
    R.kl_sparsity(leaf, rho=0.1, beta=0.3)[0].sum().backward()
    assert torch.allclose(grad, leaf.grad, rtol=1e-12)


def test_kl_of_a_dead_unit_is_finite_and_pushes_nothing():
    value, grad, _ = R.kl_sparsity(torch.zeros(1, 3), rho=0.05, beta=1.0)
    assert torch.isfinite(value).all()
    assert torch.equal(grad, torch.zeros(1, 3))
    assert value.item() == pytest.approx(_kl_closed_form(np.zeros((1, 3)), 0.05, 1.0)[0], rel=1e-5)


def test_kl_is_zero_with_zero_gradient_where_the_squashed_mean_equals_the_target():
    rho = 0.05
    at_target = torch.full((1, 4), rho / (1 - rho), dtype=torch.float64)
    value, grad, _ = R.kl_sparsity(at_target, rho=rho, beta=2.0)
    assert value.item() == pytest.approx(0.0, abs=1e-12)
    assert torch.allclose(grad, torch.zeros_like(grad), atol=1e-12)
    assert R.kl_sparsity(at_target, rho=rho, beta=2.0, with_value=False)[0] is None


def test_squash_maps_relu_means_into_the_unit_interval_and_is_close_to_identity_near_zero():
    m = torch.tensor([0.0, 1e-3, 0.05, 1.0, 1e6], dtype=torch.float64)
    q = R.squash(m)
    assert (q >= 0).all() and (q < 1).all()
    assert q[1] == pytest.approx(1e-3, rel=2e-3)
    assert torch.all(q[1:] > q[:-1])


def test_max_norm_clips_each_units_incoming_vector_to_the_ball():
    g = torch.Generator().manual_seed(5)
    w = torch.randn(2, 30, 7, generator=g) * 2
    before = w.clone()
    R.max_norm_(w, 1.5)
    norms = torch.linalg.vector_norm(w, dim=1)           # (V, out): one norm per unit
    assert (norms <= 1.5 * (1 + 1e-6)).all()
    clipped = torch.linalg.vector_norm(before, dim=1) > 1.5
    assert torch.allclose(norms[clipped], torch.full_like(norms[clipped], 1.5), rtol=1e-6)
    # the direction is kept: a positive rescaling of the column
    ratio = w / before
    assert torch.allclose(ratio, ratio[:, :1, :].expand_as(ratio), rtol=1e-5)


def test_max_norm_leaves_vectors_inside_the_ball_bitwise_unchanged():
    w = torch.full((1, 4, 3), 0.1)
    w[0, :, 1] = 10.0                                    # only unit 1 is outside
    before = w.clone()
    R.max_norm_(w, 1.0)
    assert torch.equal(w[0, :, 0], before[0, :, 0]) and torch.equal(w[0, :, 2], before[0, :, 2])
    assert not torch.equal(w[0, :, 1], before[0, :, 1])


def test_max_norm_acts_on_incoming_weights_like_torch_renorm_on_an_nn_linear_weight():
    """(in, out) storage: unit j's incoming weights are column j; nn.Linear stores them as row j."""
    g = torch.Generator().manual_seed(6)
    w = torch.randn(1, 20, 5, generator=g)
    w[0, 0, :] = 50.0                                    # a large INPUT row must not be what is clipped
    linear_weight = w[0].T.clone()                       # (out, in)
    R.max_norm_(w, 2.0)
    assert torch.allclose(w[0].T, torch.renorm(linear_weight, 2, 0, 2.0), rtol=1e-5, atol=1e-6)
    assert (torch.linalg.vector_norm(w[0], dim=0) <= 2.0 * (1 + 1e-6)).all()
    assert torch.linalg.vector_norm(w[0], dim=1)[0] > 2.0  # outgoing (row) vectors are not what is constrained


def test_max_norm_skips_frozen_variants():
    w = torch.full((2, 3, 2), 5.0)
    R.max_norm_(w, 1.0, frozen=torch.tensor([True, False]))
    assert torch.equal(w[0], torch.full((3, 2), 5.0))
    assert torch.allclose(torch.linalg.vector_norm(w[1], dim=0), torch.ones(2))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_masks_drop_the_requested_fraction_in_every_lane(p):
    gen = torch.Generator().manual_seed(7)
    n = 400_000
    keep = R.dropout_keep_mask(gen, (n,), p)
    p_eff = R.drop_probability(p)
    assert abs(p_eff - p) <= 2 ** -17
    sd = math.sqrt(p_eff * (1 - p_eff) / (n / 4))
    for lane in range(4):                                # every 16-bit lane of a word drops as often
        dropped = 1 - keep[lane::4].float().mean().item()
        assert abs(dropped - p_eff) < 5 * sd, (lane, dropped)
    assert (1 - p_eff) * R.keep_scale(p) == pytest.approx(1.0, abs=1e-15)


def test_dropout_masks_are_reproducible_per_stream_and_rows_are_independent_streams():
    make = lambda seed: torch.Generator().manual_seed(seed)  # noqa: E731
    a = R.dropout_keep_mask(make(1), (10, 33), 0.5)
    b = R.dropout_keep_mask(make(1), (10, 33), 0.5)
    c = R.dropout_keep_mask(make(2), (10, 33), 0.5)
    assert torch.equal(a, b) and not torch.equal(a, c)
    bits = torch.empty(3, R.random_words(330), dtype=torch.int64)
    R.fill_random_bits_(bits, [make(9), make(1), make(4)])
    rows = R.keep_mask_from_bits(bits, 330, 0.5)
    assert torch.equal(rows[1].reshape(10, 33), a)


def test_zero_dropout_keeps_everything():
    keep = R.dropout_keep_mask(torch.Generator().manual_seed(0), (1000,), 0.0)
    assert keep.all()
    assert R.keep_scale(0.0) == 1.0


def test_registry_names_what_a_method_uses():
    m = MethodConfig("dropout+max_norm", max_norm=3.0, dropout_input=0.2, dropout_hidden=0.5)
    assert R.regularizers_of(m) == ["max_norm", "dropout"]
    assert R.regularizers_of(MethodConfig("late", l2=1e-3, l1=1e-4, l1_start=0.8)) == ["l2", "l1_late"]
    assert R.regularizers_of(MethodConfig("plain")) == []
