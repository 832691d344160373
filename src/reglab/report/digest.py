"""What the report shows, computed from a run directory's files alone.

:func:`digest` turns a :class:`reglab.results.Run` into per-method arrays
(seeds stacked), per-variant finals and per-method statistics. It imports
neither the engine nor matplotlib; figures and HTML read only the
:class:`Digest`.

Conventions:

* Errors are fractions in the files and percent (%) in the report.
* A metric curve is ``(n_seeds, n_epochs)``; epoch k (1-based) sits in
  column k-1. Epochs a variant did not train (after an early stop or a
  divergence: the engine writes NaN; not reached yet in a partial run) are
  NaN, so means over seeds use the seeds that trained.
* Every statistic over seeds comes from :mod:`reglab.stats`: mean, sample std
  and the two-sided 95% Student-t interval ``mean +- t_{0.975,n-1} s/sqrt(n)``;
  paired comparisons use per-seed differences, and the report judges them by the
  Holm-adjusted p over all pairs on a metric (``p_holm < 0.05``), not the raw p.
* Per-variant finals, per-method statistics and paired comparisons come from
  ``summary.json`` when the runner wrote it (see ``reglab.study.runner.build_summary``);
  for a partial run they are computed here, with the same definitions, from the
  epochs written so far.
* ``test_error`` / ``val_error`` without a qualifier are those of the model a
  method *returns*: its last epoch's, or for a method with early stopping the
  best-validation epoch's (the runner's ``returned_model``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from reglab import stats
from reglab.errors import ReglabError
from reglab.results import HEADLINE, Run

# Srivastava et al. 2014, JMLR 15:1929-1958, Table 9: MNIST test error (%),
# 784-1024-1024-2048-10 ReLU net. Keys are reglab's method names.
PAPER_TABLE9_MNIST = {
    "l2": 1.62,
    "l2+l1_late": 1.60,
    "l2+kl": 1.55,
    "max_norm": 1.35,
    "dropout+l2": 1.25,
    "dropout+max_norm": 1.05,
}
PAPER_CITATION = ("Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov (2014), "
                  "“Dropout: A Simple Way to Prevent Neural Networks from Overfitting”, "
                  "JMLR 15:1929–1958, Table 9 (784-1024-1024-2048-10 ReLU net)")

# Method colours, in the order methods get them: the Okabe–Ito colour-blind-safe palette without its
# black and yellow (black draws markers and edges; yellow is unreadable on white), then tab10 colours.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8C564B", "#9467BD",
           "#BCBD22", "#17BECF", "#7F3C8D", "#3969AC"]

# per-epoch metric columns of metrics_epoch.csv that the report plots or tabulates
EPOCH_METRICS = ("train_loss", "train_error", "val_loss", "val_error", "test_loss", "test_error",
                 "sparsity", "mean_activation", "lr", "momentum", "epoch_time_s")

# per-variant finals, in the order the main table shows them: key -> (label, unit, scale);
# the keys are summary.json's names
FINALS = {
    "test_error_last": ("Test error, last epoch", "%", 100.0),
    "test_error_best_val": ("Test error, best-val epoch", "%", 100.0),
    "best_val_error": ("Best val error", "%", 100.0),
    "last_train_loss": ("Final train loss", "nats", 1.0),
    "epochs_run": ("Epochs run", "", 1.0),
    "last_sparsity": ("Weight sparsity", "%", 100.0),
}


@dataclass
class MethodData:
    """Everything about one method, its seeds stacked along axis 0."""

    name: str
    color: str
    variants: list[int]                      # variant indices, in seed order
    seeds: list[int]
    hyperparameters: dict                    # of the first seed (the same for every seed)
    curves: dict[str, np.ndarray]            # metric -> (n_seeds, n_epochs), NaN where not trained
    iter_steps: np.ndarray                   # (S,) logged global steps (union over seeds)
    iter_loss_data: np.ndarray               # (n_seeds, S) minibatch cross-entropy, NaN where not logged
    iter_loss_penalty: np.ndarray            # (n_seeds, S) penalty term
    finals: list[dict]                       # one per seed: FINALS + HEADLINE keys, best_epoch, stop_epoch, diverged
    stats: dict[str, dict] = field(default_factory=dict)  # FINALS/HEADLINE key -> stats.describe(...) dict
    time_s: list[float] = field(default_factory=list)     # training-time samples of this method alone, seconds
    regularizers: list[dict] = field(default_factory=list)  # regularizers.json entries this method uses

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def l1_switch_fraction(self) -> float | None:
        """Fraction of all steps after which late L1 switches on, or None if L1 is always on/off."""
        hp = self.hyperparameters
        if _num(hp.get("l1")) > 0 and 0.0 < _num(hp.get("l1_start")) < 1.0:
            return _num(hp["l1_start"])
        return None

    @property
    def early_stopping(self) -> bool:
        return bool(self.hyperparameters.get("early_stopping", False))

    @property
    def returned_model(self) -> str:
        return "best-validation epoch" if self.early_stopping else "last epoch"


@dataclass
class Digest:
    run: Run
    study: str
    dataset: str                             # config data.name
    methods: list[MethodData]
    n_epochs: int                            # planned
    epochs_done: int                         # written to disk
    steps_per_epoch: int | None              # from the iteration log, None if nothing was logged
    paired: list[dict]                       # {"a", "b", "test_error": cmp, "val_error": cmp}, cmp in fractions
    timing: dict                             # study_train_s, study_wall_s, sum_of_methods_alone_s, note (any None)
    warnings: list[str]                      # what could not be shown, and why
    schedule_flags: list[dict] = field(default_factory=list)  # see schedule_flags(): harmful schedule switches
    next_step: str | None = None             # summary.json's "next_step": the command the study suggests next

    @property
    def complete(self) -> bool:
        return self.run.complete

    @property
    def is_mnist(self) -> bool:
        return self.dataset == "mnist"

    @property
    def paper(self) -> dict[str, float]:
        """Table 9 values for the methods of this study (MNIST only)."""
        if not self.is_mnist:
            return {}
        return {m.name: PAPER_TABLE9_MNIST[m.name] for m in self.methods if m.name in PAPER_TABLE9_MNIST}


# ----------------------------------------------------------------------------

def _used_regularizers(run: Run, method: str) -> list[dict]:
    """The regularizers.json entries (name, formula, source, hyperparameters) that `method` uses;
    [] for a run written before that file existed."""
    record = getattr(run, "regularizers", None)
    entries = record.get("regularizers") if isinstance(record, dict) else None
    return [e for e in entries or [] if isinstance(e, dict) and method in (e.get("used_by") or [])
            and isinstance(e.get("name"), str) and isinstance(e.get("formula"), str)]


def digest(run: Run) -> Digest:
    """Assemble the report's view of `run`; raises ReglabError if its files do not fit together."""
    if not isinstance(run.variants, list) or not run.variants:
        raise ReglabError(f"{run.dir / 'variants.json'} lists no variants. Fix: point at a run directory "
                          "written by `reglab run`.")
    by_method: dict[str, list[dict]] = {}
    for v in run.variants:
        if not isinstance(v, dict) or not {"variant", "method", "seed"} <= set(v):
            raise ReglabError(f"{run.dir / 'variants.json'} has an entry without variant/method/seed: {v!r}. "
                              "Fix: point at a run directory written by `reglab run`.")
        by_method.setdefault(str(v["method"]), []).append(v)

    cfg = run.config if isinstance(run.config, dict) else {}
    n_epochs = int(cfg.get("n_epochs", 0) or 0)
    epoch_cols = run.epoch_rows
    epochs_done = int(epoch_cols["epoch"].max()) if _has_rows(epoch_cols) else 0
    summary = run.summary if isinstance(run.summary, dict) else {}
    summary_variants = {int(e["variant"]): e for e in summary.get("variants") or []
                        if isinstance(e, dict) and "variant" in e}
    summary_methods = summary.get("methods") if isinstance(summary.get("methods"), dict) else {}
    times, timing = _timing(run)

    methods: list[MethodData] = []
    warnings: list[str] = []
    for i, (name, vs) in enumerate(by_method.items()):
        vs = sorted(vs, key=lambda v: v["seed"])
        idx = [int(v["variant"]) for v in vs]
        curves = _curves(epoch_cols, idx, max(n_epochs, epochs_done))
        steps, loss_data, loss_pen = _iter_curves(run.iter_rows, idx)
        m = MethodData(name=name, color=PALETTE[i % len(PALETTE)], variants=idx, seeds=[int(v["seed"]) for v in vs],
                       hyperparameters=dict(vs[0].get("hyperparameters") or {}), curves=curves, iter_steps=steps,
                       iter_loss_data=loss_data, iter_loss_penalty=loss_pen, finals=[], time_s=times.get(name, []),
                       regularizers=_used_regularizers(run, name))
        for k, j in enumerate(idx):
            f = dict(summary_variants[j]) if j in summary_variants else _finals_from_rows(curves, k, m.hyperparameters)
            _complete_finals(f, curves, k)
            m.finals.append(f)
        stored = (summary_methods.get(name) or {}).get("stats") or {}
        for key in (*FINALS, *HEADLINE):
            stored_key = stored.get(key)
            m.stats[key] = stored_key if _is_describe(stored_key) else stats.describe(
                [_num(f.get(key), math.nan) for f in m.finals])
        m.stats["time_s"] = stats.describe(m.time_s)
        by_reason: dict[str, list[str]] = {}   # why (the engine's diverged_reason) -> seeds
        for s, f in zip(m.seeds, m.finals):
            if f.get("diverged"):
                by_reason.setdefault(f.get("diverged_reason") or "NaN/inf loss or weights", []).append(str(s))
        for reason, seeds in by_reason.items():
            warnings.append(f"{name}: seed(s) {', '.join(seeds)} diverged ({reason}) and are left out of its "
                            "statistics.")
        methods.append(m)

    if not _has_rows(epoch_cols):
        warnings.append("no epoch has finished yet: there are no curves or results to show.")
    if not run.analysis:
        warnings.append("analysis.npz is missing (it is written when training ends): no weight histograms, "
                        "hidden activations or decision boundaries.")
    if not times and run.complete:
        warnings.append("timing.json has no per-method training times.")

    steps_per_epoch = _steps_per_epoch(run.iter_rows)
    ds = run.dataset if isinstance(run.dataset, dict) else {}
    if steps_per_epoch is None and isinstance(ds.get("n_train"), int) and int(cfg.get("batch_size", 0) or 0) > 0:
        steps_per_epoch = math.ceil(ds["n_train"] / min(int(cfg["batch_size"]), ds["n_train"]))
    flags = schedule_flags(methods, steps_per_epoch, n_epochs) if steps_per_epoch else []
    return Digest(run=run, study=str(cfg.get("name", run.manifest.get("study", "?"))),
                  dataset=str((cfg.get("data") or {}).get("name", "?")), methods=methods, n_epochs=n_epochs,
                  epochs_done=epochs_done, steps_per_epoch=steps_per_epoch,
                  paired=_paired(methods, summary.get("comparisons")), timing=timing, warnings=warnings,
                  schedule_flags=flags,
                  next_step=summary.get("next_step") if isinstance(summary.get("next_step"), str) else None)


