"""Per-variant early stopping and best-epoch bookkeeping (host-side, once per epoch).

Rule, per variant, after each epoch's validation pass: the monitored value
``x`` (validation loss in nats/example, or validation error as a fraction)
IMPROVES when ``x < best - min_delta``; then ``best = x``, ``best_epoch =
epoch`` and the wait resets to 0. Otherwise the wait grows by one, and a
variant with early stopping enabled stops once ``wait >= patience`` (Keras'
``EarlyStopping(patience, min_delta)`` semantics). A non-finite ``x`` never
improves. Variants without early stopping use the same rule to define their
best-validation epoch but never stop. The trainer snapshots the weights of
early-stopping variants when they improve and restores them when they stop
(or when training ends), so the model an early-stopping variant returns is
the one whose validation value is ``best``.
"""

from __future__ import annotations

import numpy as np


class EarlyStopping:
    def __init__(self, enabled: np.ndarray, patience: np.ndarray, min_delta: np.ndarray):
        self.enabled = np.asarray(enabled, dtype=bool)                 # (V,)
        self.patience = np.asarray(patience, dtype=np.int64)           # (V,) epochs
        self.min_delta = np.asarray(min_delta, dtype=np.float64)       # (V,) monitor units
        V = len(self.enabled)
        self.best = np.full(V, np.inf)                                 # best monitored value so far
        self.best_epoch = np.zeros(V, dtype=np.int64)                  # 0 = none yet
        self.wait = np.zeros(V, dtype=np.int64)                        # epochs since the last improvement
        self.stopped = np.zeros(V, dtype=bool)

    def update(self, value: np.ndarray, epoch: int, considered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed one epoch's monitored values; returns (improved, newly_stopped), bool (V,).

        Only variants with ``considered`` True (trained this epoch, not diverged) are updated.
        """
        value = np.asarray(value, dtype=np.float64)
        considered = np.asarray(considered, dtype=bool) & ~self.stopped
        improved = considered & np.isfinite(value) & (value < self.best - self.min_delta)
        self.best = np.where(improved, value, self.best)
        self.best_epoch = np.where(improved, epoch, self.best_epoch)
        self.wait = np.where(improved, 0, np.where(considered, self.wait + 1, self.wait))
        newly_stopped = considered & self.enabled & ~improved & (self.wait >= self.patience)
        self.stopped |= newly_stopped
        return improved, newly_stopped

    def state_dict(self) -> dict:
        return {"best": self.best.tolist(), "best_epoch": self.best_epoch.tolist(),
                "wait": self.wait.tolist(), "stopped": self.stopped.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.best = np.asarray(state["best"], dtype=np.float64)
        self.best_epoch = np.asarray(state["best_epoch"], dtype=np.int64)
        self.wait = np.asarray(state["wait"], dtype=np.int64)
        self.stopped = np.asarray(state["stopped"], dtype=bool)
