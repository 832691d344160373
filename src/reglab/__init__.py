"""reglab: which regularizer helps a neural network, by how much, and why.

Python API (notebook-friendly)::

    import reglab
    ds = reglab.load_dataset("mnist", data_dir="path/to/datasets")
    cfg = reglab.presets.get("mnist", "quick")
    run_dir = reglab.run_study(cfg, data_dir="path/to/datasets")
    reglab.build_report(run_dir)

The heavy parts (torch, matplotlib) load on first use, so `import reglab`
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
    "run_study": ("reglab.study.runner", "run_study"),
    "load_run": ("reglab.results", "load_run"),
    "build_report": ("reglab.report", "build_report"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'reglab' has no attribute {name!r}")
    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


__all__ = ["DataConfig", "MethodConfig", "StudyConfig", "ReglabError", "__version__", *_LAZY]