# ----------------------------------------------------------------------------
# schedule switches: did validation error rise after one?

def schedule_switches(hp: dict, steps_per_epoch: int, n_epochs: int) -> list[tuple[int, int, str]]:
    """The discrete schedule switches of a method: ``[(first step, its epoch, label)]``, in order.

    * late L1 (``0 < l1_start < 1``): on from the first step t > l1_start * T, T = all steps
      (as the engine);
    * a ``step`` learning-rate schedule: update t = k * lr_decay_steps + 1 is the first at
      lr0 * d^k, for every k with that step inside the run.
    Smooth schedules (exponential, inverse_t, momentum ramps) have no switch.
    """
    total = steps_per_epoch * n_epochs
    out = []
    l1, start = _num(hp.get("l1")), _num(hp.get("l1_start"))
    if l1 > 0 and 0.0 < start < 1.0:
        first = math.floor(start * total) + 1
        out.append((first, math.ceil(first / steps_per_epoch), f"L1 (λ₁ = {l1:g}) switched on at step {first:,}"))
    if hp.get("lr_schedule") == "step":
        T, d, lr = int(_num(hp.get("lr_decay_steps"), 0)), _num(hp.get("lr_decay"), 1.0), _num(hp.get("lr"), 0.0)
        k = 1
        while T > 0 and d != 1.0 and k * T + 1 <= total:
            first = k * T + 1
            out.append((first, math.ceil(first / steps_per_epoch),
                        f"learning-rate step to {lr * d ** k:.3g} at step {first:,}"))
            k += 1
    return sorted(out)


