"""`reglab adam` end to end, through the root command line."""

import json
import re

import pytest

from reglab.cli import main


def test_reglab_adam_smoke_runs_end_to_end(data_dir, tmp_path, capsys):
    out = tmp_path / "adam"
    assert main(["adam", "--smoke", "--out", str(out), "--data-dir", str(data_dir), "--no-download"]) == 0
    printed = capsys.readouterr().out

    # the printed deviations: one row per (distribution, moment, beta), then the largest of all
    assert "largest of all:" in printed
    for name in ("gaussian", "student-t", "sparse"):
        assert len(re.findall(rf"^\s+{name}\s+[mv]\s", printed, flags=re.M)) == 6
    assert "first step, uncorrected / corrected: median 3.16" in printed

    for name in ("simulation.png", "v_ratio.png", "first_step.png", "loss.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "adam.json").read_text())
    assert summary["format"] == "reglab-adam"
    assert summary["dataset"]["name"] == "mnist"
    real = summary["real_training"]
    assert real["n_train"] == 300
    first = real["v_over_running_mean_g2"][0]
    assert first["t"] == 1
    assert first["uncorrected_median"] == pytest.approx(0.001, rel=1e-5)
    assert first["corrected_median"] == pytest.approx(1.0, rel=1e-5)
    assert real["first_step"]["ratio_uncorrected_over_corrected_median"] == pytest.approx(3.1623, abs=2e-3)
    assert len(summary["simulation"]["largest_deviations"]) == 18

    page = (out / "adam.html").read_text()
    sources = re.findall(r'\bsrc="([^"]*)"', page)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    links = re.findall(r'\bhref="([^"]*)"', page)
    assert links and all((out / link).is_file() for link in links)  # only relative links to the PNGs beside it
    assert "http://" not in page and "https://" not in page
    assert "Content-Security-Policy" in page
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


def test_a_missing_dataset_is_one_line_on_stderr_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["adam", "--smoke", "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "empty"),
                 "--cache-dir", str(tmp_path / "cache"), "--no-download"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("reglab: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", [["--steps", "0"], ["--threads", "0"]])
def test_nonsense_counts_are_one_line_errors(tmp_path, capsys, flag):
    assert main(["adam", "--smoke", "--out", str(tmp_path), *flag]) == 2
    assert capsys.readouterr().err.startswith("reglab: ")
