"""`reglab data info|fetch`: through register() in-process, and as `python -m reglab` in a subprocess."""

import argparse
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reglab.data import cli
from reglab.errors import ReglabError

from .helpers import Route, assert_one_line, closed_port_url, idx_bytes

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


def _run_in_process(argv, capsys) -> tuple[int, str, str]:
    """Parse `reglab data ...` with a parser holding only the data commands, and run it as the CLI would."""
    parser = argparse.ArgumentParser(prog="reglab")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except ReglabError as e:
        print(f"reglab: {e}", file=sys.stderr)
        rc = 2
    out = capsys.readouterr()
    return rc, out.out, out.err


def _run_cli(argv, tmp_path) -> subprocess.CompletedProcess:
    """`python -m reglab ...` with a private cache and no REGLAB_DATA_DIR."""
    env = {k: v for k, v in os.environ.items() if k != "REGLAB_DATA_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg-cache")
    return subprocess.run([sys.executable, "-m", "reglab", *argv], capture_output=True, text=True,
                          timeout=120, env=env)


def _assert_one_line_failure(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("reglab: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert_one_line(proc.stderr.strip(), *needles)


# ----------------------------------------------------------------------------
# in-process, through register()

def test_info_on_a_point_cloud_prints_its_splits_and_class_counts(capsys):
    rc, out, _ = _run_in_process(["data", "info", "moons"], capsys)
    assert rc == 0
    assert "train      300     150    150" in out and "test       150      75     75" in out


def test_an_unknown_dataset_name_is_one_line_and_exit_2(capsys):
    rc, out, err = _run_in_process(["data", "info", "cifar10"], capsys)
    assert rc == 2 and out == ""
    assert_one_line(err.strip(), "'cifar10'", "mnist, fashion-mnist")


def test_fetch_of_a_generated_dataset_is_one_line_and_exit_2(capsys):
    rc, _, err = _run_in_process(["data", "fetch", "moons"], capsys)
    assert rc == 2
    assert_one_line(err.strip(), "moons is generated")


def test_an_empty_data_dir_offline_is_one_line_listing_each_place(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REGLAB_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    offline = closed_port_url()
    rc, out, err = _run_in_process(["data", "info", "mnist", "--data-dir", str(tmp_path / "empty"),
                                    "--mirror", offline], capsys)
    assert rc == 2 and out == ""
    assert_one_line(err.strip(), str(tmp_path / "empty" / "mnist"), str(tmp_path / "cache" / "reglab" / "mnist"),
                    "/usr/share/datasets/mnist", offline, "unreachable")


def test_the_flags_beat_the_environment_which_beats_the_defaults():
    env = {"REGLAB_DATA_DIR": "/env/data", "XDG_CACHE_HOME": "/env/cache", "HOME": "/home/u"}
    assert cli.resolve_dirs("/flag/data", "/flag/cache", env) == (Path("/flag/data"), Path("/flag/cache"))
    assert cli.resolve_dirs(None, None, env) == (Path("/env/data"), Path("/env/cache/reglab"))
    assert cli.resolve_dirs(None, None, {"HOME": "/home/u"}) == (None, Path("/home/u/.cache/reglab"))


@pytest.mark.slow
def test_fetch_downloads_into_the_cache_and_then_keeps_the_verified_files(server, tmp_path, capsys, data_dir,
                                                                         monkeypatch):
    monkeypatch.delenv("REGLAB_DATA_DIR", raising=False)
    for name in MNIST_FILES:
        server.routes[f"/m/{name}.gz"] = Route((data_dir / "mnist" / f"{name}.gz").read_bytes())
    argv = ["data", "fetch", "mnist", "--cache-dir", str(tmp_path), "--mirror", server.url("m/")]
    rc, out, _ = _run_in_process(argv, capsys)
    assert rc == 0 and out.count("checksum ok, downloaded from http://127.0.0.1") == 4
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(n + ".gz" for n in MNIST_FILES)
    rc, out, _ = _run_in_process(argv, capsys)
    assert rc == 0 and out.count("checksum ok, already in the cache") == 4
    rc, out, _ = _run_in_process(["data", "info", "mnist", "--cache-dir", str(tmp_path), "--no-download"], capsys)
    assert rc == 0 and f"found in: {tmp_path / 'mnist'} (user cache)" in out


# ----------------------------------------------------------------------------
# the real command line, `python -m reglab`

@pytest.mark.slow
def test_reglab_data_info_mnist_reports_the_splits_class_counts_and_checksum_ok(data_dir, tmp_path):
    proc = _run_cli(["data", "info", "mnist", "--data-dir", str(data_dir)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "checksum ok" in proc.stdout and f"found in: {data_dir / 'mnist'}" in proc.stdout
    rows = {line.split()[0]: [int(v) for v in line.split()[1:]] for line in lines
            if line.split() and line.split()[0] in ("train", "val", "test")}
    assert [rows[s][0] for s in ("train", "val", "test")] == [50000, 10000, 10000]
    assert [a + b for a, b in zip(rows["train"][1:], rows["val"][1:])] == \
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert rows["test"][1:] == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_reglab_data_info_on_an_empty_data_dir_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = _run_cli(["data", "info", "mnist", "--data-dir", str(tmp_path / "empty"), "--no-download"], tmp_path)
    _assert_one_line_failure(proc, "mnist not found", str(tmp_path / "empty" / "mnist"))


def test_reglab_data_info_on_a_garbage_file_is_one_line_and_exit_2(tmp_path):
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for name in MNIST_FILES:
        (folder / f"{name}.gz").write_bytes(gzip.compress(b"placeholder"))
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"<html>rate limited</html>")
    proc = _run_cli(["data", "info", "mnist", "--data-dir", str(tmp_path / "data")], tmp_path)
    _assert_one_line_failure(proc, str(folder / "train-images-idx3-ubyte.gz"), "not gzip data")


@pytest.mark.slow
def test_reglab_data_info_on_a_corrupted_real_file_is_one_line_and_exit_2(data_dir, tmp_path, capsys):
    shutil.copytree(data_dir / "mnist", tmp_path / "data" / "mnist")
    labels = tmp_path / "data" / "mnist" / "train-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(labels.read_bytes()))
    content[-1] = (content[-1] + 1) % 10
    labels.write_bytes(gzip.compress(bytes(content)))
    proc = _run_cli(["data", "info", "mnist", "--data-dir", str(tmp_path / "data")], tmp_path)
    _assert_one_line_failure(proc, str(labels), "checksum mismatch", "--allow-checksum-mismatch")
    rc, out, _ = _run_in_process(["data", "info", "mnist", "--data-dir", str(tmp_path / "data"),
                                  "--allow-checksum-mismatch"], capsys)
    assert rc == 0 and "MISMATCH allowed" in out


def test_a_truncated_raw_file_is_one_line_and_exit_2(tmp_path, capsys):
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for name in MNIST_FILES:
        (folder / name).write_bytes(b"")
    (folder / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((60000, 28, 28), np.uint8))[:5000])
    rc, out, err = _run_in_process(["data", "info", "mnist", "--data-dir", str(tmp_path / "data")], capsys)
    assert rc == 2 and out == ""
    assert_one_line(err.strip(), str(folder / "train-images-idx3-ubyte"), "truncated", "declares 60000 items")