def schedule_flags(methods: list[MethodData], steps_per_epoch: int, n_epochs: int) -> list[dict]:
    """Methods whose validation error rose by more than its seed noise after a schedule switch.

    For a switch in epoch e (its first step inside epoch e), *before* is each seed's validation
    error at epoch e - 1 (the last one entirely before it) and *after* at the end of the window
    the switch governs: the epoch before the next switch's epoch, or the last epoch written. The
    rise is the mean over seeds of after - before (paired by seed); the seed noise is the sample
    standard deviation over seeds of the validation error at epoch e - 1. Flagged when the rise
    exceeds the noise; with one seed there is no noise estimate and nothing is flagged.
    Errors are fractions; the dicts: method, switch (label), epoch, before_epoch, after_epoch,
    rise, noise, n.
    """
    out = []
    for m in methods:
        val = m.curves["val_error"]                       # (n_seeds, n_epochs)
        switches = [sw for sw in schedule_switches(m.hyperparameters, steps_per_epoch, n_epochs) if sw[1] >= 2]
        written = np.flatnonzero(np.isfinite(val).any(axis=0))
        if not switches or len(written) == 0:
            continue
        last = int(written[-1]) + 1
        for i, (_, epoch, label) in enumerate(switches):
            following = [e for _, e, _ in switches[i + 1:] if e > epoch]
            after_epoch = min(following[0] - 1 if following else last, last)
            if after_epoch < epoch:
                continue
            before, after = val[:, epoch - 2], val[:, after_epoch - 1]
            ok = np.isfinite(before) & np.isfinite(after)
            if ok.sum() < 2:
                continue
            rise = float(np.mean(after[ok] - before[ok]))
            noise = float(np.std(before[ok], ddof=1))
            if rise > noise:
                out.append({"method": m.name, "switch": label, "epoch": epoch, "before_epoch": epoch - 1,
                            "after_epoch": after_epoch, "rise": rise, "noise": noise, "n": int(ok.sum())})
    return out


