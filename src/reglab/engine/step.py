"""One training step of every live variant at once, top to bottom.

1. learning rate and momentum of this step (schedules, per method);
2. minibatch: indices from the epoch's permutation (the same for every variant),
   gathered from tensors already on the device (no DataLoader);
3. forward: first layer from the shared minibatch (a stride-0 view) or from
   noisy inputs; each layer from its weights or noisy ones (DropConnect); ReLU;
   hidden train-time noise (dropout masks, Gaussian dropout); KL statistics;
4. loss: softmax cross-entropy on the logits (or a loss hook's change of it:
   label smoothing), recorded per step without a sync;
   a variant whose loss is NaN/inf is frozen from here on (diverged: learning
   rate 0 and a zero data gradient);
5. backward by hand, each weight gradient accumulated straight into the
   momentum buffer (SGD: ``b = mu b + g`` inside the product, one product per
   run of equal momentum) or into a gradient buffer (Adam); an SGD variant with
   Nesterov momentum has its buffer hold ``g`` alone, its ``b`` kept aside;
6. penalty gradients (L2, L1 once on) on the slices that use them;
7. update (decoupled weight decay just before it; Nesterov: ``b = mu b + g``, then
   ``w -= lr (g + mu b)``), then constraints (max-norm projection).

The step knows no regularizer by name: each acts through the hooks it binds
(``regularizer.Hooks``), the six built-ins as a user's would.

A ``TrainingStep`` is built for one set of live variants (``batch.LiveBatch``)
and rebuilt when that set changes (compaction, between epochs). It keeps the
epoch's per-step records on the device: ``loss_rec``, ``error_rec``,
``penalty_rec`` (steps_per_epoch, n_live).
"""

from __future__ import annotations

import torch

from reglab.config import MethodConfig, StudyConfig
from reglab.engine.batch import LiveBatch, Scratch, contiguous_runs
from reglab.engine.mlp import InputPart, ORDER_STREAM, WeightParts, misclassified, stream_seed
from reglab.engine.regularizer import BindContext, Hooks, Regularizer
from reglab.engine.schedules import learning_rate, momentum


def epoch_permutation(generator: torch.Generator, n: int) -> torch.Tensor:
    """The epoch's example order: ``torch.randperm(n)`` from the study's order generator (CPU).

    The generator is seeded once from ``data.data_seed`` and draws one
    permutation per epoch; the minibatch of step ``i`` is ``perm[i*B:(i+1)*B]``
    (the last one may be shorter). Every variant sees this same order.
    """
    return torch.randperm(n, generator=generator)


def order_generator(data_seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(data_seed, ORDER_STREAM))


