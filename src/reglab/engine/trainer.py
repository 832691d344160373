"""Trainer: every variant of a study (methods x seeds) trained together as ONE batched model.

The engine's rooms: ``step`` holds one training step, top to bottom (learning
rate and momentum, minibatch, forward, loss, backward, penalties, update,
projection); ``dropout`` and ``penalties`` the regularizers' parts of it;
``batch`` the live variants a step computes (compaction); ``checkpoint`` the
state; ``outputs`` the records and summaries. This module runs the epochs:
the steps, then divergence check, validation and test passes (no dropout),
early stopping (restores the best weights of a stopping variant), metrics and
compaction.

Definitions the study relies on:

* Regularizers: see ``penalties`` (L2, L1, late L1, KL sparsity, max-norm)
  and ``dropout``.
* Divergence: from the step a variant's minibatch loss is NaN/inf it gets
  learning rate 0 and a zero data gradient (frozen); an epoch that ends with
  non-finite weights also counts, and so does a plugin regularizer's hook
  that turns the variant non-finite (``plugin_guard``). Its weights are then
  never used: its metrics are NaN from that epoch on, ``final_summary`` gives
  NaN for ``test_error_last`` and ``analysis`` NaN rows; ``diverged_reason``
  says why (the plugin and its hook, or ``outputs.NONFINITE``). The other
  variants are independent slices of every batched product and finish unaffected.
* Early stopping: see ``early_stopping``. An early-stopping variant ends with
  its best-validation weights, whether it stopped or reached the last epoch.
* Compaction: a variant that stopped or diverged leaves the step's batch at
  the end of the epoch (``live_variants``, see ``batch``); the live set is a
  function of the saved training flags, so a resumed run compacts exactly as
  the original did.
* Chunks: on the CPU, live variants whose parameters and optimizer state
  exceed the cache budget are cut into chunks (``batch.step_chunks``), and
  each chunk runs the whole epoch's steps before the next one starts (the
  same minibatches, the same step numbers): its state then stays in cache
  from step to step. A variant's numbers do not depend on its chunk.

Cost notes: logging the penalty value (every ``log_every`` steps) costs one
pass over the penalized variants' weights; the engine never sets torch's
thread count (on a busy 2-core machine one thread per process is fastest).
Metrics: see ``outputs``.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch

from reglab.config import MethodConfig, StudyConfig
from reglab.data.dataset import Dataset
from reglab.engine import checkpoint, outputs
from reglab.engine.batch import LiveBatch, step_chunks
from reglab.engine.dropout import dropout_generator
from reglab.engine.early_stopping import EarlyStopping
from reglab.engine.mlp import BatchedMLP
from reglab.engine.optim import SGD, Adam, optimizer_for, optimizer_state
from reglab.engine.outputs import EpochRecord
from reglab.engine.plugin_guard import GuardedHooks
from reglab.engine.regularizer import Regularizer, StateRows
from reglab.engine.step import TrainingStep, epoch_permutation, order_generator
from reglab.errors import ReglabError

# StudyConfig.matmul_dtype -> the training products' operand dtype (tf32: float32 operands, TF32 tensor cores)
MATMUL_DTYPES = {"float32": torch.float32, "tf32": torch.float32, "bfloat16": torch.bfloat16}

__all__ = ["EpochRecord", "Trainer", "dropout_generator", "epoch_permutation", "order_generator"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """One batched model for a whole study, trained epoch by epoch and resumable.

    ``Trainer(cfg, dataset)``; ``train_epoch() -> EpochRecord`` until ``done``;
    ``state_dict()`` / ``load_state_dict()`` continue bit-identically on the
    CPU; ``final_summary()`` and ``analysis()`` at the end. ``dtype`` is
    float32 for studies; the tests also run float64 to separate the engine's
    math from float32 rounding.
    """

    def __init__(self, cfg: StudyConfig, dataset: Dataset, *, dtype: torch.dtype = torch.float32,
                 regularizers: dict[str, Regularizer] | None = None, chunk_bytes: int | None = None):
        self.cfg = cfg
        self.chunk_bytes = chunk_bytes           # the CPU's chunk budget (None: batch.CHUNK_STATE_BYTES)
        if regularizers is None:   # the built-ins, the reglab.regularizers entry points and cfg.plugins
            from reglab.engine.registry import for_study
            regularizers = for_study(cfg).regularizers
        self.regularizers = dict(regularizers)  # name -> Regularizer
        self.dtype = dtype
        self.device = _resolve_device(cfg.device)
        _check_dataset(cfg, dataset)
        ds = dataset.to(self.device)
        self.dataset_name = dataset.name
        self.x_train, self.y_train = ds.x_train.to(dtype).contiguous(), ds.y_train.long().contiguous()
        self.x_val, self.y_val = ds.x_val.to(dtype).contiguous(), ds.y_val.long().contiguous()
        self.x_test, self.y_test = ds.x_test.to(dtype).contiguous(), ds.y_test.long().contiguous()
        self.n_classes = dataset.n_classes

        self.variants = cfg.variants()
        self.methods: list[MethodConfig] = [m for _, m, _ in self.variants]
        self.seeds: list[int] = [s for _, _, s in self.variants]
        V = self.n_variants = len(self.variants)
        self.sizes = [dataset.n_features, *cfg.hidden, dataset.n_classes]
        compute_dtype = MATMUL_DTYPES[cfg.matmul_dtype] if dtype == torch.float32 else dtype
        self.model = BatchedMLP.initialize(self.sizes, self.seeds, cfg.init, self.device, dtype, compute_dtype)

        self.n_train = int(self.x_train.shape[0])
        self.batch_size = min(cfg.batch_size, self.n_train)
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        self.total_steps = cfg.n_epochs * self.steps_per_epoch
        self.epoch = 0
        self.step = 0

        # randomness: one minibatch order for all, one train-time noise stream (the "dropout stream",
        # seeded by the variant's seed) per variant that a noise regularizer acts on
        self._order_gen = order_generator(cfg.data.data_seed)
        noisy = [r for r in self.regularizers.values() if r.noise]
        self._dropout_gens = {v: dropout_generator(self.seeds[v], self.device)
                              for v in range(V) if any(r.uses(self.methods[v]) for r in noisy)}

        # optimizer: study-wide kind, per-variant settings; this one holds the state of every variant
        # (the step may work on a compacted copy of the live variants, see batch.LiveBatch)
        self._method_index = [i for i, m in enumerate(cfg.methods) for _ in cfg.seeds]
        self._fused = cfg.optimizer == "sgd"       # momentum accumulated inside the products (step.py)
        self.optimizer: SGD | Adam = self._make_optimizer(self.model.parameters(), self.methods)

        # per-variant state
        ms = self.methods
        self._training = torch.ones(V, dtype=torch.bool, device=self.device)  # not stopped, not diverged
        self.diverged = np.zeros(V, dtype=bool)
        self.diverged_reason: list[str | None] = [None] * V
        self.stop_epoch: list[int | None] = [None] * V
        self.early_stopping = EarlyStopping([m.early_stopping for m in ms], [m.patience for m in ms],
                                            [m.min_delta for m in ms])
        self._es_index = [v for v in range(V) if ms[v].early_stopping]
        self._best_weights = [p[self._es_index].clone() for p in self.model.parameters()] if self._es_index else []
        self._at_best = {k: np.full(V, np.nan) for k in ("val_loss", "val_error", "test_loss", "test_error")}
        self._last = {k: np.full(V, np.nan) for k in ("val_loss", "val_error", "test_loss", "test_error")}
        self._train_split: tuple[tuple[int, int], dict] | None = None   # (step, epoch) -> train_split_sums

        # the step's batch: every variant until some stop training, then only the live ones
        self._live = np.arange(V)
        # regularizer name -> the declared state of variants outside the batch, (variant, key) -> tensor
        self._parked: dict[str, StateRows] = {}
        self._build_step()

    def _make_optimizer(self, params: list[torch.Tensor], ms: list[MethodConfig]) -> SGD | Adam:
        return optimizer_for(self.cfg.optimizer, params, ms, self.device)

    def _build_step(self) -> None:
        """The training steps of the live variants ``self._live`` (in study order), one per chunk
        (``batch.step_chunks``; usually one): see ``step``."""
        self._steps = [self._chunk_step(chunk) for chunk in
                       step_chunks(self._live, self.state_bytes_per_variant, self.device, self.chunk_bytes)]

    @property
    def state_bytes_per_variant(self) -> int:
        """Bytes of one variant's parameters and optimizer state: what a step sweeps per variant, and what
        the chunks' budget counts."""
        return sum(t[0].numel() * t.element_size()
                   for t in (*self.model.parameters(), *optimizer_state(self.optimizer)))

    def _chunk_step(self, live: np.ndarray) -> TrainingStep:
        batch = LiveBatch(self.model, self.optimizer, self._training, live, self.methods, self.step,
                          self._make_optimizer)
        return TrainingStep(
            self.cfg, batch, [self.methods[v] for v in live], [self._method_index[v] for v in live],
            [self._dropout_gens.get(int(v)) for v in live], self.x_train, self.y_train, self.sizes,
            self.steps_per_epoch, self.total_steps, self._fused, self.dtype, self.device, self.regularizers)

    def _hook_names(self) -> set[str]:
        """The regularizers some live variant uses (bound in some chunk's step)."""
        return {name for step in self._steps for name in step.hooks}

    def _compact(self) -> None:
        """Drop the variants that no longer train (stopped early, diverged) from the step's batch.

        Called between epochs, with the study's tensors up to date. The live
        set is then exactly the variants still training, a function of the
        saved ``training`` flags, so a resumed run compacts as the original did.
        Each live variant's numbers stay those of a variant trained alone.
        """
        active = np.flatnonzero(self._training.cpu().numpy())
        if len(active) == 0 or np.array_equal(active, self._live):
            return
        rows = self._state_rows()
        members = set(active.tolist())
        self._parked = {name: {k: t for k, t in r.items() if k[0] not in members} for name, r in rows.items()}
        self._live = active
        self._build_step()
        self._load_state_rows(rows)

    def _state_rows(self) -> dict[str, StateRows]:
        """Every regularizer's declared state of every variant: live ones from the steps' hooks."""
        rows = {name: dict(r) for name, r in self._parked.items()}
        for step in self._steps:
            for name, hooks in step.hooks.items():
                rows.setdefault(name, {}).update(hooks.state_rows())
        return rows

    def _load_state_rows(self, rows: dict[str, StateRows]) -> None:
        """Hand the steps' hooks their live variants' state (each takes its own rows)."""
        for step in self._steps:
            for name, hooks in step.hooks.items():
                hooks.load_state_rows(rows.get(name, {}))

    # ------------------------------------------------------------------ public

    @property
    def live_variants(self) -> np.ndarray:
        """Indices of the variants the training steps compute: those still training (stopped and
        diverged variants leave the batch between epochs and cost nothing after)."""
        return self._live.copy()

    @property
    def done(self) -> bool:
        return self.epoch >= self.cfg.n_epochs or not bool(self._training.any())

    def train_epoch(self) -> EpochRecord:
        if self.done:
            raise RuntimeError("train_epoch() called after training is done (check trainer.done)")
        epoch = self.epoch + 1
        trained = self._training.clone()                       # variants that train this epoch
        perm = epoch_permutation(self._order_gen, self.n_train).to(self.device)
        first_step = self.step + 1
        B = self.batch_size
        logged = [i for i in range(self.steps_per_epoch) if (first_step + i) % self.cfg.log_every == 0]
        _sync(self.device)
        t0 = time.perf_counter()
        with torch.no_grad(), _tf32_products(self.cfg.matmul_dtype == "tf32" and self.dtype == torch.float32):
            self._run_steps(first_step, [perm[i * B:(i + 1) * B] for i in range(self.steps_per_epoch)])
        _sync(self.device)
        train_time = time.perf_counter() - t0
        for step in self._steps:
            step.batch.write_back()

        # evaluation (no dropout) of the live variants: the others did not train
        t1 = time.perf_counter()
        val = self._evaluate(self.x_val, self.y_val)
        test = self._evaluate(self.x_test, self.y_test)
        _sync(self.device)
        eval_time = time.perf_counter() - t1
        with torch.no_grad():
            values = _merged([outputs.batch_results(self, step, logged, val, test) for step in self._steps],
                             [step.batch.live for step in self._steps])

        # divergence: a non-finite loss during the epoch, or non-finite weights
        with torch.no_grad():
            # a sum is finite iff every summand is (and a sum that overflows is divergence too)
            finite = torch.stack([torch.isfinite(p.sum(dim=(1, 2))) for p in self.model.parameters()]).all(0)
            self._training &= finite
        trained_np = trained.cpu().numpy()
        newly_diverged = trained_np & ~self._training.cpu().numpy()
        by_plugin = self._nonfinite_by_plugins() if newly_diverged.any() else {}
        for v in np.flatnonzero(newly_diverged):
            self.diverged[v] = True
            self.diverged_reason[v] = by_plugin.get(int(v), outputs.NONFINITE)
            self.stop_epoch[v] = epoch
        ok = trained_np & ~self.diverged                       # trained and still sound

        split = {k: values[k] for k in ("val_loss", "val_error", "test_loss", "test_error")}
        for k, x in split.items():
            self._last[k] = np.where(ok, x, self._last[k])

        # early stopping and best-validation epoch
        monitored = np.array([split[m.monitor][v] for v, m in enumerate(self.methods)])
        improved, newly_stopped = self.early_stopping.update(monitored, epoch, ok)
        for k, x in split.items():
            self._at_best[k] = np.where(improved, x, self._at_best[k])
        self._snapshot_best(improved)
        finishing = np.zeros(self.n_variants, dtype=bool)
        if epoch == self.cfg.n_epochs:
            finishing = ok & ~newly_stopped
        self._restore_best(newly_stopped | finishing)
        for v in np.flatnonzero(newly_stopped):
            self.stop_epoch[v] = epoch
        if newly_stopped.any():
            self._training &= torch.as_tensor(~newly_stopped, device=self.device)
        self.epoch = epoch

        # the record
        with torch.no_grad():
            metrics = outputs.epoch_metrics(self, trained_np, ok, values, train_time, eval_time)
        steps = np.array([first_step + i for i in logged], dtype=np.int64)
        record = EpochRecord(epoch=epoch, steps=steps, loss_data=values["loss_data"],
                             loss_penalty=values["loss_penalty"], metrics=metrics)
        self._compact()
        return record

    def _nonfinite_by_plugins(self) -> dict[int, str]:
        """Variant -> the plugin hook that turned it non-finite this epoch (``plugin_guard``)."""
        out: dict[int, str] = {}
        for step in self._steps:
            for hooks in step.hooks.values():
                if isinstance(hooks, GuardedHooks):
                    for row, reason in hooks.nonfinite_reasons().items():
                        out.setdefault(int(step.batch.live[row]), reason)
        return out

    def _run_steps(self, first_step: int, minibatches: list[torch.Tensor]) -> None:
        """Global steps ``first_step``, ``first_step + 1``, ... on ``minibatches`` (the epoch's steps 0, 1, ...),
        chunk by chunk: each chunk's step runs through all of them before the next chunk's starts, so its
        weights and optimizer state stay in cache from one step to the next (``batch.step_chunks``).
        Advances ``self.step``. See ``step.TrainingStep``."""
        for step in self._steps:
            for i, idx in enumerate(minibatches):
                step(first_step + i, i, idx)
        self.step = first_step + len(minibatches) - 1

    def final_summary(self) -> dict:
        """Per variant (in variant order): the numbers a study reports; see ``outputs.final_summary``."""
        return outputs.final_summary(self)

    def analysis(self) -> dict[str, np.ndarray]:
        """Arrays for the report, from the final weights; see ``outputs.analysis``."""
        return outputs.analysis(self)

    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically (CPU tensors and plain Python values)."""
        return checkpoint.state_dict(self)

    def load_state_dict(self, state: dict) -> None:
        checkpoint.load_state_dict(self, state)
        self._train_split = None

    def train_split_sums(self) -> dict[str, torch.Tensor]:
        """``BatchedMLP.evaluate`` of every variant (stopped ones too) over the training split, no dropout,
        with the weights the variants have now; computed once per (step, epoch), since ``final_summary``
        and ``analysis`` both read it (a full pass over the training split each)."""
        key = (self.step, self.epoch)
        if self._train_split is None or self._train_split[0] != key:
            self._train_split = (key, self.model.evaluate(self.x_train, self.y_train, self.cfg.eval_batch_size))
        return self._train_split[1]

    # ------------------------------------------------------------ epoch helpers

    def _evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        """Loss, error and mean activation per variant (V,) on a split, no dropout, of the steps' batches
        (the variants they hold; NaN for the others)."""
        return _merged([outputs.evaluate(step.net, step.batch.full, x, y, self.n_variants, sum(self.sizes[1:-1]),
                                         self.cfg.eval_batch_size) for step in self._steps],
                       [step.batch.live for step in self._steps])

    def _snapshot_best(self, improved: np.ndarray) -> None:
        rows = [i for i, v in enumerate(self._es_index) if improved[v]]
        if not rows:
            return
        src = torch.as_tensor([self._es_index[i] for i in rows], device=self.device)
        dst = torch.as_tensor(rows, device=self.device)
        with torch.no_grad():
            for best, p in zip(self._best_weights, self.model.parameters()):
                best.index_copy_(0, dst, p.index_select(0, src))

    def _restore_best(self, which: np.ndarray) -> None:
        rows = [i for i, v in enumerate(self._es_index)
                if which[v] and self.early_stopping.best_epoch[v] > 0]
        if not rows:
            return
        src = torch.as_tensor(rows, device=self.device)
        dst = torch.as_tensor([self._es_index[i] for i in rows], device=self.device)
        with torch.no_grad():
            for best, p in zip(self._best_weights, self.model.parameters()):
                p.index_copy_(0, dst, best.index_select(0, src))


# ----------------------------------------------------------------------------
# checks and small helpers

def _merged(parts: list[dict[str, np.ndarray]], lives: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-chunk results (..., V), each NaN outside its chunk, as one: each variant's values from the chunk
    ``lives`` puts it in (by membership, not by NaN: a diverged variant's own values may be NaN)."""
    if len(parts) == 1:
        return parts[0]
    out = {k: np.array(v, copy=True) for k, v in parts[0].items()}
    for part, live in zip(parts[1:], lives[1:]):
        for k, v in part.items():
            out[k][..., live] = v[..., live]
    return out