def _num(x, default: float = 0.0) -> float:
    """A JSON number (or "inf"/"nan" string, or None) as a float."""
    if x is None:
        return default
    try:
        return float(x)
    except (TypeError, ValueError):
        return default


def _is_describe(d) -> bool:
    return isinstance(d, dict) and {"n", "mean", "ci95", "ci95_half_width", "values"} <= set(d)


def _has_rows(cols: dict[str, np.ndarray]) -> bool:
    return bool(cols) and "epoch" in cols and len(cols["epoch"]) > 0


def _curves(cols: dict[str, np.ndarray], variants: list[int], n_cols: int) -> dict[str, np.ndarray]:
    out = {k: np.full((len(variants), n_cols), np.nan) for k in EPOCH_METRICS}
    if not _has_rows(cols) or n_cols == 0:
        return out
    # the engine writes NaN metrics for epochs a variant did not train; a diverged row is dropped whole
    mask = ~cols["diverged"].astype(bool) if "diverged" in cols else np.ones(len(cols["epoch"]), dtype=bool)
    epoch = cols["epoch"].astype(int)
    variant = cols["variant"].astype(int)
    for k, v in enumerate(variants):
        rows = np.flatnonzero(mask & (variant == v))
        for name in EPOCH_METRICS:
            if name in cols and cols[name].dtype != object:
                out[name][k, epoch[rows] - 1] = cols[name][rows]
    return out


def _iter_curves(cols: dict[str, np.ndarray], variants: list[int]):
    if not cols or "step" not in cols or len(cols["step"]) == 0 or "loss_data" not in cols:
        empty = np.full((len(variants), 0), np.nan)
        return np.zeros(0, dtype=np.int64), empty, empty.copy()
    variant = cols["variant"].astype(int)
    steps = np.unique(cols["step"][np.isin(variant, variants)]).astype(np.int64)
    data = np.full((len(variants), len(steps)), np.nan)
    pen = np.full((len(variants), len(steps)), np.nan)
    for k, v in enumerate(variants):
        rows = np.flatnonzero(variant == v)
        pos = np.searchsorted(steps, cols["step"][rows])
        data[k, pos] = cols["loss_data"][rows]
        if "loss_penalty" in cols:
            pen[k, pos] = cols["loss_penalty"][rows]
    return steps, data, pen


