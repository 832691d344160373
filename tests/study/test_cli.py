"""`reglab run` from the command line: TOML errors, argument errors, smoke runs, SIGKILL + resume."""

import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reglab.cli import main
from reglab.config import load_toml
from reglab.results import load_run, read_json

DATA_DIR = os.environ.get("REGLAB_DATA_DIR")
needs_mnist = pytest.mark.skipif(not DATA_DIR, reason="REGLAB_DATA_DIR is not set (folder holding mnist/)")


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("reglab: ")
    return err


def _toml(tmp_path, text):
    p = tmp_path / "study.toml"
    p.write_text(text)
    return str(p)


GOOD = '''name = "mine"
hidden = [16]
n_epochs = 2
seeds = [0, 1]
[data]
name = "moons"
n_points = 120
[[methods]]
name = "l2"
l2 = 0.001
[[methods]]
name = "dropout+max_norm"
dropout_hidden = 0.5
max_norm = 2.0
'''


@pytest.mark.parametrize("text,expected", [
    (GOOD.replace("n_epochs = 2", "n_epocs = 2"), "unknown key study.toml.n_epocs; allowed: name, data, hidden"),
    (GOOD.replace("n_epochs = 2", "n_epochs = 0"), "'n_epochs' must be a whole number in [1,"),
    (GOOD.replace("dropout_hidden = 0.5", "dropout_hidden = 1.5"), "'dropout+max_norm.dropout_hidden' must be a number in [0, 1); got 1.5"),
    (GOOD.replace("l2 = 0.001", "l3 = 0.001"), "unknown key study.toml.methods[0].l3; allowed: name, l2, l1"),
    (GOOD.replace('name = "moons"', 'name = "cifar"'), "'data.name' must be one of 'mnist', 'fashion-mnist'"),
    (GOOD.replace('hidden = [16]', 'hidden = 16'), "study.toml.hidden must be a list of whole numbers; got 16"),
    (GOOD.replace('l2 = 0.001', 'l2 = "lots"'), "'l2.l2' must be a number; got 'lots'"),
    (GOOD.replace("[data]", "[data"), "is not valid TOML"),
])
def test_a_bad_toml_key_or_value_is_one_line_naming_it(tmp_path, capsys, text, expected):
    assert main(["run", "--config", _toml(tmp_path, text), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert expected in _one_error_line(capsys)
    assert not (tmp_path / "r" / "manifest.json").exists()


@pytest.mark.parametrize("argv,expected", [
    (["run", "mnist", "--preset", "huge"], "unknown preset 'huge' for study 'mnist'; allowed: quick, seed, table9-cpu, paper, datasize"),
    (["run", "pointcloud", "--dataset", "mnist"], "--dataset must be one of moons, circles, spirals, xor"),
    (["run", "pointcloud", "--resolution", "7"], "--resolution applies to image datasets only"),
    (["run", "--seeds", "0"], "--seeds must be a whole number from 1 to 10,000; got 0"),
    (["run", "--threads", "0"], "--threads must be a whole number >= 1; got 0"),
    (["run", "--resume", "x", "--seeds", "3"], "--resume continues the study stored in the run directory"),
    (["run", "--config", "nowhere.toml"], "config file nowhere.toml does not exist"),
    (["run", "--resume", "x", "--matmul-dtype", "bfloat16"], "--resume continues the study stored"),
])
def test_bad_arguments_are_one_line_and_exit_status_2(capsys, argv, expected):
    assert main(argv) == 2
    assert expected in _one_error_line(capsys)


def test_a_toml_study_runs_end_to_end_from_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--config", _toml(tmp_path, GOOD), "--out", str(out), "--quiet", "--no-report"]) == 0
    assert capsys.readouterr().out == ""  # --quiet prints nothing
    run = load_run(out)
    assert run.complete and run.methods == ["l2", "dropout+max_norm"]
    assert run.manifest["command"].startswith("reglab run --config ")


def test_the_pointcloud_smoke_study_runs_end_to_end_from_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "pointcloud", "--smoke", "--seeds", "2", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "pointcloud-smoke" in captured.err and "best val error" in captured.err  # the progress bar
    assert "# resolved config" in printed and f"results in {out}" in printed
    assert f"report at {out / 'report.html'}" in printed and (out / "report.html").is_file()
    run = load_run(out)
    assert run.complete
    assert run.methods == ["no_penalty", "l1", "l2", "early_stopping"]
    summary = read_json(out / "summary.json")
    for stats in summary["methods"].values():
        assert stats["stats"]["test_error"]["n"] + stats["n_diverged"] == 2
        assert 0.0 <= stats["stats"]["test_error"]["mean"] <= 1.0


@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize("preset,extra,dataset", [
    ("quick", [], "mnist"), ("seed", ["--resolution", "7"], "mnist"), ("table9-cpu", [], "mnist"),
    ("paper", [], "mnist"),
    ("quick", ["--dataset", "fashion-mnist"], "fashion-mnist")])
def test_every_mnist_preset_runs_in_smoke_mode_on_the_shared_copy(tmp_path, preset, extra, dataset):
    out = tmp_path / "run"
    assert main(["run", "mnist", "--preset", preset, *extra, "--smoke", "--seeds", "2", "--device", "cpu",
                 "--out", str(out), "--data-dir", DATA_DIR, "--quiet", "--no-report"]) == 0
    run = load_run(out)
    assert run.complete and len(run.methods) == 6
    ds = read_json(out / "dataset.json")
    assert ds["n_train"] == 300 and ds["name"] == dataset
    assert ds["n_features"] == (49 if "7" in extra else 784)
    assert all(f["status"] == "ok" for f in ds["info"]["checksums"].values())
    summary = read_json(out / "summary.json")
    assert all(m["stats"]["test_error"]["n"] == 2 for m in summary["methods"].values())
    if preset == "quick":   # each dataset's own validated lr (docs/studies.md)
        lrs = {m["lr"] for m in read_json(out / "config.json")["methods"]}
        assert lrs == {{"mnist": 0.1, "fashion-mnist": 0.03}[dataset]}


@needs_mnist
@pytest.mark.slow
def test_a_preset_run_on_a_dataset_its_values_were_not_validated_on_says_so_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "mnist", "--preset", "seed", "--dataset", "fashion-mnist", "--smoke", "--seeds", "1",
                 "--out", str(out), "--data-dir", DATA_DIR, "--no-report"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("reglab: note:")]
    assert len(notes) == 1 and "validated on MNIST, not on fashion-mnist" in notes[0]
    assert "--preset quick, --preset datasize" in notes[0]


@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_the_datasize_preset_runs_in_smoke_mode_and_reports_over_its_sizes(tmp_path, capsys, dataset):
    from reglab.study.datasize import DATASIZE_FILE, DATASIZE_SUMMARY
    out = tmp_path / "run"
    assert main(["run", "mnist", "--preset", "datasize", "--dataset", dataset, "--smoke", "--seeds", "2",
                 "--set", "methods.none.lr=0.02",
                 "--out", str(out), "--data-dir", DATA_DIR, "--quiet"]) == 0
    meta = read_json(out / DATASIZE_FILE)
    assert meta["status"] == "complete" and [s["n_train"] for s in meta["sizes"]] == [50, 100, 300]
    own_lr = {"mnist": 0.1, "fashion-mnist": 0.03}[dataset]   # each dataset's validated lr (docs/studies.md)
    for s in meta["sizes"]:
        run = load_run(out / s["run"])
        assert run.complete and run.methods[0] == "none" and len(run.methods) == 7
        assert read_json(out / s["run"] / "dataset.json")["name"] == dataset
        lrs = {m["name"]: m["lr"] for m in read_json(out / s["run"] / "config.json")["methods"]}
        assert lrs.pop("none") == 0.02 and set(lrs.values()) == {own_lr}   # --set still overrides the preset
    summary = read_json(out / DATASIZE_SUMMARY)
    assert all(len(s["gains"]) == 6 and all("p_holm" in g for g in s["gains"]) for s in summary["sizes"])
    assert (out / "report.html").is_file() and (out / "figures" / "test_error_vs_size.svg").is_file()
    assert main(["report", str(out)]) == 0                    # rebuilt from the files alone
    assert main(["run", "--resume", str(out), "--quiet"]) == 0  # complete: nothing to do


def test_matmul_dtype_reaches_the_config_the_report_and_the_reproduce_command(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "pointcloud", "--smoke", "--seeds", "2", "--matmul-dtype", "bfloat16", "--out", str(out),
                 "--quiet"]) == 0
    run = load_run(out)
    assert run.complete and run.config["matmul_dtype"] == "bfloat16"
    assert "--matmul-dtype bfloat16" in run.manifest["command"]
    assert "<td>matmul_dtype</td><td>bfloat16</td>" in (out / "report.html").read_text()


