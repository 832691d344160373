"""Synthetic run directories written through reglab.results' writer, shaped like a real study's.

The curves are made up (smooth decays plus seed noise) but every file, column
and array has the name, shape and units the runner writes, so the report is
exercised end to end without training anything.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from reglab.config import DataConfig, MethodConfig, StudyConfig, to_toml
from reglab.results import RunWriter
from reglab.study import runner

MNIST_METHODS = (
    MethodConfig(name="l2", l2=1e-4),
    MethodConfig(name="l2+l1_late", l2=1e-4, l1=1e-5, l1_start=0.75),
    MethodConfig(name="l2+kl", l2=1e-4, kl_beta=1e-3, kl_rho=0.1, kl_ema=0.9),
    MethodConfig(name="max_norm", max_norm=3.0),
    MethodConfig(name="dropout+l2", l2=1e-4, dropout_input=0.2, dropout_hidden=0.5),
    MethodConfig(name="dropout+max_norm", max_norm=3.0, dropout_input=0.2, dropout_hidden=0.5),
)
POINTCLOUD_METHODS = (
    MethodConfig(name="none"),
    MethodConfig(name="l1", l1=1e-3),
    MethodConfig(name="l2", l2=1e-2),
    MethodConfig(name="early_stopping", early_stopping=True, patience=5, monitor="val_error"),
)


def mnist_config(n_epochs: int = 12, seeds=(0, 1, 2)) -> StudyConfig:
    return StudyConfig(name="mnist-synthetic", data=DataConfig(name="mnist"), hidden=(64, 64),
                       n_epochs=n_epochs, batch_size=100, seeds=tuple(seeds), methods=MNIST_METHODS)


def pointcloud_config(n_epochs: int = 30, seeds=(0, 1, 2)) -> StudyConfig:
    return StudyConfig(name="pointcloud-synthetic", data=DataConfig(name="moons", n_points=300),
                       hidden=(32, 32), n_epochs=n_epochs, batch_size=20, seeds=tuple(seeds),
                       methods=POINTCLOUD_METHODS)


def write_synthetic_run(run_dir, cfg: StudyConfig, *, steps_per_epoch: int = 40,
                        epochs_done: int | None = None, status: str = "complete",
                        diverge: tuple[str, int] | None = None, with_epoch_times: bool = True) -> RunWriter:
    """Write a run directory as the runner would; stop after `epochs_done` epochs for a partial run.

    `diverge=(method, seed)` makes that variant's loss NaN from epoch 3 on, marked diverged.
    `with_epoch_times` adds per-timed-epoch seconds to timing.json (the spread of each method's time).
    """
    rng = np.random.default_rng(1234)
    w = RunWriter(run_dir)
    epochs_done = cfg.n_epochs if epochs_done is None else epochs_done
    pointcloud = not cfg.data.is_image
    variants = [{"variant": v, "method": m.name, "seed": s, "hyperparameters": dataclasses.asdict(m)}
                for v, m, s in cfg.variants()]
    w.write_json("config.json", cfg.to_dict())
    w.write_text("config.toml", to_toml(cfg))
    w.write_json("variants.json", variants)
    w.write_json("environment.json", runner.environment("cpu") | {"cpu_model": "Synthetic CPU @ 2.0GHz"})
    n_features, n_classes = (784, 10) if cfg.data.is_image else (2, 2)
    w.write_json("dataset.json", {"name": cfg.data.name, "n_classes": n_classes, "n_features": n_features,
                                  "n_train": 50_000, "n_val": 10_000, "n_test": 10_000,
                                  "info": {"checksums": {"train-images-idx3-ubyte.gz": {"sha256": "ab" * 32,
                                                                                       "status": "ok"}}}})
    command = f"reglab run --config config.toml --seeds {len(cfg.seeds)} --out {run_dir}"
    w.update_manifest(study=cfg.name, status="running", epochs_done=0, n_epochs=cfg.n_epochs,
                      reglab_version="0.1.0", command=command)

    n_v = cfg.n_variants
    # per-variant asymptotes: the better methods later in the list, seed noise on top
    floor = np.array([0.03 - 0.002 * (v // len(cfg.seeds)) for v in range(n_v)]) + rng.normal(0, 0.0008, n_v)
    if pointcloud:
        floor = np.array([0.14, 0.12, 0.10, 0.11]).repeat(len(cfg.seeds)) + rng.normal(0, 0.005, n_v)
    diverged_v = None
    if diverge is not None:
        diverged_v = next(v for v, m, s in cfg.variants() if m.name == diverge[0] and s == diverge[1])
    stopped_at: dict[int, int] = {}  # variant -> the epoch in which early stopping halted it
    step = 0
    for epoch in range(1, epochs_done + 1):
        # as the engine: a variant that stopped or diverged logs NaN and is no longer active
        trains = {v: v not in stopped_at and not (diverged_v == v and epoch > 3) for v in range(n_v)}
        iter_rows, epoch_rows = [], []
        for k in range(steps_per_epoch):
            step += 1
            for v, m, s in cfg.variants():
                t = step / steps_per_epoch
                data = 2.3 * math.exp(-t / 1.5) + floor[v] * 3 + abs(rng.normal(0, 0.08))
                pen = m.l2 * 50 + (m.l1 * 800 if m.l1 and t > m.l1_start * cfg.n_epochs else 0.0)
                if not trains[v] or (diverged_v == v and epoch == 3 and k >= steps_per_epoch // 2):
                    data = pen = math.nan
                iter_rows.append({"step": step, "epoch": epoch, "variant": v, "loss_data": data,
                                  "loss_penalty": pen, "loss": data + pen})
        for v, m, s in cfg.variants():
            overfit = 0.004 * max(0, epoch - 8) if m.name in ("none", "l2+l1_late") else 0.0
            train_loss = 2.0 * math.exp(-epoch / 2.0) + 0.02 + rng.normal(0, 0.003)
            val_error = floor[v] + 0.4 * math.exp(-epoch / 1.5) + overfit + abs(rng.normal(0, 0.001))
            test_error = val_error + rng.normal(0, 0.0015)
            diverged = diverged_v == v and epoch >= 3
            ok = trains[v] and not diverged
            if ok and m.early_stopping and epoch >= 12 + (v % 3):
                stopped_at[v] = epoch
            nan_if = (lambda x: x) if ok else (lambda x: math.nan)
            epoch_rows.append({"epoch": epoch, "variant": v, "method": m.name, "seed": s,
                               "train_loss": nan_if(train_loss), "train_error": nan_if(val_error * 0.5),
                               "val_loss": nan_if(val_error * 3 + 0.02), "val_error": nan_if(val_error),
                               "test_loss": nan_if(test_error * 3), "test_error": nan_if(test_error),
                               "sparsity": nan_if(0.3 if m.l1 and epoch > m.l1_start * cfg.n_epochs else 0.01),
                               "mean_activation": nan_if(0.1 if m.kl_beta else 0.4), "lr": m.lr,
                               "momentum": m.momentum, "epoch_time_s": 0.5, "eval_time_s": 0.1,
                               "active": ok and v not in stopped_at, "diverged": diverged})
        w.write_epoch(epoch, epoch_rows, iter_rows)
        w.update_manifest(epochs_done=epoch)

    if status != "complete":
        w.update_manifest(status=status)
        return w

    # what Trainer.final_summary() returns, then the runner's own summary and timing tables
    finals, last_epoch = [], {}
    for v, m, s in cfg.variants():
        rows = _epoch_rows(w, v)
        trained = [r for r in rows if np.isfinite(r["val_error"])]
        vals = np.array([r["val_error"] for r in trained])
        best = int(np.nanargmin(vals)) if np.isfinite(vals).any() else None
        finals.append({"test_error_last": trained[-1]["test_error"] if v != diverged_v else math.nan,
                       "test_error_best_val": trained[best]["test_error"] if best is not None else math.nan,
                       "best_val_error": vals[best] if best is not None else math.nan,
                       "best_epoch": None if best is None else best + 1,
                       "stop_epoch": 3 if v == diverged_v else stopped_at.get(v), "diverged": v == diverged_v})
        last_epoch[v] = rows[-1]
    summary = runner.build_summary(cfg, finals, last_epoch)
    w.write_json("summary.json", summary)
    steps_in_study = epochs_done * steps_per_epoch
    method_times = {}
    for i, m in enumerate(cfg.methods):
        epoch_s = list(0.05 * (1 + i) + rng.normal(0, 0.002, 4))
        entry = {"variants": len(cfg.seeds), "timed_epochs": 4, "timed_steps": 80, "timed_s": sum(epoch_s),
                 "seconds_per_step_alone": sum(epoch_s) / 80, "steps_in_study": steps_in_study,
                 "estimated_alone_s": sum(epoch_s) / 80 * steps_in_study}
        if with_epoch_times:
            entry["timed_epoch_s"] = epoch_s   # the format before timing repeats; kept to test both
            repeats = [x / 20 * steps_in_study for x in epoch_s[:3]]
            entry.update(repeats=3, repeats_estimated_alone_s=repeats,
                         estimated_alone_s=float(np.median(repeats)),
                         estimated_alone_s_range=[min(repeats), max(repeats)])
        method_times[m.name] = entry
    total_alone = sum(t["estimated_alone_s"] for t in method_times.values())
    w.write_json("timing.json", {  # the keys of reglab.study.runner.timing_table's output
        "units": "seconds (wall clock)", "study_train_s": 1.5 * epochs_done, "study_wall_s": 12.5 * epochs_done,
        "n_variants": cfg.n_variants, "device": "cpu", "methods_alone": method_times,
        "methods_alone_note": "each method's variants timed alone after one warm-up epoch",
        "sum_of_methods_alone_s": total_alone, "batching_speedup": total_alone / (1.5 * epochs_done)})
    w.write_npz("analysis.npz", _analysis(cfg, rng, pointcloud))
    w.finalize()
    w.update_manifest(status="complete")
    w.remove_shards()
    return w


def _epoch_rows(w: RunWriter, v: int) -> list[dict]:
    from reglab.results import read_csv_columns
    cols = read_csv_columns(sorted((w.dir / "metrics").glob("epoch-*.csv")))
    rows = np.flatnonzero(cols["variant"] == v)
    return [{c: cols[c][i] for c in cols} for i in rows]


def _analysis(cfg: StudyConfig, rng, pointcloud: bool) -> dict[str, np.ndarray]:
    n_v = cfg.n_variants
    edges = np.concatenate([[0.0], np.logspace(-5, 0.5, 40)])
    hist = np.zeros((n_v, len(edges) - 1))
    act = np.zeros((n_v, cfg.hidden[0]))
    for v, m, s in cfg.variants():
        w = np.abs(rng.normal(0, 0.05, 20_000))
        if m.l1:
            w[: 8000] = np.abs(rng.normal(0, 1e-4, 8000))
        if m.uses_max_norm:
            w = np.minimum(w, 0.12)
        hist[v] = np.histogram(w, edges)[0]
        act[v] = rng.gamma(2.0, (m.kl_rho if m.kl_beta else 0.3) / 2.0, cfg.hidden[0])
    out = {"weight_hist": hist, "weight_hist_edges": edges, "hidden_mean_activation": act}
    if pointcloud:
        g = 60
        xs = np.linspace(-1.5, 2.5, g)
        ys = np.linspace(-1.0, 1.5, g)
        xx, yy = np.meshgrid(xs, ys)
        probs = np.zeros((n_v, g, g))
        for v, m, s in cfg.variants():
            wiggle = 0.0 if m.l2 or m.early_stopping else 0.25 * np.sin(6 * xx + s)
            probs[v] = 1 / (1 + np.exp(-6 * (yy - 0.5 * np.sin(2.5 * xx) - 0.2 + wiggle)))
        t = rng.uniform(0, math.pi, 150)
        x_train = np.c_[np.r_[np.cos(t[:75]), 1 - np.cos(t[75:])],
                        np.r_[np.sin(t[:75]), 0.5 - np.sin(t[75:])]] + rng.normal(0, 0.2, (150, 2))
        y_train = np.r_[np.zeros(75, int), np.ones(75, int)]
        out.update(grid_xx=xx, grid_yy=yy, grid_probs=probs, x_train=x_train, y_train=y_train,
                   x_val=x_train[::3] + 0.05, y_val=y_train[::3])
    return out


@pytest.fixture(scope="session")
def mnist_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("mnist-run")
    write_synthetic_run(d, mnist_config())
    return d


@pytest.fixture(scope="session")
def pointcloud_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("pointcloud-run")
    write_synthetic_run(d, pointcloud_config(), with_epoch_times=False)
    return d


@pytest.fixture(scope="session")
def mnist_report(mnist_run):
    """The MNIST run with its report built (once per session)."""
    from reglab.report import build_report
    return build_report(mnist_run)


@pytest.fixture(scope="session")
def pointcloud_report(pointcloud_run):
    from reglab.report import build_report
    return build_report(pointcloud_run)