def _steps_per_epoch(cols: dict[str, np.ndarray]) -> int | None:
    """Largest step logged in the first epoch: the steps per epoch when every step is logged."""
    if not cols or "step" not in cols or len(cols["step"]) == 0:
        return None
    first = cols["step"][cols["epoch"] == cols["epoch"].min()]
    return int(first.max()) if len(first) else None


def _nanlast(row: np.ndarray) -> float:
    """Last finite value of a 1-D array (NaN if none)."""
    idx = np.flatnonzero(np.isfinite(row))
    return float(row[idx[-1]]) if len(idx) else math.nan


def _finals_from_rows(curves: dict[str, np.ndarray], k: int, hp: dict) -> dict:
    """A variant's finals from its epoch rows (a partial run), with the engine's definitions.

    The best-validation epoch is the last one whose monitored value (the method's ``monitor``,
    val_loss by default) improved on the best so far by more than ``min_delta``.
    """
    val, test = curves["val_error"][k], curves["test_error"][k]
    monitored = curves[str(hp.get("monitor", "val_loss"))][k]
    min_delta = _num(hp.get("min_delta"))
    best, best_value = None, math.inf
    for e, x in enumerate(monitored):
        if np.isfinite(x) and x < best_value - min_delta:
            best, best_value = e, float(x)
    f = {"test_error_last": _nanlast(test), "last_val_error": _nanlast(val), "diverged": False,
         "stop_epoch": None, "best_epoch": None, "best_val_error": math.nan, "test_error_best_val": math.nan}
    if best is not None:
        f.update(best_epoch=best + 1, best_val_error=float(val[best]), test_error_best_val=float(test[best]))
    early_stopping = bool(hp.get("early_stopping", False))
    f["test_error"] = f["test_error_best_val"] if early_stopping else f["test_error_last"]
    f["val_error"] = f["best_val_error"] if early_stopping else f["last_val_error"]
    return f


def _complete_finals(f: dict, curves: dict[str, np.ndarray], k: int) -> None:
    """Fill what summary.json does not carry (epochs run) or a partial run lacks, from the epoch rows."""
    trained = np.isfinite(curves["val_error"][k]) | np.isfinite(curves["train_loss"][k])
    f["epochs_run"] = float(trained.sum())
    if "last_train_loss" not in f:
        f["last_train_loss"] = _nanlast(curves["train_loss"][k])
    if "last_sparsity" not in f:
        f["last_sparsity"] = _nanlast(curves["sparsity"][k])
    if f.get("diverged"):
        for key in (*HEADLINE, "test_error_last", "test_error_best_val", "best_val_error", "last_train_loss"):
            f[key] = math.nan


def _timing(run: Run) -> tuple[dict[str, list[float]], dict]:
    """Per-method training-time samples (seconds) and the study's times, from timing.json.

    The runner times each method's variants alone and estimates the time the method would have
    taken alone in the study (``methods_alone[name].estimated_alone_s``), once per timing repeat
    (``repeats_estimated_alone_s``: each repeat is one sample). Runs written before repeats existed
    give one sample per timed epoch (``timed_epoch_s``) or the single estimate. The report shows
    the median and the range [min, max] of the samples (:func:`median_range`).
    """
    t = run.timing if isinstance(run.timing, dict) else {}
    out: dict[str, list[float]] = {}
    for name, entry in (t.get("methods_alone") or {}).items():
        if not isinstance(entry, dict) or entry.get("estimated_alone_s") is None:
            continue
        repeats = entry.get("repeats_estimated_alone_s")
        per_epoch = entry.get("timed_epoch_s")
        if isinstance(repeats, list) and repeats:
            out[name] = [float(x) for x in repeats]
        elif isinstance(per_epoch, list) and len(per_epoch) > 1 and entry.get("timed_steps"):
            steps_per_timed_epoch = float(entry["timed_steps"]) / len(per_epoch)
            out[name] = [float(s) / steps_per_timed_epoch * float(entry["steps_in_study"]) for s in per_epoch]
        else:
            out[name] = [float(entry["estimated_alone_s"])]
    study = {key: (float(t[key]) if isinstance(t.get(key), (int, float)) else None)
             for key in ("study_train_s", "study_wall_s", "sum_of_methods_alone_s", "batching_speedup")}
    study["note"] = str(t.get("methods_alone_note", "")) if out else ""
    return out, study


