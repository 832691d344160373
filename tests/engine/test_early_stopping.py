"""EarlyStopping: improvement rule, patience, min_delta, NaN, variants without early stopping."""

import numpy as np

from reglab.engine.early_stopping import EarlyStopping


def _feed(es, rows):
    stops = {}
    for epoch, row in enumerate(rows, start=1):
        _, newly = es.update(np.array(row, dtype=float), epoch, np.ones(len(row), dtype=bool))
        for v in np.flatnonzero(newly):
            stops[int(v)] = epoch
    return stops


def test_a_variant_stops_patience_epochs_after_its_best_epoch():
    es = EarlyStopping([True], [2], [0.0])
    stops = _feed(es, [[1.0], [0.8], [0.9], [0.85], [0.7]])
    assert stops == {0: 4}
    assert es.best_epoch.tolist() == [2] and es.best.tolist() == [0.8]


def test_an_improvement_must_exceed_min_delta():
    es = EarlyStopping([True], [2], [0.1])
    stops = _feed(es, [[1.0], [0.95], [0.91], [0.5]])
    assert stops == {0: 3}                   # 0.95 and 0.91 are not below 1.0 - 0.1
    assert es.best_epoch.tolist() == [1]


def test_nan_never_improves_and_variants_without_early_stopping_never_stop():
    es = EarlyStopping([True, False], [1, 1], [0.0, 0.0])
    stops = _feed(es, [[1.0, 1.0], [np.nan, 2.0], [0.5, 3.0]])
    assert stops == {0: 2}
    assert es.best_epoch.tolist() == [1, 1]
    assert not es.stopped[1]


def test_variants_not_considered_keep_their_state():
    es = EarlyStopping([True, True], [1, 1], [0.0, 0.0])
    es.update(np.array([1.0, 1.0]), 1, np.array([True, True]))
    es.update(np.array([2.0, 2.0]), 2, np.array([True, False]))
    assert es.stopped.tolist() == [True, False]
    assert es.wait.tolist() == [1, 0]


def test_state_round_trips():
    es = EarlyStopping([True, False], [3, 3], [0.0, 0.0])
    es.update(np.array([1.0, 0.5]), 1, np.array([True, True]))
    other = EarlyStopping([True, False], [3, 3], [0.0, 0.0])
    other.load_state_dict(es.state_dict())
    for k in ("best", "best_epoch", "wait", "stopped"):
        assert np.array_equal(getattr(es, k), getattr(other, k))
