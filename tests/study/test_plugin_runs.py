"""Plugin regularizers during a run, through the CLI: a hook that raises after the probe, a penalty that turns NaN.

`reglab run` is called in this process (reglab.cli.main, as the console script calls it) on a
plugin module written to tmp_path: one whose gradient hook raises at step 47 of 80 (one line,
exit 2, a resumable run directory; the corrected plugin resumes to an uninterrupted run's numbers,
as the kill/resume tests check them) and one whose penalty gradient turns NaN at step 23 (those
variants diverged, the plugin named as the reason; the others complete).
"""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # run_results beside this file, imported by name (as test_faults does)
from run_results import assert_same_results  # noqa: E402

from reglab.report.digest import digest  # noqa: E402
from reglab.results import load_run, read_json, verify_run  # noqa: E402

HEADER = "from reglab.engine.regularizer import Hyperparameter, Regularizer, WeightPenalty\n"

MID_RUN = '''
FAIL_FROM = {fail_from}

class Quartic(WeightPenalty):
    """beta * sum w^4 (autograd); its gradient hook raises from step FAIL_FROM on (None: never)."""
    def add_weight_grads(self, grads, W, t):
        if FAIL_FROM is not None and t >= FAIL_FROM:
            raise RuntimeError(f"boom at step {{t}}")
        super().add_weight_grads(grads, W, t)

REGULARIZERS = [Regularizer("quartic", "beta * sum w^4", (Hyperparameter("quartic", low=0.0, high=1.0),),
                            lambda m: m.quartic > 0,
                            lambda c: Quartic(c, lambda m: m.quartic or None, ("quartic",),
                                              lambda w, hp: hp["quartic"] * w.pow(4).sum(dim=(1, 2))))]
'''

NAN_LATER = '''
import math

class LateNaN(WeightPenalty):
    """beta * sum w^4 (autograd); from step 23 on, its gradient is NaN where beta >= 0.05 (a bug on
    purpose: the probe calls it at steps 1 and 10, where it is finite)."""
    def add_weight_grads(self, grads, W, t):
        super().add_weight_grads(grads, W, t)
        for sl, beta in self.runs:
            if t >= 23 and beta >= 0.05:
                grads[0][sl].fill_(math.nan)

REGULARIZERS = [Regularizer("quartic", "beta * sum w^4", (Hyperparameter("quartic", low=0.0, high=1.0),),
                            lambda m: m.quartic > 0,
                            lambda c: LateNaN(c, lambda m: m.quartic or None, ("quartic",),
                                              lambda w, hp: hp["quartic"] * w.pow(4).sum(dim=(1, 2))))]
'''


