"""The study written the way people write it by hand: one model per method, one after another.

This is the baseline reglab's batched engine is measured against (issue 7), so
it uses only the tools a user reaches for first: one ``torch.nn.Sequential``
per (method, seed), ``DataLoader(TensorDataset(...), batch_size=100,
shuffle=True)``, ``torch.optim.SGD`` with momentum, penalties added to the
loss, max-norm by ``torch.renorm`` after the step, ``nn.Dropout``. It reads
its hyperparameters from the same :class:`reglab.config.MethodConfig` as the
engine and follows the conventions stated in ``reglab.config``:

* L2: ``l2/2 * sum W^2`` over weight matrices (never biases).
* L1: ``l1 * sum |W|``, on only once the step exceeds ``l1_start * total_steps``.
* KL sparsity: ``kl_beta * sum_j KL(rho || q_j)`` over the units of every
  hidden layer, ``KL(p||q) = p log(p/q) + (1-p) log((1-p)/(1-q))``, where
  ``m_j`` is unit j's mean output over the minibatch (the output the next layer
  reads, after dropout), ``m_hat = kl_ema * previous m_hat + (1 - kl_ema) * m``
  (Hinton's moving average; ``m_hat = m`` when ``kl_ema = 0``) and
  ``q = clamp(m_hat / (1 + m_hat), 1e-6, 1 - 1e-6)`` squashes a ReLU mean into
  a rate. As in Hinton's recipe the penalty's derivative at ``m_hat`` is
  applied to ``m`` (written below as ``m + (m_hat - m).detach()``).
* Max-norm: every hidden unit's incoming weight vector (a row of
  ``nn.Linear.weight``) is projected back onto the ball of radius ``max_norm``
  after each step; the output units' too when ``max_norm_output``.
* Dropout: inverted (``nn.Dropout``), ``dropout_input`` on the pixels,
  ``dropout_hidden`` after every hidden ReLU.
* Learning rate of update number t (1-based), in s = t - 1 updates done and
  T = ``lr_decay_steps``: constant ``lr``; exponential ``lr * decay^(s/T)``;
  step ``lr * decay^floor(s/T)``; inverse_t ``lr / (1 + s/T)``. Momentum, when
  ``momentum_initial >= 0`` and T = ``momentum_ramp_steps`` > 0: linear
  ``mu0 + (mu - mu0) * min(s/T, 1)`` or exponential ``mu - (mu - mu0) * exp(-s/T)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reglab.config import MethodConfig, StudyConfig

KL_EPS = 1e-6  # keeps KL finite when a unit's mean activation leaves (0, 1)


def learning_rate(method: MethodConfig, step: int) -> float:
    """The method's learning rate for update number ``step`` (see the module docstring)."""
    s, T = step - 1, method.lr_decay_steps
    if method.lr_schedule == "constant":
        return method.lr
    if method.lr_schedule == "exponential":
        return method.lr * method.lr_decay ** (s / T)
    if method.lr_schedule == "step":
        return method.lr * method.lr_decay ** (s // T)
    if method.lr_schedule == "inverse_t":
        return method.lr / (1.0 + s / T)
    raise ValueError(f"unknown lr_schedule {method.lr_schedule!r}")


def momentum(method: MethodConfig, step: int) -> float:
    """SGD momentum for update number ``step``: the ramp, then constant."""
    mu, mu0, T = method.momentum, method.momentum_initial, method.momentum_ramp_steps
    if mu0 < 0 or T == 0:
        return mu
    s = step - 1
    if method.momentum_ramp == "exponential":
        return mu - (mu - mu0) * math.exp(-s / T)
    return mu0 + (mu - mu0) * min(s / T, 1.0)


def build_model(sizes: list[int], method: MethodConfig, seed: int, init: str) -> nn.Sequential:
    """784-h...-10 ReLU net for one (method, seed); biases start at 0."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    if method.dropout_input > 0:
        layers.append(nn.Dropout(method.dropout_input))
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(fan_in, fan_out)
        if init == "he_normal":
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        elif init == "he_uniform":
            nn.init.kaiming_uniform_(linear.weight, nonlinearity="relu")
        elif init == "glorot_uniform":
            nn.init.xavier_uniform_(linear.weight)
        if init != "torch_default":
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if method.dropout_hidden > 0:
                layers.append(nn.Dropout(method.dropout_hidden))
    return nn.Sequential(*layers)


def kl_divergence(rho: float, mean_output: torch.Tensor) -> torch.Tensor:
    """sum_j KL(rho || q_j), q = clamp(m / (1 + m), eps, 1 - eps) for mean ReLU outputs m."""
    q = (mean_output / (1 + mean_output)).clamp(KL_EPS, 1.0 - KL_EPS)
    return (rho * torch.log(rho / q) + (1 - rho) * torch.log((1 - rho) / (1 - q))).sum()


@dataclass
class HandRun:
    """One (method, seed): its model, optimizer and step counter."""
    method: MethodConfig
    seed: int
    model: nn.Sequential
    optimizer: torch.optim.SGD
    weights: list[torch.Tensor]          # weight matrices (penalised), never biases
    projected: list[torch.Tensor]        # weight matrices whose rows max-norm projects
    kl_average: list[torch.Tensor | None]  # moving average of each hidden layer's mean activation
    step: int = 0


class HandStudy:
    """Every (method, seed) of a study as separate models, trained one after another."""

    def __init__(self, cfg: StudyConfig, x_train: torch.Tensor, y_train: torch.Tensor,
                 steps_per_epoch: int | None = None, autocast: torch.dtype | None = None):
        """``autocast=torch.bfloat16``: forward and loss under ``torch.autocast`` (how a user asks
        PyTorch for bfloat16 products); parameters and optimizer stay float32."""
        self.autocast = autocast
        sizes = [x_train.shape[1], *cfg.hidden, int(y_train.max()) + 1]
        self.cfg = cfg
        self.loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x_train, y_train), batch_size=cfg.batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(cfg.data.data_seed))
        self.steps_per_epoch = steps_per_epoch or len(self.loader)
        self.total_steps = cfg.n_epochs * self.steps_per_epoch
        self.runs: list[HandRun] = []
        for _, method, seed in cfg.variants():
            model = build_model(sizes, method, seed, cfg.init)
            linears = [m for m in model if isinstance(m, nn.Linear)]
            optimizer = torch.optim.SGD(model.parameters(), lr=method.lr, momentum=method.momentum,
                                        nesterov=method.nesterov)
            self.runs.append(HandRun(method, seed, model, optimizer,
                                     weights=[m.weight for m in linears],
                                     projected=[m.weight for m in
                                                (linears if method.max_norm_output else linears[:-1])],
                                     kl_average=[None] * (len(linears) - 1)))

    def train(self, n_steps: int | None = None) -> None:
        """Train every run for ``n_steps`` minibatches (default: one epoch), one run after another."""
        n_steps = n_steps or self.steps_per_epoch
        for run in self.runs:
            run.model.train()
            batches = iter(self.loader)
            for _ in range(n_steps):
                try:
                    x, y = next(batches)
                except StopIteration:
                    batches = iter(self.loader)
                    x, y = next(batches)
                self._step(run, x, y)

    def _step(self, run: HandRun, x: torch.Tensor, y: torch.Tensor) -> None:
        m = run.method
        run.step += 1
        for group in run.optimizer.param_groups:
            group["lr"] = learning_rate(m, run.step)
            group["momentum"] = momentum(m, run.step)

        with torch.autocast("cpu", dtype=self.autocast or torch.bfloat16, enabled=self.autocast is not None):
            # forward; the KL penalty needs the hidden outputs (what each later layer reads)
            if m.kl_beta > 0:
                h, activations, first = x, [], True
                for layer in run.model:
                    if isinstance(layer, nn.Linear):
                        if not first:
                            activations.append(h)
                        first = False
                    h = layer(h)
                logits = h
            else:
                logits = run.model(x)
            loss = F.cross_entropy(logits, y)

            # penalties added to the loss (weights only)
            if m.l2 > 0:
                loss = loss + m.l2 / 2 * sum(w.pow(2).sum() for w in run.weights)
            if m.l1 > 0 and run.step > m.l1_start * self.total_steps:
                loss = loss + m.l1 * sum(w.abs().sum() for w in run.weights)
            if m.kl_beta > 0:
                for k, a in enumerate(activations):
                    mean_output = a.mean(0)
                    if m.kl_ema > 0:
                        previous = run.kl_average[k]
                        if previous is not None:
                            smoothed = m.kl_ema * previous + (1 - m.kl_ema) * mean_output.detach()
                            mean_output = mean_output + (smoothed - mean_output).detach()
                        run.kl_average[k] = mean_output.detach()
                    loss = loss + m.kl_beta * kl_divergence(m.kl_rho, mean_output)

        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()

        # max-norm: project each hidden unit's incoming weights back onto the ball
        if m.uses_max_norm:
            with torch.no_grad():
                for w in run.projected:
                    w.copy_(torch.renorm(w, p=2, dim=0, maxnorm=m.max_norm))

    @torch.no_grad()
    def test_errors(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 2000) -> list[float]:
        """Classification error (fraction) of every run on (x, y), in cfg.variants() order."""
        errors = []
        for run in self.runs:
            run.model.eval()
            wrong = sum(int((run.model(x[i:i + chunk]).argmax(1) != y[i:i + chunk]).sum())
                        for i in range(0, len(x), chunk))
            errors.append(wrong / len(x))
        return errors
