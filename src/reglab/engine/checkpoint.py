"""The trainer's checkpoint: everything needed to continue bit-identically (CPU tensors, plain values).

Saved: epoch and step, the study's weights and biases, the optimizer state of
every variant, the minibatch-order generator and each variant's train-time
noise generator (dropout, Gaussian dropout, DropConnect), the training flags, divergence
(and its reasons) and stop epochs, early stopping's state and best weights, every regularizer's
declared per-variant state (KL's moving averages) for ALL variants, whatever
the step's batch is, and the best/last split results. On load the step's batch
is rebuilt as the original run had it after that epoch: every variant, then
compacted (the live set is a function of the saved training flags).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from reglab.config import StudyConfig
from reglab.engine.outputs import NONFINITE
from reglab.errors import ReglabError

if TYPE_CHECKING:
    from reglab.engine.trainer import Trainer

STATE_FORMAT = "reglab-trainer"
STATE_VERSION = 2                   # 2: every regularizer's declared state (1: KL's only)
READABLE_VERSIONS = (1, 2)


def state_dict(tr: Trainer) -> dict:
    cpu = lambda ts: [t.detach().cpu().clone() for t in ts]  # noqa: E731
    return {
        "format": STATE_FORMAT, "version": STATE_VERSION, "config": tr.cfg.to_dict(),
        "epoch": tr.epoch, "step": tr.step,
        "weights": cpu(tr.model.weights), "biases": cpu(tr.model.biases),
        "optimizer": tr.optimizer.state_dict(),
        "order_generator": tr._order_gen.get_state(),
        "dropout_generators": {v: g.get_state() for v, g in tr._dropout_gens.items()},
        "training": tr._training.cpu().clone(),
        "diverged": tr.diverged.tolist(), "diverged_reason": list(tr.diverged_reason),
        "stop_epoch": list(tr.stop_epoch),
        "early_stopping": tr.early_stopping.state_dict(),
        "best_weights": cpu(tr._best_weights),
        # regularizer name -> its declared state of every variant, (variant, key) -> tensor
        "regularizer_state": {name: {k: t.detach().cpu().clone() for k, t in rows.items()}
                              for name, rows in tr._state_rows().items()},
        "at_best": {k: x.tolist() for k, x in tr._at_best.items()},
        "last": {k: x.tolist() for k, x in tr._last.items()},
    }


def load_state_dict(tr: Trainer, state: dict) -> None:
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ReglabError("the checkpoint is not a reglab trainer state. Fix: resume from a reglab run directory.")
    if state.get("version") not in READABLE_VERSIONS:
        raise ReglabError(f"trainer state version {state.get('version')} is not {STATE_VERSION}. "
                          "Fix: start the study again.")
    # through from_dict: a checkpoint written before a field existed compares with that field's default
    from reglab.engine.registry import declarations
    if StudyConfig.from_dict(state["config"], declared=declarations(tr.regularizers)).to_dict() != tr.cfg.to_dict():
        raise ReglabError("the checkpoint was written for a different study configuration. "
                          "Fix: resume with the run's own config.")
    tr.epoch, tr.step = int(state["epoch"]), int(state["step"])
    with torch.no_grad():
        for dst, src in zip(tr.model.parameters(), state["weights"] + state["biases"]):
            dst.copy_(src)
        for dst, src in zip(tr._best_weights, state["best_weights"]):
            dst.copy_(src)
    tr.optimizer.load_state_dict(state["optimizer"])
    tr._order_gen.set_state(state["order_generator"])
    for v, g in tr._dropout_gens.items():
        g.set_state(state["dropout_generators"][v])
    tr._training = state["training"].to(tr.device).clone()
    tr.diverged = np.asarray(state["diverged"], dtype=bool)
    # a state written before reasons were kept: the reason every divergence had then
    tr.diverged_reason = list(state.get("diverged_reason") or
                              [NONFINITE if d else None for d in tr.diverged.tolist()])
    tr.stop_epoch = list(state["stop_epoch"])
    tr.early_stopping.load_state_dict(state["early_stopping"])
    tr._at_best = {k: np.asarray(x, dtype=np.float64) for k, x in state["at_best"].items()}
    tr._last = {k: np.asarray(x, dtype=np.float64) for k, x in state["last"].items()}
    # the step's batch as the original run had it after this epoch: every variant, then compacted
    tr._live, tr._parked = np.arange(tr.n_variants), {}
    if "kl_running" in state:   # a version-1 state: KL's averages keyed by (run, layer) over every variant
        whole = tr._chunk_step(tr._live)                 # its runs are those of one step over every variant
        kl = whole.hooks.get("kl_sparsity")
        if kl is not None:
            kl.running = {k: t.to(tr.device).clone() for k, t in state["kl_running"].items()}
        rows = {name: hooks.state_rows() for name, hooks in whole.hooks.items()}
    else:
        rows = {name: {k: t.to(tr.device).clone() for k, t in r.items()}
                for name, r in state["regularizer_state"].items()}
    tr._build_step()
    tr._parked = {name: r for name, r in rows.items() if name not in tr._hook_names()}
    tr._load_state_rows(rows)
    tr._compact()
