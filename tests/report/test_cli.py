"""`reglab report RUN_DIR`: exit status and one clear line for every kind of bad directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from reglab.cli import main

from .conftest import mnist_config, write_synthetic_run
from .test_html import parse


def _one_line(capsys) -> tuple[str, str]:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("reglab: ")
    return out, lines[0]


def test_a_complete_run_exits_0_and_a_rebuild_writes_byte_identical_files(mnist_report, tmp_path, capsys):
    run_copy = tmp_path / "run"
    shutil.copytree(mnist_report.parent, run_copy)
    assert main(["report", str(run_copy)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(run_copy / "report.html") and err == ""
    for p in sorted((mnist_report.parent / "figures").iterdir()):
        assert (run_copy / "figures" / p.name).read_bytes() == p.read_bytes(), p.name
    assert (run_copy / "summary.md").read_bytes() == (mnist_report.parent / "summary.md").read_bytes()
    assert "This run is incomplete" not in (run_copy / "report.html").read_text()


@pytest.mark.parametrize("make, expected", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: p, "is empty"),
    (lambda p: (p / "notes.txt").write_text("hi") and p, "is not a reglab run directory"),
    (lambda p: (p / "manifest.json").write_text(json.dumps({"format": "something-else"})) and p,
     "is not a reglab run manifest"),
    (lambda p: (p / "manifest.json").write_text("{not json") and p, "is not valid JSON"),
    (lambda p: (p / "f.csv").write_text("x") and p / "f.csv", "is not a directory"),
])
def test_a_bad_directory_is_one_line_and_exit_status_2(tmp_path, capsys, make, expected):
    target = make(tmp_path)
    assert main(["report", str(target)]) == 2
    out, line = _one_line(capsys)
    assert expected in line and "Fix:" in line and out == ""
    assert not (tmp_path / "report.html").exists()


def test_a_run_without_variants_is_one_line_and_exit_status_2(tmp_path, capsys):
    write_synthetic_run(tmp_path, mnist_config(n_epochs=2), steps_per_epoch=2, epochs_done=1, status="running")
    (tmp_path / "variants.json").write_text("[]")
    assert main(["report", str(tmp_path)]) == 2
    assert "lists no variants" in _one_line(capsys)[1]


def test_a_partial_run_gets_a_partial_report_that_says_so_and_exit_status_3(tmp_path, capsys):
    write_synthetic_run(tmp_path, mnist_config(n_epochs=12), steps_per_epoch=5, epochs_done=4, status="interrupted")
    assert main(["report", str(tmp_path)]) == 3
    _, line = _one_line(capsys)
    assert "is incomplete (status interrupted, 4 of 12 epochs)" in line and "partial report" in line
    html = (tmp_path / "report.html").read_text()
    assert "This run is incomplete" in html and "4 of 12 epochs" in html
    page = parse(tmp_path / "report.html")
    assert {"fig-val_error_per_method", "fig-loss_epoch_overlay", "fig-loss_iter_per_method",
            "fig-test_error"} <= page.ids
    assert "fig-weight_histograms" not in page.ids  # analysis.npz comes at the end
    assert "analysis.npz is missing" in html
    assert "This run is incomplete" in (tmp_path / "summary.md").read_text()


def test_a_run_that_has_not_finished_an_epoch_still_gets_its_setup_section(tmp_path, capsys):
    write_synthetic_run(tmp_path, mnist_config(n_epochs=12), steps_per_epoch=5, epochs_done=0, status="running")
    assert main(["report", str(tmp_path)]) == 3
    _one_line(capsys)
    page = parse(tmp_path / "report.html")
    assert page.images == [] and "setup" in page.ids
    text = " ".join(page.text)
    assert "no epoch has finished yet" in text and "reglab run --config config.toml" in text


def test_the_installed_command_reports_a_missing_directory_in_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "reglab", "report", str(tmp_path / "nope")], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "does not exist" in res.stderr
