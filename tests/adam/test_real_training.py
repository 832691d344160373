"""Adam's state recorded during real training, checked against the recursion's closed forms and torch.optim.Adam.

A small generated classification problem stands in for MNIST here (the
recording's algebra does not depend on the data); the end-to-end run on real
MNIST is in test_cli.py.
"""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reglab.adam.real_training import (RealTrainingConfig, build_like, build_mlp, first_step_ratio_closed_form,
                                       measure_first_step, minibatch_order, run_real_training)
from reglab.errors import ReglabError

CFG = RealTrainingConfig(hidden=(32, 16), n_steps=40, batch_size=20, n_recorded=24, seed=3)


@pytest.fixture(scope="module")
def result(make_blobs):
    return run_real_training(make_blobs(), CFG)


def unrolled(g: np.ndarray, beta: float) -> np.ndarray:
    """(T, K) (1 - beta) sum_{i=1}^{t} beta^(t-i) g_i, computed in float64 from the recorded g."""
    t_count = g.shape[0]
    out = np.empty_like(g)
    for t in range(1, t_count + 1):
        weights = (1 - beta) * beta ** (t - np.arange(1, t + 1))
        out[t - 1] = weights @ g[:t]
    return out


def test_v1_is_exactly_one_minus_beta2_times_g1_squared(result):
    rec = result.corrected
    np.testing.assert_allclose(rec.v[0], (1 - CFG.beta2) * rec.g[0] ** 2, rtol=1e-6)
    np.testing.assert_allclose(rec.m[0], (1 - CFG.beta1) * rec.g[0], rtol=1e-6)
    assert np.all(rec.g[0] != 0)  # the sample holds only weights that received a gradient


@pytest.mark.parametrize("run", ["corrected", "uncorrected"])
def test_recorded_v_and_m_equal_the_unrolled_sums_of_the_recorded_gradients(result, run):
    rec = getattr(result, run)
    np.testing.assert_allclose(rec.v, unrolled(rec.g ** 2, CFG.beta2), rtol=2e-5)
    scale = np.abs(rec.g).max(axis=0)  # m may pass through 0, so compare against the gradients' size
    assert np.all(np.abs(rec.m - unrolled(rec.g, CFG.beta1)) <= 2e-5 * scale)
    np.testing.assert_array_equal(rec.optimizer_t, np.arange(1, CFG.n_steps + 1))


def test_uncorrected_v_starts_at_one_minus_beta2_of_the_running_mean_and_corrected_at_one(result):
    unc, cor = result.v_ratios()
    np.testing.assert_allclose(unc[0], 1 - CFG.beta2, rtol=1e-6)
    np.testing.assert_allclose(cor[0], 1.0, rtol=1e-6)
    # early on the EMA weights beta2^(t-i) are nearly equal, so v_t / G_t stays near 1 - beta2^t
    t = result.corrected.steps
    np.testing.assert_allclose(np.median(unc, axis=1), 1 - CFG.beta2 ** t, rtol=0.02)
    np.testing.assert_allclose(np.median(cor, axis=1), 1.0, atol=0.02)


def test_the_corrected_run_follows_torch_optim_adam(result, make_blobs):
    ds = make_blobs()
    model = build_mlp(ds.n_features, CFG.hidden, ds.n_classes, CFG.seed)
    opt = torch.optim.Adam(model.parameters(), lr=CFG.lr, betas=(CFG.beta1, CFG.beta2), eps=CFG.eps)
    losses = []
    for idx in minibatch_order(len(ds.y_train), CFG.n_steps, CFG.batch_size, CFG.seed):
        opt.zero_grad()
        loss = F.cross_entropy(model(ds.x_train[idx]), ds.y_train[idx])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    np.testing.assert_allclose(result.corrected.loss, losses, rtol=1e-4)


def test_both_runs_start_from_the_same_weights_and_minibatches(result):
    assert result.corrected.loss[0] == result.uncorrected.loss[0]
    assert not np.array_equal(result.corrected.loss, result.uncorrected.loss)


