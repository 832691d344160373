"""The data-size study: the same methods trained on class-balanced training subsets of several sizes.

``reglab run mnist --preset datasize`` answers *when does a regularizer pay off*: every method
(and ``none``, no regularization, the reference) with every seed, on training subsets of
n = 500 ... 50,000 examples, validated and tested on the same whole validation and test splits.

Design:

* **Equal updates.** Every size trains ``n_steps`` minibatch updates, not to early stopping:
  the compute is the same at every n, so the x axis changes only the data, and no stopping
  rule (itself a regularizer) acts on ``none``. Small subsets are therefore trained for many
  passes -- the overfitting the regularizers are there to prevent.
* **One batched run per size.** The engine trains every variant of a study as one batched model
  on one training set (one minibatch order for all), so each size is an ordinary run directory
  (``n00500/``, ...), written, resumable and reportable like any other; the sizes run one after
  another. A subset of n examples is tiled ``epoch_examples / n`` times (``data.train_repeat``), so
  every size is evaluated every ``epoch_examples / batch_size`` updates rather than after each
  pass over a tiny set (which would spend most of the time evaluating).
* **Nested subsets.** ``data.train_per_class = k`` takes the first k examples of each class of
  the training split, so each subset contains the smaller ones; 0 is the whole split (50,000,
  not exactly balanced: MNIST's smallest class there has 4,506).

Files: ``<out>/datasize.json`` (what the study is, its sizes and their run directories, status)
and, when every size is done, ``<out>/datasize_summary.json``: per size and method the mean and
95% interval over seeds of the test error, the final training error (clean pass, no dropout) and
the generalization gap (test error - training error), and each method's *gain* over the reference
(reference test error - method test error, paired by seed) with Holm's correction over the
methods compared at that size.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from reglab import __version__
from reglab.config import StudyConfig
from reglab.errors import ReglabError
from reglab.results import RunLock, atomic_write_json, now_iso, read_json
from reglab.stats import describe, holm_adjust, paired_comparison

DATASIZE_FILE = "datasize.json"
DATASIZE_SUMMARY = "datasize_summary.json"
DATASIZE_FORMAT = "reglab-datasize"


@dataclass(frozen=True)
class DataSizeStudy:
    name: str                               # study label, e.g. "mnist-datasize"
    base: StudyConfig                       # net, optimizer, methods, seeds, batch; the data fields
                                            # train_per_class / train_repeat and n_epochs are set per size
    train_per_class: tuple[int, ...]        # training examples per class of each size; 0 = the whole split
    n_steps: int                            # minibatch updates at every size (equal budget), >= 1
    epoch_examples: int                     # examples per epoch of a tiled subset (evaluation interval x batch)
    reference: str = "none"                 # the method every gain is measured against

    def __post_init__(self) -> None:
        sizes = list(self.train_per_class)
        if not sizes or len(set(sizes)) != len(sizes) or any(not isinstance(k, int) or k < 0 for k in sizes):
            raise ReglabError(f"'train_per_class' must be distinct whole numbers >= 0; got {sizes}.")
        if self.n_steps < 1 or self.epoch_examples < 1:
            raise ReglabError(f"'n_steps' and 'epoch_examples' must be >= 1; got {self.n_steps}, {self.epoch_examples}.")
        if self.reference not in [m.name for m in self.base.methods]:
            raise ReglabError(f"the reference method {self.reference!r} is not among the methods "
                              f"{[m.name for m in self.base.methods]}. Fix: add a method named {self.reference!r}.")

    def size_config(self, per_class: int, n_train_full: int, n_classes: int) -> StudyConfig:
        """The run of one size: ``n_steps`` updates; a subset tiled to ``epoch_examples`` per epoch."""
        b = self.base.batch_size
        if per_class:
            n = per_class * n_classes
            if self.epoch_examples % n or self.epoch_examples % b:
                raise ReglabError(f"epoch_examples={self.epoch_examples} must be a multiple of the subset size "
                                  f"{n} and of the batch size {b}. Fix: choose sizes that divide it.")
            repeat, steps_per_epoch = self.epoch_examples // n, self.epoch_examples // b
        else:
            n, repeat, steps_per_epoch = n_train_full, 1, math.ceil(n_train_full / b)
        if self.n_steps % steps_per_epoch:
            raise ReglabError(f"n_steps={self.n_steps} is not a whole number of epochs of {steps_per_epoch} steps "
                              f"for the {n}-example size. Fix: make n_steps a multiple of {steps_per_epoch}.")
        data = dataclasses.replace(self.base.data, train_per_class=per_class, train_repeat=repeat)
        return self.base.replace(name=f"{self.name}-n{n}", data=data, n_epochs=self.n_steps // steps_per_epoch)

    def to_dict(self) -> dict:
        return {"name": self.name, "base": self.base.to_dict(), "train_per_class": list(self.train_per_class),
                "n_steps": self.n_steps, "epoch_examples": self.epoch_examples, "reference": self.reference}

    @classmethod
    def from_dict(cls, d: dict) -> DataSizeStudy:
        """From :meth:`to_dict`; the base study's plugins are loaded first, so its methods' plugin
        values read as in ``reglab run`` (reglab.engine.registry.study_from_dict)."""
        from reglab.engine.registry import study_from_dict
        return cls(name=d["name"], base=study_from_dict(d["base"]), train_per_class=tuple(d["train_per_class"]),
                   n_steps=int(d["n_steps"]), epoch_examples=int(d["epoch_examples"]),
                   reference=d.get("reference", "none"))

    def replace(self, **changes) -> DataSizeStudy:
        return dataclasses.replace(self, **changes)


def size_dir_name(n_train: int) -> str:
    return f"n{n_train:05d}"


def run_datasize(study: DataSizeStudy | None, *, out_dir: str | Path | None = None, data_dir=None, cache_dir=None,
                 resume: bool = False, quiet: bool = False, progress: bool = True,
                 allow_checksum_mismatch: bool = False, command: str | None = None, report: bool = True,
                 data=None) -> Path:
    """Run every size of `study` (one batched run directory each), then summarize and report.

    Resuming (``resume=True``, `study` None or equal to the stored one) skips the sizes that are
    complete and continues an interrupted one from its checkpoint.
    """
    from reglab.data import load_dataset
    from reglab.memory import check_memory
    from reglab.results import check_out_dir
    from reglab.study.runner import default_run_dir, run_study

    if resume:
        if out_dir is None:
            raise ReglabError("resume needs the run directory. Fix: reglab run --resume RUN_DIR.")
        root = Path(out_dir)
        try:
            stored = DataSizeStudy.from_dict(read_json(root / DATASIZE_FILE)["study"])
        except ReglabError as e:   # e.g. a plugin of its base study is not installed here
            raise ReglabError(f"cannot resume {root}: {e.lines[0]}") from None
        if study is not None and study.to_dict() != stored.to_dict():
            raise ReglabError(f"the study given differs from the one stored in {root / DATASIZE_FILE}. "
                              "Fix: resume with only --resume RUN_DIR.")
        study = stored
    else:
        if study is None:
            raise ReglabError("no study given. Fix: pass a DataSizeStudy (reglab.study.presets.get(..., 'datasize')).")
        root = Path(out_dir) if out_dir is not None else default_run_dir(study.name)
        if (root / DATASIZE_FILE).exists():
            raise ReglabError(f"{root} already holds a data-size study. Fix: --resume {root} to continue it, "
                              "or choose another --out.")
        if (root / "manifest.json").exists():
            raise ReglabError(f"{root} already holds a run. Fix: choose another --out for the data-size study.")
    from reglab.engine.registry import for_study
    for_study(study.base, probe=True)   # a bad plugin is one line now, before anything is written
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))

    if study.base.data.name == "table":
        # read once for every size; a resume checks it is the table the sizes already run began with
        from reglab.data.table import TableRead, read_table
        from reglab.study.runner import load_same_table
        given = data
        stored = next((read_json(p) for p in sorted(root.glob("n*/dataset.json"))), None) if resume else None
        data = load_same_table(stored, lambda: given if isinstance(given, TableRead)
                               else read_table(study.base.data, given))
    full = load_dataset(study.base.data, data_dir=data_dir, cache_dir=cache_dir,
                        allow_checksum_mismatch=allow_checksum_mismatch, table=data)
    n_full, n_classes = int(full.x_train.shape[0]), full.n_classes
    del full
    sizes = []
    for k in study.train_per_class:
        cfg = study.size_config(k, n_full, n_classes)
        n = k * n_classes if k else n_full
        sizes.append({"train_per_class": k, "n_train": n, "run": size_dir_name(n), "n_epochs": cfg.n_epochs,
                      "train_repeat": cfg.data.train_repeat, "cfg": cfg})
    sizes.sort(key=lambda s: s["n_train"])
    check_out_dir(root, "--resume" if resume else "--out")
    for s in sizes:
        check_memory(s["cfg"])   # before any size trains: the largest may not fit

    root.mkdir(parents=True, exist_ok=True)
    with RunLock(root):
        meta = read_json(root / DATASIZE_FILE) if resume else {
            "format": DATASIZE_FORMAT, "format_version": 1, "study": study.to_dict(), "created": now_iso(),
            "reglab_version": __version__, "command": command}
        meta.update(status="running", updated=now_iso(),
                    sizes=[{k: v for k, v in s.items() if k != "cfg"} for s in sizes])
        atomic_write_json(root / DATASIZE_FILE, meta)
        try:
            for s in sizes:
                sub = root / s["run"]
                done = (sub / "manifest.json").exists() and read_json(sub / "manifest.json").get("status") == "complete"
                if done:
                    say(f"reglab: {s['run']} ({s['n_train']} examples) is complete; skipped")
                    continue
                say(f"reglab: data size {s['n_train']} ({s['n_epochs']} epochs of {s['train_repeat']} x "
                    f"{s['n_train']} examples = {study.n_steps} updates)")
                run_study(s["cfg"], out_dir=sub, data_dir=data_dir, cache_dir=cache_dir,
                          resume=(sub / "config.json").exists(), quiet=quiet, progress=progress,
                          allow_checksum_mismatch=allow_checksum_mismatch, command=command,
                          time_methods=False, report=False, data=data)
        except BaseException as e:
            meta.update(status="interrupted", updated=now_iso())
            atomic_write_json(root / DATASIZE_FILE, meta)
            from reglab.engine.plugin_guard import PluginHookError
            if isinstance(e, PluginHookError):
                raise e.in_run(root) from None   # the study resumes as a whole, not size by size
            raise
        summary = summarize(root)
        atomic_write_json(root / DATASIZE_SUMMARY, summary)
        meta.update(status="complete", updated=now_iso())
        atomic_write_json(root / DATASIZE_FILE, meta)
    say(format_gain_table(summary))
    if report:
        from reglab.report import build_report
        say(f"reglab: report at {build_report(root)}")
    say(f"reglab: results in {root}")
    return root


# ----------------------------------------------------------------------------
# summary: per size and method, from the size runs' summary.json

def summarize(root: str | Path) -> dict:
    """Per size: each method's test error, final training error and gap (mean, std, 95% CI over seeds),
    and its gain over the reference, paired by seed, Holm-adjusted over that size's comparisons."""
    root = Path(root)
    meta = read_json(root / DATASIZE_FILE)
    reference = meta["study"].get("reference", "none")
    out_sizes = []
    for s in meta["sizes"]:
        summary = read_json(root / s["run"] / "summary.json")
        rows = summary["variants"]
        methods = list(summary["methods"])
        per_method = {}
        by_seed: dict[str, dict[int, dict]] = {m: {} for m in methods}
        for r in rows:
            by_seed[r["method"]][int(r["seed"])] = r
        for m in methods:
            test = [_f(r.get("test_error")) for r in by_seed[m].values()]
            train = [_f(r.get("train_error_final")) for r in by_seed[m].values()]
            per_method[m] = {"test_error": describe(test), "train_error": describe(train),
                             "gap": describe([t - tr for t, tr in zip(test, train)])}
        gains = []
        seeds = sorted(by_seed[reference])
        for m in methods:
            if m == reference:
                continue
            common = [sd for sd in seeds if sd in by_seed[m]]
            ref = [_f(by_seed[reference][sd].get("test_error")) for sd in common]
            mine = [_f(by_seed[m][sd].get("test_error")) for sd in common]
            gains.append({"method": m, "gain": f"{reference} - {m}", **paired_comparison(ref, mine)})
        out_sizes.append({"n_train": s["n_train"], "train_per_class": s["train_per_class"], "run": s["run"],
                          "methods": per_method, "gains": holm_adjust(gains)})
    return {"study": meta["study"]["name"], "reference": reference, "n_steps": meta["study"]["n_steps"],
            "units": "errors are fractions in [0, 1]",
            "statistics": "mean and 95% Student-t interval over seeds; gap = test error - final training error "
                          "(a clean pass over the size's training examples, no dropout); gain = reference "
                          "test error - method test error paired by seed, p_value the paired t-test, p_holm Holm's "
                          "adjustment over the methods compared at the same size",
            "sizes": out_sizes}


def _f(x) -> float:
    return math.nan if x is None else float(x)


def format_gain_table(summary: dict) -> str:
    """Plain text: each method's gain over the reference (pp) at each size; * = Holm-significant."""
    sizes = summary["sizes"]
    methods = [g["method"] for g in sizes[0]["gains"]] if sizes else []
    head = f"{'gain over ' + summary['reference'] + ' (pp)':<26}" + "".join(f"{s['n_train']:>10}" for s in sizes)
    lines = [head]
    for m in methods:
        cells = []
        for s in sizes:
            g = next((g for g in s["gains"] if g["method"] == m), None)
            if g is None or g["mean_difference"] is None:
                cells.append(f"{'n/a':>10}")
            else:
                star = "*" if g.get("significant_holm") else " "
                cells.append(f"{100 * g['mean_difference']:>+9.2f}{star}")
        lines.append(f"{m:<26}" + "".join(cells))
    lines.append("(mean over seeds of the paired difference; * Holm-adjusted p < 0.05 over the methods at that size)")
    return "\n".join(lines)
