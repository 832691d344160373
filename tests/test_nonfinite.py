"""One encoding of nan/inf for JSON: numbers round-trip, names never become numbers."""

import json
import math

import numpy as np

from reglab.nonfinite import decode, encode


def test_non_finite_numbers_round_trip_through_strict_json():
    obj = {"x": [math.inf, -math.inf, 1.5, np.float32(2.0)], "y": {"z": math.nan}}
    back = decode(json.loads(json.dumps(encode(obj), allow_nan=False)))
    assert back["x"] == [math.inf, -math.inf, 1.5, 2.0] and math.isnan(back["y"]["z"])


def test_a_name_inf_or_nan_stays_a_string_at_any_depth():
    obj = {"name": "inf", "methods": [{"name": "nan", "lr": math.inf}], "variants": [{"method": "-inf"}],
           "comparisons": [{"a": "inf", "b": "nan", "metric": "test_error"}], "inf": 1.0}
    back = decode(json.loads(json.dumps(encode(obj))))
    assert back["name"] == "inf" and back["methods"][0]["name"] == "nan" and back["methods"][0]["lr"] == math.inf
    assert back["variants"][0]["method"] == "-inf"
    assert back["comparisons"][0]["a"] == "inf" and back["comparisons"][0]["b"] == "nan"
    assert back["inf"] == 1.0
