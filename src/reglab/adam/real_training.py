"""Adam's bias correction measured on a real network: an MLP trained on MNIST with reglab's Adam.

Conventions (the same as :mod:`reglab.adam.simulation` and docs/adam.md):
steps count from t = 1; ``g_t`` is the minibatch gradient of the mean
cross-entropy (nats/example) at step t; reglab's Adam keeps::

    m_t = beta1 m_{t-1} + (1 - beta1) g_t,      v_t = beta2 v_{t-1} + (1 - beta2) g_t^2,   m_0 = v_0 = 0
    corrected:    w_t = w_{t-1} - lr * m_hat_t / (sqrt(v_hat_t) + eps),  m_hat_t = m_t / (1 - beta1^t),
                                                                          v_hat_t = v_t / (1 - beta2^t)
    uncorrected:  w_t = w_{t-1} - lr * m_t / (sqrt(v_t) + eps)

Three measurements:

* **v_t against the running mean of g^2.** For a sample of weights, g_t, m_t
  and v_t are recorded at every step. With ``G_t = (1/t) sum_{i<=t} g_i^2``
  the uncorrected ratio ``v_t / G_t`` starts at exactly ``1 - beta2`` and
  stays near ``1 - beta2^t`` while t << 1/(1 - beta2); the corrected
  ``v_hat_t / G_t`` stays near 1 (exactly 1 at t = 1).
* **The first step.** At t = 1, m_hat_1 = g_1 and v_hat_1 = g_1^2, so the
  corrected step is ``lr * |g| / (|g| + eps)`` (lr for |g| >> eps); the
  uncorrected one is ``lr * (1 - beta1) |g| / (sqrt(1 - beta2) |g| + eps)``.
  Their ratio, uncorrected over corrected, is
  ``(1 - beta1) (|g| + eps) / (sqrt(1 - beta2) |g| + eps)``, which tends to
  ``(1 - beta1) / sqrt(1 - beta2) = 0.1 / sqrt(0.001) = 3.1623`` for
  beta1 = 0.9, beta2 = 0.999. Weights whose g_1 is exactly 0 (inputs that are
  0 in the whole first minibatch) do not move under either rule.
* **Loss curves.** The same initial weights and the same minibatch order,
  trained with and without bias correction.

The network is a plain ``torch.nn`` MLP whose gradients come from autograd;
only the update is reglab's :class:`reglab.engine.optim.Adam`, whose state
(``.m``, ``.v``, ``.t``) is read after each step.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reglab.data import Dataset
from reglab.engine.optim import Adam
from reglab.errors import ReglabError


@dataclass(frozen=True)
class RealTrainingConfig:
    hidden: tuple[int, ...] = (256, 256)  # hidden widths; (256, 256) is the mnist quick preset's net
    n_steps: int = 500                    # Adam steps per training run, >= 1
    batch_size: int = 100                 # examples per step, >= 1
    lr: float = 1e-3                      # Adam learning rate, > 0
    beta1: float = 0.9                    # first-moment decay, [0, 1)
    beta2: float = 0.999                  # second-moment decay, [0, 1)
    eps: float = 1e-8                     # added to sqrt(v_hat) (outside the square root, as PyTorch), > 0
    n_recorded: int = 60                  # weights whose g_t, m_t, v_t are recorded, spread evenly over layers
    seed: int = 0                         # seeds the initial weights, the minibatch order and the weight sample

    def __post_init__(self) -> None:
        problems = []
        if not self.hidden or any(not isinstance(w, int) or w < 1 for w in self.hidden):
            problems.append(f"'hidden' must be positive whole numbers; got {list(self.hidden)}")
        for key in ("n_steps", "batch_size", "n_recorded"):
            if getattr(self, key) < 1:
                problems.append(f"{key!r} must be >= 1; got {getattr(self, key)}")
        if self.seed < 0:
            problems.append(f"'seed' must be >= 0; got {self.seed}")
        if not self.lr > 0 or not self.eps > 0:
            problems.append(f"'lr' and 'eps' must be > 0; got lr={self.lr}, eps={self.eps}")
        for key in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                problems.append(f"{key!r} must be in [0, 1); got {getattr(self, key)}")
        if problems:
            raise ReglabError("; ".join(problems) + ".")


# ----------------------------------------------------------------------------
# the network: plain torch.nn, He-normal weights, zero biases

def build_mlp(n_in: int, hidden: tuple[int, ...], n_out: int, seed: int) -> nn.Sequential:
    """Linear-ReLU-...-Linear; weights ~ N(0, 2 / fan_in) (He), biases 0, from a generator seeded by `seed`."""
    gen = torch.Generator().manual_seed(seed)
    widths = (n_in, *hidden, n_out)
    layers: list[nn.Module] = []
    for k in range(len(widths) - 1):
        linear = nn.Linear(widths[k], widths[k + 1])
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu", generator=gen)
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.ReLU()] if k < len(widths) - 2 else [linear]
    return nn.Sequential(*layers)


def weight_indices(model: nn.Sequential) -> list[int]:
    """Positions in ``list(model.parameters())`` of the weight matrices (not the biases)."""
    return [i for i, p in enumerate(model.parameters()) if p.dim() == 2]


def minibatch_order(n_examples: int, n_steps: int, batch_size: int, seed: int) -> torch.Tensor:
    """(n_steps, batch_size) example indices: consecutive slices of fresh permutations, one per epoch.

    An epoch's last incomplete batch is dropped, so every step sees the same
    number of examples.
    """
    if batch_size > n_examples:
        raise ReglabError(f"batch_size {batch_size} exceeds the {n_examples} training examples. "
                          f"Fix: use a batch_size <= {n_examples}.")
    gen = torch.Generator().manual_seed(seed)
    per_epoch = n_examples // batch_size
    n_epochs = math.ceil(n_steps / per_epoch)
    perms = [torch.randperm(n_examples, generator=gen)[:per_epoch * batch_size].view(per_epoch, batch_size)
             for _ in range(n_epochs)]
    return torch.cat(perms)[:n_steps]


def minibatch_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
    """(mean cross-entropy in nats/example, its gradient for every parameter) by autograd."""
    params = list(model.parameters())
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params)
    return float(loss.detach()), [g.detach() for g in grads]


def make_adam(model: nn.Module, cfg: RealTrainingConfig, *, bias_correction: bool) -> Adam:
    """reglab's Adam on the model's parameters; it updates them in place.

    ``detach()`` shares storage with the parameter, so the optimizer's
    in-place update changes the model without recording an autograd graph.
    """
    return Adam([p.detach() for p in model.parameters()], lr=cfg.lr, beta1=cfg.beta1, beta2=cfg.beta2,
                eps=cfg.eps, eps_inside_sqrt=False, bias_correction=bias_correction)


# ----------------------------------------------------------------------------
# recording one training run

@dataclass
class TrainingRecord:
    bias_correction: bool
    loss: np.ndarray          # (T,) minibatch cross-entropy at w_{t-1}, nats/example, t = 1..T
    optimizer_t: np.ndarray   # (T,) the optimizer's step counter .t after step t (must equal t)
    sample_param: np.ndarray  # (K,) index into list(model.parameters()) of each recorded weight
    sample_flat: np.ndarray   # (K,) flat index inside that parameter
    g: np.ndarray             # (T, K) g_t of the recorded weights, as passed to the optimizer
    m: np.ndarray             # (T, K) the optimizer's m_t after step t
    v: np.ndarray             # (T, K) the optimizer's v_t after step t (uncorrected)
    val_loss: float           # after the last step, nats/example
    val_error: float          # after the last step, fraction

    @property
    def steps(self) -> np.ndarray:
        return np.arange(1, len(self.loss) + 1)


def choose_recorded_weights(grads: list[torch.Tensor], weight_params: list[int], n_recorded: int,
                            seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Spread `n_recorded` weights evenly over the weight matrices, among entries with g_1 != 0.

    Entries with g_1 = 0 (e.g. an input pixel that is 0 in the whole first
    minibatch) are left out: their running mean of g^2 starts at 0, so the
    ratio v_t / mean(g^2) is undefined there.
    """
    gen = torch.Generator().manual_seed(seed + 1)
    param_idx, flat_idx = [], []
    per_layer = np.diff(np.linspace(0, n_recorded, len(weight_params) + 1).round().astype(int))
    for p, count in zip(weight_params, per_layer):
        nonzero = torch.nonzero(grads[p].flatten() != 0).flatten()
        take = nonzero[torch.randperm(len(nonzero), generator=gen)[:count]]
        param_idx += [p] * len(take)
        flat_idx += take.tolist()
    return np.asarray(param_idx, dtype=np.int64), np.asarray(flat_idx, dtype=np.int64)


