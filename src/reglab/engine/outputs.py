"""What the trainer gives back: each epoch's record, the final summary, the report's arrays.

Measured how: ``train_loss`` / ``train_error`` are the minibatch losses and
errors as seen DURING the epoch (with dropout on and weights changing),
averaged over the epoch weighted by batch size, the running average the
usual training loop prints, not a separate pass over the training split
(with label smoothing: the smoothed cross-entropy the step minimises).
``val_*`` and ``test_*`` are full passes over those splits at the end of the
epoch without dropout. ``sparsity`` is the fraction of weights (all layers,
no biases) with ``|w| < 1e-3``; ``weight_norm`` the L2 norm of all of them,
``sqrt(sum w^2)``; ``mean_activation`` the mean ReLU output over
every hidden unit of every hidden layer on the validation split. ``lr`` and
``momentum`` are the values of the epoch's last step (for Adam ``momentum``
is beta1). Metrics of a variant that did not train in an epoch (stopped
earlier, or diverged in or before it) are NaN: nothing is padded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from reglab.engine.mlp import BatchedMLP
from reglab.engine.optim import SGD

if TYPE_CHECKING:
    from reglab.engine.step import TrainingStep
    from reglab.engine.trainer import Trainer

SPARSITY_THRESHOLD = 1e-3          # |w| below this counts as zero in the ``sparsity`` metric
HIST_EDGES = np.concatenate([[0.0], np.logspace(-6, 1, 57)])  # |w| histogram: [0, 1e-6) then log bins to 10
GRID_SIZE = 101                    # decision grid resolution for 2-D data
NONFINITE = "non-finite loss or weights (NaN/inf)"   # diverged_reason of a variant no plugin turned non-finite


@dataclass
class EpochRecord:
    epoch: int                               # 1-based
    steps: np.ndarray                        # (S,) global step numbers logged this epoch (every log_every)
    loss_data: np.ndarray                    # (S, V) cross-entropy of the minibatch, nats/example (label
                                             # smoothing: the smoothed cross-entropy the step minimises)
    loss_penalty: np.ndarray                 # (S, V) penalty term value (same units)
    metrics: dict[str, np.ndarray]           # each (V,), see the module docstring


def evaluate(model: BatchedMLP, full: Callable[[torch.Tensor], np.ndarray], x: torch.Tensor, y: torch.Tensor,
             n_variants: int, hidden_units: int, chunk: int) -> dict:
    """Loss, error and mean activation per variant (V,) on a split, no dropout; ``full`` turns the
    model's (n,) rows into (V,) (NaN for variants it does not hold)."""
    n = int(x.shape[0])
    if n == 0:
        nan = np.full(n_variants, np.nan)
        return {"loss": nan, "error": nan.copy(), "mean_activation": nan.copy()}
    return split_results(model.evaluate(x, y, chunk), n, full, n_variants, hidden_units)


def split_results(sums: dict[str, torch.Tensor], n: int, full: Callable[[torch.Tensor], np.ndarray],
                  n_variants: int, hidden_units: int) -> dict:
    """Mean loss, error and mean activation per variant (V,) from ``BatchedMLP.evaluate``'s sums over
    ``n`` examples (``full`` as in :func:`evaluate`)."""
    if hidden_units:
        act = full(sum(h.sum(1) for h in sums["hidden_sum"]) / (n * hidden_units))
    else:
        act = np.full(n_variants, np.nan)
    return {"loss": full(sums["loss_sum"] / n), "error": full(sums["error_count"].double() / n),
            "mean_activation": act}


