"""Test helpers: a tiny study (two moons, a 2-8-2 net, three epochs, three methods) and result readers."""

import csv
from pathlib import Path

from reglab.config import DataConfig, MethodConfig, StudyConfig


def tiny_study(**changes) -> StudyConfig:
    methods = (
        MethodConfig("l2", lr=0.05, l2=1e-3),
        MethodConfig("max_norm", lr=0.05, max_norm=3.0),
        MethodConfig("dropout+l2", lr=0.05, l2=1e-4, dropout_input=0.1, dropout_hidden=0.3),
    )
    base = dict(name="tiny", data=DataConfig(name="moons", n_points=150, noise=0.25, data_seed=0), hidden=(8,),
                optimizer="sgd", n_epochs=3, batch_size=20, seeds=(0, 1), methods=methods, log_every=1)
    base.update(changes)
    return StudyConfig(**base)


def trials_without_wall_time(tune_dir: Path) -> list[dict]:
    """trials.csv rows minus the one column that differs between identical runs (wall time)."""
    with open(Path(tune_dir) / "trials.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "duration_s"} for row in csv.DictReader(f)]
