"""One encoding of non-finite numbers in JSON, for the config and the result files alike.

JSON has no NaN or infinity, so a float ``nan``/``inf``/``-inf`` is written as the string
``"nan"``/``"inf"``/``"-inf"``. Reading back must not turn a *name* into a number: a method
called ``inf`` stays the string ``"inf"``. So :func:`decode` revives those three strings
everywhere except under the keys in :data:`TEXT_KEYS`, which hold names and labels (and in
dictionary keys, which are always text). The config reads its own fields by their declared
type instead (``reglab.config``): only a float field takes ``"inf"``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

ENCODED = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}

# keys whose values (and everything below them) are names or labels, never numbers
TEXT_KEYS = frozenset({"name", "method", "study", "dataset", "a", "b", "difference", "metric", "headline",
                       "returned_model", "status", "command", "init", "optimizer", "device", "matmul_dtype",
                       "monitor", "lr_schedule", "momentum_ramp", "methods_order",
                       "diverged_reason", "reason"})


def encode_float(x: float) -> float | str:
    """`x` itself when finite, else "nan", "inf" or "-inf"."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def encode(obj: Any) -> Any:
    """`obj` (dicts, lists, tuples, numpy values) with every non-finite float as its string; strings untouched."""
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, float):
        return encode_float(obj)
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return encode(obj.tolist())
    if isinstance(obj, np.generic):
        return encode(obj.item())
    return obj


def decode(obj: Any, key: str | None = None) -> Any:
    """The inverse of :func:`encode`: "nan"/"inf"/"-inf" become floats, except under :data:`TEXT_KEYS`."""
    if key in TEXT_KEYS:
        return obj
    if isinstance(obj, str):
        return ENCODED.get(obj, obj)
    if isinstance(obj, dict):
        return {k: decode(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj
