"""The tuning loop: search spaces, the objective, outputs, resume, pruning, and the sealed test split."""

import dataclasses
import json
import math

import optuna
import pytest
import torch

from reglab.config import MethodConfig, load_toml
from reglab.errors import ReglabError
from reglab.results import read_json
from reglab.study import presets
from reglab.tune.executors import LocalExecutor
from reglab.tune.search import (DIVERGED_ERROR, LEARNING_RATE, TrialRun, grid_size, search_space, tune,
                                validation_only)

from .helpers import tiny_study, trials_without_wall_time


def _tune(study, dataset, out, **kw):
    kw.setdefault("n_trials", 2)
    kw.setdefault("batch_trials", 2)
    kw.setdefault("executor", LocalExecutor(threads=1))
    return tune(study, dataset, out_dir=out, **kw)


def _study_trials(out, method):
    meta = read_json(out / "tune.json")
    return optuna.load_study(study_name=meta["optuna_studies"][method],
                             storage=f"sqlite:///{out / 'optuna.db'}").trials


# ----------------------------------------------------------------------------
# search spaces

def test_each_table9_method_tunes_its_learning_rate_and_only_the_regularizers_it_uses():
    cfg = presets.get("mnist", "quick")
    spaces = {m.name: list(search_space(m, cfg.optimizer)) for m in cfg.methods}
    assert spaces == {
        "l2": ["lr", "l2"],
        "l2+l1_late": ["lr", "l2", "l1", "l1_start"],
        "l2+kl": ["lr", "l2", "kl_beta", "kl_rho"],
        "max_norm": ["lr", "max_norm"],
        "dropout+l2": ["lr", "l2", "dropout_input", "dropout_hidden"],
        "dropout+max_norm": ["lr", "max_norm", "dropout_input", "dropout_hidden"],
    }


def test_scale_parameters_are_log_uniform_and_fractions_uniform():
    m = MethodConfig("all", l2=1e-4, l1=1e-5, l1_start=0.8, kl_beta=1e-3, kl_rho=0.1, max_norm=3.0,
                     dropout_input=0.2, dropout_hidden=0.5)
    space = search_space(m, "sgd")
    assert {k for k, p in space.items() if p.log} == {"lr", "l2", "l1", "kl_beta", "kl_rho", "max_norm"}
    assert {k for k, p in space.items() if not p.log} == {"l1_start", "dropout_input", "dropout_hidden"}
    assert grid_size(space) == 3 ** len(space)


@pytest.mark.parametrize("setting,expected", [
    pytest.param(dict(gaussian_dropout_hidden=0.5), (0.1, 0.7, False, (0.3, 0.5, 0.6)), id="gaussian_dropout"),
    pytest.param(dict(orthogonality=1e-4), (1e-6, 1e-2, True, (1e-5, 1e-4, 1e-3)), id="orthogonality"),
    pytest.param(dict(label_smoothing=0.1), (0.01, 0.3, True, (0.05, 0.1, 0.2)), id="label_smoothing"),
    pytest.param(dict(decoupled_weight_decay=1e-3), (1e-5, 1e-1, True, (1e-4, 1e-3, 1e-2)),
                 id="decoupled_weight_decay"),
    pytest.param(dict(dropconnect=0.5), (0.05, 0.7, False, (0.1, 0.3, 0.5)), id="dropconnect"),
])
def test_the_built_ins_beyond_table_9_are_searched_over_their_declared_ranges(setting, expected):
    space = search_space(MethodConfig("new", **setting), "sgd")
    (name,) = setting
    assert list(space) == ["lr", name]
    p = space[name]
    assert (p.low, p.high, p.log, p.grid) == expected


@pytest.mark.parametrize("study,preset", [(s, p) for s in presets.STUDIES for p in presets.STUDIES[s]])
def test_every_presets_own_values_lie_inside_its_search_space(study, preset):
    cfg = presets.get(study, preset)
    cfg = getattr(cfg, "base", cfg)   # a data-size sweep: the methods of its base study
    for m in cfg.methods:
        for name, p in search_space(m, cfg.optimizer).items():
            assert p.low <= getattr(m, name) <= p.high, (m.name, name)


