"""A plugin regularizer through Ray: the plugin's module reaches the workers.

The plugin (the docs' example, group lasso) is importable in this process only (a folder put on
sys.path here), so Ray's workers cannot import it by themselves: `reglab tune --executor ray` ships
it to them with the Ray instance it starts (runtime_env py_modules), and a Ray started before
without it is one line. Each test starts and stops its own local Ray instance, as the command does.
"""

import importlib.util

import pytest
import ray

from reglab.cli import main
from reglab.results import read_json

from .helpers import trials_without_wall_time

# one local Ray cluster at a time: both Ray modules run in the same test worker (scripts/test.sh)
pytestmark = pytest.mark.xdist_group("ray")

STUDY = '''name = "ray-plugin"
plugins = ["reglab_group_lasso"]
hidden = [8]
n_epochs = 2
batch_size = 20
seeds = [0]
[data]
name = "moons"
n_points = 150
[[methods]]
name = "l2"
l2 = 1e-3
[[methods]]
name = "group_lasso"
group_lasso = 1e-3
'''


@pytest.fixture
def plugin_study(tmp_path, example_plugin_site):
    """A study TOML naming the plugin, and the plugin importable in this process only."""
    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    yield study
    if ray.is_initialized():
        ray.shutdown()


@pytest.mark.slow
def test_a_plugin_method_tunes_through_ray_as_in_this_process_and_a_ray_without_it_is_one_line(
        plugin_study, tmp_path, capsys):
    common = ["tune", "--config", str(plugin_study), "--trials", "2", "--threads", "1", "--quiet"]

    # a Ray started before, without the plugin: its workers cannot import it, so the tune refuses in one line
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    can_import = ray.remote(lambda: importlib.util.find_spec("reglab_group_lasso") is not None)
    assert not ray.get(can_import.remote()), "a worker sees the plugin anyway: the test would test nothing"
    capsys.readouterr()
    assert main(common + ["--executor", "ray", "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["reglab: the Ray workers cannot import plugin module(s) reglab_group_lasso (Ray was started before "
                   "reglab, without them). Fix: let reglab start Ray, or ship them in ray.init(runtime_env="
                   "{'py_modules': [...]}), or install them where the workers run."]
    assert not (tmp_path / "refused").exists()
    ray.shutdown()

    # the Ray instance the command starts gets the plugin's file: the trials equal the in-process ones
    assert main(common + ["--executor", "ray", "--out", str(tmp_path / "ray")]) == 0
    assert not ray.is_initialized()   # the command stopped the instance it started
    assert main(common + ["--out", str(tmp_path / "local")]) == 0
    assert read_json(tmp_path / "ray" / "tune.json")["failed"] == []
    assert trials_without_wall_time(tmp_path / "ray") == trials_without_wall_time(tmp_path / "local")
    assert (tmp_path / "ray" / "tuned.toml").read_text() == (tmp_path / "local" / "tuned.toml").read_text()
    searched = {row["method"] for row in trials_without_wall_time(tmp_path / "ray") if row.get("group_lasso")}
    assert "group_lasso" in searched   # the plugin's declared hyperparameter was tuned
