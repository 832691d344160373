"""The files `reglab adam` writes, from a small simulation and a training run on generated data."""

import json
import re

import pytest

from reglab.adam.real_training import RealTrainingConfig, run_real_training
from reglab.adam.report import write_outputs
from reglab.adam.simulation import SimulationConfig, run_simulation

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def written(make_blobs, tmp_path_factory):
    sim = run_simulation(SimulationConfig(n_steps=20, n_runs=500))
    real = run_real_training(make_blobs(), RealTrainingConfig(hidden=(16,), n_steps=12, batch_size=20,
                                                              n_recorded=6))
    out = tmp_path_factory.mktemp("adam")
    return out, write_outputs(out, sim, real, command="reglab adam --test")


def test_every_figure_is_a_png_file(written):
    out, files = written
    for name in ("simulation.png", "v_ratio.png", "first_step.png", "loss.png"):
        assert files[name] == out / name
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE


def test_the_json_describes_itself_and_holds_the_printed_numbers(written):
    out, _ = written
    doc = json.loads((out / "adam.json").read_text())
    assert doc["format"] == "reglab-adam" and doc["command"] == "reglab adam --test"
    assert doc["dataset"] == {"generated": True}
    assert len(doc["simulation"]["largest_deviations"]) == 3 * 3 * 2  # distributions x betas x moments
    assert doc["real_training"]["config"]["hidden"] == [16]
    assert [r["t"] for r in doc["real_training"]["v_over_running_mean_g2"]] == [1, 2, 10, 12]


def test_the_page_embeds_its_figures_and_fetches_nothing(written):
    out, _ = written
    page = (out / "adam.html").read_text()
    sources = re.findall(r'\bsrc="([^"]*)"', page)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert all((out / link).is_file() for link in re.findall(r'\bhref="([^"]*)"', page))
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "img-src data:" in page  # the Content-Security-Policy


def test_no_temporary_files_are_left_behind(written):
    out, _ = written
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["simulation.png", "v_ratio.png", "first_step.png", "loss.png", "adam.json", "adam.html"])
