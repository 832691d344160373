"""The plain path: one variant as a user writes it, ``torch.nn.Sequential`` + ``torch.optim`` + autograd.

The tests train variant k of a batched :class:`~reglab.engine.trainer.Trainer`
and this reference side by side and compare them; the benchmark times it as
the loop users write. Nothing here is shared with the batched math: the
forward pass is ``nn.Linear``/``nn.ReLU``, gradients come from autograd, the
update from ``torch.optim.SGD`` / ``torch.optim.Adam`` (L2 as their
``weight_decay`` on the weight parameter group only), L1, KL-sparsity and soft
orthogonality are added to the loss as formulas, max-norm is ``torch.renorm``,
label smoothing is ``F.cross_entropy(label_smoothing=eps)``, Gaussian dropout
multiplies by its factors (``GaussianNoise``), DropConnect is ``F.linear`` on
``weight * factor`` (``DropConnectLinear``, autograd gives the masked gradient), decoupled weight decay is
``torch.optim.AdamW`` (with SGD: the weights scaled by ``1 - lr * lambda_d``
before ``torch.optim.SGD``'s step, SGDW, which torch.optim lacks). What IS shared,
because it is input rather than math: the initial weights
(:func:`~reglab.engine.mlp.init_parameters`), the minibatch order
(:func:`~reglab.engine.trainer.epoch_permutation`), the dropout masks (drawn
from the variant's own stream with
:func:`~reglab.engine.regularizers.dropout_keep_mask`, unless
``masks="torch"``, which uses ``nn.Dropout``), Gaussian dropout's standard
normal draws (``gaussian_dropout.gaussian_dropout_factors``, unless
``masks="torch"``: ``torch.randn_like``), DropConnect's masks
(``dropconnect.dropconnect_factors``, unless ``masks="torch"``: ``torch.bernoulli``)
and the schedules.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from reglab.config import MethodConfig, StudyConfig
from reglab.engine import regularizers as R
from reglab.engine.mlp import init_parameters
from reglab.engine.schedules import learning_rate, momentum
from reglab.engine.dropconnect import dropconnect_factors
from reglab.engine.dropout import dropout_generator
from reglab.engine.gaussian_dropout import gaussian_dropout_factors
from reglab.engine.step import epoch_permutation, order_generator


class GaussianNoise(nn.Module):
    """Gaussian dropout ``h * r``, ``r ~ N(1, p/(1-p))``: factors supplied from outside (set ``.factor``
    before each forward, ``masks="engine"``), or drawn here with ``torch.randn_like`` (``masks="torch"``)."""

    def __init__(self, p: float, masks: str = "engine"):
        super().__init__()
        self.p, self.masks = p, masks
        self.factor: torch.Tensor | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return h
        if self.masks == "torch":
            return h * (1.0 + math.sqrt(self.p / (1.0 - self.p)) * torch.randn_like(h))
        return h * self.factor


class MaskDropout(nn.Module):
    """Inverted dropout with masks supplied from outside (set ``.keep`` before each forward)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.keep: torch.Tensor | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return h
        return h * self.keep * R.keep_scale(self.p)


class DropConnectLinear(nn.Linear):
    """``nn.Linear`` whose training forward reads ``weight * factor`` (DropConnect, inverted: factor =
    mask / (1 - p), (out, in) like ``weight``; the bias is never masked): set ``.factor`` before each
    forward (``masks="engine"``), or drawn here with ``torch.bernoulli`` (``masks="torch"``)."""

    def __init__(self, in_features: int, out_features: int, p: float, masks: str = "engine"):
        super().__init__(in_features, out_features)
        self.p, self.masks = p, masks
        self.factor: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return super().forward(x)
        factor = self.factor
        if self.masks == "torch":
            factor = torch.bernoulli(torch.full_like(self.weight, 1 - self.p)) / (1 - self.p)
        return F.linear(x, self.weight * factor, self.bias)


