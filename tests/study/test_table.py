"""The table study end to end: `reglab run table`, `reglab tune table` -> tuned.toml -> `reglab run --config`,
a DataFrame from Python, scikit-learn's digits, the data-size preset on a table; sizing rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import reglab
from reglab.cli import main
from reglab.config import DataConfig, load_toml
from reglab.data.table import load_table
from reglab.results import read_json
from reglab.study.table import hidden_width, table_batch_size, table_study


def made_table(n_per_class: int = 40, seed: int = 0) -> pd.DataFrame:
    """Three classes separated along two numeric features, plus a string feature."""
    rng = np.random.default_rng(seed)
    centres = {"a": (0, 0), "b": (3, 0), "c": (0, 3)}
    parts = []
    for label, (cx, cy) in centres.items():
        parts.append(pd.DataFrame({"u": rng.normal(cx, 1, n_per_class), "v": rng.normal(cy, 1, n_per_class),
                                   "shop": rng.choice(["north", "south"], n_per_class), "label": label}))
    return pd.concat(parts, ignore_index=True).sample(frac=1, random_state=seed).reset_index(drop=True)


def run_cli(argv, tmp_path, monkeypatch) -> int:
    monkeypatch.chdir(tmp_path)
    return main(argv + ["--threads", "1", "--quiet"])


def test_the_net_and_batch_follow_the_documented_rules():
    assert hidden_width(64, 10) == 128 and hidden_width(30, 2) == 64 and hidden_width(4, 3) == 32
    assert hidden_width(1000, 10) == 512
    assert table_batch_size(397) == 20 and table_batch_size(50_000) == 100
    frame = made_table()
    data = DataConfig(name="table", standardize=True)
    cfg = table_study(data, load_table(data, data=(frame, "label")))
    assert [m.name for m in cfg.methods] == ["none", "early_stopping", "l2", "l2+l1_late", "l2+kl", "max_norm",
                                             "dropout+l2", "dropout+max_norm"]
    assert cfg.hidden == (32, 32) and cfg.n_epochs * -(-84 // cfg.batch_size) >= 2000


def test_a_csv_runs_through_run_table_and_tune_table_then_run_config(tmp_path, monkeypatch):
    path = tmp_path / "shops.csv"
    made_table().to_csv(path, index=False, sep=";")
    assert run_cli(["run", "table", "--data", str(path), "--target", "label", "--smoke", "--out", "r1"],
                   tmp_path, monkeypatch) == 0
    info = read_json(tmp_path / "r1" / "dataset.json")["info"]
    assert info["classes"] == ["a", "b", "c"] and info["shape"] == [120, 4]
    assert info["features"] == ["u", "v", "shop=north", "shop=south"]
    assert read_json(tmp_path / "r1" / "manifest.json")["status"] == "complete"

    assert run_cli(["tune", "table", "--data", str(path), "--target", "label", "--smoke", "--trials", "1",
                    "--methods", "none,dropout+l2", "--out", "t1"], tmp_path, monkeypatch) == 0
    tuned = load_toml(tmp_path / "t1" / "tuned.toml")
    assert tuned.data.name == "table" and tuned.data.source == str(path.resolve())
    assert run_cli(["run", "--config", str(tmp_path / "t1" / "tuned.toml"), "--out", "r2"],
                   tmp_path, monkeypatch) == 0
    assert read_json(tmp_path / "r2" / "dataset.json")["info"]["checksums"] == info["checksums"]


def test_a_dataframe_runs_through_run_study_and_the_tuner_like_its_csv(tmp_path):
    frame = made_table()
    cfg = reglab.table_study(data=(frame, "label"), smoke=True)
    run = reglab.run_study(cfg, data=(frame, "label"), out_dir=tmp_path / "py", quiet=True, report=False,
                           time_methods=False)
    assert set(run.summary["method"]) == {m.name for m in cfg.methods}
    info = read_json(tmp_path / "py" / "dataset.json")["info"]
    assert info["source"]["kind"] == "python" and info["classes"] == ["a", "b", "c"]

    from reglab.tune.search import tune
    dataset = load_table(cfg.data, data=(frame, "label"))
    result_dir = tmp_path / "tune"
    tune(cfg.replace(methods=cfg.methods[:2]), dataset, out_dir=result_dir, n_trials=1)
    assert (result_dir / "tuned.toml").exists()


def test_sklearn_digits_runs_through_run_table_and_tune_table(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    assert run_cli(["run", "table", "--data", "sklearn:digits", "--smoke", "--seeds", "1", "--out", "d1",
                    "--no-report"], tmp_path, monkeypatch) == 0
    summary = read_json(tmp_path / "d1" / "summary.json")
    assert len(summary["variants"]) == 8
    assert run_cli(["tune", "table", "--data", "sklearn:digits", "--smoke", "--trials", "1",
                    "--methods", "l2", "--out", "dt"], tmp_path, monkeypatch) == 0
    assert load_toml(tmp_path / "dt" / "tuned.toml").data.source == "sklearn:digits"


def test_the_datasize_preset_runs_on_a_table_with_sizes_it_holds(tmp_path, monkeypatch):
    path = tmp_path / "shops.parquet"
    made_table(n_per_class=60).to_parquet(path)
    assert run_cli(["run", "table", "--data", str(path), "--target", "label", "--preset", "datasize", "--smoke",
                    "--out", "ds", "--no-report"], tmp_path, monkeypatch) == 0
    meta = read_json(tmp_path / "ds" / "datasize.json")
    assert meta["status"] == "complete"
    assert [s["n_train"] for s in meta["sizes"]] == [15, 30, 126]   # 5 and 10 per class, then all 42 x 3


# ----------------------------------------------------------------------------
# a resume must train on the table the run began with; the table is read once per command

def run_tree(run_dir) -> dict:
    """Every file under `run_dir` (hidden ones too) -> (sha256, mtime in ns), and every folder -> None.
    A folder's own mtime is left out: taking and releasing the run's lock creates and removes .lock."""
    import hashlib
    return {str(p.relative_to(run_dir)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            if p.is_file() else None for p in sorted(run_dir.rglob("*"))}


@pytest.fixture
def cheap_timing(monkeypatch):
    from reglab.study import runner
    monkeypatch.setattr(runner, "TIMING_MIN_SECONDS", 0.0)
    monkeypatch.setattr(runner, "TIMING_MAX_EPOCHS", 1)


def interrupt_in_epoch_2(monkeypatch):
    """A kill in the smoke run's second (last) epoch, after the checkpoint of epoch 1; undo() lifts it."""
    from reglab.results import RunWriter
    real = RunWriter.write_epoch

    def write_epoch(self, epoch, *a):
        if epoch == 2:
            raise KeyboardInterrupt
        real(self, epoch, *a)
    monkeypatch.setattr(RunWriter, "write_epoch", write_epoch)
    return lambda: monkeypatch.setattr(RunWriter, "write_epoch", real)


