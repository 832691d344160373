"""Label smoothing: a change to the loss, through the ``loss_value`` / ``loss_grad`` hooks.

The training targets are ``q = (1 - eps) * one-hot(y) + eps / C`` instead of
the one-hot labels (Szegedy et al. 2016, sec. 7), so the minibatch loss is

    L_eps = mean_b [ -sum_c q_c log p_c ]
          = (1 - eps) * mean_b(-log p_y) + eps * mean_b mean_c(-log p_c)

(torch's ``F.cross_entropy(logits, y, label_smoothing=eps)``) with
``dL_eps/dz = (p - q) / b`` per example. The step records, checks for
divergence and minimises ``L_eps``: a label-smoothing method's ``loss_data``
and ``train_loss`` are the smoothed cross-entropy (at least the entropy of
``q`` even for a perfect fit), while its ``val_loss`` / ``test_loss`` and the
summary's ``train_loss_final`` (clean passes over a split) stay the plain
cross-entropy on the true labels, as for every method.
"""

from __future__ import annotations

import torch

from reglab.engine.regularizer import BindContext, Hooks


class LabelSmoothing(Hooks):
    """Label smoothing of the live variants that use it, as contiguous runs of equal ``eps``."""

    def __init__(self, context: BindContext):
        self.runs = context.runs(lambda m: m.label_smoothing or None)
        self.n_classes = context.sizes[-1]
        self.scratch = context.scratch

    def loss_value(self, logp: torch.Tensor, y_idx: torch.Tensor, loss: torch.Tensor) -> None:
        """``loss`` (n_live,) = -mean_b log p_y becomes ``(1 - eps) loss + eps * mean_b mean_c(-log p_c)``."""
        for sl, eps in self.runs:
            loss[sl] = (1.0 - eps) * loss[sl] - eps * logp[sl].mean((1, 2))

    def loss_grad(self, dlogits: torch.Tensor, y_idx: torch.Tensor) -> None:
        """Per-example ``p - one-hot`` becomes ``p - q = p - one-hot + eps * one-hot - eps / C``, in place."""
        for r, (sl, eps) in enumerate(self.runs):
            rows = dlogits[sl]
            rows.sub_(eps / self.n_classes)
            mass = self.scratch.buffer(("label-smoothing", r, rows.shape[2]), y_idx[sl].shape).fill_(eps)
            rows.scatter_add_(1, y_idx[sl], mass)