def build_model(sizes: list[int], seed: int, init: str, dropout_input: float = 0.0, dropout_hidden: float = 0.0,
                masks: str = "engine", gaussian_input: float = 0.0, gaussian_hidden: float = 0.0,
                dropconnect: float = 0.0) -> nn.Sequential:
    """``nn.Sequential`` [dropout] Linear ReLU [dropout] ... Linear, initialised like the engine's variant;
    Gaussian dropout (``GaussianNoise``) where Bernoulli dropout would be; with DropConnect every
    Linear a ``DropConnectLinear``."""
    weights, biases = init_parameters(sizes, seed, init)
    drop = MaskDropout if masks == "engine" else nn.Dropout
    layers: list[nn.Module] = []
    if dropout_input > 0:
        layers.append(drop(dropout_input))
    if gaussian_input > 0:
        layers.append(GaussianNoise(gaussian_input, masks))
    for l, (w, b) in enumerate(zip(weights, biases)):
        linear = (DropConnectLinear(w.shape[0], w.shape[1], dropconnect, masks) if dropconnect > 0
                  else nn.Linear(w.shape[0], w.shape[1]))
        with torch.no_grad():
            linear.weight.copy_(w.T)
            linear.bias.copy_(b)
        layers.append(linear)
        if l < len(weights) - 1:
            layers.append(nn.ReLU())
            if dropout_hidden > 0:
                layers.append(drop(dropout_hidden))
            if gaussian_hidden > 0:
                layers.append(GaussianNoise(gaussian_hidden, masks))
    return nn.Sequential(*layers)


