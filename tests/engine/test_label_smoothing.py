"""Label smoothing through the loss hooks: its loss and gradient against torch's
F.cross_entropy(label_smoothing=eps) and autograd, which loss is recorded, and training like plain torch.nn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reglab.config import MethodConfig
from reglab.engine.batch import Scratch
from reglab.engine.label_smoothing import LabelSmoothing
from reglab.engine.regularizer import BindContext
from reglab.errors import ReglabError

from .test_trainer import SEEDS, _dataset_as, _rel_err, _study, _train_beside_reference


def _hooks(methods, C):
    V = len(methods)
    context = BindContext(methods, np.arange(V), [4, 5, C], 10, torch.float64, torch.device("cpu"),
                          Scratch(torch.float64, torch.device("cpu"), V))
    return LabelSmoothing(context)


def test_the_loss_and_its_gradient_are_torchs_label_smoothing_cross_entropy_and_its_autograd():
    C, b = 5, 7
    methods = [MethodConfig("none"), MethodConfig("a", label_smoothing=0.1), MethodConfig("b", label_smoothing=0.1),
               MethodConfig("c", label_smoothing=0.35)]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(len(methods), C, b, generator=g, dtype=torch.float64)     # the step's (V, C, b)
    y = torch.randint(0, C, (b,), generator=g)
    y_idx = y.view(1, 1, b).expand(len(methods), 1, b)
    hooks = _hooks(methods, C)

    logp = torch.log_softmax(logits, dim=1)
    loss = logp.gather(1, y_idx).mean((1, 2)).neg_()
    hooks.loss_value(logp, y_idx, loss)
    dlogits = logp.exp()
    dlogits.scatter_add_(1, y_idx, torch.full((len(methods), 1, b), -1.0, dtype=torch.float64))
    hooks.loss_grad(dlogits, y_idx)
    dlogits /= b

    for v, m in enumerate(methods):
        leaf = logits[v].T.clone().requires_grad_(True)                            # (b, C) as nn.Linear gives
        expected = F.cross_entropy(leaf, y, label_smoothing=m.label_smoothing)
        (grad,) = torch.autograd.grad(expected, leaf)
        assert float(loss[v]) == pytest.approx(float(expected.detach()), rel=1e-13), m.name
        assert torch.allclose(dlogits[v].T, grad, rtol=1e-12, atol=1e-15), m.name


def test_the_smoothed_loss_is_least_at_the_smoothed_targets_and_its_minimum_is_their_entropy():
    C, eps = 4, 0.2
    q = torch.full((C,), eps / C, dtype=torch.float64)
    q[2] += 1 - eps
    logits = q.log().view(1, C, 1)                                                  # softmax(logits) = q
    y_idx = torch.tensor([2]).view(1, 1, 1)
    hooks = _hooks([MethodConfig("ls", label_smoothing=eps)], C)
    logp = torch.log_softmax(logits, dim=1)
    loss = logp.gather(1, y_idx).mean((1, 2)).neg_()
    hooks.loss_value(logp, y_idx, loss)
    assert float(loss[0]) == pytest.approx(float(-(q * q.log()).sum()), rel=1e-13)     # H(q) > 0
    dlogits = logp.exp()
    dlogits.scatter_add_(1, y_idx, torch.full((1, 1, 1), -1.0, dtype=torch.float64))
    hooks.loss_grad(dlogits, y_idx)
    assert float(dlogits.abs().max()) < 1e-14                                       # p - q = 0


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_label_smoothing_with_dropout_trains_like_plain_torch_and_records_the_smoothed_loss(optimizer,
                                                                                           small_dataset):
    method = MethodConfig("ls+dropout", label_smoothing=0.2, dropout_hidden=0.3, l1=1e-4)
    trainer, records, pairs = _train_beside_reference(method, optimizer, small_dataset)
    for k, ref in pairs:
        seed = SEEDS[k - len(SEEDS)]
        for l, lin in enumerate(ref.linears):
            assert _rel_err(trainer.model.weights[l][k], lin.weight.detach().T) <= 1e-10, (seed, l)
        data = np.concatenate([r.loss_data[:, k] for r in records])
        assert np.allclose(data, ref.losses, rtol=1e-10, atol=1e-11)    # F.cross_entropy(label_smoothing=0.2)
    # the recorded training loss is the smoothed one: at least the entropy of the targets; val/test stay plain
    eps, C = 0.2, 3
    entropy = -((1 - eps + eps / C) * np.log(1 - eps + eps / C) + (C - 1) * eps / C * np.log(eps / C))
    assert (np.concatenate([r.loss_data[:, 2:] for r in records]) >= entropy).all()
    ds = _dataset_as(small_dataset, torch.float64)
    final = trainer._evaluate(ds.x_val, ds.y_val)
    w, b = trainer.model.weights, trainer.model.biases
    h = ds.x_val
    for l in range(len(w)):
        h = h @ w[l][2] + b[l][2]
        if l < len(w) - 1:
            h = torch.relu(h)
    assert final["loss"][2] == pytest.approx(float(F.cross_entropy(h, ds.y_val)), rel=1e-12)


def test_label_smoothing_is_validated_in_one_line():
    with pytest.raises(ReglabError, match=r"'ls.label_smoothing' must be a number in \[0, 1\); got 1.0. Fix: use 0"):
        MethodConfig("ls", label_smoothing=1.0)