def _gather(tensors: list[torch.Tensor], param_idx: np.ndarray, flat_idx: np.ndarray) -> np.ndarray:
    return np.array([float(tensors[p].flatten()[f]) for p, f in zip(param_idx, flat_idx)])


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy in nats/example, error fraction) on (x, y)."""
    logits = model(x)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) != y).double().mean())


def train_and_record(model: nn.Module, dataset: Dataset, order: torch.Tensor, cfg: RealTrainingConfig, *,
                     bias_correction: bool) -> TrainingRecord:
    """Train `model` in place for len(order) steps with reglab's Adam, recording a sample of weights."""
    opt = make_adam(model, cfg, bias_correction=bias_correction)
    n_steps = len(order)
    loss = np.empty(n_steps)
    opt_t = np.empty(n_steps, dtype=np.int64)
    sample = None
    g_rec = m_rec = v_rec = None
    for j, idx in enumerate(order):
        # forward/backward by autograd on the plain torch.nn model
        loss[j], grads = minibatch_gradients(model, dataset.x_train[idx], dataset.y_train[idx])
        if sample is None:
            sample = choose_recorded_weights(grads, weight_indices(model), cfg.n_recorded, cfg.seed)
            g_rec, m_rec, v_rec = (np.empty((n_steps, len(sample[0]))) for _ in range(3))
        g_rec[j] = _gather(grads, *sample)
        # the update is reglab's
        opt.step(grads)
        # the optimizer's state after step t = j + 1
        opt_t[j] = opt.t
        m_rec[j] = _gather(opt.m, *sample)
        v_rec[j] = _gather(opt.v, *sample)
    val_loss, val_error = evaluate(model, dataset.x_val, dataset.y_val)
    return TrainingRecord(bias_correction, loss, opt_t, sample[0], sample[1], g_rec, m_rec, v_rec,
                          val_loss, val_error)


