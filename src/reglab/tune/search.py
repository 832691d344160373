"""Choose each method's hyperparameters on the validation split, with Optuna.

What is searched (declared once, as data: :data:`LEARNING_RATE`, and each
regularizer's ``Hyperparameter`` declarations, read by :func:`regularizer_params`):
a method tunes its learning rate and the coefficients of the regularizers it
uses -- L2 lambda, L1 lambda and its switch-on point, KL beta and target rho,
the max-norm radius c, the dropout rates, and whatever a plugin declares. A method
whose preset value of a coefficient is 0 does not use that regularizer and
does not tune it. Scale parameters (rates, coefficients, radii) are sampled
log-uniformly; fractions (dropout rates, the L1 switch-on point) uniformly.
Every range is widened, if needed, to contain the preset's value, and the
preset's values are the first trial of every method (TPE and random
samplers), so the search starts from the preset and the tuned result is
compared against it on the same footing.

How a batch of trials is evaluated: for every method, ``batch_trials`` trials
are asked from that method's Optuna study; each becomes a
:class:`~reglab.config.MethodConfig` named ``"<method>#t<number>"``; all of
them (x ``seeds`` each) form ONE :class:`~reglab.config.StudyConfig` that the
engine trains as one batched model (or a few, see ``shard_by``), epoch by
epoch. After every epoch each trial reports its validation error -- the mean
over its seeds, as a fraction -- at step = epoch (1-based) and the pruner may
stop it. A pruned trial's variants are no longer read, but they share the
batched model's matrix products with the trials still running, so pruning
saves compute only once every trial of a batched model is pruned or failed:
that model then stops early.

The objective (minimized) is the validation error of the model the method
returns in ``reglab run``: the last epoch's, or for a method with early
stopping each seed's best epoch's, averaged over the trial's seeds. A seed
that diverged (NaN/inf) counts as error 1.0 from then on, so the sampler
learns to avoid that region instead of losing the trial.

The test split is never read: the engine is handed a dataset whose test
split is replaced by the first :data:`SEALED_TEST_EXAMPLES` validation
examples (the engine always evaluates some "test" split; those numbers are
discarded).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reglab.config import MethodConfig, StudyConfig
from reglab.data.dataset import Dataset
from reglab.errors import ReglabError
from reglab.results import RunLock, atomic_write_json, atomic_write_text, now_iso, pid_alive, read_json
from reglab.tune.history import preset_vs_tuned_table, summarize, tuned_toml_text, write_history, write_plots

SEALED_TEST_EXAMPLES = 100    # validation examples handed to the engine under the name "test"
DIVERGED_ERROR = 1.0          # validation error counted for a diverged seed (every example wrong)
TRIAL_SEPARATOR = "#t"        # a trial's method is named "<method>#t<trial number>"
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "none")
SHARD_KEYS = ("method", "trial", "seed")
TUNE_FORMAT = "reglab-tune"
TUNE_FORMAT_VERSION = 1


# ----------------------------------------------------------------------------
# the search space, as data

@dataclass(frozen=True)
class Param:
    """One tunable :class:`MethodConfig` field: its range, its scale and its grid."""

    field: str                                  # the MethodConfig field it sets
    low: float                                  # smallest value sampled (inclusive), in the field's units
    high: float                                 # largest value sampled (inclusive)
    log: bool                                   # sample uniformly in log(value) (scales spanning decades)
    grid: tuple[float, ...]                     # the values the grid sampler tries
    applies: Callable[[MethodConfig], bool]     # tuned only for methods for which this is true
    kind: str = "float"                         # "float" or "int" (sampled as a whole number)

    def widened_to(self, value: float) -> Param:
        """This range stretched to contain `value` (a preset's value is always a point of the search)."""
        return dataclasses.replace(self, low=min(self.low, value), high=max(self.high, value))

    def describe(self) -> dict:
        d = {"low": self.low, "high": self.high, "scale": "log" if self.log else "linear", "grid": list(self.grid)}
        return d if self.kind == "float" else d | {"kind": self.kind}


# The learning rate is tuned for every method; its range depends on the study-wide optimizer.
LEARNING_RATE: dict[str, Param] = {
    "sgd": Param("lr", 1e-3, 1.0, True, (0.01, 0.03, 0.1), lambda m: True),
    "adam": Param("lr", 1e-5, 1e-2, True, (1e-4, 3e-4, 1e-3), lambda m: True),
}

def regularizer_params(method: MethodConfig, regularizers: dict | None = None) -> tuple[Param, ...]:
    """The regularizers' own hyperparameters `method` tunes, read from their declarations
    (``Regularizer.hyperparameters``, built-ins and plugins alike; default registry: the built-ins,
    the entry points and none of a study's plugins -- :func:`tune` passes the study's).

    A hyperparameter is tuned when a regularizer that `method` uses declares it, its kind is float
    or int, ``tuned`` is true and the method's value is not 0 (0 is off: a method at 0 does not use
    it); each name once, in registration order. Its range is ``search``, else the valid range
    [low, high] when finite (and > 0 on a log scale), else a decade either side of the method's
    value inside [low, high]; its grid ``grid``, else 3 points at 1/6, 1/2, 5/6 of the range.
    Conventions of the built-ins' values as in reglab.config (l2 is lambda in lambda/2 * sum w^2,
    l1 is lambda in lambda * sum |w|, l1_start a fraction of all steps, kl_beta multiplies
    sum_j KL(rho || rho_hat_j), max_norm is the radius of each unit's incoming weight vector,
    dropout rates are drop probabilities of inverted dropout).
    """
    if regularizers is None:
        from reglab.engine.registry import load_registry
        regularizers = load_registry().regularizers
    out: dict[str, Param] = {}
    for reg in regularizers.values():
        if not reg.uses(method):
            continue
        for h in reg.hyperparameters:
            if h.name in out or not h.tuned or h.kind not in ("float", "int"):
                continue
            value = getattr(method, h.name)
            if value == 0:
                continue
            low, high = _search_range(h, value)
            grid = tuple(h.grid) if h.grid is not None else _spread(low, high, h.log)
            out[h.name] = Param(h.name, low, high, h.log, grid, reg.uses, kind=h.kind)
    return tuple(out.values())


def _search_range(h, value: float) -> tuple[float, float]:
    if h.search is not None:
        return float(h.search[0]), float(h.search[1])
    if math.isfinite(h.low) and math.isfinite(h.high) and (h.low > 0 or not h.log):
        return float(h.low), float(h.high)
    if not math.isfinite(value):
        raise ReglabError(f"hyperparameter {h.name!r} has no finite search range and the method's value is {value}. "
                          f"Fix: declare search=(low, high) for {h.name!r}.")
    return max(float(h.low), value / 10), min(float(h.high), value * 10)


def _spread(low: float, high: float, log: bool) -> tuple[float, ...]:
    if log:
        a, b = math.log(low), math.log(high)
        return tuple(float(f"{math.exp(a + f * (b - a)):.3g}") for f in (1 / 6, 1 / 2, 5 / 6))
    return tuple(float(f"{low + f * (high - low):.3g}") for f in (1 / 6, 1 / 2, 5 / 6))


def search_space(method: MethodConfig, optimizer: str, regularizers: dict | None = None) -> dict[str, Param]:
    """The hyperparameters `method` tunes: name -> Param, learning rate first, then
    :func:`regularizer_params`. Each range contains the method's own (preset) value."""
    params = (LEARNING_RATE[optimizer],) + regularizer_params(method, regularizers)
    return {p.field: p.widened_to(getattr(method, p.field)) for p in params if p.applies(method)}


def grid_size(space: dict[str, Param]) -> int:
    return math.prod(len(p.grid) for p in space.values())


def suggest_method(base: MethodConfig, trial, space: dict[str, Param]) -> MethodConfig:
    """The method a trial evaluates: `base` with the trial's values, named "<base>#t<number>"."""
    values = {name: trial.suggest_int(name, math.ceil(p.low), math.floor(p.high), log=p.log) if p.kind == "int"
              else trial.suggest_float(name, p.low, p.high, log=p.log) for name, p in space.items()}
    return base.with_values(name=f"{base.name}{TRIAL_SEPARATOR}{trial.number}", **values)


# ----------------------------------------------------------------------------
# samplers and pruners

def make_sampler(name: str, space: dict[str, Param], seed: int):
    """An Optuna sampler: TPE (default), uniform random, or the grid of each Param's values."""
    import optuna

    if name == "tpe":
        # constant_liar: trials asked together in one batch would otherwise all get the same
        # proposal, because none of them has a value yet
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return _ask_tell_grid_sampler({k: list(p.grid) for k, p in space.items()}, seed=seed)
    raise ReglabError(f"--sampler must be one of {', '.join(SAMPLERS)}; got {name!r}.")


def _ask_tell_grid_sampler(search_space: dict, seed: int):
    """Optuna's GridSampler, minus its ``study.stop()`` after the last grid point.

    That call only works inside ``study.optimize``; the tuner asks and tells, and stops by
    itself when no grid point is left (:func:`_grid_points_left`).
    """
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            return None

    return AskTellGridSampler(search_space, seed=seed)


def make_pruner(name: str):
    """Median stopping rule on per-epoch validation error, or no pruning.

    The median rule prunes a trial whose best validation error so far is worse than the
    median of completed trials' errors at the same epoch; it waits for 5 completed trials
    and never prunes at the first epoch. It compares against completed trials only, so its
    decisions do not depend on the order in which trials of one batch report.
    """
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ReglabError(f"--pruner must be one of {', '.join(PRUNERS)}; got {name!r}.")


# ----------------------------------------------------------------------------
# the validation-only dataset

def validation_only(dataset: Dataset) -> Dataset:
    """`dataset` with its test split replaced by the first validation examples.

    The real test tensors are not read (not even copied): tuning can select on validation
    error only. The engine still evaluates a "test" split every epoch; these numbers are
    validation examples and are discarded.
    """
    n = min(SEALED_TEST_EXAMPLES, int(dataset.x_val.shape[0]))
    info = dict(dataset.info)
    info["test_split"] = f"withheld for tuning (replaced by the first {n} validation examples)"
    return Dataset(name=dataset.name, x_train=dataset.x_train, y_train=dataset.y_train,
                   x_val=dataset.x_val, y_val=dataset.y_val,
                   x_test=dataset.x_val[:n], y_test=dataset.y_val[:n],
                   n_classes=dataset.n_classes, info=info)


# ----------------------------------------------------------------------------
# one trial while its batch trains

@dataclass
class TrialRun:
    """A trial being evaluated: its method, seeds and validation curves so far.

    Per seed, a curve holds one value per epoch the variant trained. A variant that stopped
    early (the engine reports NaN once it no longer trains) ends its curve there; a variant
    that diverged counts as error :data:`DIVERGED_ERROR` (and infinite loss) from then on.
    """

    base: str                                   # canonical method name, e.g. "l2"
    trial: object                               # optuna.Trial
    method: MethodConfig                        # named "<base>#t<number>"
    seeds: tuple[int, ...]
    val_error: dict[int, list[float]] = field(default_factory=dict)   # seed -> per-epoch fraction
    val_loss: dict[int, list[float]] = field(default_factory=dict)    # seed -> per-epoch nats/example
    diverged: dict[int, int] = field(default_factory=dict)            # seed -> epoch it diverged
    finished_seeds: set = field(default_factory=set)                   # seeds that train no more
    reported: int = 0                           # epochs reported to Optuna
    pruned_at: int | None = None                # epoch at which the pruner stopped it
    error: str | None = None                    # why it failed (its shard failed)
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        for s in self.seeds:
            self.val_error.setdefault(s, [])
            self.val_loss.setdefault(s, [])

    @property
    def live(self) -> bool:
        return self.pruned_at is None and self.error is None

    def add_epoch(self, seed: int, epoch: int, val_error: float, val_loss: float, diverged: bool) -> None:
        """One epoch's validation numbers of one seed, as the engine reports them."""
        if seed in self.finished_seeds:
            return
        if diverged:
            self.diverged.setdefault(seed, epoch)
            val_error, val_loss = DIVERGED_ERROR, math.inf
        elif not math.isfinite(val_error):
            self.finished_seeds.add(seed)  # stopped early: it no longer trains
            return
        self.val_error[seed].append(float(val_error))
        self.val_loss[seed].append(float(val_loss))

    def ready_epochs(self) -> int:
        """Epochs for which every seed has a value (a seed that trains no more carries its last)."""
        running = [len(self.val_error[s]) for s in self.seeds if s not in self.finished_seeds]
        if running:
            return min(running)
        return max(len(c) for c in self.val_error.values())

    def mean_error(self, epoch: int) -> float:
        """Mean over seeds of the validation error at `epoch` (1-based)."""
        return float(np.mean([c[min(epoch, len(c)) - 1] for c in self.val_error.values() if c]))

    def objective(self) -> float:
        """The returned model's validation error, mean over seeds (see the module docstring).

        With early stopping, a seed returns its best epoch by the method's monitor, where an
        epoch is better when it improves on the best so far by more than ``min_delta`` (the
        engine's rule); otherwise its last epoch.
        """
        m = self.method
        per_seed = []
        for s in self.seeds:
            errors = self.val_error[s]
            if not errors:
                continue
            if not m.early_stopping:
                per_seed.append(errors[-1])
                continue
            monitored = errors if m.monitor == "val_error" else self.val_loss[s]
            best, best_i = math.inf, len(errors) - 1
            for i, x in enumerate(monitored):
                if math.isfinite(x) and x < best - m.min_delta:
                    best, best_i = x, i
            per_seed.append(errors[best_i])
        return float(np.mean(per_seed))


# ----------------------------------------------------------------------------
# shards: how a round's variants are grouped into batched models

@dataclass(frozen=True)
class Shard:
    """One batched model: a StudyConfig whose methods are trial methods."""

    key: str
    cfg: StudyConfig


def build_shards(base: StudyConfig, runs: Sequence[TrialRun], seeds: tuple[int, ...],
                 shard_by: Sequence[str], round_index: int) -> list[Shard]:
    """Group the round's (trial, seed) variants into batched models.

    ``shard_by=()`` puts everything in one model (fastest on one machine); "method", "trial"
    and "seed" split by those keys (parallel tasks on a cluster). Results do not depend on
    the grouping: the engine gives a variant (method, seed) the same initial weights,
    dropout masks and minibatch order whatever else is in its batch.
    """
    for key in shard_by:
        if key not in SHARD_KEYS:
            raise ReglabError(f"--shard-by must name some of {', '.join(SHARD_KEYS)}; got {key!r}.")
    groups: dict[tuple, list[TrialRun]] = {}
    for run in runs:
        k = (run.base if "method" in shard_by else "", run.trial.number if "trial" in shard_by else -1)
        groups.setdefault(k, []).append(run)
    seed_groups = [(s,) for s in seeds] if "seed" in shard_by else [tuple(seeds)]
    shards = []
    for (method, number), members in groups.items():
        for sg in seed_groups:
            parts = [f"round{round_index}"] + ([method] if method else []) + \
                    ([f"t{number}"] if number >= 0 else []) + \
                    ([f"seed{sg[0]}"] if "seed" in shard_by else [])
            cfg = base.replace(methods=tuple(r.method for r in members), seeds=sg)
            shards.append(Shard(key="/".join(parts), cfg=cfg))
    return shards


# ----------------------------------------------------------------------------
# the tuning loop

@dataclass
class TuneResult:
    out_dir: Path
    tuned: StudyConfig                   # the base study with each method's best hyperparameters
    methods: dict[str, dict]             # per method: trials, states, default value, best value
    failed: list[dict]                   # trials that failed: method, trial, error


def tune(base: StudyConfig, dataset: Dataset, *, out_dir: str | Path, n_trials: int | None = None,
         timeout_s: float | None = None, sampler: str = "tpe", pruner: str = "median",
         storage: str | None = None, executor=None, seeds_per_trial: int = 1, batch_trials: int = 4,
         sampler_seed: int = 0, shard_by: Sequence[str] = (), epochs_per_task: int | None = None,
         command: str | None = None, say: Callable[[str], None] = lambda s: None,
         regularizers: dict | None = None) -> TuneResult:
    """Tune every method of `base` on `dataset`'s validation split; write the results to `out_dir`.

    Args:
        base: the study whose methods are tuned (a preset); its other settings are kept.
        dataset: its data; the test split is never read.
        out_dir: the tune directory; running again with the same one resumes the same studies.
        n_trials: trials per method in this session (None: until the timeout).
        timeout_s: no new batch starts after this many seconds (the running one finishes).
        sampler: "tpe", "random" or "grid"; pruner: "median" or "none".
        storage: Optuna RDB URL (default: ``sqlite:///<out_dir>/optuna.db``; PostgreSQL for many workers).
        executor: a :mod:`reglab.tune.executors` executor (default: in-process, local).
        seeds_per_trial: seeds each trial is trained with (the first of `base.seeds`, then the next integers).
        batch_trials: trials per method per batched model (one round).
        sampler_seed: seeds the sampler (each session adds the number of trials already told).
        shard_by: split each round into batched models by "method", "trial" and/or "seed".
        epochs_per_task: epochs a shard trains between pruning decisions on a remote executor
            (default: 1 with a pruner, all epochs without one).
        command: the command line, stored in tune.json.
        say: progress lines (print, or nothing).
        regularizers: name -> Regularizer whose declarations are searched (default: the study's registry).
    """
    import optuna

    from reglab.tune.executors import LocalExecutor

    check_tune_arguments(n_trials=n_trials, timeout_s=timeout_s, seeds_per_trial=seeds_per_trial,
                         batch_trials=batch_trials, epochs_per_task=epochs_per_task, sampler=sampler, pruner=pruner)
    out_dir = Path(out_dir)
    seeds = trial_seeds(base.seeds, seeds_per_trial)
    if regularizers is None:   # the study's own: built-ins, entry points and base.plugins
        from reglab.engine.registry import for_study
        regularizers = for_study(base).regularizers
    spaces = {m.name: search_space(m, base.optimizer, regularizers) for m in base.methods}
    for m in base.methods:
        if TRIAL_SEPARATOR in m.name:
            raise ReglabError(f"method name {m.name!r} contains {TRIAL_SEPARATOR!r}, which marks trials. "
                              "Fix: rename the method.")
    if epochs_per_task is None:
        epochs_per_task = 1 if pruner != "none" else base.n_epochs
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    executor = executor or LocalExecutor()
    sealed = validation_only(dataset)
    start = time.perf_counter()
    with RunLock(out_dir):
        storage_url = storage or f"sqlite:///{out_dir.resolve() / 'optuna.db'}"
        meta = _open_meta(out_dir, base, spaces, seeds, sampler, pruner, storage_url, executor, command)
        storage_obj = open_storage(storage_url)
        studies = {m.name: _open_study(storage_obj, meta["optuna_studies"][m.name], sampler, pruner,
                                       spaces[m.name], sampler_seed) for m in base.methods}
        for m in base.methods:
            _fail_abandoned_trials(studies[m.name], say)
            if sampler != "grid" and not studies[m.name].trials:
                # the preset's own values are trial 0: the baseline the tuned values must beat
                studies[m.name].enqueue_trial({k: getattr(m, k) for k in spaces[m.name]},
                                              user_attrs={"preset_default": True})
        told = {m.name: 0 for m in base.methods}
        _write_meta(out_dir, meta, status="running")
        say(f"reglab: tuning {len(base.methods)} methods of {base.name!r} on the validation split "
            f"({sampler} sampler, {pruner} pruner, {len(seeds)} seed(s) per trial, "
            f"executor {executor.name}) -> {out_dir}")
        for m in base.methods:
            say(f"  {m.name}: " + ", ".join(f"{k} in [{p.low:g}, {p.high:g}]{' log' if p.log else ''}"
                                            for k, p in spaces[m.name].items()))
        status = "interrupted"
        executor.open(sealed)
        executor_info = executor.describe()
        untold: list[TrialRun] = []   # asked but not yet told: failed if the session ends now
        try:
            round_index = 0
            while True:
                if timeout_s is not None and time.perf_counter() - start >= timeout_s:
                    say(f"reglab: timeout of {timeout_s:g} s reached; no new batch")
                    break
                batch = _ask_round(base, studies, spaces, told, n_trials, batch_trials, seeds, sampler)
                if not batch:
                    break
                untold = list(batch)
                _evaluate_round(base, batch, seeds, executor, shard_by, epochs_per_task, round_index, say)
                while untold:
                    run = untold.pop(0)
                    _tell(studies[run.base], run)
                    told[run.base] += 1
                round_index += 1
                write_history(out_dir, base, studies, spaces)
                say(_round_line(batch, studies, told, n_trials))
            status = "complete"
        finally:
            executor.close()
            for run in untold:  # interrupted mid-batch: these trials did not finish
                run.error = run.error or "interrupted before it finished"
                _tell(studies[run.base], run)
            records = write_history(out_dir, base, studies, spaces)
            tuned, methods, failed = summarize(base, records)
            atomic_write_text(out_dir / "tuned.toml", tuned_toml_text(tuned, methods, len(seeds)))
            write_plots(out_dir, records, spaces)
            meta["sessions"].append({"started": meta.pop("_session_started"), "ended": now_iso(),
                                     "wall_s": time.perf_counter() - start, "status": status,
                                     "trials_told": dict(told), "sampler": sampler, "pruner": pruner,
                                     "executor": executor_info})
            _write_meta(out_dir, meta, status=status, methods=methods, failed=failed)
            # closing the last connection folds SQLite's write-ahead log into optuna.db and removes it,
            # so the database is one self-contained file again
            storage_obj.engine.dispose()
    say(preset_vs_tuned_table(methods))
    if failed:
        by_error: dict[str, list[str]] = {}
        for f in failed:
            by_error.setdefault(f["error"], []).append(f"{f['method']} #{f['trial']}")
        say(f"reglab: {len(failed)} trial(s) failed (listed in trials.csv and tune.json): " +
            "; ".join(f"{', '.join(ts)} ({err})" for err, ts in by_error.items()))
    say(f"reglab: tuned study config in {out_dir / 'tuned.toml'} (reglab run --config {out_dir / 'tuned.toml'})")
    return TuneResult(out_dir=out_dir, tuned=tuned, methods=methods, failed=failed)


def check_tune_arguments(*, n_trials, timeout_s, seeds_per_trial, batch_trials, epochs_per_task, sampler,
                         pruner) -> None:
    """The budget and search settings of :func:`tune`, one ReglabError each (the CLI calls it before printing)."""
    if n_trials is None and timeout_s is None:
        raise ReglabError("no budget given. Fix: pass --trials N and/or --timeout SECONDS.")
    _check_positive("--trials", n_trials)
    _check_positive("--timeout", timeout_s, integer=False)
    _check_positive("--seeds-per-trial", seeds_per_trial)
    _check_positive("--batch-trials", batch_trials)
    _check_positive("--epochs-per-task", epochs_per_task)
    if sampler not in SAMPLERS:
        raise ReglabError(f"--sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}.")
    make_pruner(pruner)


def trial_seeds(preset_seeds: Sequence[int], k: int) -> tuple[int, ...]:
    """The seeds a trial trains with: the preset's first `k`, then the integers after its largest."""
    extra = range(max(preset_seeds) + 1, max(preset_seeds) + 1 + max(0, k - len(preset_seeds)))
    return tuple(preset_seeds[:k]) + tuple(extra)


def _check_positive(option: str, value, integer: bool = True) -> None:
    if value is None:
        return
    ok = (not isinstance(value, bool)) and (isinstance(value, int) if integer else isinstance(value, (int, float)))
    if not ok or not value > 0 or (not integer and not math.isfinite(value)):
        kind = "a whole number >= 1" if integer else "a number of seconds > 0"
        raise ReglabError(f"{option} must be {kind}; got {value!r}. Fix: give {kind}.")


def _ask_round(base, studies, spaces, told, n_trials, batch_trials, seeds, sampler) -> list[TrialRun]:
    runs = []
    host, pid = socket.gethostname(), os.getpid()
    for m in base.methods:
        study = studies[m.name]
        k = batch_trials if n_trials is None else min(batch_trials, n_trials - told[m.name])
        if sampler == "grid":
            k = min(k, _grid_points_left(study, spaces[m.name]))
        for _ in range(max(k, 0)):
            trial = study.ask()
            method = suggest_method(m, trial, spaces[m.name])
            # one attribute, one database commit: who runs the trial (to tell an abandoned one) and its seeds
            trial.set_user_attr("run", {"host": host, "pid": pid, "seeds": list(seeds)})
            runs.append(TrialRun(base=m.name, trial=trial, method=method, seeds=seeds))
    return runs


def _grid_points_left(study, space: dict[str, Param]) -> int:
    """Grid points no trial has taken yet (finished or running; the grid sampler's own bookkeeping)."""
    taken = {t.system_attrs["grid_id"] for t in study.get_trials(deepcopy=False) if "grid_id" in t.system_attrs}
    return grid_size(space) - len(taken)


def _evaluate_round(base: StudyConfig, runs: list[TrialRun], seeds, executor, shard_by, epochs_per_task: int,
                    round_index: int, say) -> None:
    """Train the round's shards epoch-chunk by epoch-chunk; report each epoch; prune; mark failures."""
    by_name = {r.method.name: r for r in runs}
    shards = build_shards(base, runs, seeds, shard_by, round_index)
    members = {s.key: {m.name for m in s.cfg.methods} for s in shards}
    active = {s.key: s for s in shards}
    # a local executor keeps its trainers alive: one epoch per call costs nothing and prunes soonest
    chunk = 1 if executor.name == "local" else epochs_per_task
    while active:
        steps = executor.advance({k: s.cfg for k, s in active.items()}, n_epochs=chunk)
        for key, step in steps.items():
            shard = active[key]
            if step.error is not None:
                for name in members[key]:
                    if by_name[name].error is None:
                        by_name[name].error = f"shard {key} failed: {step.error}"
                say(f"reglab: shard {key} failed ({step.error}); its trials are marked failed")
                del active[key]
                executor.release(key)
                continue
            variants = shard.cfg.variants()
            for rec in step.records:
                val_error = np.asarray(rec.metrics["val_error"], dtype=np.float64)
                val_loss = np.asarray(rec.metrics["val_loss"], dtype=np.float64)
                diverged = np.asarray(rec.metrics.get("diverged", np.zeros(len(variants), bool)), dtype=bool)
                for v, method, seed in variants:
                    by_name[method.name].add_epoch(seed, rec.epoch, float(val_error[v]), float(val_loss[v]),
                                                   bool(diverged[v]))
            if step.done:
                for _, method, seed in variants:
                    by_name[method.name].finished_seeds.add(seed)
        for run in runs:
            _report(run, base.n_epochs)
        say(_epoch_line(runs, round_index, base.n_epochs))
        for key in list(active):
            if key in steps and steps[key].done or not any(by_name[n].live for n in members[key]):
                del active[key]
                executor.release(key)


def _epoch_line(runs: list[TrialRun], round_index: int, n_epochs: int) -> str:
    live = [r for r in runs if r.live and r.reported]
    epoch = max((r.reported for r in runs), default=0)
    best = min(live, key=lambda r: r.mean_error(r.reported), default=None)
    lead = f"{best.method.name} {100 * best.mean_error(best.reported):.2f}%" if best else "n/a"
    return (f"  batch {round_index + 1}, epoch {epoch}/{n_epochs}: {len(live)} of {len(runs)} trials running, "
            f"lowest validation error now {lead}")


def _report(run: TrialRun, n_epochs: int) -> None:
    """Report the epochs every seed of `run` has finished; ask the pruner after each but the last.

    (Pruning after the last epoch would save nothing and throw away a finished result.)
    """
    while run.live and run.reported < run.ready_epochs():
        epoch = run.reported + 1
        run.trial.report(run.mean_error(epoch), step=epoch)
        run.reported = epoch
        if epoch < n_epochs and run.trial.should_prune():
            run.pruned_at = epoch


def _tell(study, run: TrialRun) -> None:
    import optuna

    trial = run.trial
    result = {"val_error": {str(s): c for s, c in run.val_error.items()},
              "val_loss": {str(s): [x if math.isfinite(x) else None for x in c] for s, c in run.val_loss.items()},
              "diverged": {str(s): e for s, e in run.diverged.items()},
              "epochs": run.reported, "duration_s": time.perf_counter() - run.started,
              "pruned_at": run.pruned_at, "error": run.error}
    if run.error is None and run.pruned_at is None and run.reported == 0:
        result["error"] = "no epoch was trained"
    trial.set_user_attr("result", result)
    if result["error"] is not None:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    elif run.pruned_at is not None:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, run.objective())