def test_set_values_reach_the_run_config_toml_and_the_reproduce_command(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "pointcloud", "--smoke", "--seeds", "1", "--set", "methods.l2.l2=0.03", "--set", "n_epochs=3",
            "--set", "data.name=circles", "--out", str(out), "--quiet", "--no-report"]
    assert main(argv) == 0
    run = load_run(out)
    assert run.complete and run.manifest["epochs_done"] == 3
    stored = load_toml(out / "config.toml")
    assert stored.n_epochs == 3 and stored.data.name == "circles"
    assert {m.name: m.l2 for m in stored.methods}["l2"] == 0.03
    assert "--set methods.l2.l2=0.03 --set n_epochs=3 --set data.name=circles" in run.manifest["command"]
    # the stored command makes the same study again
    again = tmp_path / "again"
    replay = shlex.split(run.manifest["command"].replace(str(out), str(again)))
    assert replay[:2] == ["reglab", "run"] and main(replay[1:]) == 0
    assert load_toml(again / "config.toml") == stored


def test_each_bad_set_is_one_line_and_exit_status_2_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "pointcloud", "--smoke", "--set", "methods.dropout+l2.dropout_hidden=0.3",
                 "--set", "methods.l2.l2=-1", "--set", "n_epochs=30", "--out", str(out), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().split("\n")
    assert lines == [
        "reglab: --set methods.dropout+l2.dropout_hidden=0.3: this study has no method named 'dropout+l2'; "
        "its methods: no_penalty, l1, l2, early_stopping. Fix: use one of those names, or * for every method.",
        "reglab: --set methods.l2.l2=-1: 'l2.l2' must be a number in [0, inf); got -1. Fix: use 0 to disable."]
    assert not out.exists()


