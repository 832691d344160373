"""Decoupled weight decay (Loshchilov & Hutter 2019), through the ``before_update`` hook.

Just before each update, every layer's weights (biases never) shrink by the
step's learning rate times ``lambda_d``::

    w <- (1 - lr_t * lambda_d) * w,   then the optimizer's own update from the gradient

which is ``torch.optim.AdamW(weight_decay=lambda_d)`` with Adam, and SGDW with
SGD (the decay does not pass through the momentum buffer). It is not a loss
term: nothing is added to the gradient or to the recorded penalty. For plain
SGD without momentum it is exactly L2 with ``l2 = lambda_d``
(``w - lr (g + lambda w)``); with momentum or Adam it is not. The learning rate
is the scheduled one of the step, 0 for a frozen (diverged) variant.
"""

from __future__ import annotations

import torch

from reglab.engine.regularizer import BindContext, Hooks


class DecoupledWeightDecay(Hooks):
    """Decoupled weight decay of the live variants that use it, as contiguous runs of equal ``lambda_d``."""

    def __init__(self, context: BindContext):
        self.runs = context.runs(lambda m: m.decoupled_weight_decay or None)

    def before_update(self, W: list[torch.Tensor], lr: torch.Tensor) -> None:
        """``W[l][run] *= 1 - lr * lambda_d`` in place; ``lr`` (n_live,) float64, the factor computed
        in float64 and rounded once to the weights' dtype (as torch rounds its Python-float factor)."""
        for sl, lam in self.runs:
            factor = (1.0 - lr[sl] * lam).to(W[0].dtype).view(-1, 1, 1)
            for w in W:
                w[sl].mul_(factor)