def batch_results(tr: Trainer, step: TrainingStep, logged: list[int], val: dict, test: dict
                  ) -> dict[str, np.ndarray]:
    """The epoch's per-variant results, (..., V), NaN for variants outside the step's batch."""
    full = step.batch.full
    batch = torch.full((tr.steps_per_epoch, 1), float(tr.batch_size), dtype=torch.float64, device=tr.device)
    batch[-1] = tr.n_train - (tr.steps_per_epoch - 1) * tr.batch_size
    if isinstance(tr.optimizer, SGD):
        mu = full(step.mu) if isinstance(step.mu, torch.Tensor) else np.full(tr.n_variants, step.mu)
    else:
        mu = np.array([m.beta1 for m in tr.methods], dtype=np.float64)
    return {
        "train_loss": full((step.loss_rec.double() * batch).sum(0) / tr.n_train),
        "train_error": full(step.error_rec.double().sum(0) / tr.n_train),
        "val_loss": val["loss"], "val_error": val["error"], "test_loss": test["loss"], "test_error": test["error"],
        "mean_activation": val["mean_activation"],
        "lr": full(step.lr), "momentum": mu,
        "loss_data": full(step.loss_rec[logged]), "loss_penalty": full(step.penalty_rec[logged]),
    }


def epoch_metrics(tr: Trainer, trained: np.ndarray, ok: np.ndarray, values: dict[str, np.ndarray],
                  train_time: float, eval_time: float) -> dict[str, np.ndarray]:
    """Each (V,): the metrics of the module docstring; NaN where a variant did not train (or diverged)."""
    zero = torch.zeros(tr.n_variants, dtype=torch.float64, device=tr.device)
    squares = torch.zeros(tr.n_variants, dtype=torch.float64, device=tr.device)
    total = 0
    for w in tr.model.weights:
        zero += (w.abs() < SPARSITY_THRESHOLD).to(tr.dtype).sum(dim=(1, 2))
        squares += torch.linalg.vector_norm(w.flatten(1), dim=1, dtype=torch.float64) ** 2
        total += w[0].numel()
    nan = np.nan
    return {
        **{k: np.where(ok, values[k], nan) for k in ("train_loss", "train_error", "val_loss", "val_error",
                                                       "test_loss", "test_error")},
        "sparsity": np.where(ok, (zero / total).cpu().numpy(), nan),
        "weight_norm": np.where(ok, squares.sqrt().cpu().numpy(), nan),
        "mean_activation": np.where(ok, values["mean_activation"], nan),
        "lr": np.where(trained, values["lr"], nan),
        "momentum": np.where(trained, values["momentum"], nan),
        "epoch_time_s": np.full(tr.n_variants, train_time),
        "eval_time_s": np.full(tr.n_variants, eval_time),
        "active": tr._training.cpu().numpy().copy(),
        "diverged": tr.diverged.copy(),
    }


def final_summary(tr: Trainer) -> dict:
    """Per variant (in variant order): the numbers a study reports.

    ``test_error_last``: test error of the weights the variant ends with
    (for early stopping: the restored best-validation weights; NaN if
    diverged). ``test_error_best_val`` / ``best_val_error`` / ``best_val_loss``:
    at ``best_epoch``, the epoch with the best monitored validation value
    (the method's ``monitor``, improvement > ``min_delta``). ``stop_epoch``:
    the epoch in which it stopped early or diverged, None if it ran to the end.
    ``diverged_reason``: why it diverged (a plugin's hook, or :data:`NONFINITE`), None if it did not.
    ``train_error_final`` / ``train_loss_final``: a full pass over the training split
    with the weights the variant ends with, without dropout (the train side of the
    generalization gap; ``train_error`` in the epoch metrics is the running minibatch
    error, dropout on). NaN if diverged.
    """
    best_epoch = tr.early_stopping.best_epoch
    with torch.no_grad():   # every variant, stopped ones too
        train = split_results(tr.train_split_sums(), tr.n_train, lambda t: t.detach().double().cpu().numpy(),
                              tr.n_variants, sum(tr.sizes[1:-1]))
    rows = []
    for v, method, seed in tr.variants:
        restored = method.early_stopping and best_epoch[v] > 0
        last = tr._at_best["test_error"][v] if restored else tr._last["test_error"][v]
        rows.append({
            "variant": v, "method": method.name, "seed": seed,
            "test_error_last": math.nan if tr.diverged[v] else float(last),
            "test_error_best_val": float(tr._at_best["test_error"][v]),
            "best_val_error": float(tr._at_best["val_error"][v]),
            "best_val_loss": float(tr._at_best["val_loss"][v]),
            "best_epoch": int(best_epoch[v]) if best_epoch[v] > 0 else None,
            "stop_epoch": tr.stop_epoch[v],
            "diverged": bool(tr.diverged[v]),
            "diverged_reason": tr.diverged_reason[v],
            "train_error_final": math.nan if tr.diverged[v] else float(train["error"][v]),
            "train_loss_final": math.nan if tr.diverged[v] else float(train["loss"][v]),
        })
    return {"variants": rows}