# ----------------------------------------------------------------------------
# the first step, with and without correction

@dataclass
class FirstStep:
    abs_grad: np.ndarray        # (n,) |g_1| of every weight entry with g_1 != 0
    step_corrected: np.ndarray  # (n,) |w_1 - w_0| with bias correction
    step_uncorrected: np.ndarray  # (n,) |w_1 - w_0| without
    n_zero_grad: int            # weight entries with g_1 = 0 (they do not move under either rule)
    n_weights: int              # all weight entries (biases excluded)

    @property
    def ratio(self) -> np.ndarray:
        """(n,) uncorrected step / corrected step, per weight."""
        return self.step_uncorrected / self.step_corrected


def first_step_ratio_closed_form(abs_grad: np.ndarray, beta1: float, beta2: float, eps: float) -> np.ndarray:
    """(1 - beta1)(|g| + eps) / (sqrt(1 - beta2)|g| + eps): uncorrected over corrected first step, eps outside."""
    return (1 - beta1) * (abs_grad + eps) / (math.sqrt(1 - beta2) * abs_grad + eps)


def measure_first_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: RealTrainingConfig) -> FirstStep:
    """One Adam step on the minibatch gradient at `model`'s weights, with and without bias correction.

    Adam's update does not depend on the weights themselves, so it is applied
    to zero tensors: the step is then read as the new value, without the
    cancellation of ``w_1 - w_0`` in float32 (which would cost ~1e-4 relative
    precision for steps of 1e-3 on weights of order 1). `model` is not changed.
    """
    _, grads = minibatch_gradients(model, x, y)
    weights = weight_indices(model)
    steps = {}
    for corrected in (True, False):
        origin = [torch.zeros_like(g) for g in grads]
        opt = Adam(origin, lr=cfg.lr, beta1=cfg.beta1, beta2=cfg.beta2, eps=cfg.eps, eps_inside_sqrt=False,
                   bias_correction=corrected)
        opt.step([g.clone() for g in grads])
        steps[corrected] = torch.cat([origin[i].abs().flatten() for i in weights])
    g = torch.cat([grads[i].abs().flatten() for i in weights])
    moved = g != 0
    return FirstStep(abs_grad=g[moved].double().numpy(),
                     step_corrected=steps[True][moved].double().numpy(),
                     step_uncorrected=steps[False][moved].double().numpy(),
                     n_zero_grad=int((~moved).sum()), n_weights=int(g.numel()))


