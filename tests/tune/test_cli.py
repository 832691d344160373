"""`reglab tune` from the command line: smoke runs end to end, the config `reglab run` accepts, errors."""

import pytest

from reglab.cli import main
from reglab.config import load_toml, study_from_dict
from reglab.results import load_run, read_json


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("reglab: ")
    return err


def test_a_pointcloud_smoke_tune_writes_a_config_that_load_toml_accepts(tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(["tune", "pointcloud", "--smoke", "--methods", "no_penalty,l2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "preset val err" in printed and str(out / "tuned.toml") in printed
    assert "batch of 4 trials (0 pruned, 0 failed)" in printed and "batch 1, epoch 2/2" in printed
    tuned = load_toml(out / "tuned.toml")
    assert [m.name for m in tuned.methods] == ["no_penalty", "l2"]
    meta = read_json(out / "tune.json")
    assert meta["status"] == "complete"
    assert meta["command"].startswith("reglab tune pointcloud --methods no_penalty,l2")
    assert all(m["n_trials"] == 2 for m in meta["methods"].values())  # --smoke: 2 trials per method
    assert tuned.data.n_points == 240 and tuned.n_epochs == 2  # the smoke study's data and budget


def test_a_bfloat16_tune_carries_the_matmul_dtype_into_tuned_toml_and_the_command(tmp_path):
    out = tmp_path / "tune"
    assert main(["tune", "pointcloud", "--smoke", "--methods", "l2", "--matmul-dtype", "bfloat16",
                 "--out", str(out), "--quiet"]) == 0
    assert load_toml(out / "tuned.toml").matmul_dtype == "bfloat16"
    assert "--matmul-dtype bfloat16" in read_json(out / "tune.json")["command"]


@pytest.mark.slow
def test_reglab_run_accepts_the_tuned_config_directly(tmp_path):
    out = tmp_path / "tune"
    assert main(["tune", "pointcloud", "--smoke", "--methods", "l2", "--out", str(out), "--quiet"]) == 0
    run_dir = tmp_path / "run"
    assert main(["run", "--config", str(out / "tuned.toml"), "--out", str(run_dir), "--quiet"]) == 0
    run = load_run(run_dir)
    assert run.complete and run.methods == ["l2"]
    assert study_from_dict(run.config) == load_toml(out / "tuned.toml")


@pytest.mark.slow
def test_an_mnist_smoke_tune_on_the_shared_copy_reads_the_data_folder_from_the_environment(
        data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REGLAB_DATA_DIR", str(data_dir))
    out = tmp_path / "tune"
    assert main(["tune", "mnist", "--preset", "quick", "--smoke", "--methods", "l2,dropout+max_norm",
                 "--out", str(out), "--quiet"]) == 0
    tuned = load_toml(out / "tuned.toml")
    assert [m.name for m in tuned.methods] == ["l2", "dropout+max_norm"]
    assert tuned.data.subset_per_class > 0 and tuned.n_epochs <= 2


@pytest.mark.parametrize("argv,expected", [
    (["tune", "pointcloud"], "no budget given"),
    (["tune", "pointcloud", "--smoke", "--methods", "l2,nope"], "--methods must name methods"),
    (["tune", "pointcloud", "--smoke", "--address", "auto"], "--address applies to --executor ray only"),
    (["tune", "pointcloud", "--smoke", "--shard-by", "layer"], "--shard-by must list"),
    (["tune", "pointcloud", "--trials", "0"], "--trials must be a whole number >= 1"),
    (["tune", "pointcloud", "--preset", "datasize", "--smoke"], "is a data-size sweep"),
])
def test_bad_arguments_are_one_line_and_exit_status_2(tmp_path, capsys, argv, expected):
    assert main(argv + ["--out", str(tmp_path / "t")]) == 2
    assert expected in _one_error_line(capsys)


def test_bad_trials_or_an_unreachable_storage_is_one_line_before_the_base_config_is_printed(tmp_path, capsys):
    assert main(["tune", "mnist", "--smoke", "--trials", "0", "--out", str(tmp_path / "t")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "--trials" in captured.err
    bad = f"sqlite:///{tmp_path}/no/such/folder/optuna.db"
    assert main(["tune", "pointcloud", "--smoke", "--storage", bad, "--out", str(tmp_path / "t")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "storage" in captured.err
    assert not (tmp_path / "t").exists()