def _round_line(runs, studies, told, n_trials) -> str:
    parts = []
    for name, study in studies.items():
        done = [t for t in study.trials if t.state.name == "COMPLETE"]
        best = min((t.value for t in done), default=None)
        parts.append(f"{name} {told[name]}{'' if n_trials is None else '/' + str(n_trials)} "
                     f"best {'n/a' if best is None else f'{100 * best:.2f}%'}")
    states = [r.pruned_at is not None for r in runs].count(True)
    failed = [r.error is not None for r in runs].count(True)
    return f"reglab: batch of {len(runs)} trials ({states} pruned, {failed} failed) | " + "; ".join(parts)


# ----------------------------------------------------------------------------
# storage, resume and tune.json

def _study_fingerprint(base: StudyConfig, method: MethodConfig, space: dict[str, Param], seeds) -> str:
    """Hash of everything a method's trial values depend on, except the tuned values themselves."""
    d = base.replace(methods=(method,), seeds=tuple(seeds)).to_dict()
    d["space"] = {k: p.describe() for k, p in space.items()}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def _open_meta(out_dir: Path, base, spaces, seeds, sampler, pruner, storage_url, executor, command) -> dict:
    path = out_dir / "tune.json"
    studies = {m.name: f"{base.name}/{m.name}/{_study_fingerprint(base, m, spaces[m.name], seeds)}"
               for m in base.methods}
    if path.exists():
        meta = read_json(path)
        if meta.get("format") != TUNE_FORMAT:
            raise ReglabError(f"{path} is not a reglab tune file. Fix: choose another --out.")
        if meta.get("optuna_studies") != studies or meta["seeds"] != list(seeds):
            raise ReglabError(f"{out_dir} holds a tune of a different study or different seeds. "
                              "Fix: run the same command to resume it, or choose another --out.")
        if meta["storage"] != redact_url(storage_url):
            raise ReglabError(f"{out_dir} was tuned with storage {meta['storage']}; got {redact_url(storage_url)}. "
                              "Fix: pass the same --storage to resume, or choose another --out.")
        meta.update(sampler=sampler, pruner=pruner, command=command)
    else:
        from reglab import __version__
        meta = {"format": TUNE_FORMAT, "format_version": TUNE_FORMAT_VERSION, "study": base.name,
                "created": now_iso(), "reglab_version": __version__, "command": command,
                "objective": "validation error (fraction) of the returned model, mean over the trial's seeds; "
                             "last epoch, or best epoch for methods with early stopping; minimized",
                "selection_split": "validation (the test split is never read)",
                "base_config": base.to_dict(), "seeds": list(seeds), "sampler": sampler,
                "pruner": pruner, "storage": redact_url(storage_url), "optuna_studies": studies,
                "search_spaces": {m: {k: p.describe() for k, p in s.items()} for m, s in spaces.items()},
                "sessions": []}
    meta["optuna_studies"] = studies
    meta["executor"] = executor.describe()
    meta["_session_started"] = now_iso()
    return meta


