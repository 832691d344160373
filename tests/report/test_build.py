"""build_report: reads only the run's files, never retrains, and works on what `reglab run` writes."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reglab.cli import main
from reglab.report import build_report

from .conftest import pointcloud_config, write_synthetic_run
from .test_html import MNIST_FIGURES, POINTCLOUD_FIGURES, parse

REPORT_FILES = {"report.html", "summary.md"}


def _digests(run_dir: Path) -> dict[str, str]:
    """sha256 of every file of the run that is not the report's own output."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name not in REPORT_FILES
            and "figures" not in p.relative_to(run_dir).parts}


def test_the_report_writes_its_own_files_only_and_drops_stale_figures(tmp_path):
    write_synthetic_run(tmp_path, pointcloud_config(n_epochs=4, seeds=(0,)), steps_per_epoch=3)
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "from_an_older_version.png").write_bytes(b"old")
    (tmp_path / "figures" / "notes.txt").write_text("kept: not a figure")
    before = _digests(tmp_path)
    assert build_report(tmp_path) == tmp_path / "report.html"
    assert _digests(tmp_path) == before
    names = {p.name for p in (tmp_path / "figures").iterdir()}
    assert "from_an_older_version.png" not in names and "notes.txt" in names
    assert names == {f"{n}.{ext}" for n in POINTCLOUD_FIGURES for ext in ("png", "svg")} | {"notes.txt"}


def test_the_report_imports_neither_the_engine_nor_the_runner(tmp_path):
    write_synthetic_run(tmp_path, pointcloud_config(n_epochs=3, seeds=(0,)), steps_per_epoch=3)
    code = ("import sys; from reglab.report import build_report; build_report(sys.argv[1]); "
            "bad = sorted(m for m in sys.modules if m.startswith(('reglab.engine', 'reglab.study'))); "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


def test_summary_md_holds_the_tables_beside_the_paper(mnist_report):
    md = (mnist_report.parent / "summary.md").read_text()
    assert "| Method | n | Test error, last epoch (%)" in md and "Srivastava 2014, Table 9 (%) |" in md
    for name, paper in (("l2", "1.62"), ("dropout+max_norm", "1.05")):
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} |")
                   or line.startswith(f"| **{name}** |"))
        assert row.rstrip(" |").endswith(paper)
    assert "## Paired comparisons" in md and "reglab run --config config.toml" in md


# ----------------------------------------------------------------------------
# from real studies: the runner and the engine, smoke size

def _needs_the_study():
    if importlib.util.find_spec("reglab.study") is None or importlib.util.find_spec("reglab.engine") is None:
        pytest.skip("reglab.study / reglab.engine are not there yet: no real run to build from")


def _check_real_report(run_dir: Path, figures: set[str]) -> None:
    page = parse(run_dir / "report.html")
    assert page.mismatches == [] and {f"fig-{n}" for n in figures} <= page.ids
    assert all(img["src"].startswith("data:image/png;base64,") for img in page.images)
    text = " ".join(page.text)
    assert "This run is incomplete" not in text and "reglab run" in text
    before = _digests(run_dir)
    html_before = (run_dir / "report.html").read_bytes()
    assert main(["report", str(run_dir)]) == 0  # rebuilding: same page, no retraining
    assert _digests(run_dir) == before
    assert (run_dir / "report.html").read_bytes() == html_before


@pytest.mark.slow
def test_a_pointcloud_smoke_study_gets_its_full_report(tmp_path, capsys):
    _needs_the_study()
    out = tmp_path / "run"
    assert main(["run", "pointcloud", "--smoke", "--quiet", "--out", str(out)]) == 0
    _check_real_report(out, POINTCLOUD_FIGURES)


@pytest.mark.slow
def test_an_mnist_smoke_study_gets_its_full_report_beside_table9(tmp_path, capsys):
    _needs_the_study()
    data_dir = os.environ.get("REGLAB_DATA_DIR")
    if not data_dir:
        pytest.skip("real-data test: set REGLAB_DATA_DIR to a folder holding mnist/ (.ci/run passes it)")
    out = tmp_path / "run"
    assert main(["run", "mnist", "--smoke", "--quiet", "--data-dir", data_dir, "--out", str(out)]) == 0
    _check_real_report(out, MNIST_FIGURES)
    assert "Srivastava 2014, Table 9 (%)" in (out / "summary.md").read_text()
