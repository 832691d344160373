"""Where batched models train: in this process, or as Ray tasks on a cluster.

A *shard* is one batched model: a :class:`~reglab.config.StudyConfig` (for a
tune, its methods are trial methods). An executor advances a set of shards by
``n`` epochs at a time and hands back each shard's :class:`EpochRecord` s, so
that the caller can report to Optuna and prune between calls:

    executor.open(dataset)
    steps = executor.advance({"key": cfg, ...}, n_epochs=1)   # key -> ShardStep
    executor.release("key")                                     # drop a shard's state
    executor.close()

* :class:`LocalExecutor` keeps one live ``Trainer`` per shard and trains the
  shards one after another in this process.
* :class:`RayExecutor` runs every shard's chunk of epochs as a Ray task; the
  shards of one call run in parallel. A task builds a ``Trainer``, loads the
  shard's state from the previous chunk (``Trainer.state_dict()``, which the
  engine guarantees continues bit-identically), trains, and returns the records
  and the new state; the state stays in Ray's object store and goes straight
  to the next task. A worker that dies mid-task is retried from the same
  input state (``max_retries``); a task that still fails makes its shard
  fail, and the caller marks that shard's trials failed and carries on.

Results do not depend on the executor: a variant (method, seed) gets the same
initial weights, dropout masks and minibatch order whatever else shares its
batched model, and each task sets its torch thread count explicitly.

:func:`run_study_sharded` trains a whole study through an executor (e.g. one
Ray task per seed) and writes the standard run directory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from reglab.config import StudyConfig
from reglab.data.dataset import Dataset
from reglab.errors import ReglabError

EXECUTORS = ("local", "ray")
DEFAULT_RAY_CPUS = 2        # CPUs of the local Ray instance started when no --address is given
DEFAULT_MAX_RETRIES = 2     # times a task is re-run after its worker died


@dataclass
class ShardStep:
    """What one call to ``advance`` produced for one shard."""

    records: list = field(default_factory=list)   # EpochRecord per epoch trained in this call
    done: bool = False                            # the shard's trainer is done (all epochs, or all stopped)
    final: dict | None = None                     # when done and asked for: final_summary and analysis
    wall_s: float = 0.0                           # seconds of training in this call
    error: str | None = None                      # set when the shard failed; the rest is then empty


def train_chunk(cfg: StudyConfig, dataset: Dataset, state: dict | None, n_epochs: int, threads: int | None,
                want_final: bool = False) -> tuple[ShardStep, dict | None]:
    """Build a Trainer for `cfg`, restore `state`, train up to `n_epochs` epochs; return (step, new state).

    This is the body of every Ray task (and of nothing else: the local executor keeps its
    trainers alive instead). `threads` sets torch's intra-op thread count, so that a task's
    arithmetic does not depend on how many CPUs its worker happens to see.
    """
    from reglab.engine import Trainer

    if threads is not None:
        torch.set_num_threads(threads)
    trainer = Trainer(cfg, dataset)
    if state is not None:
        trainer.load_state_dict(state)
    step = _train(trainer, n_epochs, want_final)
    return step, (None if step.done else trainer.state_dict())


def _train(trainer, n_epochs: int, want_final: bool) -> ShardStep:
    t0 = time.perf_counter()
    records = []
    for _ in range(n_epochs):
        if trainer.done:
            break
        records.append(trainer.train_epoch())
    step = ShardStep(records=records, done=bool(trainer.done), wall_s=time.perf_counter() - t0)
    if step.done and want_final:
        step.final = {"summary": trainer.final_summary(), "analysis": trainer.analysis()}
    return step


# ----------------------------------------------------------------------------
# local

class LocalExecutor:
    """Trains shards in this process, one after another, keeping each shard's Trainer alive."""

    name = "local"

    def __init__(self, threads: int | None = None):
        """`threads`: torch intra-op threads while training (None: leave torch's setting)."""
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ReglabError(f"--threads must be a whole number >= 1; got {threads!r}.")
        self.threads = threads
        self._dataset: Dataset | None = None
        self._trainers: dict[str, object] = {}

    def describe(self) -> dict:
        return {"name": self.name, "threads": self.threads or torch.get_num_threads()}

    def open(self, dataset: Dataset) -> None:
        self._dataset = dataset

    def advance(self, shards: dict[str, StudyConfig], n_epochs: int, want_final: bool = False) -> dict[str, ShardStep]:
        from reglab.engine import Trainer

        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            out = {}
            for key, cfg in shards.items():
                if key not in self._trainers:
                    self._trainers[key] = Trainer(cfg, self._dataset)
                out[key] = _train(self._trainers[key], n_epochs, want_final)
            return out
        finally:
            torch.set_num_threads(before)

    def release(self, key: str) -> None:
        self._trainers.pop(key, None)

    def close(self) -> None:
        self._trainers.clear()
        self._dataset = None