@contextlib.contextmanager
def _tf32_products(enabled: bool):
    """CUDA float32 products on TensorFloat-32 tensor cores (10-bit mantissa operands, float32
    accumulation) inside the block, the setting as it was after; evaluation stays full float32.
    Uses the precision API of torch >= 2.9 where it exists (mixing it with the old flag is an error)."""
    if not enabled:
        yield
        return
    matmul = torch.backends.cuda.matmul
    name, value = ("fp32_precision", "tf32") if hasattr(matmul, "fp32_precision") else ("allow_tf32", True)
    before = getattr(matmul, name)
    setattr(matmul, name, value)
    try:
        yield
    finally:
        setattr(matmul, name, before)


def _resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ReglabError("device 'cuda' was requested but torch sees no CUDA GPU. Fix: set device = \"cpu\".")
    return torch.device(name)


def _check_dataset(cfg: StudyConfig, ds: Dataset) -> None:
    if ds.x_train.dim() != 2 or ds.x_train.shape[0] == 0:
        raise ReglabError(f"the training split must be a non-empty (N, D) tensor; got shape "
                          f"{tuple(ds.x_train.shape)}. Fix: check the dataset settings.")
    for split in ("train", "val", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if x.shape[0] != y.shape[0] or (x.shape[0] and x.shape[1] != ds.x_train.shape[1]):
            raise ReglabError(f"{split} split: {tuple(x.shape)} inputs for {tuple(y.shape)} labels. "
                              "Fix: the dataset loader must give (N, D) inputs and (N,) labels.")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= ds.n_classes):
            raise ReglabError(f"{split} labels must be in [0, {ds.n_classes}); got [{int(y.min())}, "
                              f"{int(y.max())}]. Fix: check n_classes of the dataset.")
    if ds.n_classes < 2:
        raise ReglabError(f"a dataset needs at least 2 classes; got {ds.n_classes}.")
    if ds.x_val.shape[0] == 0 and any(m.early_stopping for m in cfg.methods):
        raise ReglabError("early stopping needs a validation split, but it is empty. "
                          "Fix: turn early_stopping off or keep a validation split.")
