"""reglab: which regularizer helps a neural network, by how much, and why.

Python API (notebook-friendly)::

    import reglab
    ds = reglab.load_dataset("mnist", data_dir="path/to/datasets")
    cfg = reglab.presets.get("mnist", "quick")
    run_dir = reglab.run_study(cfg, data_dir="path/to/datasets")
"""

__version__ = "0.1.0"

from reglab.config import DataConfig, MethodConfig, StudyConfig  # noqa: E402
from reglab.errors import ReglabError  # noqa: E402
from reglab.data import load_dataset  # noqa: E402

__all__ = ["DataConfig", "MethodConfig", "StudyConfig", "ReglabError", "__version__", "load_dataset"]
