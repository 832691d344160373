"""The built-in penalties and constraint, as regularizer hooks: L2, L1 (late L1), soft orthogonality,
KL sparsity, max-norm.

Each acts on the contiguous runs of live variants that use it (``batch.contiguous_runs``);
the formulas and their gradients are in ``regularizers``.

* L2 and L1 act on the weights of every layer (biases never); their gradients
  are added to the data gradient (for fused SGD: to the momentum buffer the
  backward pass accumulated it in). L1 acts once ``regularizers.l1_switched_on``.
  Soft orthogonality likewise, a ``WeightPenalty`` with its hand-written gradient.
* KL sparsity acts on every hidden layer's output as the next layer reads it
  (after ReLU and, for methods that combine them, after dropout), with one
  moving average per layer; its gradient enters the hand-written backward.
* Max-norm projects the hidden layers' incoming weights after the update, and
  the output layer's only with ``max_norm_output`` (deepnet constrains all layers).
"""

from __future__ import annotations

import torch

from reglab.config import MethodConfig
from reglab.engine import regularizers as R
from reglab.engine.batch import span
from reglab.engine.regularizer import BindContext, Hooks, StateRows, WeightPenalty


class L2(Hooks):
    """``lam/2 * sum w^2`` over every layer's weights, its hand-written gradient ``lam * w``."""

    def __init__(self, context: BindContext):
        self.runs = context.runs(lambda m: m.l2 or None)
        self.span = span(self.runs)
        self.half = torch.tensor([0.5 * m.l2 for m in context.methods], dtype=context.dtype,
                                 device=context.device)[self.span]

    def add_weight_grads(self, grads, W, t):
        for sl, lam in self.runs:
            R.add_l2_grad_([g[sl] for g in grads], [w[sl] for w in W], lam)

    def add_weight_value(self, pen, W, t):
        if self.runs:   # one pass over the span of L2 variants, zero coefficients in its gaps
            squares = sum(torch.linalg.vector_norm(w[self.span].flatten(1), dim=1) ** 2 for w in W)
            pen[self.span] += self.half * squares


def orthogonality(context: BindContext) -> WeightPenalty:
    """Soft orthogonality ``lam * sum_l ||W_l^T W_l - I||_F^2`` over every layer's weights (biases never),
    W_l (in, out) as stored: the Gram matrix of the units' incoming weight vectors. A weight penalty
    on its value, with its hand-written gradient ``4 lam W (W^T W - I)`` (``regularizers``)."""
    return WeightPenalty(context, lambda m: m.orthogonality or None, ("orthogonality",),
                         lambda w, hp: R.orthogonality_penalty(w, hp["orthogonality"]),
                         grad=lambda w, hp: R.orthogonality_grad(w, hp["orthogonality"]))


class L1(Hooks):
    """``lam * sum |w|`` over every layer's weights once ``regularizers.l1_switched_on`` (late L1:
    ``l1_start > 0``), its hand-written gradient ``lam * sign(w)``; ``late`` picks which methods."""

    def __init__(self, context: BindContext, late: bool):
        self.runs = context.runs(lambda m: (m.l1, m.l1_start) if m.uses_l1 and m.uses_late_l1 == late else None)
        self.total_steps = context.total_steps

    def add_weight_grads(self, grads, W, t):
        for sl, (lam, start) in self.runs:
            if R.l1_switched_on(start, t, self.total_steps):
                R.add_l1_grad_([g[sl] for g in grads], [w[sl] for w in W], lam)

    def add_weight_value(self, pen, W, t):
        for sl, (lam, start) in self.runs:
            if R.l1_switched_on(start, t, self.total_steps):
                pen[sl] += sum(R.l1_penalty(w[sl], lam) for w in W)


def kl_spec(method: MethodConfig) -> tuple[float, float, float] | None:
    """A method's KL-sparsity settings (beta, rho, ema), None if it has none: equal specs share a run."""
    return (method.kl_beta, method.kl_rho, method.kl_ema) if method.uses_kl_sparsity else None


KLRunning = dict[tuple[int, int], torch.Tensor]   # (run, layer) -> (Vr, H) moving averages


class KLSparsity(Hooks):
    """KL sparsity of the live variants, and its declared state.

    State: the moving average of each hidden layer's mean output, ``running``
    (run, layer) -> (Vr, H), as rows (variant, layer) -> (H,) for the engine;
    ``value`` (n_live,) is this step's penalty value (recorded on logged steps only).
    """

    def __init__(self, context: BindContext):
        self.runs = context.runs(kl_spec)
        self.live, self.dtype = context.live, context.dtype
        self.running: KLRunning = {}
        self.grad: dict[tuple[int, int], torch.Tensor] = {}      # this step's dP/dh rows, (Vr, 1, H)
        self.value = torch.zeros(len(context.live), dtype=context.dtype, device=context.device)

    def hidden_forward(self, layer, h, t, logging):
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

    def hidden_backward(self, layer, dh):
        """dh += dP/dh, the gradient w.r.t. the post-dropout output, in place."""
        for r, (sl, _) in enumerate(self.runs):
            dh[sl].add_(self.grad[(r, layer)])

    def add_activation_value(self, pen):
        if self.runs:
            pen += self.value

    def state_rows(self) -> StateRows:
        rows = {}
        for (r, layer), t in self.running.items():
            for i, v in enumerate(self.live[self.runs[r][0]]):
                rows[(int(v), layer)] = t[i]
        return rows

    def load_state_rows(self, rows: StateRows) -> None:
        """(run, layer) -> (Vr, H) from per-variant rows; a run whose variants have no rows for a
        layer (no step taken yet) has no entry, as before its first step."""
        self.running = {}
        layers = sorted({layer for _, layer in rows})
        for r, (sl, _) in enumerate(self.runs):
            for layer in layers:
                got = [rows.get((int(v), layer)) for v in self.live[sl]]
                if got and all(g is not None for g in got):
                    self.running[(r, layer)] = torch.stack(got)


class MaxNorm(Hooks):
    """Max-norm projection after each update: hidden layers, the output layer too with ``max_norm_output``."""

    def __init__(self, context: BindContext):
        self.runs = context.runs(lambda m: (m.max_norm, m.max_norm_output) if m.uses_max_norm else None)
        sizes = context.sizes
        # squares of the largest max-norm slice of one layer (see regularizers.max_norm_)
        rows = max((sl.stop - sl.start for sl, _ in self.runs), default=0)
        self.scratch = torch.empty(rows * max(a * b for a, b in zip(sizes, sizes[1:])), dtype=context.dtype,
                                   device=context.device)

    def constrain(self, W, training):
        """Project the weights ``W`` in place; variants not ``training`` (n_live,) are left alone."""
        if not self.runs:
            return
        frozen = ~training
        for sl, (radius, output_too) in self.runs:
            for w in (W if output_too else W[:-1]):
                R.max_norm_(w[sl], radius, frozen[sl], scratch=self.scratch)