@torch.no_grad()
def analysis(tr: Trainer) -> dict[str, np.ndarray]:
    """Arrays for the report, from the final weights.

    ``weight_hist`` (V, 57): counts of |w| over all weights (no biases) in
    the bins ``weight_hist_edges`` (58,): [0, 1e-6) holds exact zeros, then
    log-spaced bins up to 10 (larger |w| counted in the last bin).
    ``hidden_mean_activation`` (V, H1): each first-layer unit's mean ReLU
    output over the training split (no dropout). For 2-D data also
    ``grid_xx``, ``grid_yy`` (G, G) and ``grid_probs`` (V, G, G), the
    predicted probability of class 1 on a grid over the data (+10% margin),
    and the points ``x_train``, ``y_train``, ``x_val``, ``y_val``.
    ``diverged`` (V,) bool: these variants' rows are NaN (their weights
    describe nothing), so use nan-aware means over seeds.
    """
    out: dict[str, np.ndarray] = {}
    bad = torch.as_tensor(tr.diverged, device=tr.device)
    edges = torch.as_tensor(HIST_EDGES[1:-1], dtype=tr.dtype, device=tr.device)
    n_bins = len(HIST_EDGES) - 1
    hist = torch.zeros(tr.n_variants, n_bins, dtype=torch.float64, device=tr.device)
    for w in tr.model.weights:
        idx = torch.bucketize(w.abs().flatten(1), edges, right=True)
        hist.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
    out["weight_hist"] = _nan_rows(hist, bad)
    out["weight_hist_edges"] = HIST_EDGES.copy()
    out["diverged"] = tr.diverged.copy()
    sums = tr.train_split_sums()["hidden_sum"]
    if sums:
        out["hidden_mean_activation"] = _nan_rows(sums[0] / max(tr.n_train, 1), bad)
    if tr.sizes[0] == 2:
        xs = torch.cat([tr.x_train, tr.x_val, tr.x_test])
        lo, hi = xs.min(0).values, xs.max(0).values
        pad = 0.1 * (hi - lo)
        grid = {"steps": GRID_SIZE, "device": tr.device, "dtype": tr.dtype}
        gx = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), **grid)
        gy = torch.linspace(float(lo[1] - pad[1]), float(hi[1] + pad[1]), **grid)
        xx, yy = torch.meshgrid(gx, gy, indexing="xy")
        logits, _ = tr.model.forward_eval(torch.stack([xx.flatten(), yy.flatten()], 1))
        probs = torch.softmax(logits, dim=1)[:, 1 % tr.n_classes]
        out["grid_xx"], out["grid_yy"] = xx.cpu().numpy(), yy.cpu().numpy()
        out["grid_probs"] = _nan_rows(probs.reshape(tr.n_variants, GRID_SIZE, GRID_SIZE), bad)
        for k in ("x_train", "y_train", "x_val", "y_val"):
            out[k] = getattr(tr, k).cpu().numpy()
    return out


def _nan_rows(x: torch.Tensor, bad: torch.Tensor) -> np.ndarray:
    """float64 numpy copy of ``x`` (V, ...) with the rows of ``bad`` variants set to NaN."""
    out = x.detach().double().cpu().numpy().copy()
    out[bad.cpu().numpy()] = np.nan
    return out