# ----------------------------------------------------------------------------
# Ray

class RayExecutor:
    """Runs each shard's chunk of epochs as a Ray task, the shards of one call in parallel.

    Args:
        address: a running cluster ("auto", "HOST:PORT" or "ray://HOST:PORT"); None starts a
            local instance with `num_cpus` CPUs (and stops it on close).
        threads: torch threads (and Ray CPUs) per task.
        max_retries: re-runs of a task whose worker died (Ray system failures); an exception
            raised by the training code itself is not retried (it would fail the same way).
        task: the function a task runs (default :func:`train_chunk`; tests wrap it to kill a
            worker mid-task).
        plugins: the study's plugin modules (``StudyConfig.plugins``: ``plugins = [...]``, ``--plugin``).
            Their files are shipped to the workers with the Ray instance this executor starts
            (``runtime_env`` ``py_modules``), so a worker's Trainer imports them by name as ``reglab run``
            does, whatever its sys.path, on a local instance or a cluster. A Ray started before must
            ship them itself: a worker that cannot import one is one ReglabError now, not failed trials.
            Entry-point plugins are installed packages: the workers' environment must have them.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int = DEFAULT_RAY_CPUS, threads: int = 1,
                 max_retries: int = DEFAULT_MAX_RETRIES, task: Callable = train_chunk,
                 plugins: tuple[str, ...] = ()):
        try:
            import ray
        except ImportError:
            raise ReglabError("--executor ray needs Ray, which is not installed. "
                              "Fix: pip install 'reglab[ray]' (or pip install 'ray[default]').") from None
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ReglabError(f"--threads must be a whole number >= 1; got {threads!r}.")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ReglabError(f"--max-retries must be a whole number >= 0; got {max_retries!r}.")
        self._ray = ray
        self.address = address
        self.threads = threads
        self.max_retries = max_retries
        self._owns_ray = False
        if ray.is_initialized():
            _check_workers_import(ray, plugins)
        else:
            from reglab.engine.registry import plugin_paths
            shipped = plugin_paths(plugins)
            try:
                if address:
                    import reglab
                    # ship this reglab's source to the workers, so that the cluster runs the same code
                    shipped.insert(0, str(Path(reglab.__file__).parent))
                    ray.init(address=address, log_to_driver=False, runtime_env={"py_modules": shipped})
                else:
                    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                             **({"runtime_env": {"py_modules": shipped}} if shipped else {}))
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise ReglabError(f"cannot connect to the Ray cluster at {address!r} ({str(e).splitlines()[0]}). "
                                  "Fix: start one with `ray start --head` and pass its address, "
                                  "or leave out --address for a local instance.") from None
            self._owns_ray = True
        self._remote = ray.remote(task).options(num_cpus=threads, num_returns=2, max_retries=max_retries,
                                               retry_exceptions=False)
        self._dataset_ref = None
        self._states: dict[str, object] = {}   # shard key -> ObjectRef of its trainer state (None: fresh)

    def describe(self) -> dict:
        return {"name": self.name, "address": self.address or "local instance", "threads_per_task": self.threads,
                "max_retries": self.max_retries,
                "cluster_cpus": self._ray.cluster_resources().get("CPU") if self._ray.is_initialized() else None}

    def open(self, dataset: Dataset) -> None:
        self._dataset_ref = self._ray.put(dataset)  # one copy in the object store, shared by all tasks

    def advance(self, shards: dict[str, StudyConfig], n_epochs: int, want_final: bool = False) -> dict[str, ShardStep]:
        ray = self._ray
        pending = {}
        for key, cfg in shards.items():
            step_ref, state_ref = self._remote.remote(cfg, self._dataset_ref, self._states.get(key), n_epochs,
                                                      self.threads, want_final)
            pending[key] = (step_ref, state_ref)
        out = {}
        for key, (step_ref, state_ref) in pending.items():
            try:
                out[key] = ray.get(step_ref)
                self._states[key] = state_ref
            except ray.exceptions.RayError as e:
                out[key] = ShardStep(error=_ray_error_line(e, self.max_retries))
                self._states.pop(key, None)
                try:
                    ray.get(state_ref)  # collected, so that Ray does not log it as an unhandled error
                except ray.exceptions.RayError:
                    pass
        return out

    def release(self, key: str) -> None:
        self._states.pop(key, None)

    def close(self) -> None:
        self._states.clear()
        self._dataset_ref = None
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns_ray = False


def _check_workers_import(ray, plugins: tuple[str, ...]) -> None:
    """One line when a worker of a Ray started before this executor cannot import a plugin module
    (one small task), rather than every trial failing the same way."""
    if not plugins:
        return
    import importlib.util

    missing = ray.get(ray.remote(lambda modules: [m for m in modules if importlib.util.find_spec(m) is None])
                      .options(num_cpus=0).remote(list(plugins)))
    if missing:
        raise ReglabError(f"the Ray workers cannot import plugin module(s) {', '.join(missing)} (Ray was started "
                          "before reglab, without them). Fix: let reglab start Ray, or ship them in ray.init("
                          "runtime_env={'py_modules': [...]}), or install them where the workers run.")


def _ray_error_line(e: Exception, max_retries: int) -> str:
    """One short line: what went wrong in a task (its own exception, or its worker's death)."""
    ray = __import__("ray")
    if isinstance(e, ray.exceptions.RayTaskError):
        cause = e.cause if getattr(e, "cause", None) is not None else e
        text = str(cause).strip().splitlines()
        return f"the task raised {type(cause).__name__}" + (f": {text[-1][:200]}" if text else "")
    retries = f"{max_retries} retr{'y' if max_retries == 1 else 'ies'}"
    if isinstance(e, ray.exceptions.WorkerCrashedError):
        return f"its worker died, also on {retries}" if max_retries else "its worker died (no retries allowed)"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__} after {retries}" + (f": {text[0][:200]}" if text else "")