def test_set_applies_to_a_toml_study_and_is_refused_with_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--config", _toml(tmp_path, GOOD), "--set", "methods.dropout+max_norm.max_norm=inf",
                 "--out", str(out), "--quiet", "--no-report"]) == 0
    assert load_toml(out / "config.toml").methods[1].max_norm == math.inf
    assert main(["run", "--resume", str(out), "--set", "n_epochs=3"]) == 2
    assert "--resume continues the study stored in the run directory; got also --set" in _one_error_line(capsys)


def test_bfloat16_on_a_cpu_without_bfloat16_instructions_warns_and_still_runs(tmp_path, capsys, monkeypatch):
    from reglab.study import cli
    monkeypatch.setattr(cli, "_native_bfloat16_cpu", lambda: False)
    out = tmp_path / "run"
    assert main(["run", "pointcloud", "--smoke", "--seeds", "1", "--epochs", "1", "--matmul-dtype", "bfloat16",
                 "--out", str(out), "--quiet", "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "no bfloat16 matrix instructions" in err and err.count("\n") == 1
    assert load_run(out).complete


def test_a_diverging_method_is_reported_and_the_study_still_completes(tmp_path, capsys):
    text = GOOD.replace("l2 = 0.001", "l2 = 0.001\nlr = 1e30").replace("n_epochs = 2", "n_epochs = 3")
    out = tmp_path / "run"
    assert main(["run", "--config", _toml(tmp_path, text), "--out", str(out), "--no-report"]) == 0
    summary = read_json(out / "summary.json")
    assert [(d["method"], d["seed"]) for d in summary["diverged"]] == [("l2", 0), ("l2", 1)]
    assert summary["methods"]["l2"]["n_diverged"] == 2
    assert summary["methods"]["dropout+max_norm"]["n_diverged"] == 0
    assert summary["methods"]["dropout+max_norm"]["stats"]["test_error"]["n"] == 2
    assert read_json(out / "manifest.json")["status"] == "complete"
    printed = capsys.readouterr().out
    # the printed table: no error statistics for l2, 2 diverged variants
    assert re.search(r"^l2\s+n/a\s+n/a\s+2$", printed, re.MULTILINE), printed


# ----------------------------------------------------------------------------
# a real SIGKILL mid-epoch, then --resume: the metrics equal an uninterrupted run's

KILL_STUDY = '''name = "killme"
hidden = [64, 64]
n_epochs = 6
batch_size = 10
seeds = [0, 1]
checkpoint_every = 2
[data]
name = "spirals"
n_points = 4000
[[methods]]
name = "l2"
l2 = 0.0001
lr = 0.05
[[methods]]
name = "dropout+max_norm"
dropout_hidden = 0.3
max_norm = 2.0
lr = 0.05
'''


def _reglab(*args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "reglab", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _csv_without_wall_time(path: Path) -> list[list[str]]:
    import csv
    with open(path) as f:
        rows = list(csv.reader(f))
    drop = [i for i, c in enumerate(rows[0]) if c.endswith("time_s")]
    return [[c for i, c in enumerate(r) if i not in drop] for r in rows]


def test_a_run_killed_mid_epoch_resumes_to_exactly_the_uninterrupted_metrics(tmp_path):
    cfg = tmp_path / "study.toml"
    cfg.write_text(KILL_STUDY)
    whole, cut = tmp_path / "whole", tmp_path / "cut"

    p = _reglab("run", "--config", str(cfg), "--out", str(whole), "--quiet", "--no-report")
    assert p.wait(timeout=300) == 0, p.stderr.read()

    p = _reglab("run", "--config", str(cfg), "--out", str(cut), "--quiet", "--no-report")
    # wait for the epoch-3 shard (the last checkpoint is epoch 2's), then half an epoch more:
    # the process is then in the middle of epoch 4
    shard = str(cut / "metrics" / "epoch-{:05d}.csv")
    deadline = time.time() + 300
    while not Path(shard.format(3)).exists():
        assert p.poll() is None, "the run ended before it could be killed: " + p.stderr.read()
        assert time.time() < deadline
        time.sleep(0.005)
    epoch_s = Path(shard.format(3)).stat().st_mtime - Path(shard.format(2)).stat().st_mtime
    time.sleep(epoch_s / 2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not Path(shard.format(4)).exists(), "killed after epoch 4 ended, not inside it"
    manifest = read_json(cut / "manifest.json")
    assert manifest["status"] == "running"          # killed: nobody marked it
    assert (cut / ".lock").exists()                 # and its lock is left behind, owner dead
    assert (cut / "checkpoints" / "latest").read_text().strip() == "epoch-00002.pt"

    r = _reglab("run", "--resume", str(cut), "--quiet", "--no-report")
    assert r.wait(timeout=300) == 0, r.stderr.read()

    for name in ("metrics_epoch.csv", "metrics_iter.csv"):
        assert _csv_without_wall_time(cut / name) == _csv_without_wall_time(whole / name), name
    a, b = read_json(whole / "summary.json"), read_json(cut / "summary.json")
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in rows]
    assert strip(a["variants"]) == strip(b["variants"])
    assert read_json(cut / "manifest.json")["status"] == "complete"
    assert not (cut / ".lock").exists()


def test_a_terminated_run_is_marked_interrupted_and_unlocked(tmp_path):
    cfg = tmp_path / "study.toml"
    cfg.write_text(KILL_STUDY.replace("n_epochs = 6", "n_epochs = 50"))
    out = tmp_path / "run"
    p = _reglab("run", "--config", str(cfg), "--out", str(out), "--quiet", "--no-report")
    deadline = time.time() + 300
    while not (out / "metrics" / "epoch-00001.csv").exists():
        assert p.poll() is None, p.stderr.read()
        assert time.time() < deadline
        time.sleep(0.01)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 130
    assert p.stderr.read().strip() == "reglab: interrupted"
    assert read_json(out / "manifest.json")["status"] == "interrupted"
    assert not (out / ".lock").exists()


def test_threads_default_to_the_free_cores_and_resume_keeps_the_runs_own(tmp_path, monkeypatch):
    from reglab import threads
    from reglab.results import atomic_write_json
    from reglab.study.cli import resolve_threads
    monkeypatch.delenv("REGLAB_THREADS", raising=False)       # the test runner's workers set it
    reading = threads.CpuReading(allowed=16, physical_cores=16, quota=None, busy=0.0)
    monkeypatch.setattr(threads, "read_cpus", lambda seconds=0.0: reading)
    assert resolve_threads(None, None) == 16
    reading = threads.CpuReading(allowed=2, physical_cores=2, quota=None, busy=1.0)
    assert resolve_threads(None, None) == 1
    monkeypatch.setattr(threads, "usable_cpus", lambda: 16)   # explicit counts up to the CPUs pass as given
    assert resolve_threads(3, None) == 3
    atomic_write_json(tmp_path / "environment.json", {"torch_threads": 2})
    assert resolve_threads(None, str(tmp_path)) == 2
    assert resolve_threads(4, str(tmp_path)) == 4


def test_reglab_threads_replaces_the_measured_default_but_not_threads_or_resume(tmp_path, monkeypatch, capsys):
    from reglab import threads
    from reglab.errors import ReglabError
    from reglab.results import atomic_write_json
    from reglab.study.cli import resolve_threads
    reading = threads.CpuReading(allowed=16, physical_cores=16, quota=None, busy=0.0)
    monkeypatch.setattr(threads, "read_cpus", lambda seconds=0.0: reading)
    monkeypatch.setattr(threads, "usable_cpus", lambda: 16)
    monkeypatch.setenv("REGLAB_THREADS", "3")
    assert resolve_threads(None, None) == 3
    assert resolve_threads(5, None) == 5
    atomic_write_json(tmp_path / "environment.json", {"torch_threads": 2})
    assert resolve_threads(None, str(tmp_path)) == 2
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    monkeypatch.setenv("REGLAB_THREADS", "8")
    assert resolve_threads(None, None) == 2                   # capped to the usable CPUs, with one line
    assert "REGLAB_THREADS" in capsys.readouterr().err
    for bad in ("0", "two", "-1", "1.5", "\u00b2"):            # "²" is a digit to str.isdigit, not to int()
        monkeypatch.setenv("REGLAB_THREADS", bad)
        with pytest.raises(ReglabError, match=r"^REGLAB_THREADS must be a whole number >= 1; got .*Fix: "):
            resolve_threads(None, None)
    monkeypatch.setenv("REGLAB_THREADS", "")                  # empty: unset
    assert resolve_threads(None, None) == 16                  # the measured default (the reading above)


# ----------------------------------------------------------------------------
# --out / --resume / --data-dir pointing at the wrong kind of thing

def test_out_that_is_an_existing_file_is_one_line_and_exit_2_not_a_traceback(tmp_path, capsys):
    target = tmp_path / "FILE"
    target.write_text("keep me")
    assert main(["run", "mnist", "--smoke", "--out", str(target), "--quiet"]) == 2
    assert _one_error_line(capsys) == (f"reglab: {target} is a file, not a folder. Fix: give a folder for the "
                                       "results (it is created when missing), e.g. another --out.")
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("argv,expected", [
    (["run", "pointcloud", "--smoke", "--out", "{f}/sub"], "{f}/sub cannot be created: {f} is a file, not a folder"),
    (["run", "--resume", "{f}"], "cannot resume: {f} is a file, not a run directory"),
    (["run", "--resume", "{d}/nowhere"], "cannot resume: {d}/nowhere does not exist"),
    (["run", "mnist", "--smoke", "--data-dir", "{f}", "--out", "{d}/r"], "data dir {f} is a file, not a folder"),
    (["run", "mnist", "--smoke", "--data-dir", "{d}/nowhere", "--out", "{d}/r"], "data dir {d}/nowhere does not exist"),
    (["tune", "pointcloud", "--smoke", "--out", "{f}"], "{f} is a file, not a folder"),
])
def test_paths_of_the_wrong_kind_are_one_line_and_exit_2(tmp_path, capsys, argv, expected):
    f = tmp_path / "FILE"
    f.write_text("keep me")
    fill = lambda s: s.format(f=f, d=tmp_path)  # noqa: E731
    assert main([fill(a) for a in argv] + ["--quiet"]) == 2
    assert fill(expected) in _one_error_line(capsys)
    assert f.read_text() == "keep me" and not (tmp_path / "r").exists()


def test_an_unwritable_out_folder_is_one_line_and_exit_2(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes through permission bits: a read-only mount is unwritable even to root
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)]).returncode != 0:
            pytest.skip("running as root where tmpfs cannot be mounted: no way to make a folder unwritable")
    else:
        ro.chmod(0o500)
    try:
        assert main(["run", "pointcloud", "--smoke", "--out", str(ro / "run"), "--quiet"]) == 2
        assert f"{ro / 'run'} cannot be written: {ro} is not writable" in _one_error_line(capsys)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=True)
        else:
            ro.chmod(0o700)


