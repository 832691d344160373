"""Decoupled weight decay: AdamW against torch.optim.AdamW, SGDW against its definition, plain SGD's
equivalence with L2, and that it is no loss term."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from reglab.config import DataConfig, MethodConfig, StudyConfig
from reglab.engine import Trainer
from reglab.errors import ReglabError

from .test_trainer import SEEDS, _dataset_as, _rel_err, _study, _train_beside_reference


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_decoupled_decay_with_a_schedule_trains_like_torch_adamw_and_sgdw(optimizer, small_dataset):
    method = MethodConfig("wd", decoupled_weight_decay=0.1, lr_schedule="inverse_t", lr_decay_steps=20)
    trainer, records, pairs = _train_beside_reference(method, optimizer, small_dataset)
    for k, ref in pairs:
        seed = SEEDS[k - len(SEEDS)]
        if optimizer == "adam":
            assert isinstance(ref.optimizer, torch.optim.AdamW)
        for l, lin in enumerate(ref.linears):
            assert _rel_err(trainer.model.weights[l][k], lin.weight.detach().T) <= 1e-10, (seed, l)
            assert _rel_err(trainer.model.biases[l][k, 0], lin.bias.detach()) <= 1e-10, (seed, l)
        # not a loss term: nothing in the recorded penalty
        assert np.all(np.concatenate([r.loss_penalty[:, k] for r in records]) == 0)


def test_with_plain_sgd_decoupled_decay_is_exactly_l2(small_dataset):
    methods = (MethodConfig("l2", l2=0.02, momentum=0.0, lr=0.1),
               MethodConfig("decoupled", decoupled_weight_decay=0.02, momentum=0.0, lr=0.1),
               MethodConfig("decoupled+momentum", decoupled_weight_decay=0.02, momentum=0.9, lr=0.1),
               MethodConfig("l2+momentum", l2=0.02, momentum=0.9, lr=0.1))
    cfg = StudyConfig(name="wd", data=DataConfig(name="moons"), hidden=(16,), n_epochs=3, batch_size=24, seeds=(0,),
                      methods=methods)
    ds = _dataset_as(small_dataset, torch.float64)
    trainer = Trainer(cfg, ds, dtype=torch.float64)
    for _ in range(3):
        trainer.train_epoch()
    for w in trainer.model.weights:
        assert _rel_err(w[1], w[0]) < 1e-12          # w - lr (g + lam w) either way
        assert _rel_err(w[2], w[3]) > 1e-4           # with momentum SGDW is not L2


def test_decoupled_weight_decay_is_validated_in_one_line():
    with pytest.raises(ReglabError, match=r"'w.decoupled_weight_decay' must be a number in \[0, inf\); got -0.1"):
        MethodConfig("w", decoupled_weight_decay=-0.1)
    assert dataclasses.replace(MethodConfig("w"), decoupled_weight_decay=0.1).uses_decoupled_weight_decay
