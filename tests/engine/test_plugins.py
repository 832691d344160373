"""Plugin regularizers from outside the package: discovery, values, the run, and bad plugins.

The end-to-end test builds the docs' example plugin (docs/examples/plugin/reglab_group_lasso.py)
as an installed distribution in tmp_path: the module plus a ``*.dist-info`` folder with METADATA
and ``entry_points.txt`` declaring it in the ``reglab.regularizers`` group. A subprocess with that
folder on PYTHONPATH is exactly what ``pip install`` into a venv gives importlib.metadata (a
dist-info folder on sys.path), without mutating the test's environment; the study TOML names no
plugin, so the regularizer can only come from entry-point discovery (regularizers.json must say
"entry point").
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reglab.config import apply_settings
from reglab.engine.registry import for_study, load_registry, load_toml
from reglab.errors import ReglabError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "plugin"


def _install(site: Path) -> Path:
    site.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE / "reglab_group_lasso.py", site)
    info = site / "reglab_group_lasso-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: reglab-group-lasso\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[reglab.regularizers]\ngroup_lasso = reglab_group_lasso\n")
    return site


def test_the_docs_example_plugin_found_by_its_entry_point_runs_beside_table_9_and_reaches_the_report(tmp_path):
    site = _install(tmp_path / "site")
    study = tmp_path / "study.toml"
    study.write_text((EXAMPLE / "study.toml").read_text())
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "reglab", "run", "--config", str(study), "--smoke", "--seeds", "1",
                        "--threads", "1", "--out", str(out), "--quiet",
                        "--set", "methods.group_lasso.group_lasso=0.002"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    record = json.loads((out / "regularizers.json").read_text())
    (plugin,) = record["plugins"]
    assert plugin["module"] == "reglab_group_lasso" and plugin["via"].startswith("entry point group_lasso")
    assert plugin["version"] == "0.1.0"
    used = {e["name"]: e for e in record["regularizers"]}
    assert used["group_lasso"]["used_by"] == ["group_lasso"]
    config = json.loads((out / "config.json").read_text())
    assert [m["group_lasso"] for m in config["methods"]] == [0.0] * 6 + [0.002]
    report = (out / "report.html").read_text()
    assert "group_lasso (plugin reglab_group_lasso): lambda_g * sum_j ||w_j||_2" in report
    # verify and resume of a complete run work with the plugin installed
    assert subprocess.run([sys.executable, "-m", "reglab", "verify", str(out)], env=env).returncode == 0
    # without it, a resume refuses in one line naming the plugin
    r = subprocess.run([sys.executable, "-m", "reglab", "run", "--resume", str(out)],
                       env=dict(env, PYTHONPATH=""), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "reglab_group_lasso" in r.stderr and "Fix:" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    names = []

    def write(name: str, body: str) -> str:
        (tmp_path / f"{name}.py").write_text("from reglab.engine.regularizer import Hyperparameter, Regularizer, "
                                             "WeightPenalty\n" + body)
        names.append(name)
        return name
    yield write
    for n in names:
        sys.modules.pop(n, None)


PENALTY = '''
def value(w, hp):
    return {expr}
REGULARIZERS = [Regularizer("{name}", "beta * sum w^4", (Hyperparameter("{key}", {hp}),),
                            lambda m: m.{key} > 0,
                            lambda c: WeightPenalty(c, lambda m: m.{key} or None, ("{key}",), value))]
'''


def _penalty(write, module, name="quartic", key="quartic", hp="low=0.0, high=1.0", expr=None):
    expr = expr or f'hp["{key}"] * w.pow(4).sum(dim=(1, 2))'
    return write(module, PENALTY.format(name=name, key=key, hp=hp, expr=expr))


def _study(tmp_path, plugins, value=0.01, key="quartic"):
    p = tmp_path / "s.toml"
    p.write_text(f'name = "s"\nplugins = {json.dumps(plugins)}\nhidden = [4]\n[data]\nname = "moons"\n'
                 f'[[methods]]\nname = "l2"\nl2 = 1e-4\n[[methods]]\nname = "q"\n{key} = {value}\n')
    return p


def test_plugin_values_are_validated_set_and_read_by_uses(tmp_path, plugin_dir):
    mod = _penalty(plugin_dir, "plug_ok")
    cfg = load_toml(_study(tmp_path, [mod]))
    assert cfg.plugins == (mod,) and cfg.methods[1].quartic == 0.01 and cfg.methods[0].quartic == 0.0
    reg = for_study(cfg, probe=True)
    assert reg.regularizers["quartic"].uses(cfg.methods[1]) and not reg.regularizers["quartic"].uses(cfg.methods[0])
    assert apply_settings(cfg, ["methods.q.quartic=0.5"], declared=reg.declared).methods[1].quartic == 0.5
    with pytest.raises(ReglabError, match=r"must be a number in \[0, 1\]; got 2"):
        apply_settings(cfg, ["methods.q.quartic=2"], declared=reg.declared)
    with pytest.raises(ReglabError, match="quartic"):   # the known keys listed include the plugin's
        load_toml(_study(tmp_path, [mod], key="quartik"))


@pytest.mark.parametrize("hp, expected", [
    ('low=1.0, high=0.0', "low 1 > high 0"),
    ('low=0.0, high=1.0, default=2.0', "default 2 outside [0, 1]"),
    ('kind="complex"', "unknown kind 'complex'"),
    ('low=0.0, high=1.0, log=True, search=(0.0, 0.5)', "log scale, which needs low > 0"),
])
def test_a_bad_declared_range_is_one_line(tmp_path, plugin_dir, hp, expected):
    mod = _penalty(plugin_dir, f"plug_bad_{abs(hash(hp))}", hp=hp)
    with pytest.raises(ReglabError, match="Fix:") as e:
        load_registry([mod], entry_points=False)
    assert expected in str(e.value) and mod in str(e.value) and len(e.value.lines) == 1


def test_an_import_failure_and_name_clashes_are_one_line(tmp_path, plugin_dir):
    broken = plugin_dir("plug_broken", "import no_such_module_anywhere\n")
    with pytest.raises(ReglabError, match=r"plug_broken' cannot be imported \(ModuleNotFoundError: No module named"):
        load_registry([broken], entry_points=False)
    clash = _penalty(plugin_dir, "plug_clash", name="l2")
    with pytest.raises(ReglabError, match="'l2' is a built-in regularizer. Fix: rename"):
        load_registry([clash], entry_points=False)
    a, b = _penalty(plugin_dir, "plug_a"), _penalty(plugin_dir, "plug_b")
    with pytest.raises(ReglabError, match="already registered by plugin 'plug_a'"):
        load_registry([a, b], entry_points=False)
    field = _penalty(plugin_dir, "plug_field", key="l1")
    with pytest.raises(ReglabError, match="declares hyperparameter 'l1', which is a built-in method setting"):
        load_registry([field], entry_points=False)


@pytest.mark.parametrize("expr, expected", [
    ('hp["quartic"].sum() * w.pow(4).sum()', r"returned \(\) for weights"),
    ('hp["quartic"][:, None] * w.pow(4).sum(dim=1)', r"shape \(1,\)"),
    ('hp["quartic"] * (w.sum(dim=(1, 2)) * float("nan"))', r"not finite \(nan\)"),
])
def test_a_wrong_shape_or_nan_value_is_refused_by_the_probe_before_training(tmp_path, plugin_dir, expr, expected):
    mod = _penalty(plugin_dir, f"plug_probe_{abs(hash(expr))}", expr=expr)
    cfg = load_toml(_study(tmp_path, [mod]))
    with pytest.raises(ReglabError, match=expected):
        for_study(cfg, probe=True)


RAISES_LATER = '''
import os
def value(w, hp):
    if os.environ.get("PLUG_FAIL") and w.shape[1] == 4:   # the 4-unit hidden layer: only the real net has it
        raise RuntimeError("boom")
    return hp["quartic"] * w.pow(4).sum(dim=(1, 2))
REGULARIZERS = [Regularizer("quartic", "beta * sum w^4", (Hyperparameter("quartic", low=0.0, high=1.0),),
                            lambda m: m.quartic > 0,
                            lambda c: WeightPenalty(c, lambda m: m.quartic or None, ("quartic",), value))]
'''


def test_a_penalty_that_raises_is_one_line_naming_the_plugin_and_hook_before_anything_is_written(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "plug_later.py").write_text("from reglab.engine.regularizer import Hyperparameter, Regularizer, "
                                        "WeightPenalty\n" + RAISES_LATER)
    study = tmp_path / "s.toml"
    study.write_text('name = "s"\nplugins = ["plug_later"]\nhidden = [4]\nn_epochs = 2\n[data]\nname = "moons"\n'
                     'n_points = 120\n[[methods]]\nname = "q"\nquartic = 0.01\n')
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS="1", PLUG_FAIL="1")
    out = tmp_path / "run"
    # the probe's layers are 5-4-...: the plugin fails there too, so the failure is known before training
    r = subprocess.run([sys.executable, "-m", "reglab", "run", "--config", str(study), "--out", str(out),
                        "--quiet", "--threads", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and not out.exists()
    assert "plug_later" in r.stderr and "hook value() raised RuntimeError: boom" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------
# during a run (the runs themselves: tests/study/test_plugin_runs.py)

def test_the_guard_blames_a_plugin_only_for_a_training_variant_it_turned_non_finite():
    import math

    import torch

    from reglab.engine.plugin_guard import GuardedHooks
    from reglab.engine.regularizer import Hooks

    class AddsNaN(Hooks):
        def add_weight_value(self, pen, W, t):
            pen += torch.tensor([math.nan, 1.0, math.nan, math.nan])

    training = torch.tensor([True, True, False, True])   # variant 2 frozen already
    guard = GuardedHooks(AddsNaN(), "plug", "adds_nan", training)
    pen = torch.tensor([0.0, 0.0, 0.0, math.nan])        # variant 3 non-finite before the plugin's hook
    guard.add_weight_value(pen, [], 1)
    assert training.tolist() == [False, True, False, True]   # only variant 0 is the plugin's doing
    assert guard.nonfinite_reasons() == {0: "plugin module 'plug': regularizer 'adds_nan', hook add_weight_value() "
                                            "gave a non-finite value (NaN/inf)"}


def test_the_guard_checks_only_the_variants_its_regularizer_acts_on():
    import math

    import torch

    from reglab.engine.plugin_guard import GuardedHooks
    from reglab.engine.regularizer import Hooks

    class AddsNaN(Hooks):
        def add_weight_grads(self, grads, W, t):
            for g in grads:
                g[:, 0, 0] += torch.tensor([math.nan, math.nan, 1.0, math.nan, math.nan])

    training = torch.ones(5, dtype=torch.bool)
    # the regularizer acts on variants 1 and 3-4 (two runs): variant 0's NaN is not its doing
    guard = GuardedHooks(AddsNaN(), "plug", "adds_nan", training, rows=[slice(1, 2), slice(3, 5)])
    grads = [torch.zeros(5, 2, 3), torch.zeros(5, 3, 2)]
    guard.add_weight_grads(grads, [], 1)
    assert training.tolist() == [True, False, True, False, False]
    assert sorted(guard.nonfinite_reasons()) == [1, 3, 4]