def make_executor(name: str, *, address: str | None = None, threads: int | None = None,
                  max_retries: int = DEFAULT_MAX_RETRIES, plugins: tuple[str, ...] = ()):
    """The executor named on the command line; `plugins`: the study's plugin modules (Ray ships them)."""
    if name == "local":
        if address:
            raise ReglabError("--address applies to --executor ray only. Fix: add --executor ray.")
        return LocalExecutor(threads=threads)
    if name == "ray":
        return RayExecutor(address=address, threads=threads or 1, max_retries=max_retries, plugins=plugins)
    raise ReglabError(f"--executor must be one of {', '.join(EXECUTORS)}; got {name!r}.")


# ----------------------------------------------------------------------------
# a whole study through an executor

def split_study(cfg: StudyConfig, shard_by: Sequence[str]) -> list[tuple[str, StudyConfig]]:
    """The study cut into batched models by "method" and/or "seed" (key, sub-study)."""
    for k in shard_by:
        if k not in ("method", "seed"):
            raise ReglabError(f"a study can be split by 'method' and/or 'seed'; got {k!r}.")
    method_groups = [(m,) for m in cfg.methods] if "method" in shard_by else [cfg.methods]
    seed_groups = [(s,) for s in cfg.seeds] if "seed" in shard_by else [cfg.seeds]
    out = []
    for ms in method_groups:
        for ss in seed_groups:
            key = "/".join(([ms[0].name] if "method" in shard_by else []) +
                           ([f"seed{ss[0]}"] if "seed" in shard_by else [])) or "all"
            out.append((key, cfg.replace(methods=ms, seeds=ss)))
    return out