# ----------------------------------------------------------------------------
# issue 22: the inputs that escaped as a traceback or a hang, each one line with exit 2

def test_an_out_name_longer_than_the_file_system_allows_is_one_line_before_anything_is_printed(tmp_path, capsys):
    out = tmp_path / ("x" * 300)
    assert main(["run", "--smoke", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "--out" in captured.err and "300 bytes" in captured.err
    assert list(tmp_path.iterdir()) == []   # (out.exists() itself raises "File name too long")


def test_a_net_too_large_for_memory_is_refused_with_the_estimate_before_the_config_is_printed(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--smoke", "--threads", "1", "--set", "hidden=[1000000,1000000]", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err.count("\n") == 0 and "needs about" in err and "TiB" in err and "available" in err
    assert "Fix: fewer seeds" in err and "--device cuda" in err
    assert not out.exists()


def test_threads_above_the_usable_cpus_are_capped_to_them_with_one_line(monkeypatch, capsys):
    from reglab import threads
    from reglab.study.cli import resolve_threads

    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    assert resolve_threads(999, None) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--threads 999" in err and "using 2" in err
    assert resolve_threads(2, None) == 2 and capsys.readouterr().err == ""


def test_the_usable_cpus_are_the_affinity_mask_at_most_the_cgroup_quota(monkeypatch):
    from reglab import threads

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 1.5)
    assert threads.usable_cpus() == 2
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
    assert threads.usable_cpus() == 4


def test_a_config_or_resume_path_too_long_and_a_file_on_the_out_path_are_one_line_naming_it(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / ("c" * 300 + ".toml"))]) == 2
    assert "--config" in _one_error_line(capsys)
    assert main(["run", "--resume", str(tmp_path / ("r" * 300))]) == 2
    assert "--resume" in _one_error_line(capsys)
    (tmp_path / "file").write_text("x")
    assert main(["run", "--smoke", "--out", str(tmp_path / "file" / "run")]) == 2
    assert "is a file" in _one_error_line(capsys)
