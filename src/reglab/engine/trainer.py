"""Trainer: every variant of a study (methods x seeds) trained together as ONE batched model.

Variants follow ``cfg.variants()`` (method-major: a method's seeds are
contiguous), so each regularizer touches only the contiguous slices of
variants that use it. One training step, for all variants at once:

1. learning rate and momentum of this step (schedules, per method);
2. minibatch: indices from the epoch's permutation (the same for every variant),
   gathered from tensors already on the device (no DataLoader);
3. forward: first layer from the shared minibatch (a stride-0 view) or from
   dropped-out inputs; ReLU; hidden dropout masks; KL statistics;
4. loss: softmax cross-entropy on the logits, recorded per step without a sync;
   a variant whose loss is NaN/inf is frozen from here on (diverged);
5. backward by hand, each weight gradient accumulated straight into the
   momentum buffer (SGD) or into a gradient buffer (Adam, Nesterov);
6. penalty gradients (L2, L1 once on) on the slices that use them;
7. update, then max-norm projection.

After the epoch: divergence check, validation and test passes (no dropout),
early stopping (restores the best weights of a stopping variant), metrics.

Definitions the study relies on:

* KL-sparsity acts on every hidden layer's output as the next layer reads it
  (after ReLU and, for methods that combine them, after dropout), with one
  moving average per layer; see ``regularizers.kl_sparsity``.
* L2 and L1 act on the weights of every layer (biases never); max-norm on the
  hidden layers' incoming weights, and on the output layer's only with
  ``max_norm_output`` (deepnet constrains all layers).
* Divergence: from the step a variant's minibatch loss is NaN/inf it gets
  learning rate 0 and a zero data gradient (frozen); an epoch that ends with
  non-finite weights also counts. Its weights are then never used: its
  metrics are NaN from that epoch on, ``final_summary`` gives NaN for
  ``test_error_last`` and ``analysis`` NaN rows. The other variants are
  independent slices of every batched product and finish unaffected.
* Early stopping: see ``early_stopping``. An early-stopping variant ends with
  its best-validation weights, whether it stopped or reached the last epoch.
* Compaction: a variant that stopped or diverged leaves the step's batch at
  the end of the epoch (``live_variants``): the steps then work on copies of
  the live variants' parameters and optimizer state, returned to the study's
  after each epoch's steps, so it costs nothing more. Each variant is an
  independent slice of every batched operation, so this changes no variant's
  numbers beyond float rounding of a different batch size (a variant trains the
  same alone or batched); the live set is a function of the saved training
  flags, so a resumed run compacts exactly as the original did.

Cost notes: logging the penalty value (every ``log_every`` steps) costs one
pass over the penalized variants' weights; the engine never sets torch's
thread count (on a busy 2-core machine one thread per process is fastest).

Measured how: ``train_loss`` / ``train_error`` are the minibatch losses and
errors as seen DURING the epoch (with dropout on and weights changing),
averaged over the epoch weighted by batch size, the running average the
usual training loop prints, not a separate pass over the training split.
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

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reglab.config import MethodConfig, StudyConfig
from reglab.data.dataset import Dataset
from reglab.engine import regularizers as R
from reglab.engine.early_stopping import EarlyStopping
from reglab.engine.mlp import DROPOUT_STREAM, ORDER_STREAM, BatchedMLP, InputPart, misclassified, stream_seed
from reglab.engine.optim import SGD, Adam
from reglab.engine.schedules import learning_rate, momentum
from reglab.errors import ReglabError

STATE_FORMAT = "reglab-trainer"
STATE_VERSION = 1
SPARSITY_THRESHOLD = 1e-3          # |w| below this counts as zero in the ``sparsity`` metric
HIST_EDGES = np.concatenate([[0.0], np.logspace(-6, 1, 57)])  # |w| histogram: [0, 1e-6) then log bins to 10
GRID_SIZE = 101                    # decision grid resolution for 2-D data
# StudyConfig.matmul_dtype -> the training products' operand dtype (tf32: float32 operands, TF32 tensor cores)
MATMUL_DTYPES = {"float32": torch.float32, "tf32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class EpochRecord:
    epoch: int                               # 1-based
    steps: np.ndarray                        # (S,) global step numbers logged this epoch (every log_every)
    loss_data: np.ndarray                    # (S, V) cross-entropy of the minibatch, nats/example
    loss_penalty: np.ndarray                 # (S, V) penalty term value (same units)
    metrics: dict[str, np.ndarray]           # each (V,), see the module docstring


def contiguous_runs(values: list) -> list[tuple[slice, Any]]:
    """Maximal ranges of equal consecutive values, skipping ``None``: [(slice, value)]."""
    runs, start = [], 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            if values[start] is not None:
                runs.append((slice(start, i), values[start]))
            start = i
    return runs


def epoch_permutation(generator: torch.Generator, n: int) -> torch.Tensor:
    """The epoch's example order: ``torch.randperm(n)`` from the study's order generator (CPU).

    The generator is seeded once from ``data.data_seed`` and draws one
    permutation per epoch; the minibatch of step ``i`` is ``perm[i*B:(i+1)*B]``
    (the last one may be shorter). Every variant sees this same order.
    """
    return torch.randperm(n, generator=generator)


def order_generator(data_seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(data_seed, ORDER_STREAM))


def dropout_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A variant's dropout stream: seeded by its seed alone (see regularizers.dropout_keep_mask)."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, DROPOUT_STREAM))


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

    def __init__(self, cfg: StudyConfig, dataset: Dataset, *, dtype: torch.dtype = torch.float32):
        self.cfg = cfg
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
        L = self.model.n_layers

        self.n_train = int(self.x_train.shape[0])
        self.batch_size = min(cfg.batch_size, self.n_train)
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        self.total_steps = cfg.n_epochs * self.steps_per_epoch
        self.epoch = 0
        self.step = 0

        # randomness: one minibatch order for all, one dropout stream per dropping variant
        self._order_gen = order_generator(cfg.data.data_seed)
        self._dropout_gens = {v: dropout_generator(self.seeds[v], self.device)
                              for v in range(V) if self.methods[v].uses_dropout}

        # optimizer: study-wide kind, per-variant settings; this one holds the state of every variant
        # (the step may work on a compacted copy of the live variants, see _compact)
        self._method_index = [i for i, m in enumerate(cfg.methods) for _ in cfg.seeds]
        self._fused = cfg.optimizer == "sgd" and not any(m.nesterov for m in self.methods)
        self.optimizer: SGD | Adam = self._make_optimizer(self.model.parameters(), self.methods)
        self._n_layers = L
        self._kl_spec = [(m.kl_beta, m.kl_rho, m.kl_ema) if m.kl_beta > 0 else None for m in self.methods]

        # per-variant state
        ms = self.methods
        self._training = torch.ones(V, dtype=torch.bool, device=self.device)  # not stopped, not diverged
        self.diverged = np.zeros(V, dtype=bool)
        self.stop_epoch: list[int | None] = [None] * V
        self.early_stopping = EarlyStopping([m.early_stopping for m in ms], [m.patience for m in ms],
                                            [m.min_delta for m in ms])
        self._es_index = [v for v in range(V) if ms[v].early_stopping]
        self._best_weights = [p[self._es_index].clone() for p in self.model.parameters()] if self._es_index else []
        self._at_best = {k: np.full(V, np.nan) for k in ("val_loss", "val_error", "test_loss", "test_error")}
        self._last = {k: np.full(V, np.nan) for k in ("val_loss", "val_error", "test_loss", "test_error")}
        self._nan = torch.tensor(float("nan"), dtype=dtype, device=self.device)

        # the step's batch: every variant until some stop training, then only the live ones
        self._live = np.arange(V)
        self._kl_parked: dict[tuple[int, int], torch.Tensor] = {}   # (variant, layer) -> (H,) outside the batch
        self._kl_running: dict[tuple[int, int], torch.Tensor] = {}  # (run, layer) -> (Vr, H) moving average
        self._build_step()

    def _make_optimizer(self, params: list[torch.Tensor], ms: list[MethodConfig]) -> SGD | Adam:
        lr = torch.zeros(len(ms), dtype=torch.float64, device=self.device)
        if self.cfg.optimizer == "sgd":
            return SGD(params, lr=lr, momentum=0.0, nesterov=_bool_per_variant([m.nesterov for m in ms], self.device))
        return Adam(params, lr=lr,
                    beta1=_per_variant([m.beta1 for m in ms], self.device),
                    beta2=_per_variant([m.beta2 for m in ms], self.device),
                    eps=_per_variant([m.eps for m in ms], self.device),
                    eps_inside_sqrt=_bool_per_variant([m.eps_inside_sqrt for m in ms], self.device),
                    bias_correction=_bool_per_variant([m.bias_correction for m in ms], self.device))

    def _build_step(self) -> None:
        """Everything one training step reads, for the live variants ``self._live`` (in study order).

        With every variant live the step works on the study's own model and
        optimizer. Once some have stopped or diverged (``_compact``) it works
        on copies of the live variants' parameters and optimizer state, so a
        stopped variant costs nothing; ``_write_back`` returns them after the
        epoch's steps. Each regularizer touches the contiguous runs of live
        variants that use it (variants stay in study order, so a method's
        seeds stay contiguous).
        """
        live, dtype, device = self._live, self.dtype, self.device
        ms = [self.methods[v] for v in live]
        self._n_live = len(live)
        self._dropout_runs = contiguous_runs([(m.dropout_input, m.dropout_hidden) if m.uses_dropout else None
                                              for m in ms])
        self._shared_input_runs = contiguous_runs([True if m.dropout_input == 0 else None for m in ms])
        self._l2_runs = contiguous_runs([m.l2 or None for m in ms])
        self._l1_runs = contiguous_runs([(m.l1, m.l1_start) if m.l1 > 0 else None for m in ms])
        self._kl_runs = contiguous_runs([self._kl_spec[v] for v in live])
        self._max_norm_runs = contiguous_runs([(m.max_norm, m.max_norm_output) if m.uses_max_norm else None
                                               for m in ms])
        self._l2_span = _span(self._l2_runs)
        self._l2_half = torch.tensor([0.5 * m.l2 for m in ms], dtype=dtype, device=device)[self._l2_span]
        self._dropout_bits: list[torch.Tensor] = []                  # this step's raw words, one per dropout run
        # this step's (Vr, b, H) keep * scale, and a scale left to apply apart (None: folded in)
        self._hidden_keep: dict[tuple[int, int], tuple[torch.Tensor, float | None]] = {}
        self._kl_grad: dict[tuple[int, int], torch.Tensor] = {}      # this step's dP/dh rows, (Vr, 1, H)
        self._kl_value = torch.zeros(self._n_live, dtype=dtype, device=device)  # this step's KL penalty value
        self._logging = False                                        # is this step's penalty value recorded?
        self._scratch: dict[tuple, torch.Tensor] = {}
        # squares of the largest max-norm slice of one layer (see regularizers.max_norm_)
        max_norm_rows = max((sl.stop - sl.start for sl, _ in self._max_norm_runs), default=0)
        self._max_norm_scratch = torch.empty(max_norm_rows * max(a * b for a, b in zip(self.sizes, self.sizes[1:])),
                                             dtype=dtype, device=device)
        self._live_method_index = [self._method_index[v] for v in live]
        self._lr_key: tuple | None = None
        self._lr = torch.zeros(self._n_live, dtype=torch.float64, device=device)

        if self._n_live == self.n_variants:
            self._net, self._step_optimizer, self._live_training = self.model, self.optimizer, self._training
        else:
            index = self._live_index = torch.as_tensor(live, device=device)
            params = [p.index_select(0, index) for p in self.model.parameters()]
            L = self._n_layers
            self._net = BatchedMLP(params[:L], params[L:], self.model.compute_dtype)
            self._step_optimizer = self._make_optimizer(self._net.parameters(), ms)
            for dst, src in zip(_optimizer_state(self._step_optimizer), _optimizer_state(self.optimizer)):
                dst.copy_(src.index_select(0, index))
            if isinstance(self.optimizer, Adam):
                self._step_optimizer.t = self.step            # steps taken so far: one per global step
            self._live_training = self._training.index_select(0, index)
        self._grads = None if self._fused else [torch.zeros_like(p) for p in self._net.parameters()]

        # per-step records of the current epoch, kept on the device (no sync per step)
        S = self.steps_per_epoch
        self._loss_rec = torch.zeros(S, self._n_live, dtype=dtype, device=device)
        self._error_rec = torch.zeros(S, self._n_live, dtype=torch.int64, device=device)
        self._penalty_rec = torch.zeros(S, self._n_live, dtype=dtype, device=device)

    def _write_back(self) -> None:
        """Return the live variants' parameters, optimizer state and training flags to the study's."""
        if self._n_live == self.n_variants:
            return
        index = self._live_index
        with torch.no_grad():
            for dst, src in zip(self.model.parameters(), self._net.parameters()):
                dst.index_copy_(0, index, src)
            for dst, src in zip(_optimizer_state(self.optimizer), _optimizer_state(self._step_optimizer)):
                dst.index_copy_(0, index, src)
        if isinstance(self.optimizer, Adam):
            self.optimizer.t = self._step_optimizer.t
        self._training.index_copy_(0, index, self._live_training)

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
        rows = self._kl_rows()
        members = set(active.tolist())
        self._kl_parked = {k: t for k, t in rows.items() if k[0] not in members}
        self._live = active
        self._build_step()
        self._kl_running = _kl_stack(self._kl_runs, self._live, rows)

    def _kl_rows(self) -> dict[tuple[int, int], torch.Tensor]:
        """Every variant's KL moving averages, (variant, layer) -> (H,): live ones from the step's runs."""
        rows = dict(self._kl_parked)
        for (r, layer), t in self._kl_running.items():
            for i, v in enumerate(self._live[self._kl_runs[r][0]]):
                rows[(int(v), layer)] = t[i]
        return rows

    def _full(self, x: torch.Tensor) -> np.ndarray:
        """float64 numpy (..., V) from a live tensor (..., n_live); variants not in the batch get NaN."""
        x = x.detach().double().cpu().numpy()
        if self._n_live == self.n_variants:
            return x
        out = np.full(x.shape[:-1] + (self.n_variants,), np.nan)
        out[..., self._live] = x
        return out

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
            for i in range(self.steps_per_epoch):
                self._train_step(i, perm[i * B:(i + 1) * B])
        _sync(self.device)
        train_time = time.perf_counter() - t0
        self._write_back()

        # evaluation (no dropout) of the live variants: the others did not train
        t1 = time.perf_counter()
        val = self._evaluate(self.x_val, self.y_val)
        test = self._evaluate(self.x_test, self.y_test)
        _sync(self.device)
        eval_time = time.perf_counter() - t1
        with torch.no_grad():
            values = self._batch_results(logged, val, test)

        # divergence: a non-finite loss during the epoch, or non-finite weights
        with torch.no_grad():
            # a sum is finite iff every summand is (and a sum that overflows is divergence too)
            finite = torch.stack([torch.isfinite(p.sum(dim=(1, 2))) for p in self.model.parameters()]).all(0)
            self._training &= finite
        trained_np = trained.cpu().numpy()
        newly_diverged = trained_np & ~self._training.cpu().numpy()
        for v in np.flatnonzero(newly_diverged):
            self.diverged[v] = True
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
            metrics = self._epoch_metrics(trained_np, ok, values, train_time, eval_time)
        steps = np.array([first_step + i for i in logged], dtype=np.int64)
        record = EpochRecord(epoch=epoch, steps=steps, loss_data=values["loss_data"],
                             loss_penalty=values["loss_penalty"], metrics=metrics)
        self._compact()
        return record

    def final_summary(self) -> dict:
        """Per variant (in variant order): the numbers a study reports.

        ``test_error_last``: test error of the weights the variant ends with
        (for early stopping: the restored best-validation weights; NaN if
        diverged). ``test_error_best_val`` / ``best_val_error`` / ``best_val_loss``:
        at ``best_epoch``, the epoch with the best monitored validation value
        (the method's ``monitor``, improvement > ``min_delta``). ``stop_epoch``:
        the epoch in which it stopped early or diverged, None if it ran to the end.
        ``train_error_final`` / ``train_loss_final``: a full pass over the training split
        with the weights the variant ends with, without dropout (the train side of the
        generalization gap; ``train_error`` in the epoch metrics is the running minibatch
        error, dropout on). NaN if diverged.
        """
        best_epoch = self.early_stopping.best_epoch
        with torch.no_grad():
            train = self._evaluate(self.x_train, self.y_train, self.model)   # every variant, stopped ones too
        rows = []
        for v, method, seed in self.variants:
            restored = method.early_stopping and best_epoch[v] > 0
            last = self._at_best["test_error"][v] if restored else self._last["test_error"][v]
            rows.append({
                "variant": v, "method": method.name, "seed": seed,
                "test_error_last": math.nan if self.diverged[v] else float(last),
                "test_error_best_val": float(self._at_best["test_error"][v]),
                "best_val_error": float(self._at_best["val_error"][v]),
                "best_val_loss": float(self._at_best["val_loss"][v]),
                "best_epoch": int(best_epoch[v]) if best_epoch[v] > 0 else None,
                "stop_epoch": self.stop_epoch[v],
                "diverged": bool(self.diverged[v]),
                "train_error_final": math.nan if self.diverged[v] else float(train["error"][v]),
                "train_loss_final": math.nan if self.diverged[v] else float(train["loss"][v]),
            })
        return {"variants": rows}

    @torch.no_grad()
    def analysis(self) -> dict[str, np.ndarray]:
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
        bad = torch.as_tensor(self.diverged, device=self.device)
        edges = torch.as_tensor(HIST_EDGES[1:-1], dtype=self.dtype, device=self.device)
        n_bins = len(HIST_EDGES) - 1
        hist = torch.zeros(self.n_variants, n_bins, dtype=torch.float64, device=self.device)
        for w in self.model.weights:
            idx = torch.bucketize(w.abs().flatten(1), edges, right=True)
            hist.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
        out["weight_hist"] = _nan_rows(hist, bad)
        out["weight_hist_edges"] = HIST_EDGES.copy()
        out["diverged"] = self.diverged.copy()
        sums = self.model.evaluate(self.x_train, self.y_train, self.cfg.eval_batch_size)["hidden_sum"]
        if sums:
            out["hidden_mean_activation"] = _nan_rows(sums[0] / max(self.n_train, 1), bad)
        if self.sizes[0] == 2:
            xs = torch.cat([self.x_train, self.x_val, self.x_test])
            lo, hi = xs.min(0).values, xs.max(0).values
            pad = 0.1 * (hi - lo)
            grid = {"steps": GRID_SIZE, "device": self.device, "dtype": self.dtype}
            gx = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), **grid)
            gy = torch.linspace(float(lo[1] - pad[1]), float(hi[1] + pad[1]), **grid)
            xx, yy = torch.meshgrid(gx, gy, indexing="xy")
            logits, _ = self.model.forward_eval(torch.stack([xx.flatten(), yy.flatten()], 1))
            probs = torch.softmax(logits, dim=1)[:, 1 % self.n_classes]
            out["grid_xx"], out["grid_yy"] = xx.cpu().numpy(), yy.cpu().numpy()
            out["grid_probs"] = _nan_rows(probs.reshape(self.n_variants, GRID_SIZE, GRID_SIZE), bad)
            for k in ("x_train", "y_train", "x_val", "y_val"):
                out[k] = getattr(self, k).cpu().numpy()
        return out

    # ------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically (CPU tensors and plain Python values)."""
        cpu = lambda ts: [t.detach().cpu().clone() for t in ts]  # noqa: E731
        return {
            "format": STATE_FORMAT, "version": STATE_VERSION, "config": self.cfg.to_dict(),
            "epoch": self.epoch, "step": self.step,
            "weights": cpu(self.model.weights), "biases": cpu(self.model.biases),
            "optimizer": self.optimizer.state_dict(),
            "order_generator": self._order_gen.get_state(),
            "dropout_generators": {v: g.get_state() for v, g in self._dropout_gens.items()},
            "training": self._training.cpu().clone(),
            "diverged": self.diverged.tolist(), "stop_epoch": list(self.stop_epoch),
            "early_stopping": self.early_stopping.state_dict(),
            "best_weights": cpu(self._best_weights),
            # keyed by (run, layer) over the runs of ALL variants, whatever the step's batch is now
            "kl_running": {k: t.detach().cpu().clone() for k, t in self._kl_running_of_all().items()},
            "at_best": {k: x.tolist() for k, x in self._at_best.items()},
            "last": {k: x.tolist() for k, x in self._last.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ReglabError("the checkpoint is not a reglab trainer state. Fix: resume from a reglab run directory.")
        if state.get("version") != STATE_VERSION:
            raise ReglabError(f"trainer state version {state.get('version')} is not {STATE_VERSION}. "
                              "Fix: start the study again.")
        # through from_dict: a checkpoint written before a field existed compares with that field's default
        if StudyConfig.from_dict(state["config"]).to_dict() != self.cfg.to_dict():
            raise ReglabError("the checkpoint was written for a different study configuration. "
                              "Fix: resume with the run's own config.")
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        with torch.no_grad():
            for dst, src in zip(self.model.parameters(), state["weights"] + state["biases"]):
                dst.copy_(src)
            for dst, src in zip(self._best_weights, state["best_weights"]):
                dst.copy_(src)
        self.optimizer.load_state_dict(state["optimizer"])
        self._order_gen.set_state(state["order_generator"])
        for v, g in self._dropout_gens.items():
            g.set_state(state["dropout_generators"][v])
        self._training = state["training"].to(self.device).clone()
        self.diverged = np.asarray(state["diverged"], dtype=bool)
        self.stop_epoch = list(state["stop_epoch"])
        self.early_stopping.load_state_dict(state["early_stopping"])
        self._at_best = {k: np.asarray(x, dtype=np.float64) for k, x in state["at_best"].items()}
        self._last = {k: np.asarray(x, dtype=np.float64) for k, x in state["last"].items()}
        # the step's batch as the original run had it after this epoch: every variant, then compacted
        self._live, self._kl_parked = np.arange(self.n_variants), {}
        self._build_step()
        self._kl_running = {k: t.to(self.device).clone() for k, t in state["kl_running"].items()}
        self._compact()

    def _kl_running_of_all(self) -> dict[tuple[int, int], torch.Tensor]:
        """The KL moving averages keyed by (run, layer) over the runs of every variant (the checkpoint's form)."""
        if self._n_live == self.n_variants:
            return self._kl_running
        return _kl_stack(contiguous_runs(self._kl_spec), np.arange(self.n_variants), self._kl_rows())

    # ------------------------------------------------------------ one step

    def _train_step(self, i: int, idx: torch.Tensor) -> None:
        self.step += 1
        t = self.step
        b = idx.numel()
        training = self._live_training
        self._logging = t % self.cfg.log_every == 0

        # learning rate and momentum of this step
        lr, mu = self._schedule(t)

        # forward, with this step's dropout masks
        x = self.x_train.index_select(0, idx)
        y = self.y_train.index_select(0, idx)
        self._draw_dropout_bits(b)
        parts = self._input_parts(x)
        logits = self._net.forward(parts, self._hidden_forward).to(self.dtype)

        # loss, error and dLoss/dlogits; a non-finite loss freezes its variant
        logp = torch.log_softmax(logits, dim=1)                # logits are (V, C, b)
        y_idx = y.view(1, 1, b).expand(self._n_live, 1, b)
        loss = logp.gather(1, y_idx).mean((1, 2)).neg_()
        torch.where(training, loss, self._nan, out=self._loss_rec[i])
        torch.sum(misclassified(logits, y), dim=1, out=self._error_rec[i])
        training &= torch.isfinite(loss)
        if self._logging:
            torch.where(training, self._penalty_value(t), self._nan, out=self._penalty_rec[i])
        dlogits = logp.exp_()                                   # softmax
        dlogits.scatter_add_(1, y_idx, self._minus_ones(b))     # - one-hot
        dlogits.mul_(1.0 / b).masked_fill_(~training.view(-1, 1, 1), 0.0)

        # backward: SGD accumulates straight into the momentum buffers
        L = self._n_layers
        if self._fused:
            buffers = self._step_optimizer.buffers
            if isinstance(mu, torch.Tensor):
                for buf in buffers:
                    buf.mul_(mu.view(-1, 1, 1))
                beta = 1.0
            else:
                beta = mu
            self._net.backward(dlogits, parts, buffers[:L], buffers[L:], beta, self._hidden_backward)
            weight_grads = buffers[:L]
        else:
            self._net.backward(dlogits, parts, self._grads[:L], self._grads[L:], 0.0, self._hidden_backward)
            weight_grads = self._grads[:L]

        # penalty gradients (weights only)
        self._add_penalty_grads(weight_grads, t)

        # update; frozen variants get learning rate 0
        optimizer = self._step_optimizer
        optimizer.lr = lr * training
        if self._fused:
            optimizer.step_from_buffers()
        else:
            if isinstance(optimizer, SGD):
                optimizer.momentum = mu
            optimizer.step(self._grads)

        # max-norm projection after the update
        if self._max_norm_runs:
            frozen = ~training
            for sl, (radius, output_too) in self._max_norm_runs:
                layers = self._net.weights if output_too else self._net.weights[:-1]
                for w in layers:
                    R.max_norm_(w[sl], radius, frozen[sl], scratch=self._max_norm_scratch)

    def _schedule(self, t: int) -> tuple[torch.Tensor, float | torch.Tensor]:
        """(V,) float64 learning rates and the momentum (a float when all variants agree, else (V,))."""
        per_method_lr = [learning_rate(m, t) for m in self.cfg.methods]
        per_method_mu = [momentum(m, t) for m in self.cfg.methods]
        key = (tuple(per_method_lr), tuple(per_method_mu))
        if key != self._lr_key:
            self._lr_key = key
            self._lr = torch.tensor([per_method_lr[k] for k in self._live_method_index], dtype=torch.float64,
                                    device=self.device)
            if len(set(per_method_mu)) == 1:
                self._mu = per_method_mu[0]
            else:
                self._mu = torch.tensor([per_method_mu[k] for k in self._live_method_index], dtype=self.dtype,
                                        device=self.device)
        return self._lr, self._mu

    # ------------------------------------------------------------ dropout
    #
    # Per step and per dropping variant, ONE draw of raw words from its own
    # generator, laid out [input mask][hidden layer 1 mask][hidden layer 2 mask]...
    # (a mask only if its rate is > 0), each mask random_words(b * width) words.
    # Drawing them at once gives the same words as drawing mask by mask
    # (regularizers.dropout_keep_mask): the CPU generator fills sequentially.
    # CUDA generators give other (still seeded, reproducible) masks than the CPU's.

    def _mask_widths(self, p_input: float, p_hidden: float) -> list[tuple[str | int, int, float]]:
        """[(which, width, p)] in stream order: "input" then hidden layer indices."""
        widths = [("input", self.sizes[0], p_input)] if p_input > 0 else []
        if p_hidden > 0:
            widths += [(l, h, p_hidden) for l, h in enumerate(self.sizes[1:-1])]
        return widths

    def _draw_dropout_bits(self, b: int) -> None:
        self._dropout_bits = []
        for r, (sl, (p_in, p_h)) in enumerate(self._dropout_runs):
            words = sum(R.random_words(b * w) for _, w, _ in self._mask_widths(p_in, p_h))
            bits = self._buffer(("bits", r, b), (sl.stop - sl.start, words), torch.int64)
            R.fill_random_bits_(bits, [self._dropout_gens[int(v)] for v in self._live[sl]])
            self._dropout_bits.append(bits)

    def _keep_mask(self, r: int, which: str | int, b: int, out: torch.Tensor) -> torch.Tensor:
        """(Vr, b, width) keep-mask of dropout run ``r`` for "input" or hidden layer ``which``, as
        1.0 / 0.0 in ``out`` (model dtype)."""
        sl, (p_in, p_h) = self._dropout_runs[r]
        offset = 0
        for name, width, p in self._mask_widths(p_in, p_h):
            words = R.random_words(b * width)
            if name == which:
                bits = self._dropout_bits[r][:, offset:offset + words]
                return R.keep_mask_into_(bits, b * width, p, out)
            offset += words
        raise KeyError(which)

    def _input_parts(self, x: torch.Tensor) -> list[InputPart]:
        """The shared minibatch for variants without input dropout; masked copies for the others."""
        b = x.shape[0]
        parts = [InputPart(sl, x) for sl, _ in self._shared_input_runs]
        for r, (sl, (p_in, _)) in enumerate(self._dropout_runs):
            if p_in > 0:
                kept = self._keep_mask(r, "input", b, self._buffer(("input", r, b), (sl.stop - sl.start, *x.shape)))
                parts.append(InputPart(sl, kept.mul_(x), R.keep_scale(p_in)))
        return parts

    def _hidden_forward(self, layer: int, h: torch.Tensor) -> None:
        """Dropout on hidden outputs, then KL statistics of the (post-dropout) outputs the next layer reads."""
        b = h.shape[1]
        for r, (sl, (_, p_h)) in enumerate(self._dropout_runs):
            if p_h > 0:
                keep = self._keep_mask(r, layer, b, self._buffer(("keep", r, layer, b), h[sl].shape, h.dtype))
                scale = self._constant(R.keep_scale(p_h))  # a tensor: a Python float would round via float32
                if h.dtype == self.dtype or _holds_exactly(h.dtype, R.keep_scale(p_h), self.dtype):
                    keep.mul_(scale)                       # keep * scale, exact in h's dtype
                    residual = None
                else:   # bfloat16 outputs and a scale it cannot hold (p = 0.3): scale apart, rounding once
                    residual = float(scale)
                h[sl].mul_(keep)
                if residual is not None:
                    h[sl].mul_(residual)
                self._hidden_keep[(r, layer)] = (keep, residual)
        if layer == 0 and self._kl_runs and self._logging:
            self._kl_value.zero_()
        for r, (sl, (beta, rho, ema)) in enumerate(self._kl_runs):
            running = self._kl_running.get((r, layer)) if self.step > 1 else None
            value, grad, m_hat = R.kl_sparsity(h[sl].mean(1, dtype=self.dtype), rho, beta, ema, running,
                                               with_value=self._logging)
            if ema > 0:
                self._kl_running[(r, layer)] = m_hat
            if value is not None:
                self._kl_value[sl] += value
            self._kl_grad[(r, layer)] = grad.div_(b).unsqueeze(1)

    def _hidden_backward(self, layer: int, dh: torch.Tensor) -> None:
        """KL gradient (w.r.t. the post-dropout output), then the dropout mask (times its scale)."""
        for r, (sl, _) in enumerate(self._kl_runs):
            dh[sl].add_(self._kl_grad[(r, layer)])
        for r, (sl, (_, p_h)) in enumerate(self._dropout_runs):
            if p_h > 0:
                keep, residual = self._hidden_keep[(r, layer)]
                dh[sl].mul_(keep)
                if residual is not None:
                    dh[sl].mul_(residual)

    def _add_penalty_grads(self, weight_grads: list[torch.Tensor], t: int) -> None:
        W = self._net.weights
        for sl, lam in self._l2_runs:
            R.add_l2_grad_([g[sl] for g in weight_grads], [w[sl] for w in W], lam)
        for sl, (lam, start) in self._l1_runs:
            if t > start * self.total_steps:
                R.add_l1_grad_([g[sl] for g in weight_grads], [w[sl] for w in W], lam)

    def _penalty_value(self, t: int) -> torch.Tensor:
        """(V,) penalty term at this step's weights (before the update), nats/example."""
        pen = self._kl_value.clone() if self._kl_runs else torch.zeros(self._n_live, dtype=self.dtype,
                                                                       device=self.device)
        W = self._net.weights
        if self._l2_runs:   # one pass over the span of L2 variants, zero coefficients in its gaps
            span = self._l2_span
            squares = sum(torch.linalg.vector_norm(w[span].flatten(1), dim=1) ** 2 for w in W)
            pen[span] += self._l2_half * squares
        for sl, (lam, start) in self._l1_runs:
            if t > start * self.total_steps:
                pen[sl] += sum(R.l1_penalty(w[sl], lam) for w in W)
        return pen

    def _constant(self, value: float) -> torch.Tensor:
        key = ("constant", value)
        if key not in self._scratch:
            self._scratch[key] = torch.tensor(value, dtype=self.dtype, device=self.device)
        return self._scratch[key]

    def _minus_ones(self, b: int) -> torch.Tensor:
        key = ("minus-ones", b)
        if key not in self._scratch:
            self._scratch[key] = torch.full((self._n_live, 1, b), -1.0, dtype=self.dtype, device=self.device)
        return self._scratch[key]

    def _buffer(self, key: tuple, shape: tuple, dtype: torch.dtype | None = None) -> torch.Tensor:
        dtype = dtype or self.dtype
        buf = self._scratch.get(key)
        if buf is None or buf.shape != torch.Size(shape):
            buf = self._scratch[key] = torch.empty(shape, dtype=dtype, device=self.device)
        return buf

    # ------------------------------------------------------------ epoch helpers

    def _evaluate(self, x: torch.Tensor, y: torch.Tensor, model: BatchedMLP | None = None) -> dict:
        """Loss, error and mean activation per variant (V,) on a split, no dropout; by default of the
        step's batch (the variants it holds; NaN for the others), or of ``model`` (all variants)."""
        n = int(x.shape[0])
        if n == 0:
            nan = np.full(self.n_variants, np.nan)
            return {"loss": nan, "error": nan.copy(), "mean_activation": nan.copy()}
        if model is None:
            model, full = self._net, self._full
        else:
            full = lambda t: t.detach().double().cpu().numpy()  # noqa: E731  (already one value per variant)
        sums = model.evaluate(x, y, self.cfg.eval_batch_size)
        hidden_units = sum(self.sizes[1:-1])
        if hidden_units:
            act = full(sum(h.sum(1) for h in sums["hidden_sum"]) / (n * hidden_units))
        else:
            act = np.full(self.n_variants, np.nan)
        return {"loss": full(sums["loss_sum"] / n), "error": full(sums["error_count"].double() / n),
                "mean_activation": act}

    def _batch_results(self, logged: list[int], val: dict, test: dict) -> dict[str, np.ndarray]:
        """The epoch's per-variant results, (..., V), NaN for variants outside the step's batch."""
        batch = torch.full((self.steps_per_epoch, 1), float(self.batch_size), dtype=torch.float64,
                           device=self.device)
        batch[-1] = self.n_train - (self.steps_per_epoch - 1) * self.batch_size
        if isinstance(self.optimizer, SGD):
            mu = self._full(self._mu) if isinstance(self._mu, torch.Tensor) else np.full(self.n_variants, self._mu)
        else:
            mu = np.array([m.beta1 for m in self.methods], dtype=np.float64)
        return {
            "train_loss": self._full((self._loss_rec.double() * batch).sum(0) / self.n_train),
            "train_error": self._full(self._error_rec.double().sum(0) / self.n_train),
            "val_loss": val["loss"], "val_error": val["error"], "test_loss": test["loss"], "test_error": test["error"],
            "mean_activation": val["mean_activation"],
            "lr": self._full(self._lr), "momentum": mu,
            "loss_data": self._full(self._loss_rec[logged]), "loss_penalty": self._full(self._penalty_rec[logged]),
        }

    def _epoch_metrics(self, trained: np.ndarray, ok: np.ndarray, values: dict[str, np.ndarray],
                       train_time: float, eval_time: float) -> dict[str, np.ndarray]:
        zero = torch.zeros(self.n_variants, dtype=torch.float64, device=self.device)
        squares = torch.zeros(self.n_variants, dtype=torch.float64, device=self.device)
        total = 0
        for w in self.model.weights:
            zero += (w.abs() < SPARSITY_THRESHOLD).to(self.dtype).sum(dim=(1, 2))
            squares += torch.linalg.vector_norm(w.flatten(1), dim=1, dtype=torch.float64) ** 2
            total += w[0].numel()
        nan = np.nan
        metrics = {
            **{k: np.where(ok, values[k], nan) for k in ("train_loss", "train_error", "val_loss", "val_error",
                                                           "test_loss", "test_error")},
            "sparsity": np.where(ok, (zero / total).cpu().numpy(), nan),
            "weight_norm": np.where(ok, squares.sqrt().cpu().numpy(), nan),
            "mean_activation": np.where(ok, values["mean_activation"], nan),
            "lr": np.where(trained, values["lr"], nan),
            "momentum": np.where(trained, values["momentum"], nan),
            "epoch_time_s": np.full(self.n_variants, train_time),
            "eval_time_s": np.full(self.n_variants, eval_time),
            "active": self._training.cpu().numpy().copy(),
            "diverged": self.diverged.copy(),
        }
        return metrics

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


def _holds_exactly(dtype: torch.dtype, value: float, reference: torch.dtype) -> bool:
    """Does ``dtype`` hold ``value`` as ``reference`` does (1/(1-p) = 2 or 1.25: yes; 1/0.7 in bfloat16: no)?"""
    return float(torch.tensor(value, dtype=dtype)) == float(torch.tensor(value, dtype=reference))


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


def _nan_rows(x: torch.Tensor, bad: torch.Tensor) -> np.ndarray:
    """float64 numpy copy of ``x`` (V, ...) with the rows of ``bad`` variants set to NaN."""
    out = x.detach().double().cpu().numpy().copy()
    out[bad.cpu().numpy()] = np.nan
    return out


def _optimizer_state(optimizer: SGD | Adam) -> list[torch.Tensor]:
    """The optimizer's per-variant state tensors (V, ...): momentum buffers, or Adam's m and v."""
    return list(optimizer.buffers) if isinstance(optimizer, SGD) else [*optimizer.m, *optimizer.v]


def _kl_stack(runs: list[tuple[slice, Any]], index: np.ndarray, rows: dict[tuple[int, int], torch.Tensor]
              ) -> dict[tuple[int, int], torch.Tensor]:
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


def _span(runs: list[tuple[slice, Any]]) -> slice:
    """The smallest slice covering every run (empty when there are none)."""
    if not runs:
        return slice(0, 0)
    return slice(runs[0][0].start, runs[-1][0].stop)


def _per_variant(values: list[float], device: torch.device) -> float | torch.Tensor:
    """A float when every variant agrees, else a (V,) float64 tensor."""
    if len(set(values)) == 1:
        return float(values[0])
    return torch.tensor(values, dtype=torch.float64, device=device)


def _bool_per_variant(values: list[bool], device: torch.device) -> bool | torch.Tensor:
    if len(set(values)) == 1:
        return bool(values[0])
    return torch.tensor(values, dtype=torch.bool, device=device)
