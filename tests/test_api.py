"""The notebook API: `import reglab` is light and exposes the whole path config -> report."""

import subprocess
import sys


def test_import_reglab_does_not_load_torch_or_pandas():
    code = "import sys, reglab; print('torch' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_public_api_names_resolve_to_the_real_objects():
    import reglab
    from reglab.data import load_dataset
    from reglab.engine import Trainer
    from reglab.report import build_report
    from reglab.frames import load_run, load_runs

    assert reglab.load_dataset is load_dataset
    assert reglab.Trainer is Trainer
    assert reglab.load_run is load_run and reglab.load_runs is load_runs
    assert reglab.build_report is build_report
    assert callable(reglab.presets.get)
    for name in reglab.__all__:
        assert getattr(reglab, name) is not None


def test_run_study_returns_the_run_with_its_dataframes(tmp_path):
    import reglab

    cfg = reglab.presets.get("pointcloud", smoke=True, seeds=1).replace(n_epochs=1)
    run = reglab.run_study(cfg, out_dir=tmp_path / "run", quiet=True, time_methods=False, report=False)
    assert run.dir == tmp_path / "run" and run.complete and run.report is None  # (the notebook test builds one)
    assert list(run.summary.method) == ["no_penalty", "l1", "l2", "early_stopping"]
    assert set(run.epochs.epoch) == {1} and len(run.iterations) > 0
    assert reglab.load_run(run).dir == run.dir  # the run object is path-like