def test_a_range_is_widened_to_contain_a_value_outside_it():
    high_lr = MethodConfig("x", lr=3.0)
    assert search_space(high_lr, "sgd")["lr"].high == 3.0
    assert search_space(high_lr, "sgd")["lr"].low == LEARNING_RATE["sgd"].low


# ----------------------------------------------------------------------------
# the objective

def _run(method, seeds=(0, 1)):
    return TrialRun(base=method.name, trial=None, method=method, seeds=seeds)


def test_the_objective_is_the_mean_over_seeds_of_the_last_epochs_validation_error():
    run = _run(MethodConfig("l2", l2=1e-4))
    for epoch, (a, b) in enumerate([(0.30, 0.20), (0.10, 0.40), (0.20, 0.30)], start=1):
        run.add_epoch(0, epoch, a, 1.0, False)
        run.add_epoch(1, epoch, b, 1.0, False)
    assert run.objective() == pytest.approx((0.20 + 0.30) / 2)
    assert run.mean_error(2) == pytest.approx(0.25)


def test_with_early_stopping_each_seed_returns_its_best_epoch_by_the_monitor():
    # monitor val_loss: seed 0's best loss is epoch 2 (error 0.3 there), not its lowest error
    method = MethodConfig("es", early_stopping=True, patience=5, monitor="val_loss", min_delta=0.05)
    run = _run(method, seeds=(0,))
    for epoch, (err, loss) in enumerate([(0.4, 1.0), (0.3, 0.5), (0.1, 0.48), (0.2, 0.9)], start=1):
        run.add_epoch(0, epoch, err, loss, False)
    # epoch 3 improves the loss by 0.02 < min_delta: not an improvement
    assert run.objective() == pytest.approx(0.3)


def test_a_diverged_seed_counts_as_every_example_wrong_and_a_stopped_seed_ends_its_curve():
    run = _run(MethodConfig("l2", l2=1e-4))
    run.add_epoch(0, 1, 0.2, 0.5, False)
    run.add_epoch(1, 1, 0.3, 0.6, False)
    run.add_epoch(0, 2, math.nan, math.nan, True)      # seed 0 diverged in epoch 2
    run.add_epoch(1, 2, 0.25, 0.55, False)
    assert run.val_error[0] == [0.2, DIVERGED_ERROR]
    assert run.objective() == pytest.approx((DIVERGED_ERROR + 0.25) / 2)
    es = _run(MethodConfig("es", early_stopping=True, patience=1, monitor="val_error"), seeds=(0, 1))
    es.add_epoch(0, 1, 0.2, 0.5, False)
    es.add_epoch(1, 1, 0.3, 0.5, False)
    es.add_epoch(0, 2, math.nan, math.nan, False)      # seed 0 stopped: the engine reports NaN
    es.add_epoch(1, 2, 0.1, 0.5, False)
    assert es.val_error[0] == [0.2] and 0 in es.finished_seeds
    assert es.ready_epochs() == 2 and es.mean_error(2) == pytest.approx((0.2 + 0.1) / 2)


# ----------------------------------------------------------------------------
# the sealed test split