def count_opens(monkeypatch, path) -> list:
    """Every open of `path` (builtins.open, io.open: Path.read_bytes, pandas and NumPy all go through
    them) appends to the returned list."""
    import builtins
    import io
    import os
    opens, real = [], io.open
    target = os.path.realpath(path)

    def counting_open(file, *a, **kw):
        if isinstance(file, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(file)) == target:
            opens.append(a[0] if a else kw.get("mode", "r"))
        return real(file, *a, **kw)
    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    return opens


def change_one_value(path):
    lines = path.read_text().splitlines(keepends=True)
    first = lines[1].split(";")
    first[0] = repr(float(first[0]) + 1.0)
    lines[1] = ";".join(first)
    path.write_text("".join(lines))


def rename_label_column(path):
    text = path.read_text()
    header, rest = text.split("\n", 1)
    path.write_text(header.replace("label", "kind") + "\n" + rest)


CHANGES = {
    # how the file changes -> the start of the one line the resume prints about it
    "one value changed": (change_one_value, "differs from the table this run began with (sha256 "),
    "file gone": (lambda p: p.unlink(), "which this run began with, is gone. Fix: put it back (sha256 "),
    "label column renamed": (rename_label_column, "differs from the table this run began with (sha256 "),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_resuming_a_table_run_whose_file_changed_is_one_line_and_changes_nothing(
        change, tmp_path, monkeypatch, capsys, cheap_timing):
    path = tmp_path / "shops.csv"
    made_table().to_csv(path, index=False, sep=";")
    original = path.read_bytes()
    undo = interrupt_in_epoch_2(monkeypatch)
    assert run_cli(["run", "table", "--data", str(path), "--target", "label", "--smoke", "--out", "cut",
                    "--no-report"], tmp_path, monkeypatch) == 130
    undo()
    run_dir = tmp_path / "cut"
    assert read_json(run_dir / "manifest.json")["status"] == "interrupted"
    mutate, message = CHANGES[change]
    mutate(path)
    before = run_tree(run_dir)
    capsys.readouterr()

    assert main(["run", "--resume", str(run_dir), "--quiet", "--threads", "1", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"reglab: table file {path}") and message in err, err
    assert " Fix: " in err and "start a new run" in err
    assert run_tree(run_dir) == before

    # the same file back: the resume goes on, reading the table once
    path.write_bytes(original)
    opens = count_opens(monkeypatch, path)
    assert main(["run", "--resume", str(run_dir), "--quiet", "--threads", "1", "--no-report"]) == 0
    assert read_json(run_dir / "manifest.json")["status"] == "complete" and len(opens) == 1


@pytest.mark.parametrize("change", ["one value changed", "another label column"])
def test_resuming_a_python_data_run_with_other_data_is_one_line_and_changes_nothing(
        change, tmp_path, monkeypatch, cheap_timing):
    from reglab.errors import ReglabError
    from reglab.study.runner import run_study
    frame = made_table()
    cfg = reglab.table_study(data=(frame, "label"), smoke=True)
    undo = interrupt_in_epoch_2(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, data=(frame, "label"), out_dir=tmp_path / "cut", quiet=True, report=False)
    undo()
    before = run_tree(tmp_path / "cut")
    if change == "one value changed":
        other, target, message = frame.assign(u=frame.u.where(frame.index != 0, 99.0)), "label", \
            "the data given differs from the table this run began with (sha256 "
    else:
        other, target, message = frame, "shop", "the data given: its label column is 'shop', but this run began " \
                                                "with 'label'"
    with pytest.raises(ReglabError) as e:
        run_study(None, data=(other, target), out_dir=tmp_path / "cut", resume=True, quiet=True, report=False)
    assert len(e.value.lines) == 1 and e.value.lines[0].startswith(message) and " Fix: " in e.value.lines[0]
    assert run_tree(tmp_path / "cut") == before
    run_study(None, data=(frame, "label"), out_dir=tmp_path / "cut", resume=True, quiet=True, report=False)
    assert read_json(tmp_path / "cut" / "manifest.json")["status"] == "complete"


def test_resuming_a_table_datasize_study_whose_file_changed_is_one_line_and_changes_nothing(
        tmp_path, monkeypatch, capsys):
    path = tmp_path / "shops.csv"
    made_table(n_per_class=60).to_csv(path, index=False, sep=";")
    from reglab.results import RunWriter
    real = RunWriter.write_epoch
    calls = []

    def die_in_the_second_size(self, epoch, *a):   # the first size completes; the second is killed
        if self.dir.name != "n00015" and not calls:
            calls.append(self.dir.name)
            raise KeyboardInterrupt
        real(self, epoch, *a)
    monkeypatch.setattr(RunWriter, "write_epoch", die_in_the_second_size)
    assert run_cli(["run", "table", "--data", str(path), "--target", "label", "--preset", "datasize", "--smoke",
                    "--out", "ds", "--no-report"], tmp_path, monkeypatch) == 130
    monkeypatch.setattr(RunWriter, "write_epoch", real)
    root = tmp_path / "ds"
    assert read_json(root / "datasize.json")["status"] == "interrupted"
    original = path.read_bytes()
    change_one_value(path)
    before = run_tree(root)
    capsys.readouterr()
    assert main(["run", "--resume", str(root), "--quiet", "--threads", "1", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"reglab: table file {path} differs from the table"), err
    assert run_tree(root) == before

    path.write_bytes(original)
    opens = count_opens(monkeypatch, path)
    assert main(["run", "--resume", str(root), "--quiet", "--threads", "1", "--no-report"]) == 0
    assert read_json(root / "datasize.json")["status"] == "complete" and len(opens) == 1


@pytest.mark.parametrize("command", [
    ["run", "table", "--smoke", "--no-report"],
    ["run", "table", "--preset", "datasize", "--smoke", "--no-report"],
    ["tune", "table", "--smoke", "--trials", "1", "--methods", "none"],
])
def test_a_table_command_reads_its_file_once(command, tmp_path, monkeypatch, cheap_timing):
    path = tmp_path / "shops.csv"
    made_table(n_per_class=60).to_csv(path, index=False, sep=";")
    opens = count_opens(monkeypatch, path)
    assert run_cli(command + ["--data", str(path), "--target", "label", "--out", "out"], tmp_path, monkeypatch) == 0
    assert opens == ["rb"]


def test_one_table_read_serves_several_datasets_of_its_source(tmp_path):
    from reglab.data.table import read_table, table_dataset
    frame = made_table().assign(part=lambda f: np.where(f.index % 5 == 0, "val", np.where(f.index % 5 == 1, "test",
                                                                                           "train")))
    path = tmp_path / "shops.csv"
    frame.to_csv(path, index=False)
    cfg = DataConfig(name="table", source=str(path), target="label", split_column="part", standardize=True)
    read = read_table(cfg)
    once, twice = (load_table(cfg, data=read) for _ in range(2))   # the split column is not popped off the read
    fresh = load_table(cfg)
    for ds in (once, twice):
        assert ds.info["checksums"] == fresh.info["checksums"] and ds.info["features"] == fresh.info["features"]
        assert all(bool((a == b).all()) for a, b in zip((ds.x_train, ds.y_train, ds.x_test), (fresh.x_train,
                                                                                        fresh.y_train, fresh.x_test)))
    assert "part" in read.features.columns
    from reglab.errors import ReglabError
    with pytest.raises(ReglabError, match="is not the one this study names"):
        load_table(DataConfig(name="table", source=str(path), target="shop"), data=read)
    assert table_dataset(read.features, read.labels, cfg, read.provenance).n_classes == 3


def test_the_gain_over_none_script_matches_scipy_and_statsmodels(tmp_path):
    """docs/examples/table_gain_over_none.py (the docs' table-study tables) against independent
    references: scipy's paired t-test and interval, statsmodels' Holm correction."""
    import importlib.util
    import json
    from pathlib import Path

    from scipy import stats
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(3)
    errors = {"none": rng.uniform(0.05, 0.07, 5), "l2": rng.uniform(0.03, 0.05, 5),
              "max_norm": rng.uniform(0.05, 0.07, 5), "dropout+l2": rng.uniform(0.055, 0.075, 5)}
    rows = [{"method": m, "seed": s, "test_error": float(e[s])} for m, e in errors.items() for s in range(5)]
    (tmp_path / "summary.json").write_text(json.dumps({"variants": rows}))
    script = Path(__file__).parents[2] / "docs" / "examples" / "table_gain_over_none.py"
    spec = importlib.util.spec_from_file_location("table_gain_over_none", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = module.gain_table(tmp_path).splitlines()[2:]

    others = ["l2", "max_norm", "dropout+l2"]
    p = [stats.ttest_rel(errors["none"], errors[m]).pvalue for m in others]
    p_holm = multitest.multipletests(p, method="holm")[1]
    assert lines[0].startswith(f"| none | {100 * errors['none'].mean():.2f} [")
    for line, m, raw, adjusted in zip(lines[1:], others, p, p_holm):
        d = errors["none"] - errors[m]
        half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == m
        assert cells[2].startswith(f"{100 * d.mean():+.2f} [{100 * (d.mean() - half):+.2f}, "
                                   f"{100 * (d.mean() + half):+.2f}]")
        assert cells[2].endswith("*") == (adjusted < 0.05)
        assert cells[3] == f"{raw:.2g}" and cells[4] == f"{adjusted:.2g}"