def _write_meta(out_dir: Path, meta: dict, *, status: str, **extra) -> None:
    meta = {k: v for k, v in meta.items() if not k.startswith("_")}
    meta.update(extra, status=status, updated=now_iso())
    atomic_write_json(out_dir / "tune.json", meta)


def redact_url(url: str) -> str:
    """A storage URL without its password (it is written to tune.json)."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url


def open_storage(storage_url: str):
    """An Optuna RDB storage; every bad URL or missing driver is one ReglabError."""
    import optuna

    kwargs = {}
    if storage_url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        try:
            database = make_url(storage_url).database
        except Exception as e:  # noqa: BLE001 - SQLAlchemy's URL parser raises ValueError and its own errors
            raise ReglabError(f"cannot open Optuna storage {redact_url(storage_url)} (not a database URL: "
                              f"{type(e).__name__}). Fix: check the URL, e.g. sqlite:///path.db.") from None
        if database:
            kwargs["engine_kwargs"] = {"creator": _sqlite_connector(database)}
    try:
        return optuna.storages.RDBStorage(storage_url, **kwargs)
    except ImportError as e:
        raise ReglabError(f"storage {redact_url(storage_url)} needs a database driver that is not installed ({e}). "
                          "Fix: install that database's driver (pip install psycopg2-binary for PostgreSQL).") from None
    except Exception as e:  # SQLAlchemy's URL and connection errors have no common public base
        raise ReglabError(f"cannot open Optuna storage {redact_url(storage_url)} "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                          "Fix: check the URL, e.g. postgresql://user:pass@host/db or sqlite:///path.db.") from None


def _sqlite_connector(path: str):
    """Connections with a write-ahead log that is flushed to disk at checkpoints only.

    Optuna commits once per call (each report, each suggestion); with SQLite's default every
    commit waits for a disk flush. A killed process loses nothing this way (committed
    transactions are in the log); only a power failure or OS crash can lose the last commits,
    and the database stays consistent.
    """
    import sqlite3

    def connect():
        connection = sqlite3.connect(path, check_same_thread=False, timeout=60)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    return connect


def _open_study(storage, name: str, sampler: str, pruner: str, space, sampler_seed: int):
    import optuna

    study = optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True,
                                pruner=make_pruner(pruner))
    # a resumed session must not repeat the first session's random proposals
    study.sampler = make_sampler(sampler, space, sampler_seed + len(study.trials))
    return study


def _fail_abandoned_trials(study, say) -> None:
    """Mark FAIL the RUNNING trials of a dead process on this host (an interrupted session)."""
    import optuna

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner = t.user_attrs.get("run", {})
        if owner.get("host") != host or pid_alive(owner.get("pid")):
            continue  # another worker's trial (shared storage) or still running
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        say(f"reglab: trial {t.number} of {study.study_name} was left running by an ended session; marked failed")



