"""Run a study: one batched Trainer for every (method, seed), written to a run directory.

The runner is the only place that joins the engine to the results on disk:

    config -> load_dataset -> Trainer (all variants at once) -> epoch by epoch:
        metrics shards (atomic) -> checkpoint every `checkpoint_every` epochs (atomic)
    -> final summary (per-variant finals, per-method mean/std/95% CI, paired comparisons)
    -> each method timed alone -> consolidated CSVs -> manifest "complete" -> report.

Resuming: the latest checkpoint holds the trainer's whole state (weights,
optimizer buffers, RNG states, early-stopping and KL state, step counter) and
the runner's own bookkeeping, so the epochs after it are recomputed exactly
as an uninterrupted run computes them; metric shards written after that
checkpoint are dropped first. The only columns that differ between a resumed
and an uninterrupted run are wall-clock times (``epoch_time_s``).

A kill at any moment leaves whole files only (every write is temp file +
``os.replace``) and a lock file whose owner is dead, which the next
``--resume`` takes over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import io
import math
import os
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from reglab import __version__
from reglab.config import MethodConfig, StudyConfig, study_from_dict, to_toml
from reglab.data.dataset import Dataset
from reglab.denormals import every_thread_flushes
from reglab.errors import ReglabError
from reglab.results import (HEADLINE, MANIFEST, REPORT_FILES, DamagedFiles, RunLock, RunWriter, shard_epoch, atomic_write_bytes,
                            atomic_write_text, check_out_dir, check_unchanged, now_iso, read_csv_columns, read_json,
                            recorded_digests)
from reglab.stats import describe, holm_adjust, paired_comparison
from reglab.study.presets import follow_up

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"                 # text file in checkpoints/ naming the newest complete checkpoint
CHECKPOINT_FORMAT = "reglab-checkpoint"
REBUILT = REPORT_FILES + (CHECKPOINT_DIR + "/",)           # may differ after "complete"
CHECKPOINTS_KEPT = 2              # the newest and the one before: a damaged newest one falls back to it
TIMING_REPEATS = 3                # each method is timed alone this many times (median and range reported) ...
TIMING_MIN_SECONDS = 0.5          # ... each time for at least this long ...
TIMING_MAX_EPOCHS = 50            # ... or this many short epochs, whichever comes first
TIMING_STEPS_PER_EPOCH = 20       # minibatches per epoch of the short timing run
TIMING_EVAL_EXAMPLES = 200        # val/test examples of the timing run (evaluation is not what is timed)


def run_study(cfg: StudyConfig | None, *, out_dir: str | Path | None = None, data_dir: str | Path | None = None,
              cache_dir: str | Path | None = None, resume: bool = False, quiet: bool = False,
              progress: bool = True, allow_checksum_mismatch: bool = False, command: str | None = None,
              time_methods: bool = True, report: bool = True, data=None) -> Path:
    """Train every (method, seed) of `cfg` as one batched model and write the run directory.

    Args:
        cfg: the study; with ``resume=True`` it may be None (the stored config is used) and,
            when given, must equal the stored one.
        out_dir: run directory; default ``runs/<cfg.name>-<YYYYmmdd-HHMMSS>`` under the current folder.
        data_dir, cache_dir, allow_checksum_mismatch: passed to :func:`reglab.data.load_dataset`.
        resume: continue the interrupted run in `out_dir` from its latest checkpoint.
        quiet: print nothing (no config, no progress bar, no final lines).
        progress: show the tqdm progress bar (epoch, ETA, best validation error so far).
        command: the command line that started the run, stored in the manifest.
        time_methods: time each method's variants alone after the study (timing.json).
        report: build report.html at the end (when the report package is installed).
        data: a table study's Python data, ``(X, y)`` or ``(frame, "target")``, or a
            :class:`~reglab.data.table.TableRead` of its ``data.source`` already read (reglab.data.table);
            a resume needs the same data again (its digest is checked against dataset.json).

    Returns:
        The run directory.
    """
    if resume:
        if out_dir is None:
            raise ReglabError("resume needs the run directory. Fix: reglab run --resume RUN_DIR.")
        from reglab.paths import check_path
        run_dir = check_path(out_dir, "--resume")
        stored = _stored_config(run_dir)
        check_out_dir(run_dir, "--resume")   # a run on a read-only or full disk cannot continue
        if cfg is not None and cfg.to_dict() != stored.to_dict():
            raise ReglabError(f"the config given differs from the one stored in {run_dir / 'config.json'}. "
                              "Fix: resume with only --resume RUN_DIR (the stored config is used).")
        cfg = stored
    else:
        if cfg is None:
            raise ReglabError("no study config given. Fix: pass a StudyConfig (e.g. from reglab.study.presets.get).")
        run_dir = Path(out_dir) if out_dir is not None else default_run_dir(cfg.name)
        check_out_dir(run_dir)
    from reglab.engine.registry import for_study
    for_study(cfg, probe=True)   # a bad plugin is one line now, before anything is written
    if cfg.tensorboard:
        from reglab.report.tensorboard import require_tensorboard
        require_tensorboard()  # before training, not after it
    from reglab.memory import check_memory
    check_memory(cfg)          # before anything is allocated (or printed)

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    existed = run_dir.exists()
    try:
        with RunLock(run_dir):
            if not resume and (run_dir / MANIFEST).exists():
                raise ReglabError(f"{run_dir} already holds a run. Fix: --resume {run_dir} to continue it, "
                                  "or choose another --out.")
            try:
                return _run_locked(cfg, run_dir, data_dir=data_dir, cache_dir=cache_dir, resume=resume, say=say,
                                   show_progress=progress and not quiet,
                                   allow_checksum_mismatch=allow_checksum_mismatch, command=command,
                                   time_methods=time_methods, report=report, data=data)
            except BaseException as e:
                # damaged files are left as they are found: recording their digests now would hide them;
                # a resume refused before it wrote anything leaves the run as it was
                if (run_dir / MANIFEST).exists() and not isinstance(e, (DamagedFiles, ResumeRefused)):
                    try:
                        # a failure after "complete" (in the report build) leaves the results complete:
                        # the shards are gone by then, and a resume only builds the report again
                        if read_json(run_dir / MANIFEST).get("status") != "complete":
                            # the status only: the digests stay those of files reglab knows it wrote
                            RunWriter(run_dir).update_manifest(status="interrupted", record=())
                    except ReglabError:
                        pass  # e.g. the disk is still full: the error being raised says so already
                from reglab.engine.plugin_guard import PluginHookError
                if isinstance(e, PluginHookError) and (run_dir / MANIFEST).exists():
                    raise e.in_run(run_dir) from None   # its fix: the command that resumes this run
                raise
    except BaseException:
        # a run that failed before writing anything (e.g. no dataset) leaves no empty folder behind
        if not existed and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise


class ResumeRefused(ReglabError):
    """A resume refused before it wrote anything: the run directory is left exactly as it was found
    (its manifest is not marked interrupted)."""


def load_same_table(stored: dict | None, load):
    """``load()`` (a Dataset, or a TableRead), for a resume of a run whose dataset.json is `stored`
    (None: the run recorded none yet). A table study must get the table it began with: a file gone,
    or changed (its sha256), or other Python data or another label column is one line
    (:class:`ResumeRefused`), before anything is written. Other studies' data are not checked here
    (images: against their published checksums; point clouds: generated from the config)."""
    table = stored is not None and stored.get("info", {}).get("kind") == "table"
    try:
        got = load()
    except ReglabError:
        if table:
            _check_table_file(stored["info"])   # a file gone or changed says so, not what broke reading it
        raise
    if table:
        _check_same_table(stored["info"], got.info if isinstance(got, Dataset) else got.provenance)
    return got


def _check_same_table(before: dict, now: dict) -> None:
    """`now` (the info or provenance of the table given) holds the digest and label column that
    `before` (the run's dataset.json info) records."""
    src = before.get("source", {})
    what = f"table file {src['path']}" if src.get("kind") == "file" else (
        f"sklearn:{src.get('name')}" if src.get("kind") == "sklearn" else "the data given")
    if now.get("target") != before.get("target"):
        raise ResumeRefused(f"{what}: its label column is {now.get('target')!r}, but this run began with "
                            f"{before.get('target')!r} (dataset.json). Fix: resume with the data this run began "
                            "with, or start a new run.")
    if now.get("checksums") != before.get("checksums"):
        raise ResumeRefused(f"{what} differs from the table this run began with (sha256 {_digest(now)[:12]}... "
                            f"now, {_digest(before)[:12]}... in dataset.json). Fix: resume with the same "
                            f"{'file' if src.get('kind') == 'file' else 'data'}, or start a new run.")


def _check_table_file(before: dict) -> None:
    """The file a table run began with is still there, with the bytes dataset.json records."""
    src = before.get("source", {})
    if src.get("kind") != "file":
        return
    path = Path(src["path"])
    if not path.is_file():
        raise ResumeRefused(f"table file {path}, which this run began with, is gone. Fix: put it back "
                            f"(sha256 {_digest(before)}), or start a new run.")
    try:
        now = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return   # the reader's own line says why it cannot be read
    if now != _digest(before):
        raise ResumeRefused(f"table file {path} differs from the table this run began with (sha256 {now[:12]}... "
                            f"now, {_digest(before)[:12]}... in dataset.json). Fix: resume with the same file, "
                            "or start a new run.")


def _digest(info: dict) -> str:
    """The sha256 a table's info records (a table has one source, so one digest)."""
    sums = [c.get("sha256") for c in (info.get("checksums") or {}).values() if isinstance(c, dict)]
    return next((d for d in sums if d), "none recorded")


def default_run_dir(study_name: str, root: str | Path = "runs") -> Path:
    """``runs/<study>-<YYYYmmdd-HHMMSS>``, with ``-2``, ``-3`` ... if that folder exists."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{study_name}-{stamp}"
    candidate, k = base, 2
    while candidate.exists():
        candidate, k = Path(f"{base}-{k}"), k + 1
    return candidate


# ----------------------------------------------------------------------------
# the run

def _run_locked(cfg: StudyConfig, run_dir: Path, *, data_dir, cache_dir, resume: bool, say, show_progress: bool,
                allow_checksum_mismatch: bool, command: str | None, time_methods: bool, report: bool,
                data=None) -> Path:
    """The run, step by step: check what a resume builds on, load the data, start (or continue) the
    run directory, train epoch by epoch, then the sequence every executor shares (:func:`complete_run`).
    ``data``: a table study's (X, y) or (frame, target) from Python (reglab.data.table)."""
    from reglab.data import load_dataset  # the data package loads lazily: it is large and optional for tests
    from reglab.engine import Trainer

    session = {"start": time.perf_counter(), "started": now_iso()}
    writer = RunWriter(run_dir)
    writer.remove_temp_files()  # of a process killed mid-write (a fresh run may reuse the folder of one)
    recorded = _check_resumable(run_dir) if resume else {}
    if resume and _is_complete(run_dir):
        _finish_complete_run(writer, run_dir, recorded, report, say)
        return run_dir
    checkpoint = _checkpoint_to_resume(run_dir, cfg, recorded) if resume else None

    stored = read_json(run_dir / "dataset.json") if resume and (run_dir / "dataset.json").exists() else None
    dataset = load_same_table(stored, lambda: load_dataset(cfg.data, data_dir=data_dir, cache_dir=cache_dir,
                                                           allow_checksum_mismatch=allow_checksum_mismatch,
                                                           table=data))
    # printed once every input is known good: the stored files, the checkpoint, the dataset
    say(f"reglab: {'resuming' if resume else 'running'} study {cfg.name!r} "
        f"({len(cfg.methods)} methods x {len(cfg.seeds)} seeds = {cfg.n_variants} variants, "
        f"{cfg.n_epochs} epochs) -> {run_dir}")
    say(resolved_config_text(cfg, run_dir))
    start_run(writer, cfg, dataset, environment(cfg.device), command=command, resume=resume)

    trainer = Trainer(cfg, dataset)
    # the runner's own state, saved in every checkpoint beside the trainer's
    book = {"train_s": 0.0, "best_val_error": math.inf, "sessions": [], "epoch_wall_s": []}
    if resume:
        if checkpoint is not None:
            book = _restore(trainer, checkpoint)
        writer.drop_epochs_after(trainer.epoch)
        say(f"reglab: resumed after epoch {trainer.epoch} of {cfg.n_epochs}")
    earlier_sessions = book["sessions"]  # killed sessions, each up to its last checkpoint
    first_epoch = trainer.epoch

    def this_session() -> dict:
        return {"started": session["started"], "wall_s": time.perf_counter() - session["start"],
                "first_epoch": first_epoch + 1, "resumed": resume}

    _train(trainer, cfg, writer, run_dir, book, lambda: earlier_sessions + [this_session()], show_progress)

    def timing(summary: dict) -> dict:
        method_times = time_each_method(cfg, dataset, summary, Trainer) if time_methods else {}
        return timing_table(cfg, book, earlier_sessions + [this_session()], method_times, summary)

    complete_run(writer, cfg, finals=trainer.final_summary(), analysis=trainer.analysis(), timing=timing,
                 epochs_done=trainer.epoch, say=say)
    report_path = finish_run(writer, run_dir, report, say)
    say(f"reglab: results in {run_dir}")
    if report_path is not None:
        say(f"reglab: report at {report_path}")
    if cfg.tensorboard:
        _write_tensorboard(writer, run_dir, say)
    if (next_step := read_json(run_dir / "summary.json").get("next_step")) is not None:
        say(f"reglab: next: {next_step}")
    return run_dir


def _check_resumable(run_dir: Path) -> dict[str, str]:
    """The digests the run recorded (read before this session records its own); a run with results
    but no manifest is refused."""
    recorded = recorded_digests(run_dir)
    if not (run_dir / MANIFEST).exists() and any((run_dir / n).exists() for n in
                                                  (CHECKPOINT_DIR, "metrics", "metrics_epoch.csv")):
        raise DamagedFiles(f"{run_dir / MANIFEST} is missing but the run has results. Fix: restore it "
                           "from a copy, or start the study again with a new --out.")
    return recorded


def _is_complete(run_dir: Path) -> bool:
    return (run_dir / MANIFEST).exists() and read_json(run_dir / MANIFEST).get("status") == "complete"


def _finish_complete_run(writer: RunWriter, run_dir: Path, recorded: dict[str, str], report: bool, say) -> None:
    """A resume of a complete run: the results are final; only the report (rebuilt), the checkpoints
    (no longer used) and the shards (removed once consolidated, perhaps by a process killed before it
    recorded that) may differ. A kill after "complete" may have left shards or no report."""
    check_unchanged(run_dir, recorded, [n for n in recorded if not n.startswith(REBUILT + ("metrics/",))])
    finish_run(writer, run_dir, report, say, record=("metrics/",) + REPORT_FILES)
    say(f"reglab: {run_dir} is already complete; nothing to resume.")


def _checkpoint_to_resume(run_dir: Path, cfg: StudyConfig, recorded: dict[str, str]) -> dict | None:
    """The newest sound checkpoint (None: start from epoch 0), after checking what the resumed run
    builds on: its config and the metrics up to that checkpoint."""
    checkpoint = _pick_checkpoint(run_dir, cfg)
    epoch = checkpoint["epoch"] if checkpoint is not None else 0
    check_unchanged(run_dir, recorded, ["config.json", "config.toml", "variants.json"] +
                    [n for n in recorded if n.startswith("metrics/") and 0 <= shard_epoch(Path(n)) <= epoch])
    return checkpoint


def start_run(writer: RunWriter, cfg: StudyConfig, dataset: Dataset, env: dict, *, command: str | None,
              resume: bool = False) -> None:
    """The files that describe a run, written before it trains (a resume keeps its config and
    variants), and the manifest's "running"."""
    if not resume:
        from reglab.engine.registry import RECORD_FILE, for_study
        writer.write_json(RECORD_FILE, for_study(cfg).record(cfg))   # the plugins and formulas it used
        writer.write_json("config.json", cfg.to_dict())
        writer.write_text("config.toml", to_toml(cfg))
        writer.write_json("variants.json", variants_table(cfg))
    writer.write_json("environment.json", env)
    writer.write_json("dataset.json", dataset_description(dataset))
    writer.update_manifest(study=cfg.name, status="running", n_epochs=cfg.n_epochs, reglab_version=__version__,
                           **({"epochs_done": 0, "command": command} if not resume else {}))


def _train(trainer, cfg: StudyConfig, writer: RunWriter, run_dir: Path, book: dict, sessions, show_progress: bool):
    """Epoch by epoch until the trainer is done: metrics shards, the manifest's epoch count, a
    checkpoint every ``checkpoint_every`` epochs and at the end, the progress bar."""
    variants = cfg.variants()
    bar = _progress_bar(cfg.n_epochs, trainer.epoch, cfg.name) if show_progress else None
    try:
        while not trainer.done:
            t0 = time.perf_counter()
            rec = trainer.train_epoch()
            book["epoch_wall_s"].append(time.perf_counter() - t0)
            book["train_s"] += float(np.asarray(rec.metrics["epoch_time_s"])[0])
            writer.write_epoch(rec.epoch, epoch_rows(rec, variants), iter_rows(rec))
            val = np.asarray(rec.metrics["val_error"], dtype=np.float64)
            if np.isfinite(val).any():
                book["best_val_error"] = min(book["best_val_error"], float(np.nanmin(np.where(np.isfinite(val), val, np.nan))))
            # the shards' digests are recorded before a checkpoint covers them, so a resume from that
            # checkpoint can check every shard it keeps
            writer.update_manifest(epochs_done=rec.epoch)
            if rec.epoch % cfg.checkpoint_every == 0 or trainer.done:
                _save_checkpoint(run_dir, trainer, dict(book, sessions=sessions()), cfg)
                writer.update_manifest()
            if bar is not None:
                bar.set_postfix_str(f"best val error {100 * book['best_val_error']:.2f}%")
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def complete_run(writer: RunWriter, cfg: StudyConfig, *, finals, analysis: dict, timing, epochs_done: int,
                 say) -> dict:
    """What every executor does once training is done (``reglab run``, and the in-process and Ray
    executors of :func:`reglab.tune.executors.run_study_sharded`), so the same study gets the same
    summary.json however it was trained:

    consolidate the per-epoch shards into the CSVs, summarize from them (each variant's last epoch
    with a finite validation error, so one that stopped early is described by its last sound epoch),
    write the analysis arrays, time (``timing(summary)`` gives timing.json), mark the manifest
    complete and print the summary table. Returns the summary.
    """
    writer.finalize(epochs_done)  # consolidated CSVs first: the summary reads them
    summary = build_summary(cfg, finals, _last_epoch_metrics(writer))
    writer.write_json("summary.json", summary)
    writer.write_npz("analysis.npz", {k: np.asarray(v) for k, v in analysis.items()})
    writer.write_json("timing.json", timing(summary))
    writer.update_manifest(status="complete", epochs_done=epochs_done)
    say(format_summary_table(summary))
    return summary


def _write_tensorboard(writer: RunWriter, run_dir: Path, say) -> None:
    from reglab.report.tensorboard import TENSORBOARD_DIR, write_tensorboard
    from reglab.results import load_run
    say(f"reglab: TensorBoard: tensorboard --logdir {write_tensorboard(load_run(run_dir))}")
    writer.update_manifest(record=(TENSORBOARD_DIR + "/",), touch=False)   # `reglab verify` holds them too


def finish_run(writer: RunWriter, run_dir: Path, report: bool, say, record: tuple[str, ...] | None = None) -> Path | None:
    """The steps after the manifest says complete; each is redone by a resume after a kill.

    Drop the per-epoch shards, build the report unless one was built (``report`` in the
    manifest), then record the final file list and digests (of the files under `record`
    only, when given: a resume of a complete run writes nothing else).
    """
    removed = writer.remove_shards()
    if removed or any(n.startswith("metrics/") for n in recorded_digests(run_dir)):
        writer.update_manifest(record=record)  # the shards are gone (perhaps removed by a killed process)
    built = None
    if report and not read_json(run_dir / MANIFEST).get("report"):
        built = _build_report(run_dir, say)
        if built is not None:
            # the report shows the manifest's "updated" time: keep it, so a rebuild gives the same bytes
            writer.update_manifest(record=record, touch=False, report=built.name)
    return built if built is not None else (run_dir / "report.html" if (run_dir / "report.html").exists()
                                            and report else None)


def resolved_config_text(cfg: StudyConfig, run_dir: Path) -> str:
    """The resolved config, compactly: study and data fields, then each method's non-default settings."""
    d = cfg.to_dict()
    lines = ["# resolved config (every field: " + str(Path(run_dir) / "config.toml") + ")"]
    lines.append("  " + ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("data", "methods")))
    # fields of the other kind of dataset have no effect: leave them out here (config.toml has them)
    unused = ("n_points", "noise", "flip") if cfg.data.is_image else ("resolution",)
    lines.append("  data: " + ", ".join(f"{k}={v}" for k, v in d["data"].items() if k not in unused))
    defaults = MethodConfig(name="-").__dict__
    for m in cfg.methods:
        changed = {k: v for k, v in m.__dict__.items() if k != "name" and v != defaults[k]}
        lines.append(f"  method {m.name}: " + (", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults"))
    return "\n".join(lines)


