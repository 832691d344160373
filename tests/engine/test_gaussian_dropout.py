"""Gaussian dropout (Srivastava et al. 2014, sec. 10): its noise, the batched engine against plain torch.nn
with the same draws, its sign-crossing factors, evaluation without noise, and kill/resume."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from reglab.config import DataConfig, MethodConfig, StudyConfig
from reglab.engine import Trainer
from reglab.engine import regularizers as R
from reglab.engine.dropout import dropout_generator
from reglab.engine.gaussian_dropout import gaussian_dropout_factors
from reglab.errors import ReglabError

from .test_trainer import (SEEDS, _assert_resume_continues_bit_identically, _rel_err, _same_records, _study,
                          _train_beside_reference, _train_saving_every_epoch)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_the_factors_have_mean_one_and_the_variance_of_inverted_dropout(p):
    r = gaussian_dropout_factors(torch.Generator().manual_seed(0), 4000, [50, 7], p, p, torch.float64)["input"]
    sigma2 = p / (1 - p)                                   # Var[mask / (1 - p)] for mask ~ Bernoulli(1 - p)
    n = r.numel()
    assert abs(float(r.mean()) - 1.0) < 4 * math.sqrt(sigma2 / n)
    assert float(r.var()) == pytest.approx(sigma2, rel=4 * math.sqrt(2 / n))
    assert R.gaussian_dropout_std(p) ** 2 == pytest.approx(sigma2, rel=1e-15)


def test_the_stream_is_one_draw_per_step_laid_out_input_then_hidden_layers():
    sizes, b = [5, 4, 3, 2], 6
    f = gaussian_dropout_factors(torch.Generator().manual_seed(7), b, sizes, 0.2, 0.5, torch.float64)
    assert list(f) == ["input", 0, 1] and f["input"].shape == (6, 5) and f[1].shape == (6, 3)
    z = torch.empty(b * (5 + 4 + 3), dtype=torch.float64).normal_(generator=torch.Generator().manual_seed(7))
    assert torch.equal(f["input"].flatten(), 1 + R.gaussian_dropout_std(0.2) * z[:30])
    assert torch.equal(f[1].flatten(), 1 + R.gaussian_dropout_std(0.5) * z[30 + 24:])
    hidden_only = gaussian_dropout_factors(torch.Generator().manual_seed(7), b, sizes, 0.0, 0.5, torch.float64)
    assert list(hidden_only) == [0, 1]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_hidden_noise_with_negative_factors_trains_like_plain_torch_with_the_same_draws(optimizer, small_dataset):
    # p = 0.8: sigma = 2, a third of the factors are negative: the ReLU derivative must follow the unit
    # (taken from the noisy output's sign instead, the weights end 140-170% away from the reference's)
    method = MethodConfig("gaussian", gaussian_dropout_hidden=0.8, l2=1e-2)
    trainer, records, pairs = _train_beside_reference(method, optimizer, small_dataset)
    for k, ref in pairs:
        seed = SEEDS[k - len(SEEDS)]
        for l, lin in enumerate(ref.linears):
            assert _rel_err(trainer.model.weights[l][k], lin.weight.detach().T) <= 1e-10, (seed, l)
        data = np.concatenate([r.loss_data[:, k] for r in records])
        assert np.allclose(data, ref.losses, rtol=1e-10, atol=1e-11)


def _gaussian_study(n_epochs: int = 4) -> StudyConfig:
    return StudyConfig(name="g", data=DataConfig(name="moons", data_seed=2), hidden=(16, 8), n_epochs=n_epochs,
                       batch_size=24, seeds=(0, 1),
                       methods=(MethodConfig("plain"), MethodConfig("g", gaussian_dropout_input=0.2,
                                                                    gaussian_dropout_hidden=0.5),
                                MethodConfig("drop", dropout_hidden=0.5),
                                MethodConfig("g-es", gaussian_dropout_hidden=0.3, early_stopping=True, patience=1)))


def test_the_same_seed_gives_the_same_noise_and_another_seed_other_noise(small_dataset):
    a, b = Trainer(_gaussian_study(2), small_dataset), Trainer(_gaussian_study(2), small_dataset)
    for _ in range(2):
        assert _same_records(a.train_epoch(), b.train_epoch())
    one = gaussian_dropout_factors(dropout_generator(0), 8, [2, 16, 8, 3], 0.2, 0.5)
    two = gaussian_dropout_factors(dropout_generator(1), 8, [2, 16, 8, 3], 0.2, 0.5)
    assert not torch.equal(one[0], two[0])


def test_a_variant_with_gaussian_noise_trains_the_same_alone_as_inside_a_larger_study(small_dataset):
    big = _gaussian_study(2)
    alone = big.replace(methods=(big.methods[1],), seeds=(1,))
    a, b = Trainer(big, small_dataset), Trainer(alone, small_dataset)
    for _ in range(2):
        ra, rb = a.train_epoch(), b.train_epoch()
        assert np.allclose(ra.loss_data[:, 3], rb.loss_data[:, 0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resuming_a_gaussian_dropout_run_continues_bit_identically(optimizer, small_dataset):
    cfg = _gaussian_study(5).replace(optimizer=optimizer)
    straight, records, states = _train_saving_every_epoch(cfg, small_dataset)
    for epoch in (0, 2):
        _assert_resume_continues_bit_identically(cfg, small_dataset, straight, records, states[epoch][1], epoch)


def test_a_method_with_both_kinds_of_dropout_is_one_line_with_a_fix():
    with pytest.raises(ReglabError) as e:
        MethodConfig("both", dropout_hidden=0.5, gaussian_dropout_input=0.2)
    assert len(e.value.lines) == 1 and "both Bernoulli dropout" in str(e.value) and "Fix: keep one" in str(e.value)
    with pytest.raises(ReglabError, match=r"'g.gaussian_dropout_hidden' must be a number in \[0, 1\); got 1.0. Fix"):
        MethodConfig("g", gaussian_dropout_hidden=1.0)
    assert dataclasses.replace(MethodConfig("g"), gaussian_dropout_input=0.4).uses_gaussian_dropout