class Tripwire(torch.Tensor):
    """A tensor that fails the test on any torch operation: the test split must never be read."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        raise AssertionError(f"the test split was read ({getattr(func, '__name__', func)})")


def test_the_test_split_is_never_read_and_does_not_change_the_result(study, dataset, tmp_path):
    poisoned = dataclasses.replace(
        dataset, x_test=torch.full_like(dataset.x_test, math.nan).as_subclass(Tripwire),
        y_test=torch.full_like(dataset.y_test, 10**6).as_subclass(Tripwire))
    with pytest.raises(AssertionError, match="test split was read"):
        poisoned.x_test.sum()  # the tripwire works
    sealed = validation_only(poisoned)
    assert torch.equal(sealed.x_test, dataset.x_val[:len(sealed.x_test)])
    study = study.replace(methods=(study.methods[0], study.methods[2]))  # with and without dropout
    clean = _tune(study, dataset, tmp_path / "clean")
    dirty = _tune(study, poisoned, tmp_path / "poisoned")
    assert trials_without_wall_time(tmp_path / "clean") == trials_without_wall_time(tmp_path / "poisoned")
    assert clean.tuned == dirty.tuned


# ----------------------------------------------------------------------------
# outputs, resume, budget

def test_a_tune_writes_a_study_config_that_load_toml_accepts_with_the_best_values(study, dataset, tmp_path):
    out = tmp_path / "tune"
    result = _tune(study, dataset, out, n_trials=3)
    tuned = load_toml(out / "tuned.toml")
    assert tuned == result.tuned
    assert [m.name for m in tuned.methods] == [m.name for m in study.methods]
    assert (tuned.hidden, tuned.n_epochs, tuned.seeds, tuned.data) == (study.hidden, study.n_epochs, study.seeds,
                                                                        study.data)
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert len(trials) == 3 * len(study.methods)
    for m in tuned.methods:
        mine = [t for t in trials if t["method"] == m.name and t["state"] == "complete"]
        best = min(mine, key=lambda t: t["value"])
        assert {k: getattr(m, k) for k in best["params"]} == best["params"]
        assert result.methods[m.name]["best_value"] == best["value"] <= result.methods[m.name]["preset_value"]
        # the preset's values were trial 0 and the value is the mean over the seed's curve's last epoch
        preset = next(t for t in trials if t["method"] == m.name and t["preset_default"])
        base = next(b for b in study.methods if b.name == m.name)
        assert preset["params"] == {k: getattr(base, k) for k in preset["params"]}
        assert best["value"] == pytest.approx(best["val_error"]["0"][-1])
        assert len(best["val_error_mean"]) == study.n_epochs
    meta = read_json(out / "tune.json")
    assert meta["status"] == "complete" and meta["selection_split"].startswith("validation")
    assert not (out / "optuna.db-wal").exists()  # the database is one self-contained file after a session
    assert sorted(p.name for p in (out / "plots").iterdir()) == sorted(
        f"sensitivity-{m.name}.png" for m in study.methods)
    header = (out / "trials.csv").read_text().splitlines()[0].split(",")
    assert {"method", "trial", "state", "value", "lr", "l2", "max_norm", "dropout_hidden"} <= set(header)


def test_running_the_same_tune_again_continues_the_same_optuna_study(study, dataset, tmp_path):
    out = tmp_path / "tune"
    one = study.replace(methods=study.methods[:1])
    _tune(one, dataset, out, n_trials=2)
    first = _study_trials(out, "l2")
    _tune(one, dataset, out, n_trials=2)
    both = _study_trials(out, "l2")
    assert len(first) == 2 and len(both) == 4
    assert [t.params for t in both[:2]] == [t.params for t in first]
    # the second session's sampler does not repeat the first session's proposals
    assert both[2].params != both[1].params
    assert len(read_json(out / "tune.json")["sessions"]) == 2


def test_a_tune_directory_refuses_a_different_study(study, dataset, tmp_path):
    out = tmp_path / "tune"
    _tune(study.replace(methods=study.methods[:1]), dataset, out)
    with pytest.raises(ReglabError, match="different study"):
        _tune(study.replace(methods=study.methods[:1], n_epochs=2), dataset, out)


def test_the_grid_sampler_tries_each_grid_point_once_and_stops(dataset, tmp_path):
    only_lr = tiny_study(methods=(MethodConfig("plain", lr=0.05),), seeds=(0,), n_epochs=1)
    result = _tune(only_lr, dataset, tmp_path / "grid", sampler="grid", n_trials=10, batch_trials=2)
    lrs = sorted(t.params["lr"] for t in _study_trials(tmp_path / "grid", "plain"))
    assert lrs == sorted(LEARNING_RATE["sgd"].grid)
    assert result.methods["plain"]["n_trials"] == 3


def test_hopeless_trials_are_pruned_before_their_last_epoch(dataset, tmp_path):
    cfg = tiny_study(methods=(MethodConfig("plain", lr=0.05),), seeds=(0,), n_epochs=6)
    out = tmp_path / "pruned"
    _tune(cfg, dataset, out, sampler="random", n_trials=16, batch_trials=8, sampler_seed=3)
    trials = json.loads((out / "trials.json").read_text())["trials"]
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert pruned, "the median rule pruned nothing: choose another sampler seed for this test"
    for t in pruned:
        assert t["pruned_at"] < cfg.n_epochs and len(t["val_error_mean"]) == t["pruned_at"]
    assert all(len(t["val_error_mean"]) == cfg.n_epochs for t in trials if t["state"] == "complete")


def test_a_timeout_stops_starting_new_batches(study, dataset, tmp_path):
    result = _tune(study.replace(methods=study.methods[:1]), dataset, tmp_path / "t", n_trials=None,
                   timeout_s=1e-9, batch_trials=2)
    assert result.methods["l2"]["n_trials"] == 0
    assert read_json(tmp_path / "t" / "tune.json")["status"] == "complete"


@pytest.mark.parametrize("kwargs,message", [
    (dict(n_trials=None), "no budget"),
    (dict(n_trials=0), "--trials must be"),
    (dict(sampler="cmaes"), "--sampler must be"),
    (dict(pruner="hyperband"), "--pruner must be"),
    (dict(seeds_per_trial=0), "--seeds-per-trial"),
    (dict(shard_by=("layer",)), "--shard-by"),
    (dict(storage="nosuchdb://x"), "cannot open Optuna storage"),
])
def test_bad_settings_are_one_line_errors_naming_the_option(study, dataset, tmp_path, kwargs, message):
    with pytest.raises(ReglabError, match=message) as e:
        _tune(study.replace(methods=study.methods[:1]), dataset, tmp_path / "bad", **kwargs)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------
# interruptions

class InterruptedExecutor(LocalExecutor):
    """Raises KeyboardInterrupt (Ctrl-C) on its second call: mid-batch."""

    def __init__(self):
        super().__init__(threads=1)
        self.calls = 0

    def advance(self, shards, n_epochs, want_final=False):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return super().advance(shards, n_epochs, want_final)


def test_an_interrupted_tune_marks_its_unfinished_trials_failed_and_resumes(study, dataset, tmp_path):
    out = tmp_path / "tune"
    one = study.replace(methods=study.methods[:1])
    with pytest.raises(KeyboardInterrupt):
        _tune(one, dataset, out, executor=InterruptedExecutor())
    meta = read_json(out / "tune.json")
    assert meta["status"] == "interrupted"
    assert [f["error"] for f in meta["failed"]] == ["interrupted before it finished"] * 2
    assert load_toml(out / "tuned.toml").methods == one.methods  # nothing finished: the preset's values
    _tune(one, dataset, out)
    states = [t.state.name for t in _study_trials(out, "l2")]
    assert states == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    assert read_json(out / "tune.json")["status"] == "complete"


def test_a_trial_left_running_by_a_killed_process_is_marked_failed_on_resume(study, dataset, tmp_path):
    import socket
    import subprocess
    import sys

    out = tmp_path / "tune"
    one = study.replace(methods=study.methods[:1])
    _tune(one, dataset, out)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    meta = read_json(out / "tune.json")
    orphan = optuna.load_study(study_name=meta["optuna_studies"]["l2"], storage=f"sqlite:///{out / 'optuna.db'}").ask()
    orphan.set_user_attr("run", {"host": socket.gethostname(), "pid": dead.pid, "seeds": [0]})
    _tune(one, dataset, out)
    states = {t.number: t.state.name for t in _study_trials(out, "l2")}
    assert states[orphan.number] == "FAIL"
    assert list(states.values()).count("COMPLETE") == 4
