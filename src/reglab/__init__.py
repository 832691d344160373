"""reglab: which regularizer helps a neural network, by how much, and why.

Python API (notebook-friendly)::

    import reglab
    ds = reglab.load_dataset("mnist", data_dir="path/to/datasets")
    cfg = reglab.presets.get("mnist", "quick")
    cfg = reglab.table_study(data=(X, y))                      # or (frame, "target"), or "my.csv", target=...
    run = reglab.run_study(cfg, data_dir="path/to/datasets")   # trains, writes the run directory + report
    run.epochs, run.iterations, run.summary                    # pandas DataFrames (reglab.frames)
    reglab.load_runs([run.dir, "runs/other"]).summary          # several runs, with a `run` column

The heavy parts (torch, matplotlib, pandas) load on first use, so `import reglab`
and commands that do not train (e.g. `reglab report`) start fast.
"""

import importlib

__version__ = "0.1.0"

from reglab.config import DataConfig, MethodConfig, StudyConfig  # noqa: E402
from reglab.errors import ReglabError  # noqa: E402

# public name -> (module, attribute or None for the module itself), imported on first access
_LAZY = {
    "load_dataset": ("reglab.data", "load_dataset"),
    "make_pointcloud": ("reglab.data", "make_pointcloud"),
    "Dataset": ("reglab.data", "Dataset"),
    "Trainer": ("reglab.engine", "Trainer"),
    "presets": ("reglab.study.presets", None),
    "table_study": ("reglab.study.table", "table"),
    "load_run": ("reglab.frames", "load_run"),
    "load_runs": ("reglab.frames", "load_runs"),
    "build_report": ("reglab.report", "build_report"),
    "flush_denormals": ("reglab.denormals", "flush_denormals"),
}


def run_study(cfg, **kwargs):
    """Train the study `cfg`, write its run directory (and report) and return it as a
    :class:`reglab.frames.RunFrames`: ``.epochs``, ``.iterations``, ``.summary`` DataFrames,
    ``.dir``, ``.report``. Keyword arguments are those of :func:`reglab.study.runner.run_study`
    (``out_dir``, ``data_dir``, ``quiet``, ``report``, ``data``, ...), which returns the directory alone.

    Your own table: ``cfg = reglab.table_study(data=(X, y))`` (or ``data=(frame, "target")``, or a
    file: ``reglab.table_study("my.csv", target="label")``), then ``reglab.run_study(cfg, data=(X, y))``.
    """
    from reglab.frames import load_run
    from reglab.study.runner import run_study as run_to_dir

    return load_run(run_to_dir(cfg, **kwargs))


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'reglab' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


__all__ = ["DataConfig", "MethodConfig", "StudyConfig", "ReglabError", "__version__", "run_study", *_LAZY]
