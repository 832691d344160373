"""Soft orthogonality lambda * ||W^T W - I||_F^2: closed forms, its hand-written gradient against autograd and
finite differences, which side of W it acts on, and the batched engine against plain torch.nn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reglab.config import MethodConfig
from reglab.engine import regularizers as R
from reglab.engine.builtins import BUILTINS
from reglab.errors import ReglabError

from .test_regularizers import _finite_difference
from .test_trainer import SEEDS, _rel_err, _study, _train_beside_reference


@pytest.mark.parametrize("shape", [(3, 6, 4), (2, 4, 4), (2, 3, 5)], ids=["tall", "square", "wide"])
def test_the_hand_written_gradient_equals_autograd_and_finite_differences(shape):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    lam = torch.linspace(0.1, 0.3, shape[0], dtype=torch.float64)
    leaf = w.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(R.orthogonality_penalty(leaf, lam).sum(), leaf)
    grad = R.orthogonality_grad(w, lam)
    assert torch.allclose(grad, auto, rtol=1e-12, atol=1e-12)
    fd = _finite_difference(lambda x: float(R.orthogonality_penalty(x, lam).sum()), w.clone())
    assert torch.allclose(grad, fd, atol=1e-6)


def test_the_value_is_the_squared_frobenius_norm_of_the_units_gram_matrix_minus_the_identity():
    w = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lam = torch.tensor([0.5, 2.0], dtype=torch.float64)
    for v in range(2):
        gram = w[v].T @ w[v]                                 # (out, out): units' incoming vectors (columns)
        expected = float(lam[v]) * float(((gram - torch.eye(4, dtype=torch.float64)) ** 2).sum())
        assert float(R.orthogonality_penalty(w, lam)[v]) == pytest.approx(expected, rel=1e-12)
    q, _ = torch.linalg.qr(w[0])                             # orthonormal columns: zero penalty, zero gradient
    q = q.unsqueeze(0)
    one = torch.ones(1, dtype=torch.float64)
    assert float(R.orthogonality_penalty(q, one)) == pytest.approx(0.0, abs=1e-24)
    assert float(R.orthogonality_grad(q, one).abs().max()) < 1e-12


def test_a_layer_with_more_units_than_inputs_cannot_reach_zero():
    q, _ = torch.linalg.qr(torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    w = q.T.unsqueeze(0)          # (1, in=3, out=5): 5 units in R^3, orthonormal ROWS (W W^T = I_3)
    # the units' Gram matrix W^T W is a rank-3 projection: its 5 - 3 = 2 zero eigenvalues cost 1 each
    assert float(R.orthogonality_penalty(w, torch.ones(1, dtype=torch.float64))) == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_orthogonality_with_max_norm_and_l2_trains_like_plain_torch(optimizer, small_dataset):
    method = MethodConfig("ortho+l2+max_norm", orthogonality=3e-3, l2=1e-3, max_norm=1.5)
    trainer, records, pairs = _train_beside_reference(method, optimizer, small_dataset)
    for k, ref in pairs:
        seed = SEEDS[k - len(SEEDS)]
        for l, lin in enumerate(ref.linears):
            assert _rel_err(trainer.model.weights[l][k], lin.weight.detach().T) <= 1e-6, (seed, l)  # renorm's 1e-7
        penalty = np.concatenate([r.loss_penalty[:, k] for r in records])
        assert np.allclose(penalty, ref.penalties, rtol=1e-6, atol=1e-7)


def test_the_declaration_and_its_validation():
    (hp,) = BUILTINS["orthogonality"].hyperparameters
    assert (hp.name, hp.low, hp.log, hp.search) == ("orthogonality", 0.0, True, (1e-6, 1e-2))
    with pytest.raises(ReglabError, match=r"'o.orthogonality' must be a number in \[0, inf\); got -0.1. Fix: use 0"):
        MethodConfig("o", orthogonality=-0.1)
    assert not MethodConfig("o").uses_orthogonality and MethodConfig("o", orthogonality=1e-4).uses_orthogonality