def test_first_step_ratio_is_the_closed_form_and_tends_to_3_16(make_blobs):
    ds = make_blobs()
    model = build_mlp(ds.n_features, CFG.hidden, ds.n_classes, CFG.seed)
    fs = measure_first_step(model, ds.x_train[:20], ds.y_train[:20], CFG)
    expected = first_step_ratio_closed_form(fs.abs_grad, CFG.beta1, CFG.beta2, CFG.eps)
    np.testing.assert_allclose(fs.ratio, expected, rtol=1e-6)
    # ratio / limit = (|g| + eps) / (|g| + eps / sqrt(1 - beta2)): below 1 by at most eps / (sqrt(1 - beta2) |g|)
    limit = (1 - CFG.beta1) / math.sqrt(1 - CFG.beta2)
    assert limit == pytest.approx(3.16228, abs=1e-5)
    shortfall = 1 - fs.ratio / limit
    bound = CFG.eps / (math.sqrt(1 - CFG.beta2) * fs.abs_grad)
    assert np.all(shortfall <= bound * (1 + 1e-4) + 1e-6)
    large = fs.abs_grad > 1e-3
    assert large.mean() > 0.5
    np.testing.assert_allclose(fs.ratio[large], limit, rtol=3.2e-4)
    # corrected: lr * |g| / (|g| + eps), i.e. lr for every weight whose gradient is not tiny
    np.testing.assert_allclose(fs.step_corrected[large], CFG.lr, rtol=1e-5)
    assert fs.n_weights == sum(p.numel() for p in model.parameters() if p.dim() == 2)


def test_first_corrected_step_equals_torch_optim_adams_first_step(make_blobs):
    ds = make_blobs()
    model = build_mlp(ds.n_features, CFG.hidden, ds.n_classes, CFG.seed)
    fs = measure_first_step(model, ds.x_train[:20], ds.y_train[:20], CFG)
    reference = build_like(model)
    F.cross_entropy(reference(ds.x_train[:20]), ds.y_train[:20]).backward()
    # torch's update applied to zero weights, as measure_first_step does, so the step is read exactly
    origin = [torch.zeros_like(p, requires_grad=True) for p in reference.parameters() if p.dim() == 2]
    for o, p in zip(origin, [p for p in reference.parameters() if p.dim() == 2]):
        o.grad = p.grad.clone()
    torch.optim.Adam(origin, lr=CFG.lr, betas=(CFG.beta1, CFG.beta2), eps=CFG.eps).step()
    step = torch.cat([o.detach().abs().flatten() for o in origin])
    grad = torch.cat([o.grad.flatten() for o in origin])
    np.testing.assert_allclose(step[grad != 0].double().numpy(), fs.step_corrected, rtol=1e-6)


def test_measuring_the_first_step_leaves_the_model_unchanged(make_blobs):
    ds = make_blobs()
    model = build_mlp(ds.n_features, CFG.hidden, ds.n_classes, CFG.seed)
    before = [p.detach().clone() for p in model.parameters()]
    measure_first_step(model, ds.x_train[:20], ds.y_train[:20], CFG)
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)


def test_minibatch_order_visits_every_example_once_per_epoch():
    order = minibatch_order(100, 12, 20, seed=0)  # 5 batches per epoch: epochs 1, 2 and 2 steps of a third
    assert order.shape == (12, 20)
    assert sorted(order[:5].flatten().tolist()) == list(range(100))
    assert sorted(order[5:10].flatten().tolist()) == list(range(100))
    assert not torch.equal(order[:5], order[5:10])


def test_same_seed_same_recording(make_blobs):
    short = dataclasses.replace(CFG, n_steps=5)
    a = run_real_training(make_blobs(), short)
    b = run_real_training(make_blobs(), short)
    np.testing.assert_array_equal(a.corrected.v, b.corrected.v)
    np.testing.assert_array_equal(a.uncorrected.loss, b.uncorrected.loss)


def test_a_batch_larger_than_the_data_is_a_one_line_error():
    with pytest.raises(ReglabError, match="batch_size"):
        minibatch_order(10, 3, 20, seed=0)


@pytest.mark.parametrize("bad", [dict(beta2=1.0), dict(lr=0.0), dict(n_steps=0), dict(hidden=()), dict(seed=-1)])
def test_bad_training_settings_are_one_line_errors(bad):
    with pytest.raises(ReglabError) as e:
        RealTrainingConfig(**bad)
    assert "\n" not in str(e.value)