def _ten_step_epochs(tmp_path, plugin: str, n_epochs: int, quartic: dict[str, float]) -> Path:
    """Two moons, 100 training points in minibatches of 10: 10 steps an epoch; l2 and plugin methods, 2 seeds."""
    p = tmp_path / "study.toml"
    p.write_text(f'name = "mid-run"\nplugins = ["{plugin}"]\nhidden = [8]\nn_epochs = {n_epochs}\n'
                 'batch_size = 10\nseeds = [0, 1]\n[data]\nname = "moons"\nn_points = 200\n'
                 '[[methods]]\nname = "l2"\nl2 = 1e-3\n' +
                 "".join(f'[[methods]]\nname = "{name}"\nquartic = {v}\n' for name, v in quartic.items()))
    return p


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """write(name, source): a plugin module in a folder on sys.path (rewritten by calling it again)."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)   # a rewritten plugin is read from its source
    names = []

    def write(name: str, body: str) -> None:
        (site / f"{name}.py").write_text(HEADER + body)
        names.append(name)
    yield write
    for n in names:
        sys.modules.pop(n, None)


@pytest.fixture
def reglab_main(monkeypatch):
    """`reglab ...` in this process; the per-method timing after a study (not under test here) cut short."""
    from reglab.cli import main
    from reglab.study import runner
    monkeypatch.setattr(runner, "TIMING_MIN_SECONDS", 0.0)
    monkeypatch.setattr(runner, "TIMING_MAX_EPOCHS", 1)
    return main


def test_a_hook_that_raises_mid_run_stops_in_one_line_and_the_fixed_plugin_resumes_to_the_uninterrupted_results(
        tmp_path, plugin_dir, reglab_main, capsys):
    study = _ten_step_epochs(tmp_path, "plug_mid", n_epochs=8, quartic={"q": 0.01})
    out, reference = tmp_path / "run", tmp_path / "reference"

    def run(d: Path) -> list[str]:
        return ["run", "--config", str(study), "--out", str(d), "--threads", "1", "--quiet", "--no-report"]

    plugin_dir("plug_mid", MID_RUN.format(fail_from=47))   # step 47: in epoch 5 of 8, after the probe passed
    assert reglab_main(run(out)) == 2
    assert capsys.readouterr().err.splitlines() == [
        "reglab: plugin module 'plug_mid': regularizer 'quartic', hook add_weight_grads() raised RuntimeError: "
        f"boom at step 47. Fix: correct the plugin, then continue the run from its last checkpoint: "
        f"reglab run --resume {out}."]

    # resumable, nothing half-written: interrupted after epoch 4, whose checkpoint is whole, nothing of epoch 5
    manifest = read_json(out / "manifest.json")
    assert manifest["status"] == "interrupted" and manifest["epochs_done"] == 4
    checkpoints = out / "checkpoints"
    assert (checkpoints / "latest").read_text().strip() == "epoch-00004.pt"
    recorded = (checkpoints / "epoch-00004.pt.sha256").read_text().split()[0]
    assert hashlib.sha256((checkpoints / "epoch-00004.pt").read_bytes()).hexdigest() == recorded
    assert sorted(p.name for p in (out / "metrics").iterdir()) == [
        f"{kind}-{e:05d}.csv" for kind in ("epoch", "iter") for e in range(1, 5)]
    assert not (out / "summary.json").exists() and not (out / ".lock").exists()
    assert not list(out.rglob(".*.tmp"))
    v = verify_run(out)
    assert v.ok, (v.missing, v.changed, v.extra)

    # the plugin corrected (its file rewritten): the resume finishes, saying the file changed
    sys.modules.pop("plug_mid")
    plugin_dir("plug_mid", MID_RUN.format(fail_from=None))
    assert reglab_main(["run", "--resume", str(out), "--quiet", "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "reglab: warning: plugin module 'plug_mid' changed since this run began" in err
    assert read_json(out / "manifest.json")["status"] == "complete"

    # ... to the numbers of an uninterrupted run of the corrected plugin
    sys.modules.pop("plug_mid")
    assert reglab_main(run(reference)) == 0
    assert_same_results(out, reference, report=False)


def test_a_plugin_penalty_that_turns_nan_mid_run_freezes_its_variants_as_diverged_naming_the_plugin(
        tmp_path, plugin_dir, reglab_main):
    plugin_dir("plug_nan", NAN_LATER)
    study = _ten_step_epochs(tmp_path, "plug_nan", n_epochs=4, quartic={"q_ok": 0.01, "q_bad": 0.05})
    out = tmp_path / "run"
    assert reglab_main(["run", "--config", str(study), "--out", str(out), "--threads", "1", "--quiet",
                        "--no-report"]) == 0   # the study completes: divergence is a result, not an error
    reason = ("plugin module 'plug_nan': regularizer 'quartic', hook add_weight_grads() gave a non-finite value "
              "(NaN/inf)")
    summary = read_json(out / "summary.json")
    rows = {(r["method"], r["seed"]): r for r in summary["variants"]}
    for seed in (0, 1):
        bad = rows[("q_bad", seed)]
        assert bad["diverged"] and bad["diverged_reason"] == reason and bad["stop_epoch"] == 3   # step 23
        assert math.isnan(bad["test_error"])
        for method in ("l2", "q_ok"):   # the other variants go on
            ok = rows[(method, seed)]
            assert not ok["diverged"] and ok["diverged_reason"] is None and ok["stop_epoch"] is None
            assert math.isfinite(ok["test_error"])
    assert [(d["method"], d["reason"]) for d in summary["diverged"]] == [("q_bad", reason)] * 2
    assert summary["methods"]["q_bad"]["n_diverged"] == 2

    # frozen at the step that turned it: step 23's loss is recorded, from step 24 on it is NaN
    run = load_run(out)
    steps, loss = run.iter_rows["step"], run.iter_rows["loss_data"]
    bad_variants = [v["variant"] for v in run.variants if v["method"] == "q_bad"]
    for v in bad_variants:
        mine = run.iter_rows["variant"] == v
        assert math.isfinite(loss[mine & (steps == 23)][0]) and math.isnan(loss[mine & (steps == 24)][0])
    assert any(f"q_bad: seed(s) 0, 1 diverged ({reason})" in w for w in digest(run).warnings)