class ReferenceRun:
    """One (method, seed) variant of ``cfg`` trained with plain PyTorch, step by step."""

    def __init__(self, cfg: StudyConfig, method: MethodConfig, seed: int, x_train: torch.Tensor,
                 y_train: torch.Tensor, n_classes: int, masks: str = "engine", dtype: torch.dtype = torch.float32,
                 autocast: torch.dtype | None = None):
        self.cfg, self.method, self.seed = cfg, method, seed
        self.autocast = autocast       # e.g. torch.bfloat16: the forward/backward under torch.autocast
        self.x, self.y = x_train.to(dtype), y_train.long()
        self.sizes = [x_train.shape[1], *cfg.hidden, n_classes]
        self.model = build_model(self.sizes, seed, cfg.init, method.dropout_input, method.dropout_hidden,
                                 masks, method.gaussian_dropout_input, method.gaussian_dropout_hidden,
                                 method.dropconnect).to(dtype)
        self.masks = masks
        self.linears = [m for m in self.model if isinstance(m, nn.Linear)]
        weights = [m.weight for m in self.linears]
        biases = [m.bias for m in self.linears]
        # with decoupled weight decay, L2 is a loss term (the same gradient lambda * w, at the forward's
        # weights): AdamW's weight_decay is the decoupled one, and SGDW decays before SGD's step
        self.l2_in_loss = method.uses_decoupled_weight_decay
        self.adamw = cfg.optimizer == "adam" and method.uses_decoupled_weight_decay
        decay = method.decoupled_weight_decay if self.adamw else 0.0 if self.l2_in_loss else method.l2
        groups = [{"params": weights, "weight_decay": decay}, {"params": biases, "weight_decay": 0.0}]
        if cfg.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=method.lr, momentum=method.momentum,
                                             nesterov=method.nesterov)
        else:
            if method.eps_inside_sqrt or not method.bias_correction:
                raise NotImplementedError("torch.optim.Adam has eps outside the root and bias correction on")
            adam = torch.optim.AdamW if self.adamw else torch.optim.Adam
            self.optimizer = adam(groups, lr=method.lr, betas=(method.beta1, method.beta2), eps=method.eps)
        self.n_train = x_train.shape[0]
        self.batch_size = min(cfg.batch_size, self.n_train)
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        self.total_steps = cfg.n_epochs * self.steps_per_epoch
        self.order = order_generator(cfg.data.data_seed)
        # the variant's train-time noise stream (Bernoulli or Gaussian dropout, then DropConnect)
        noisy = method.uses_dropout or method.uses_gaussian_dropout or method.uses_dropconnect
        self.dropout = dropout_generator(seed) if noisy else None
        self.step = 0
        self.kl_running: list[torch.Tensor | None] = [None] * len(cfg.hidden)
        self.losses: list[float] = []          # data term per step
        self.penalties: list[float] = []       # penalty term per step

    def train_epoch(self) -> None:
        perm = epoch_permutation(self.order, self.n_train)
        B = self.batch_size
        for i in range(self.steps_per_epoch):
            self.train_step(perm[i * B:(i + 1) * B])

    def train_step(self, idx: torch.Tensor) -> None:
        self.step += 1
        t, m = self.step, self.method
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(m, t)
            if self.cfg.optimizer == "sgd":
                group["momentum"] = momentum(m, t)
        x, y = self.x[idx], self.y[idx]
        self.model.train()
        self._set_masks(x.shape[0])
        linear_inputs = []
        h = x
        with torch.autocast(x.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            for module in self.model:
                if isinstance(module, nn.Linear):
                    linear_inputs.append(h)
                h = module(h)
            data_loss = F.cross_entropy(h, y, label_smoothing=m.label_smoothing)
            # hidden outputs as the next layer reads them (after ReLU and dropout)
            penalty = self._penalty(t, linear_inputs[1:])
        l2_value = 0.0 if self.l2_in_loss else 0.5 * m.l2 * sum(float((lin.weight.detach() ** 2).sum())
                                                                for lin in self.linears)
        self.optimizer.zero_grad(set_to_none=True)
        (data_loss + penalty).backward()
        if m.uses_decoupled_weight_decay and self.cfg.optimizer == "sgd":
            with torch.no_grad():   # SGDW (torch.optim has no class for it): decay, then SGD's own update
                for linear in self.linears:
                    linear.weight.mul_(1 - learning_rate(m, t) * m.decoupled_weight_decay)
        self.optimizer.step()
        with torch.no_grad():
            if m.uses_max_norm:
                projected = self.linears if m.max_norm_output else self.linears[:-1]
                for linear in projected:  # weight (out, in): row j is unit j's incoming weights
                    linear.weight.copy_(torch.renorm(linear.weight, 2, 0, m.max_norm))
        self.losses.append(float(data_loss.detach()))
        self.penalties.append(float(penalty.detach()) + l2_value)  # L2 acts through weight_decay; logged like the engine

    def _set_masks(self, b: int) -> None:
        """Draw this step's masks (or Gaussian factors) from the variant's stream: dropout's (input first,
        then each hidden layer), then DropConnect's (layer by layer)."""
        if self.masks != "engine" or self.dropout is None:
            return
        m = self.method
        if m.uses_gaussian_dropout:
            factors = gaussian_dropout_factors(self.dropout, b, self.sizes, m.gaussian_dropout_input,
                                               m.gaussian_dropout_hidden, self.x.dtype)
            noises = [mod for mod in self.model if isinstance(mod, GaussianNoise)]
            for mod, which in zip(noises, factors):
                mod.factor = factors[which]
        drops = [mod for mod in self.model if isinstance(mod, MaskDropout)]
        widths = ([self.sizes[0]] if m.dropout_input > 0 else []) + (list(self.cfg.hidden) if m.dropout_hidden > 0
                                                                     else [])
        for mod, width in zip(drops, widths):
            mod.keep = R.dropout_keep_mask(self.dropout, (b, width), mod.p).to(self.x.dtype)
        if m.uses_dropconnect:   # the engine's factors are (in, out); nn.Linear's weight is (out, in)
            for linear, factor in zip(self.linears, dropconnect_factors(self.dropout, self.sizes, m.dropconnect,
                                                                        self.x.dtype)):
                linear.factor = factor.T

    def _penalty(self, t: int, hidden: list[torch.Tensor]) -> torch.Tensor:
        m = self.method
        penalty = torch.zeros((), dtype=self.x.dtype)
        weights = [linear.weight for linear in self.linears]
        if self.l2_in_loss and m.uses_l2:
            penalty = penalty + 0.5 * m.l2 * sum((w ** 2).sum() for w in weights)
        if R.l1_is_on(m, t, self.total_steps):
            penalty = penalty + m.l1 * sum(w.abs().sum() for w in weights)
        if m.uses_orthogonality:   # weight (out, in): weight weight^T is the Gram matrix of the units
            eye = [torch.eye(w.shape[0], dtype=w.dtype) for w in weights]
            penalty = penalty + m.orthogonality * sum(((w @ w.T - i) ** 2).sum() for w, i in zip(weights, eye))
        if m.uses_kl_sparsity:
            for l, h in enumerate(hidden):
                mean = h.mean(0)
                running = self.kl_running[l]
                if m.kl_ema > 0 and running is not None:
                    smoothed = m.kl_ema * running + (1 - m.kl_ema) * mean
                    m_hat = mean + (smoothed - mean).detach()   # value of the average, gradient of the batch mean
                else:
                    m_hat = mean
                c = m_hat.clamp(*R.KL_MEAN_RANGE)
                q = c / (1 + c)
                rho = m.kl_rho
                kl = rho * torch.log(rho / q) + (1 - rho) * torch.log((1 - rho) / (1 - q))
                penalty = penalty + m.kl_beta * kl.sum()
                self.kl_running[l] = m_hat.detach()
        return penalty
