"""The penalties and the constraint of the batched step: L2, L1 (late L1), KL sparsity, max-norm.

Each acts on the contiguous runs of live variants that use it (``batch.contiguous_runs``);
the formulas and their gradients are in ``regularizers``.

* L2 and L1 act on the weights of every layer (biases never); their gradients
  are added to the data gradient (for fused SGD: to the momentum buffer the
  backward pass accumulated it in). L1 acts once ``regularizers.l1_switched_on``.
* KL sparsity acts on every hidden layer's output as the next layer reads it
  (after ReLU and, for methods that combine them, after dropout), with one
  moving average per layer; its gradient enters the hand-written backward.
* Max-norm projects the hidden layers' incoming weights after the update, and
  the output layer's only with ``max_norm_output`` (deepnet constrains all layers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reglab.config import MethodConfig
from reglab.engine import regularizers as R
from reglab.engine.batch import contiguous_runs, span


class WeightPenalties:
    """L2 and L1 on the live variants ``methods``: gradients added in place, values for the log."""

    def __init__(self, methods: list[MethodConfig], total_steps: int, dtype: torch.dtype, device: torch.device):
        self.l2_runs = contiguous_runs([m.l2 or None for m in methods])
        self.l1_runs = contiguous_runs([(m.l1, m.l1_start) if m.l1 > 0 else None for m in methods])
        self.l2_span = span(self.l2_runs)
        self.l2_half = torch.tensor([0.5 * m.l2 for m in methods], dtype=dtype, device=device)[self.l2_span]
        self.total_steps = total_steps

    def add_grads(self, weight_grads: list[torch.Tensor], W: list[torch.Tensor], t: int) -> None:
        """weight_grads[l] += d(penalty)/dW[l] of step ``t``, each (n_live, in, out)."""
        for sl, lam in self.l2_runs:
            R.add_l2_grad_([g[sl] for g in weight_grads], [w[sl] for w in W], lam)
        for sl, (lam, start) in self.l1_runs:
            if R.l1_switched_on(start, t, self.total_steps):
                R.add_l1_grad_([g[sl] for g in weight_grads], [w[sl] for w in W], lam)

    def add_values(self, pen: torch.Tensor, W: list[torch.Tensor], t: int) -> torch.Tensor:
        """pen (n_live,) += the penalty at the weights ``W`` of step ``t``, nats/example."""
        if self.l2_runs:   # one pass over the span of L2 variants, zero coefficients in its gaps
            squares = sum(torch.linalg.vector_norm(w[self.l2_span].flatten(1), dim=1) ** 2 for w in W)
            pen[self.l2_span] += self.l2_half * squares
        for sl, (lam, start) in self.l1_runs:
            if R.l1_switched_on(start, t, self.total_steps):
                pen[sl] += sum(R.l1_penalty(w[sl], lam) for w in W)
        return pen


def kl_spec(method: MethodConfig) -> tuple[float, float, float] | None:
    """A method's KL-sparsity settings (beta, rho, ema), None if it has none: equal specs share a run."""
    return (method.kl_beta, method.kl_rho, method.kl_ema) if method.uses_kl_sparsity else None


KLRunning = dict[tuple[int, int], torch.Tensor]   # (run, layer) -> (Vr, H) moving averages
KLRows = dict[tuple[int, int], torch.Tensor]      # (variant, layer) -> (H,) moving average


class KLSparsity:
    """KL sparsity of the live variants ``methods`` (study order, indices ``live``), and its state.

    State: the moving average of each hidden layer's mean output, ``running``
    (run, layer) -> (Vr, H); ``value`` (n_live,) is this step's penalty value
    (recorded on logged steps only).
    """

    def __init__(self, methods: list[MethodConfig], live: np.ndarray, dtype: torch.dtype, device: torch.device):
        self.runs = contiguous_runs([kl_spec(m) for m in methods])
        self.live, self.dtype = live, dtype
        self.running: KLRunning = {}
        self.grad: dict[tuple[int, int], torch.Tensor] = {}      # this step's dP/dh rows, (Vr, 1, H)
        self.value = torch.zeros(len(live), dtype=dtype, device=device)

    def forward(self, layer: int, h: torch.Tensor, t: int, logging: bool) -> None:
        """Statistics of hidden layer ``layer``'s (post-dropout) output ``h`` (n_live, b, H) at step ``t``."""
        b = h.shape[1]
        if layer == 0 and self.runs and logging:
            self.value.zero_()
        for r, (sl, (beta, rho, ema)) in enumerate(self.runs):
            running = self.running.get((r, layer)) if t > 1 else None
            value, grad, m_hat = R.kl_sparsity(h[sl].mean(1, dtype=self.dtype), rho, beta, ema, running,
                                               with_value=logging)
            if ema > 0:
                self.running[(r, layer)] = m_hat
            if value is not None:
                self.value[sl] += value
            self.grad[(r, layer)] = grad.div_(b).unsqueeze(1)

    def backward(self, layer: int, dh: torch.Tensor) -> None:
        """dh += dP/dh, the gradient w.r.t. the post-dropout output, in place."""
        for r, (sl, _) in enumerate(self.runs):
            dh[sl].add_(self.grad[(r, layer)])

    def rows(self, parked: KLRows) -> KLRows:
        """Every variant's moving averages: the live ones from ``running``, the others from ``parked``."""
        rows = dict(parked)
        for (r, layer), t in self.running.items():
            for i, v in enumerate(self.live[self.runs[r][0]]):
                rows[(int(v), layer)] = t[i]
        return rows


def kl_stack(runs: list[tuple[slice, Any]], index: np.ndarray, rows: KLRows) -> KLRunning:
    """(run, layer) -> (Vr, H) from per-variant rows, for runs over the variants ``index``; a run
    whose variants have no rows for a layer (no step taken yet) has no entry, as before its first step."""
    out = {}
    layers = sorted({layer for _, layer in rows})
    for r, (sl, _) in enumerate(runs):
        for layer in layers:
            got = [rows.get((int(v), layer)) for v in index[sl]]
            if got and all(g is not None for g in got):
                out[(r, layer)] = torch.stack(got)
    return out


class MaxNorm:
    """Max-norm projection of the live variants ``methods`` after each update; ``sizes`` [D, H1, ..., C]."""

    def __init__(self, methods: list[MethodConfig], sizes: list[int], dtype: torch.dtype, device: torch.device):
        self.runs = contiguous_runs([(m.max_norm, m.max_norm_output) if m.uses_max_norm else None
                                     for m in methods])
        # squares of the largest max-norm slice of one layer (see regularizers.max_norm_)
        rows = max((sl.stop - sl.start for sl, _ in self.runs), default=0)
        self.scratch = torch.empty(rows * max(a * b for a, b in zip(sizes, sizes[1:])), dtype=dtype, device=device)

    def project(self, W: list[torch.Tensor], training: torch.Tensor) -> None:
        """Project the weights ``W`` in place; variants not ``training`` (n_live,) are left alone."""
        if not self.runs:
            return
        frozen = ~training
        for sl, (radius, output_too) in self.runs:
            for w in (W if output_too else W[:-1]):
                R.max_norm_(w[sl], radius, frozen[sl], scratch=self.scratch)