@dataclass
class MergedRecord:
    """An EpochRecord of the whole study assembled from its shards' records (same fields)."""

    epoch: int
    steps: np.ndarray
    loss_data: np.ndarray          # (S, V)
    loss_penalty: np.ndarray       # (S, V)
    metrics: dict[str, np.ndarray]  # each (V,)


def merge_records(cfg: StudyConfig, parts: list[tuple[StudyConfig, list]]) -> list[MergedRecord]:
    """Per-epoch records of the whole study, variants in ``cfg.variants()`` order.

    A shard whose trainer finished early (every variant stopped or diverged) has no records
    for the later epochs. Its variants then get what the engine reports for a variant that
    does not train: NaN for every number (losses too), ``active`` false, ``diverged`` as
    it last was. Nothing is invented.
    """
    index = {(m.name, s): v for v, m, s in cfg.variants()}
    n_epochs = max(len(recs) for _, recs in parts)
    out = []
    for e in range(n_epochs):
        first = next(recs[e] for _, recs in parts if len(recs) > e)
        n_steps = len(first.steps)
        metrics = {k: np.full(cfg.n_variants, np.nan) if np.asarray(v).dtype.kind == "f"
                   else np.zeros(cfg.n_variants, dtype=np.asarray(v).dtype) for k, v in first.metrics.items()}
        loss_data = np.full((n_steps, cfg.n_variants), np.nan)
        loss_penalty = np.full((n_steps, cfg.n_variants), np.nan)
        for sub, recs in parts:
            if len(recs) <= e:  # finished earlier: keep NaN / false, carry `diverged`
                for v, m, s in sub.variants():
                    if "diverged" in metrics and recs:
                        metrics["diverged"][index[(m.name, s)]] = np.asarray(recs[-1].metrics["diverged"])[v]
                continue
            rec = recs[e]
            if not np.array_equal(rec.steps, first.steps):
                raise ReglabError("shards logged different steps; they cannot be merged. "
                                  "Fix: this is a bug; please report it with the config.")
            for v, m, s in sub.variants():
                g = index[(m.name, s)]
                for k in metrics:
                    metrics[k][g] = np.asarray(rec.metrics[k])[v]
                loss_data[:, g] = np.asarray(rec.loss_data)[:, v]
                loss_penalty[:, g] = np.asarray(rec.loss_penalty)[:, v]
        out.append(MergedRecord(epoch=first.epoch, steps=np.asarray(first.steps), loss_data=loss_data,
                                loss_penalty=loss_penalty, metrics=metrics))
    return out


def run_study_sharded(cfg: StudyConfig, dataset: Dataset, executor, *, out_dir: str | Path,
                      shard_by: Sequence[str] = ("seed",), command: str | None = None,
                      say: Callable[[str], None] = lambda s: None) -> Path:
    """Train `cfg` as one batched model per shard through `executor`; write the standard run directory.

    The run directory has the files ``reglab run`` writes (config, variants, dataset,
    environment, per-epoch and per-step metrics, summary, analysis, timing, manifest), so
    ``reglab report`` reads it unchanged; checkpoints are not written (a sharded study is
    re-run, not resumed).
    """
    from reglab.results import RunLock, RunWriter, MANIFEST
    from reglab.study import runner

    run_dir = Path(out_dir)
    parts = split_study(cfg, shard_by)
    t0 = time.perf_counter()
    with RunLock(run_dir):
        if (run_dir / MANIFEST).exists():
            raise ReglabError(f"{run_dir} already holds a run. Fix: choose another --out.")
        writer = RunWriter(run_dir)
        env = runner.environment(cfg.device)
        env["executor"] = executor.describe()
        runner.start_run(writer, cfg, dataset, env, command=command)
        say(f"reglab: study {cfg.name!r} as {len(parts)} shard(s) on executor {executor.name} -> {run_dir}")
        executor.open(dataset)
        try:
            steps = executor.advance({key: sub for key, sub in parts}, n_epochs=cfg.n_epochs, want_final=True)
        except BaseException:
            writer.update_manifest(status="interrupted")
            raise
        finally:
            executor.close()
        failed = {k: s.error for k, s in steps.items() if s.error is not None}
        if failed:
            writer.update_manifest(status="interrupted", failed_shards=failed)
            raise ReglabError(f"{len(failed)} shard(s) failed: " +
                              "; ".join(f"{k}: {e}" for k, e in failed.items()) +
                              ". Fix: check the cluster's workers and run the study again.")
        records = merge_records(cfg, [(sub, steps[key].records) for key, sub in parts])
        variants = cfg.variants()
        for rec in records:
            writer.write_epoch(rec.epoch, runner.epoch_rows(rec, variants), runner.iter_rows(rec))

        def timing(summary: dict) -> dict:
            return {"study_wall_s": time.perf_counter() - t0,
                    "executor": executor.describe(),
                    "shards": {key: {"train_wall_s": steps[key].wall_s, "n_variants": sub.n_variants}
                               for key, sub in parts},
                    "note": "each shard trained as its own batched model; shard times overlap when tasks run "
                            "in parallel"}

        # the sequence `reglab run` ends with: consolidate, summarize, time, complete
        runner.complete_run(writer, cfg, finals=_merge_finals(cfg, [(sub, steps[key].final["summary"])
                                                                    for key, sub in parts]),
                            analysis=_merge_analysis(cfg, [(sub, steps[key].final["analysis"]) for key, sub in parts]),
                            timing=timing, epochs_done=records[-1].epoch, say=say)
        runner.finish_run(writer, run_dir, report=False, say=say)   # the shards go; the manifest says so
    say(f"reglab: results in {run_dir}")
    return run_dir


