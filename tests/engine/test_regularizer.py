"""The regularizer API: declarations of the built-ins, and a penalty given only as a value function
(its gradient from autograd) training exactly like the independent torch.nn reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from reglab.config import METHOD_CONSTRAINTS, MethodConfig
from reglab.engine import Trainer
from reglab.engine.builtins import BUILTINS
from reglab.engine.regularizer import Regularizer, WeightPenalty

from .test_trainer import SEEDS, _dataset_as, _rel_err, _study, _train_beside_reference


def test_every_built_in_declares_hyperparameters_that_are_method_fields_with_its_ranges():
    for reg in BUILTINS.values():
        for hp in reg.hyperparameters:
            rule = METHOD_CONSTRAINTS[hp.name]
            assert (hp.low, hp.high) == (rule[1], rule[2]), (reg.name, hp.name)
            assert getattr(MethodConfig("x"), hp.name) == hp.default, (reg.name, hp.name)
        assert reg.formula, reg.name


def _l2_by_autograd() -> Regularizer:
    """L2 written as a user would: the value only, lam/2 * sum w^2 per variant, (V,) from (V, in, out)."""
    def value(w: torch.Tensor, hp: dict) -> torch.Tensor:
        return 0.5 * hp["l2"] * w.pow(2).sum(dim=(1, 2))
    return Regularizer("l2", "lambda/2 * sum w^2", BUILTINS["l2"].hyperparameters, lambda m: m.uses_l2,
                       lambda c: WeightPenalty(c, lambda m: m.l2 or None, ("l2",), value))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_penalty_given_by_its_value_alone_trains_like_plain_torch(optimizer, small_dataset):
    registry = {**BUILTINS, "l2": _l2_by_autograd()}
    method = MethodConfig("l2", l2=1e-2)
    trainer, records, pairs = _train_beside_reference(method, optimizer, small_dataset, regularizers=registry)
    for k, ref in pairs:
        seed = SEEDS[k - len(SEEDS)]
        for l, lin in enumerate(ref.linears):
            assert _rel_err(trainer.model.weights[l][k], lin.weight.detach().T) <= 1e-10, (seed, l)
        penalty = np.concatenate([r.loss_penalty[:, k] for r in records])
        assert np.allclose(penalty, ref.penalties, rtol=1e-10, atol=1e-11)


def test_per_variant_hyperparameters_reach_a_penalty_as_one_value_per_variant(small_dataset):
    seen = []

    def value(w, hp):
        seen.append(hp["l2"].clone())
        return 0.5 * hp["l2"] * w.pow(2).sum(dim=(1, 2))

    reg = Regularizer("l2", "", (), lambda m: m.uses_l2, lambda c: WeightPenalty(c, lambda m: m.l2 or None,
                                                                                  ("l2",), value))
    cfg = dataclasses.replace(_study(MethodConfig("a", l2=1e-2), "sgd"), n_epochs=1)
    Trainer(cfg, _dataset_as(small_dataset, torch.float64), dtype=torch.float64,
            regularizers={**BUILTINS, "l2": reg}).train_epoch()
    # the neighbour (l2 = 1e-3) and the example (1e-2) differ, so they are two runs of (2,) seeds each
    assert {tuple(t.tolist()) for t in seen} == {(1e-3, 1e-3), (1e-2, 1e-2)}