def _progress_bar(total: int, initial: int, name: str):
    import warnings
    with warnings.catch_warnings():
        # Jupyter without ipywidgets: tqdm.auto falls back to the text bar, which is all we want, with a warning
        warnings.filterwarnings("ignore", message="IProgress not found")
        from tqdm.auto import tqdm  # a widget in Jupyter (with ipywidgets), text elsewhere
    return tqdm(total=total, initial=initial, desc=name, unit="epoch", dynamic_ncols=True, file=sys.stderr)


def _build_report(run_dir: Path, say) -> Path | None:
    """Build report.html when the report package is installed; the study never depends on it."""
    if importlib.util.find_spec("reglab.report") is None:
        say("reglab: no report package installed; skipping report.html")
        return None
    report = importlib.import_module("reglab.report")
    build = getattr(report, "build_report", None)
    if build is None:
        say("reglab: reglab.report has no build_report; skipping report.html")
        return None
    return Path(build(run_dir))


# ----------------------------------------------------------------------------
# checkpoints

def _save_checkpoint(run_dir: Path, trainer, book: dict, cfg: StudyConfig) -> None:
    """Write checkpoints/epoch-XXXXX.pt and its .sha256 atomically, point `latest` at it, drop older ones.

    The newest two checkpoints are kept (one is enough to resume, but a paper-size study's is
    ~0.5 GB); the digest, written after the checkpoint, lets a resume tell a damaged file from a
    good one before unpickling it.
    """
    cdir = run_dir / CHECKPOINT_DIR
    name = f"epoch-{trainer.epoch:05d}.pt"
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "epoch": trainer.epoch, "config": cfg.to_dict(),
                "trainer": trainer.state_dict(), "runner": book}, buf)
    data = buf.getvalue()
    atomic_write_bytes(cdir / name, data)
    atomic_write_text(cdir / f"{name}.sha256", f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    atomic_write_text(cdir / LATEST, name + "\n")
    older = [p for p in _checkpoints(cdir) if _checkpoint_epoch(p) < trainer.epoch][:CHECKPOINTS_KEPT - 1]
    keep = {name} | {p.name for p in older}
    for old in _checkpoints(cdir):  # older ones, and newer ones a fallback left behind
        if old.name not in keep:
            old.unlink()
            old.with_name(old.name + ".sha256").unlink(missing_ok=True)


def _checkpoints(cdir: Path) -> list[Path]:
    """checkpoints/epoch-XXXXX.pt files, newest first."""
    if not cdir.is_dir():
        return []
    return sorted((p for p in cdir.glob("epoch-*.pt") if _checkpoint_epoch(p) >= 0), key=_checkpoint_epoch,
                  reverse=True)


def _checkpoint_epoch(p: Path) -> int:
    try:
        return int(p.stem.split("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _pick_checkpoint(run_dir: Path, cfg: StudyConfig, warn=None) -> dict | None:
    """The newest sound checkpoint (its dict, path under "path"); None when the run died before its first one.

    A checkpoint whose digest differs from its .sha256, that torch cannot read, or that does
    not hold this study's state is skipped with a one-line warning on stderr and the one
    before it is used; none sound is a ReglabError. Nothing reaches the trainer before a
    checkpoint has passed every check (:func:`_restore`).
    """
    warn = warn or (lambda msg: print(msg, file=sys.stderr, flush=True))
    cdir = run_dir / CHECKPOINT_DIR
    candidates = _checkpoints(cdir)
    if not candidates:
        if (cdir / LATEST).exists():
            raise ReglabError(f"{cdir / LATEST} names a checkpoint but {cdir} holds none. "
                              f"Fix: start the study again with a new --out.")
        return None
    problems = []
    for path in candidates:
        ckpt, problem = _read_checkpoint(path, cfg)
        if problem is not None:
            problems.append(f"{path.name}: {problem}")
            continue
        if problems:
            warn(f"reglab: warning: {'; '.join(problems)}; resuming from {path} (epoch {ckpt['epoch']}) instead.")
        return dict(ckpt, path=path)
    raise ReglabError(f"no readable checkpoint in {cdir} ({'; '.join(problems)}). "
                      "Fix: start the study again with a new --out.")


def _restore(trainer, ckpt: dict) -> dict:
    """Load a checkpoint from :func:`_pick_checkpoint` into `trainer`; returns the runner's bookkeeping."""
    try:
        trainer.load_state_dict(ckpt["trainer"])
    except Exception as e:  # noqa: BLE001 - a state that passed the digest but not the trainer: say which
        raise ReglabError(f"checkpoint {ckpt['path']} does not fit this study's trainer ({type(e).__name__}: {e}). "
                          "Fix: start the study again with a new --out.") from None
    return ckpt["runner"]


RUNNER_KEYS = ("train_s", "best_val_error", "sessions", "epoch_wall_s")


def _read_checkpoint(path: Path, cfg: StudyConfig) -> tuple[dict | None, str | None]:
    """(checkpoint, None) when `path` is a sound checkpoint of `cfg`, else (None, what is wrong)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, f"unreadable ({e.strerror or e})"
    digest_file = path.with_name(path.name + ".sha256")
    if digest_file.exists():
        try:
            want = digest_file.read_text().split()[0]
        except (OSError, UnicodeDecodeError, IndexError):
            want = "?"
        if hashlib.sha256(data).hexdigest() != want:
            return None, "damaged (its sha256 differs from the one recorded when it was written)"
    try:
        # the file was written by this runner into the user's own run directory; the trainer state
        # holds numpy arrays and RNG states, which the weights-only unpickler rejects
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - unpickling garbage raises nearly anything
        return None, f"unreadable ({type(e).__name__})"
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        return None, "not a reglab checkpoint"
    if ckpt.get("epoch") != _checkpoint_epoch(path) or not isinstance(ckpt.get("trainer"), dict):
        return None, "its content does not match its name"
    runner_book = ckpt.get("runner")
    if not isinstance(runner_book, dict) or any(k not in runner_book for k in RUNNER_KEYS):
        return None, "its runner state is incomplete"
    try:
        from reglab.engine.registry import declarations, for_study
        same = study_from_dict(ckpt.get("config"), where=str(path),
                               declared=declarations(for_study(cfg).regularizers)) == cfg
    except (ReglabError, TypeError, ValueError):
        same = False
    if not same:
        return None, "it belongs to another study config"
    return ckpt, None


def _stored_config(run_dir: Path) -> StudyConfig:
    if run_dir.exists() and not run_dir.is_dir():
        raise ReglabError(f"cannot resume: {run_dir} is a file, not a run directory. "
                          "Fix: give the folder of the interrupted run.")
    if not run_dir.is_dir():
        raise ReglabError(f"cannot resume: {run_dir} does not exist. Fix: give the folder of the interrupted run.")
    if not (run_dir / "config.json").exists():
        raise ReglabError(f"cannot resume: {run_dir} has no config.json (not a reglab run, or it died before "
                          "writing one). Fix: start the study again.")
    from reglab.engine.registry import RECORD_FILE, check_recorded_plugins, study_from_dict as with_plugins
    stored = read_json(run_dir / "config.json")
    if (run_dir / RECORD_FILE).exists():
        for line in check_recorded_plugins(read_json(run_dir / RECORD_FILE), stored, run_dir):
            print(line, file=sys.stderr)
    return with_plugins(stored, where=str(run_dir / "config.json"))


# ----------------------------------------------------------------------------
# self-describing tables

def variants_table(cfg: StudyConfig) -> list[dict]:
    """One entry per variant: its index in every array, method, seed and the method's hyperparameters."""
    return [{"variant": i, "method": m.name, "seed": s, "hyperparameters": m.to_dict()}
            for i, m, s in cfg.variants()]


def environment(device: str) -> dict:
    """What the numbers were measured on: versions, CPU, threads, GPU."""
    env = {
        "reglab": __version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "flush_denormals": every_thread_flushes(),   # FTZ/DAZ in every torch thread (reglab.denormals)
        "device": device,
        "cuda_available": torch.cuda.is_available(),
        "gpus": [],
    }
    for mod in ("tqdm", "matplotlib"):
        try:
            env[mod] = importlib.import_module(mod).__version__
        except ImportError:
            env[mod] = None
    if torch.cuda.is_available():
        env["cuda"] = torch.version.cuda
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return env


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def dataset_description(ds: Dataset) -> dict:
    return {"name": ds.name, "n_classes": ds.n_classes, "n_features": ds.n_features,
            "n_train": int(ds.x_train.shape[0]), "n_val": int(ds.x_val.shape[0]),
            "n_test": int(ds.x_test.shape[0]), "info": ds.info}


def epoch_rows(rec, variants: list) -> list[dict]:
    """One row per variant: epoch, variant, method, seed, then every metric of the EpochRecord."""
    names = list(rec.metrics)
    cols = {k: np.asarray(rec.metrics[k]) for k in names}
    rows = []
    for v, method, seed in variants:
        row = {"epoch": rec.epoch, "variant": v, "method": method.name, "seed": seed}
        for k in names:
            row[k] = cols[k][v].item()
        rows.append(row)
    return rows


def iter_rows(rec) -> list[dict]:
    """One row per (logged step, variant): step, epoch, variant, loss_data, loss_penalty, loss (nats/example)."""
    data = np.asarray(rec.loss_data, dtype=np.float64)
    pen = np.asarray(rec.loss_penalty, dtype=np.float64)
    rows = []
    for s, step in enumerate(np.asarray(rec.steps).tolist()):
        for v in range(data.shape[1]):
            rows.append({"step": step, "epoch": rec.epoch, "variant": v, "loss_data": data[s, v],
                         "loss_penalty": pen[s, v], "loss": data[s, v] + pen[s, v]})
    return rows


def _last_epoch_metrics(writer: RunWriter) -> dict[int, dict]:
    """Each variant's metrics row of the last epoch it trained in with finite validation error.

    A variant that stopped early (or diverged) has NaN rows afterwards; its last sound row is
    the one that describes it. Read from the consolidated CSV: one source of truth.
    """
    cols = read_csv_columns([writer.path("metrics_epoch.csv")])
    last: dict[int, dict] = {}
    for i, v in enumerate(cols["variant"]):
        row = {k: cols[k][i] for k in cols}
        sound = math.isfinite(float(row.get("val_error", math.nan)))
        if sound or int(v) not in last:
            last[int(v)] = row
    return last


# ----------------------------------------------------------------------------
# summary: per-variant finals, per-method statistics, paired comparisons

def build_summary(cfg: StudyConfig, finals: dict, last_epoch: dict[int, dict]) -> dict:
    """Per variant and per method, in the units of the metrics (errors as fractions).

    The model a method *returns* is its last epoch's, except for methods with early stopping,
    which return the epoch of best validation error; ``test_error`` and ``val_error`` are that
    model's (``returned_model`` says which). Statistics over seeds use finite values only: a
    diverged variant is listed under ``diverged`` and left out (``n_excluded`` counts it).
    """
    per_variant = []
    for v, method, seed in cfg.variants():
        fin = _variant_finals(finals, v)
        row = {"variant": v, "method": method.name, "seed": seed}
        row.update({f"last_{k}": _scalar(val) for k, val in last_epoch.get(v, {}).items()
                    if k not in ("epoch", "variant", "method", "seed")})
        row.update({k: _scalar(val) for k, val in fin.items()})
        diverged = bool(row.get("diverged", False))
        returned = "best_val_epoch" if method.early_stopping else "last_epoch"
        if returned == "best_val_epoch":
            row["test_error"] = row.get("test_error_best_val")
            row["val_error"] = row.get("best_val_error")
        else:
            row["test_error"] = row.get("test_error_last", row.get("last_test_error"))
            row["val_error"] = row.get("last_val_error")
        if diverged:
            row["test_error"] = math.nan
            row["val_error"] = math.nan
        row["returned_model"] = returned
        row["diverged"] = diverged
        per_variant.append(row)

    scalars = [k for k in per_variant[0] if k not in ("variant", "method", "seed", "returned_model")
               and all(isinstance(r.get(k), (int, float, bool)) for r in per_variant)]
    methods = {}
    for m in cfg.methods:
        rows = [r for r in per_variant if r["method"] == m.name]
        methods[m.name] = {
            "n_seeds": len(rows),
            "returned_model": rows[0]["returned_model"],
            "n_diverged": sum(r["diverged"] for r in rows),
            "stats": {k: describe([_as_float(r[k]) for r in rows]) for k in scalars},
        }

    comparisons = []
    names = [m.name for m in cfg.methods]
    for metric in HEADLINE:
        family = []   # every pair of methods on one metric: Holm-corrected together
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                va = [r[metric] for r in per_variant if r["method"] == a]
                vb = [r[metric] for r in per_variant if r["method"] == b]
                c = paired_comparison(va, vb)
                family.append({"metric": metric, "a": a, "b": b, "difference": f"{a} - {b}", **c})
        comparisons += holm_adjust(family)

    diverged = [{"variant": r["variant"], "method": r["method"], "seed": r["seed"],
                 "epoch": r.get("stop_epoch"), "reason": r.get("diverged_reason")}
                for r in per_variant if r["diverged"]]
    return {
        "study": cfg.name,
        "dataset": cfg.data.name,
        "n_seeds": len(cfg.seeds),
        "seeds": list(cfg.seeds),
        "units": "errors are fractions in [0, 1]; losses are nats per example",
        "statistics": "mean and sample std over seeds; ci95 is the two-sided 95% Student-t interval "
                      "of the mean; paired comparisons use per-seed differences a - b; p_value is the raw "
                      "two-sided paired t-test, p_holm the Holm step-down adjusted p over the family of "
                      "all pairs on the same metric (significant_holm: p_holm < 0.05)",
        "headline": "test_error",
        "variants": per_variant,
        "methods": methods,
        "comparisons": comparisons,
        "diverged": diverged,
    } | ({"next_step": step} if (step := follow_up(cfg.name, cfg.data.name, len(cfg.seeds))) is not None else {})


def _variant_finals(finals, v: int) -> dict:
    """final_summary() gives either {"variants": [dicts]} / a list of dicts, or {key: (V,) array}."""
    if isinstance(finals, dict) and "variants" in finals:
        finals = finals["variants"]
    if isinstance(finals, (list, tuple)):
        return dict(finals[v])
    return {k: np.asarray(val)[v] for k, val in finals.items()}


def _scalar(x):
    if isinstance(x, (np.generic, np.ndarray, torch.Tensor)):
        x = np.asarray(x).item() if not isinstance(x, torch.Tensor) else x.item()
    return x


def _as_float(x) -> float:
    return math.nan if x is None else float(x)


def format_summary_table(summary: dict) -> str:
    """Plain-text table: method, n, mean test/val error with 95% CI half-width, diverged count."""
    n = summary["n_seeds"]
    w = max([22, *(len(name) for name in summary["methods"])])   # the name column fits the longest name
    lines = [f"{'method':<{w}} {'test error % (mean +- 95% CI)':>32} {'val error %':>14} {'diverged':>9}"]
    for name, m in summary["methods"].items():
        t, v = m["stats"]["test_error"], m["stats"]["val_error"]
        lines.append(f"{name:<{w}} {_pct(t):>32} {_pct(v, ci=False):>14} {m['n_diverged']:>9}")
    lines.append(f"(mean over {n} seed{'s' if n != 1 else ''}; CI is the two-sided 95% Student-t interval)")
    return "\n".join(lines)


def _pct(d: dict, ci: bool = True) -> str:
    if d["mean"] is None:
        return "n/a"
    s = f"{100 * d['mean']:.2f}"
    if ci and d["ci95_half_width"] is not None:
        s += f" +- {100 * d['ci95_half_width']:.2f}"
    return s


# ----------------------------------------------------------------------------
# timing: the whole study, and each method alone

def time_each_method(cfg: StudyConfig, dataset: Dataset, summary: dict, trainer_cls) -> dict:
    """Seconds per optimizer step of each method's variants (all its seeds) trained alone, measured
    ``TIMING_REPEATS`` times; the median and the range of the repeats are reported.

    A fresh Trainer gets only that method, on the first ``TIMING_STEPS_PER_EPOCH * batch_size``
    training examples and ``TIMING_EVAL_EXAMPLES`` validation/test examples. One warm-up epoch
    is not counted; then each repeat runs epochs until ``TIMING_MIN_SECONDS`` of training time or
    ``TIMING_MAX_EPOCHS`` epochs, and gives one seconds-per-step. Only the training steps are timed
    (the engine's ``epoch_time_s``, which excludes evaluation), the same quantity as the study's
    ``study_train_s``. Late L1 is switched on from the first step, so its cost is included. The
    cost of the method alone in the study is estimated as seconds-per-step x the steps its variants
    took there: ``repeats_estimated_alone_s`` per repeat, ``estimated_alone_s`` their median and
    ``estimated_alone_s_range`` their [min, max] (on a shared machine the spread is mostly load).
    """
    n_train = min(int(dataset.x_train.shape[0]), TIMING_STEPS_PER_EPOCH * cfg.batch_size)
    n_eval = TIMING_EVAL_EXAMPLES
    small = Dataset(name=dataset.name, n_classes=dataset.n_classes, info=dataset.info,
                    x_train=dataset.x_train[:n_train], y_train=dataset.y_train[:n_train],
                    x_val=dataset.x_val[:n_eval], y_val=dataset.y_val[:n_eval],
                    x_test=dataset.x_test[:n_eval], y_test=dataset.y_test[:n_eval])
    steps_per_epoch_small = math.ceil(n_train / cfg.batch_size)
    steps_per_epoch_study = math.ceil(int(dataset.x_train.shape[0]) / cfg.batch_size)
    out = {}
    for m in cfg.methods:
        timed_method = dataclasses.replace(m, l1_start=0.0) if m.l1 > 0 else m
        alone = cfg.replace(methods=(timed_method,), n_epochs=TIMING_REPEATS * TIMING_MAX_EPOCHS + 1)
        trainer = trainer_cls(alone, small)
        trainer.train_epoch()  # warm-up: allocations, first-call kernel selection
        repeats = []           # (seconds, epochs) of each repeat
        for _ in range(TIMING_REPEATS):
            seconds, epochs = 0.0, 0
            while not trainer.done and epochs < TIMING_MAX_EPOCHS:
                rec = trainer.train_epoch()
                seconds += float(np.asarray(rec.metrics["epoch_time_s"])[0])
                epochs += 1
                if seconds >= TIMING_MIN_SECONDS:
                    break
            if epochs:
                repeats.append((seconds, epochs))
        stop_epochs = [r.get("stop_epoch") or cfg.n_epochs for r in summary["variants"] if r["method"] == m.name]
        steps_in_study = int(max(stop_epochs)) * steps_per_epoch_study
        s_per_step = [sec / (ep * steps_per_epoch_small) for sec, ep in repeats]
        estimates = [x * steps_in_study for x in s_per_step]
        median = float(np.median(s_per_step)) if s_per_step else math.nan
        out[m.name] = {"variants": len(cfg.seeds), "repeats": len(repeats),
                       "timed_epochs": sum(ep for _, ep in repeats),
                       "timed_steps": sum(ep for _, ep in repeats) * steps_per_epoch_small,
                       "timed_s": sum(sec for sec, _ in repeats),
                       "repeats_seconds_per_step": s_per_step,
                       "seconds_per_step_alone": median,
                       "steps_in_study": steps_in_study,
                       "repeats_estimated_alone_s": estimates,
                       "estimated_alone_s": median * steps_in_study,
                       "estimated_alone_s_range": [min(estimates), max(estimates)] if estimates else None}
    return out


def _sync(device: str) -> None:
    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize()


def timing_table(cfg: StudyConfig, book: dict, sessions: list[dict], method_times: dict, summary: dict) -> dict:
    """Whole-study times and each method alone; train times exclude evaluation and file writes."""
    total_alone = sum(m["estimated_alone_s"] for m in method_times.values())
    train_s = book["train_s"]
    return {
        "units": "seconds (wall clock)",
        "study_train_s": train_s,
        "study_train_s_note": "training steps of all variants together (the engine's epoch_time_s, summed)",
        "study_epoch_wall_s": book["epoch_wall_s"],
        "study_epoch_wall_s_note": "per epoch: training + validation/test evaluation, as the runner saw it",
        "study_wall_s": sum(s["wall_s"] for s in sessions),
        "study_wall_s_note": "every session of the run (a killed one up to its last checkpoint), "
                             "including data loading, files, checkpoints and the per-method timing",
        "sessions": sessions,
        "n_variants": cfg.n_variants,
        "device": cfg.device,
        "torch_threads": torch.get_num_threads(),
        "methods_alone": method_times,
        "methods_alone_note": (
            "each method's variants (all seeds) timed alone in a fresh Trainer on a "
            f"{TIMING_STEPS_PER_EPOCH}-step slice of the training data after one warm-up epoch, training "
            f"steps only, {TIMING_REPEATS} times (at least {TIMING_MIN_SECONDS:g} s each); "
            "estimated_alone_s = median seconds_per_step_alone x the steps that method took in the study, "
            "estimated_alone_s_range = [min, max] over the repeats"),
        "sum_of_methods_alone_s": total_alone,
        "batching_speedup": (total_alone / train_s) if train_s > 0 and total_alone else None,
    }