def _merge_finals(cfg: StudyConfig, parts: list[tuple[StudyConfig, object]]) -> list[dict]:
    """Trainer.final_summary() of each shard, as one dict per variant of the whole study."""
    index = {(m.name, s): v for v, m, s in cfg.variants()}
    out: list[dict | None] = [None] * cfg.n_variants
    for sub, finals in parts:
        for v, m, s in sub.variants():
            row = _variant_dict(finals, v)
            if "variant" in row:
                row["variant"] = index[(m.name, s)]  # the shard's own index -> the study's
            out[index[(m.name, s)]] = row
    return out


def _variant_dict(finals, v: int) -> dict:
    """final_summary() is either per-variant dicts (a list, or {"variants": [...]}) or {key: (V,) array}."""
    if isinstance(finals, dict) and "variants" in finals:
        finals = finals["variants"]
    if isinstance(finals, (list, tuple)):
        return dict(finals[v])
    return {k: np.asarray(val)[v].item() for k, val in finals.items()}


# Trainer.analysis() arrays that describe the data or the bins, not a variant (see its docstring)
SHARED_ANALYSIS_KEYS = ("weight_hist_edges", "grid_xx", "grid_yy", "x_train", "y_train", "x_val", "y_val")


def _merge_analysis(cfg: StudyConfig, parts: list[tuple[StudyConfig, dict]]) -> dict[str, np.ndarray]:
    """Trainer.analysis() of the shards as one.

    Per-variant arrays (leading axis = the shard's number of variants) are placed at the
    study-wide variant indices; the arrays the engine documents as shared (bin edges, the
    decision grid, the data points) are the same in every shard and are taken once.
    """
    if len(parts) == 1:
        return {k: np.asarray(v) for k, v in parts[0][1].items()}
    index = {(m.name, s): v for v, m, s in cfg.variants()}
    out: dict[str, np.ndarray] = {}
    for k in parts[0][1]:
        arrays = [(sub, np.asarray(a[k])) for sub, a in parts]
        first = arrays[0][1]
        per_variant = all(a.ndim >= 1 and a.shape[0] == sub.n_variants for sub, a in arrays)
        if k in SHARED_ANALYSIS_KEYS or not per_variant:
            if not all(a.shape == first.shape and np.array_equal(a, first, equal_nan=a.dtype.kind == "f")
                       for _, a in arrays):
                raise ReglabError(f"analysis array {k!r} differs between shards but is not per variant. "
                                  "Fix: this is a bug; please report it with the config.")
            out[k] = first
            continue
        merged = np.empty((cfg.n_variants,) + first.shape[1:], dtype=first.dtype)
        for sub, a in arrays:
            for v, m, s in sub.variants():
                merged[index[(m.name, s)]] = a[v]
        out[k] = merged
    return out
