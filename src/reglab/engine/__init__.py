"""The batched training engine: every variant of a study trained together as one model.

See ``docs/architecture.md`` ("Engine contract") and :mod:`reglab.engine.trainer`.
"""

from reglab.engine.trainer import EpochRecord, Trainer

__all__ = ["EpochRecord", "Trainer"]