class TrainingStep:
    """Everything one training step reads, for the live variants of ``batch`` (in study order).

    ``methods`` and ``method_index`` (index into ``cfg.methods``) are per live variant,
    ``dropout_generators`` too (its train-time noise stream; None for a variant without noise).
    ``regularizers``: the registry (name -> Regularizer); each one a live variant uses is bound to
    this batch (``hooks``).
    """

    def __init__(self, cfg: StudyConfig, batch: LiveBatch, methods: list[MethodConfig], method_index: list[int],
                 dropout_generators: list[torch.Generator | None], x_train: torch.Tensor, y_train: torch.Tensor,
                 sizes: list[int], steps_per_epoch: int, total_steps: int, fused: bool,
                 dtype: torch.dtype, device: torch.device, regularizers: dict[str, Regularizer]):
        self.cfg, self.batch = cfg, batch
        self.net, self.optimizer, self.training = batch.net, batch.optimizer, batch.training
        self.x_train, self.y_train = x_train, y_train
        self.method_index = method_index
        self.n_live = n = batch.n_live
        self.fused, self.dtype, self.device = fused, dtype, device
        self.scratch = Scratch(dtype, device, n)
        context = BindContext(methods, batch.live, sizes, total_steps, dtype, device, self.scratch,
                              dropout_generators, batch.training)
        ordered = sorted(regularizers.values(), key=lambda reg: not reg.noise)   # stable: noise first
        # name -> this batch's hooks, for the regularizers some live variant uses
        self.hooks: dict[str, Hooks] = {reg.name: reg.bind(context) for reg in ordered
                                        if reg.bind is not None and any(reg.uses(m) for m in methods)}
        hooks = list(self.hooks.values())
        self._backward_hooks = hooks[::-1]
        claimed = [False] * n
        for h in hooks:
            for sl in h.input_rows():
                claimed[sl] = [True] * (sl.stop - sl.start)
        self.shared_input_runs = contiguous_runs([None if c else True for c in claimed])
        self.logging = False                                   # is this step's penalty value recorded?
        self._schedule_key: tuple | None = None
        self.lr = torch.zeros(n, dtype=torch.float64, device=device)
        self.mu: float | torch.Tensor = 0.0
        # SGD: the factor of each momentum buffer's old content in the backward (mu; 0 for a Nesterov
        # variant, whose buffer takes g alone), a float when every variant has the same, else runs
        self.beta: float | list[tuple[slice, float]] = 0.0
        self.nesterov = [m.nesterov for m in methods] if fused else [False] * n
        # runs of Nesterov variants with equal momentum: (rows, momentum, index of their Nesterov run, rows in it)
        self._nesterov_mu: list[tuple[slice, float, int, slice]] = []
        # the Nesterov variants' momentum buffers b, kept (per run of Nesterov variants) while their
        # buffers hold this step's g
        self._nesterov_runs = [sl for sl, _ in contiguous_runs([True if v else None for v in self.nesterov])]
        self._momentum_kept = [[torch.empty_like(buf[sl]) for buf in self.optimizer.buffers]
                               for sl in self._nesterov_runs]
        self.grads = None if fused else [torch.zeros_like(p) for p in self.net.parameters()]
        self.nan = torch.tensor(float("nan"), dtype=dtype, device=device)
        self.loss_rec = torch.zeros(steps_per_epoch, n, dtype=dtype, device=device)
        self.error_rec = torch.zeros(steps_per_epoch, n, dtype=torch.int64, device=device)
        self.penalty_rec = torch.zeros(steps_per_epoch, n, dtype=dtype, device=device)

    def __call__(self, t: int, i: int, idx: torch.Tensor) -> None:
        """Global step ``t`` (1-based), the epoch's step ``i``, on the examples ``idx``."""
        b = idx.numel()
        net, training = self.net, self.training
        self.logging = t % self.cfg.log_every == 0

        # learning rate and momentum of this step
        lr, _ = self.schedule(t)                               # the momentum acts through self.beta

        # minibatch, and this step's train-time noise (dropout masks); the shared minibatch
        # (a stride-0 view) for the variants no noise claims, noisy copies for the others
        x = self.x_train.index_select(0, idx)
        y = self.y_train.index_select(0, idx)
        hooks = list(self.hooks.values())
        for h in hooks:
            h.draw(b)
        parts = [InputPart(sl, x) for sl, _ in self.shared_input_runs]
        for h in hooks:
            parts += h.input_parts(x)
        # the weights some variants' products read this step instead of the parameters (DropConnect)
        weight_parts: WeightParts = {}
        for l in range(net.n_layers):
            claimed = [part for h in hooks for part in h.weight_parts(l, net.weights[l])]
            if claimed:
                weight_parts[l] = claimed

        # forward: noise on the hidden outputs, then their statistics (KL)
        def hidden_forward(layer: int, out: torch.Tensor) -> None:
            for h in hooks:
                h.hidden_forward(layer, out, t, self.logging)

        logits = net.forward(parts, hidden_forward, weight_parts).to(self.dtype)

        # loss (cross-entropy, changed by loss hooks: label smoothing), error and dLoss/dlogits;
        # a non-finite loss freezes its variant
        logp = torch.log_softmax(logits, dim=1)                # logits are (n_live, C, b)
        y_idx = y.view(1, 1, b).expand(self.n_live, 1, b)
        loss = logp.gather(1, y_idx).mean((1, 2)).neg_()
        for h in hooks:
            h.loss_value(logp, y_idx, loss)
        torch.where(training, loss, self.nan, out=self.loss_rec[i])
        torch.sum(misclassified(logits, y), dim=1, out=self.error_rec[i])
        training &= torch.isfinite(loss)
        if self.logging:
            torch.where(training, self.penalty_value(t), self.nan, out=self.penalty_rec[i])
        dlogits = logp.exp_()                                   # softmax
        dlogits.scatter_add_(1, y_idx, self.scratch.minus_ones(b))   # - one-hot
        for h in hooks:
            h.loss_grad(dlogits, y_idx)
        dlogits.mul_(1.0 / b).masked_fill_(~training.view(-1, 1, 1), 0.0)

        # backward: the hooks in reverse (KL gradient w.r.t. the post-dropout output, then the
        # dropout mask); each layer reads the forward's weights (DropConnect: masked, its weight
        # gradient masked alike); SGD accumulates straight into the momentum buffers
        def hidden_backward(layer: int, dh: torch.Tensor) -> None:
            for h in self._backward_hooks:
                h.hidden_backward(layer, dh)

        L = net.n_layers
        if self.fused:
            # momenta that differ by method: one accumulation per run of equal momentum, each with its
            # float, so a variant's arithmetic does not depend on its neighbours' momenta
            buffers = self.optimizer.buffers
            self._keep_nesterov_momentum(buffers)
            net.backward(dlogits, parts, buffers[:L], buffers[L:], self.beta, hidden_backward)
            weight_grads = buffers[:L]
        else:
            net.backward(dlogits, parts, self.grads[:L], self.grads[L:], 0.0, hidden_backward)
            weight_grads = self.grads[:L]

        # penalty gradients (weights only)
        for h in hooks:
            h.add_weight_grads(weight_grads, net.weights, t)

        # update; frozen variants get learning rate 0; decoupled weight decay acts just before it
        optimizer = self.optimizer
        optimizer.lr = lr * training
        for h in hooks:
            h.before_update(net.weights, optimizer.lr)
        if self.fused:
            self._nesterov_update()
            optimizer.step_from_buffers()
            self._keep_nesterov_momentum(optimizer.buffers, restore=True)
        else:                                                   # Adam: from the gradient buffers
            optimizer.step(self.grads)

        # constraints after the update (max-norm projection)
        for h in hooks:
            h.constrain(net.weights, training)

    def schedule(self, t: int) -> tuple[torch.Tensor, float | torch.Tensor]:
        """(n_live,) float64 learning rates and the momentum (a float when all methods agree, else (n_live,));
        sets ``beta``, the backward's factor of each momentum buffer (fused SGD)."""
        per_method_lr = [learning_rate(m, t) for m in self.cfg.methods]
        per_method_mu = [momentum(m, t) for m in self.cfg.methods]
        key = (tuple(per_method_lr), tuple(per_method_mu))
        if key != self._schedule_key:
            self._schedule_key = key
            self.lr = torch.tensor([per_method_lr[k] for k in self.method_index], dtype=torch.float64,
                                   device=self.device)
            per_variant = [per_method_mu[k] for k in self.method_index]
            if len(set(per_method_mu)) == 1:
                self.mu = per_method_mu[0]
            else:
                self.mu = torch.tensor(per_variant, dtype=self.dtype, device=self.device)
            beta = [0.0 if nesterov else mu for nesterov, mu in zip(self.nesterov, per_variant)]
            self.beta = beta[0] if len(set(beta)) == 1 else contiguous_runs(beta)
            self._nesterov_mu = []
            nesterov_mu = [mu if nesterov else None for nesterov, mu in zip(self.nesterov, per_variant)]
            for rows, mu in contiguous_runs(nesterov_mu):
                run = next(i for i, sl in enumerate(self._nesterov_runs) if sl.start <= rows.start < sl.stop)
                start = self._nesterov_runs[run].start
                self._nesterov_mu.append((rows, mu, run, slice(rows.start - start, rows.stop - start)))
        return self.lr, self.mu

    def _keep_nesterov_momentum(self, buffers: list[torch.Tensor], restore: bool = False) -> None:
        """Copy the Nesterov variants' momentum out of their buffers (before the backward), or back in
        (``restore``, after the update)."""
        for sl, kept in zip(self._nesterov_runs, self._momentum_kept):
            for b, buf in zip(kept, buffers):
                if restore:
                    buf[sl].copy_(b)
                else:
                    b.copy_(buf[sl])

    def _nesterov_update(self) -> None:
        """Nesterov variants (fused SGD): their buffers hold g (penalties included); make them hold the
        update ``g + mu b`` after ``b = mu b + g`` in the kept momentum, the arithmetic of
        :meth:`SGD.step <reglab.engine.optim.SGD.step>`. The kept ``b`` goes back after the update."""
        for rows, mu, run, within in self._nesterov_mu:
            for kept, buf in zip(self._momentum_kept[run], self.optimizer.buffers):
                b, g = kept[within], buf[rows]
                b.mul_(mu).add_(g)
                g.add_(b, alpha=mu)

    def penalty_value(self, t: int) -> torch.Tensor:
        """(n_live,) penalty term at this step's weights (before the update), nats/example."""
        pen = torch.zeros(self.n_live, dtype=self.dtype, device=self.device)
        for h in self.hooks.values():       # activation penalties: their values from this step's forward
            h.add_activation_value(pen)
        for h in self.hooks.values():
            h.add_weight_value(pen, self.net.weights, t)
        return pen
