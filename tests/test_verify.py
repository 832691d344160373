"""`reglab verify RUN_DIR`: every file against the sha256 digests manifest.json recorded."""

import hashlib

import pytest

from reglab.cli import main
from reglab.results import RunWriter, atomic_write_json, read_json


def _run_dir(d):
    w = RunWriter(d)
    w.write_json("config.json", {"name": "t"})
    w.write_text("metrics_epoch.csv", "epoch,variant\n1,0\n")
    (d / "checkpoints").mkdir()
    (d / "checkpoints" / "epoch-00001.pt").write_bytes(b"\x00" * 1000)
    w.update_manifest(study="t", status="complete")
    return w


def test_a_run_directory_as_written_verifies(tmp_path, capsys):
    _run_dir(tmp_path)
    manifest = read_json(tmp_path / "manifest.json")
    # the digests are sha256 of the bytes, recorded for every file but the manifest itself
    assert manifest["sha256"]["checkpoints/epoch-00001.pt"] == hashlib.sha256(b"\x00" * 1000).hexdigest()
    assert sorted(manifest["sha256"]) == ["checkpoints/epoch-00001.pt", "config.json", "metrics_epoch.csv"]
    assert main(["verify", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"reglab: {tmp_path}: all 3 files match manifest.json"


def test_missing_changed_and_extra_files_are_each_listed_and_the_status_is_1(tmp_path, capsys):
    _run_dir(tmp_path)
    (tmp_path / "config.json").unlink()
    ckpt = tmp_path / "checkpoints" / "epoch-00001.pt"
    ckpt.write_bytes(b"\x00" * 999 + b"\x01")  # one flipped bit, same size
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".lock").write_text("1 host")  # hidden files are not results
    assert main(["verify", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [f"missing: {tmp_path / 'config.json'}", f"changed: {ckpt}", f"extra: {tmp_path / 'notes.txt'}"]
    assert out[3].startswith(f"reglab: {tmp_path}: 1 missing, 1 changed, 1 extra of 3 files")


def test_a_run_written_before_digests_were_recorded_is_one_clear_line(tmp_path, capsys):
    _run_dir(tmp_path)
    manifest = read_json(tmp_path / "manifest.json")
    del manifest["sha256"]
    atomic_write_json(tmp_path / "manifest.json", manifest)
    assert main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "records no sha256 digests (the run was written by an older reglab)" in err


@pytest.mark.parametrize("case", ["missing", "file", "empty", "garbage manifest"])
def test_something_that_is_not_a_run_directory_is_one_line_and_status_2(tmp_path, capsys, case):
    d = tmp_path / "run"
    if case == "file":
        d.write_text("x")
    elif case != "missing":
        d.mkdir()
    if case == "garbage manifest":
        (d / "manifest.json").write_bytes(b"\xff\x00{")
    assert main(["verify", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("reglab: ") and "Fix: " in err


def test_a_changed_manifest_is_itself_reported(tmp_path, capsys):
    _run_dir(tmp_path)
    text = (tmp_path / "manifest.json").read_text()
    (tmp_path / "manifest.json").write_text(text.replace('"status": "complete"', '"status": "completE"'))
    assert main(["verify", str(tmp_path)]) == 1
    assert f"changed: {tmp_path / 'manifest.json'}" in capsys.readouterr().out


def test_tensorboard_and_parquet_exports_are_recorded_so_verify_still_passes(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("pyarrow")
    from reglab.cli import main
    out = tmp_path / "run"
    assert main(["run", "pointcloud", "--smoke", "--quiet", "--threads", "1", "--tensorboard", "--out", str(out)]) == 0
    assert (out / "tensorboard").is_dir()
    assert main(["verify", str(out)]) == 0
    assert main(["report", str(out), "--tensorboard", "--parquet"]) == 0
    assert (out / "parquet").is_dir()
    assert main(["verify", str(out)]) == 0