def _paired(methods: list[MethodData], stored: list | None) -> list[dict]:
    """Every pair of methods on the returned model's test and val error, paired by seed (A - B, fractions),
    each with its raw ``p_value`` and the Holm-adjusted ``p_holm`` over all pairs on that metric.

    The runner's comparisons are used when summary.json has them; otherwise (a partial run) they
    are computed with the same function, :func:`reglab.stats.paired_comparison`.
    """
    stored_by = {}
    for c in stored or []:
        if isinstance(c, dict) and c.get("metric") in HEADLINE:
            stored_by[(c["a"], c["b"], c["metric"])] = c
    out = []
    for i, a in enumerate(methods):
        for b in methods[i + 1:]:
            common = [s for s in a.seeds if s in b.seeds]
            row = {"a": a.name, "b": b.name}
            for metric in HEADLINE:
                if (a.name, b.name, metric) in stored_by:
                    row[metric] = stored_by[(a.name, b.name, metric)]
                    continue
                xa = [_num(a.finals[a.seeds.index(s)].get(metric), math.nan) for s in common]
                xb = [_num(b.finals[b.seeds.index(s)].get(metric), math.nan) for s in common]
                row[metric] = stats.paired_comparison(xa, xb)
            out.append(row)
    # the pairs on one metric are one family: Holm-adjust it (summary.json of a run written before
    # p_holm existed, or a partial run, gets it here with the runner's definition)
    for metric in HEADLINE:
        family = [row[metric] for row in out]
        if not all("p_holm" in c for c in family):
            for row, c in zip(out, stats.holm_adjust(family)):
                row[metric] = c
    return out


def median_range(samples: list[float]) -> tuple[float, float, float] | None:
    """(median, min, max) of the finite samples; None when there are none."""
    xs = [float(x) for x in samples if x is not None and math.isfinite(float(x))]
    if not xs:
        return None
    return float(np.median(xs)), min(xs), max(xs)


def paired_curve_difference(a: MethodData, b: MethodData, metric: str) -> np.ndarray:
    """(n_common, n_epochs): ``a``'s curve minus ``b``'s for each seed both have (in ``a``'s seed order),
    NaN where either did not train that epoch; (0, n_epochs) when they share no seed."""
    common = [s for s in a.seeds if s in b.seeds]
    ca, cb = a.curves[metric], b.curves[metric]
    n = min(ca.shape[1], cb.shape[1])
    if not common:
        return np.zeros((0, n))
    return np.stack([ca[a.seeds.index(s), :n] - cb[b.seeds.index(s), :n] for s in common])


def band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column mean and 95% t-interval over rows (seeds), ignoring NaN.

    Columns with one finite value get a zero-width band; with none, NaN.
    """
    n_cols = values.shape[1]
    mean = np.full(n_cols, np.nan)
    lo = np.full(n_cols, np.nan)
    hi = np.full(n_cols, np.nan)
    finite = np.isfinite(values)
    counts = finite.sum(axis=0)
    for n in np.unique(counts):
        if n == 0:
            continue
        cols = np.flatnonzero(counts == n)
        x = np.where(finite[:, cols], values[:, cols], 0.0)
        m = x.sum(axis=0) / n
        mean[cols] = m
        if n < 2:
            lo[cols] = hi[cols] = m
            continue
        s = np.sqrt((np.where(finite[:, cols], values[:, cols] - m, 0.0) ** 2).sum(axis=0) / (n - 1))
        half = stats.t_quantile(0.5 + stats.CONFIDENCE / 2.0, n - 1) * s / math.sqrt(n)
        lo[cols], hi[cols] = m - half, m + half
    return mean, lo, hi