def build_like(model: nn.Module) -> nn.Module:
    """An independent copy of `model` with the same weights (the global RNG is not touched)."""
    return copy.deepcopy(model)


# ----------------------------------------------------------------------------
# everything together

@dataclass
class RealTrainingResult:
    config: RealTrainingConfig
    dataset_info: dict              # Dataset.info of the data trained on
    n_train: int                    # training examples the minibatches were drawn from
    first_step: FirstStep
    corrected: TrainingRecord       # bias_correction=True
    uncorrected: TrainingRecord     # bias_correction=False, same initial weights and minibatch order

    def v_ratios(self) -> tuple[np.ndarray, np.ndarray]:
        """(T, K) v_t / G_t and v_hat_t / G_t of the corrected run, G_t = (1/t) sum_{i<=t} g_i^2."""
        rec = self.corrected
        running_mean_g2 = np.cumsum(rec.g ** 2, axis=0) / rec.steps[:, None]
        uncorrected = rec.v / running_mean_g2
        return uncorrected, uncorrected / (1 - self.config.beta2 ** rec.steps)[:, None]

    def summary(self) -> dict:
        """JSON-safe numbers: the v ratios at a few steps, the first step, the final losses."""
        unc, cor = self.v_ratios()
        steps = self.corrected.steps
        at = sorted({t for t in (1, 2, 10, 100, len(steps)) if t <= len(steps)})
        fs = self.first_step
        ratio = fs.ratio
        cfg = self.config
        return {
            "config": asdict(cfg),
            "n_train": self.n_train,
            "v_over_running_mean_g2": [{
                "t": t,
                "closed_form_1_minus_beta2_t": 1 - cfg.beta2 ** t,
                "uncorrected_median": float(np.median(unc[t - 1])),
                "corrected_median": float(np.median(cor[t - 1])),
                "corrected_q25": float(np.quantile(cor[t - 1], 0.25)),
                "corrected_q75": float(np.quantile(cor[t - 1], 0.75)),
            } for t in at],
            "n_recorded_weights": int(len(self.corrected.sample_flat)),
            "first_step": {
                "ratio_uncorrected_over_corrected_median": float(np.median(ratio)),
                "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max()),
                "ratio_limit_(1-beta1)/sqrt(1-beta2)": (1 - cfg.beta1) / math.sqrt(1 - cfg.beta2),
                "corrected_step_over_lr_median": float(np.median(fs.step_corrected) / cfg.lr),
                "uncorrected_step_over_lr_median": float(np.median(fs.step_uncorrected) / cfg.lr),
                "n_weights_moved": int(len(ratio)), "n_weights_zero_gradient": fs.n_zero_grad,
            },
            "final": {name: {"train_loss_last_10_steps": float(rec.loss[-10:].mean()),
                             "val_loss": rec.val_loss, "val_error": rec.val_error}
                      for name, rec in (("corrected", self.corrected), ("uncorrected", self.uncorrected))},
        }


def run_real_training(dataset: Dataset, cfg: RealTrainingConfig) -> RealTrainingResult:
    """First-step measurement, then two training runs (corrected, uncorrected) from the same start."""
    n_train = int(dataset.x_train.shape[0])
    order = minibatch_order(n_train, cfg.n_steps, cfg.batch_size, cfg.seed)
    initial = build_mlp(dataset.n_features, cfg.hidden, dataset.n_classes, cfg.seed)
    first = order[0]
    first_step = measure_first_step(initial, dataset.x_train[first], dataset.y_train[first], cfg)
    records = {}
    for corrected in (True, False):
        records[corrected] = train_and_record(build_like(initial), dataset, order, cfg,
                                              bias_correction=corrected)
    return RealTrainingResult(cfg, dict(dataset.info), n_train, first_step, records[True], records[False])
