"""The study config: validation messages, TOML round trip, variant order."""

import math

import pytest

from reglab.config import (DataConfig, MethodConfig, StudyConfig, apply_settings, load_toml, study_from_dict,
                           to_toml)
from reglab.errors import ReglabError


def _study(**kw):
    base = dict(name="s", methods=(MethodConfig("l2", l2=1e-4), MethodConfig("max_norm", max_norm=3.0)),
                seeds=(0, 1, 2))
    base.update(kw)
    return StudyConfig(**base)


def test_variants_are_method_major_with_contiguous_seeds():
    cfg = _study()
    assert [(i, m.name, s) for i, m, s in cfg.variants()] == [
        (0, "l2", 0), (1, "l2", 1), (2, "l2", 2), (3, "max_norm", 0), (4, "max_norm", 1), (5, "max_norm", 2)]
    assert cfg.n_variants == 6


def test_toml_round_trip_gives_an_equal_config(tmp_path):
    cfg = _study(data=DataConfig(name="moons", noise=0.3), hidden=(64, 32))
    p = tmp_path / "s.toml"
    p.write_text(to_toml(cfg))
    assert load_toml(p) == cfg
    assert math.isinf(load_toml(p).methods[0].max_norm)


@pytest.mark.parametrize("method_kw, message", [
    (dict(l1=-1.0), "'l2.l1' must be a number in [0, inf); got -1.0. Fix: use 0 to disable."),
    (dict(dropout_hidden=1.0), "'l2.dropout_hidden' must be a number in [0, 1)"),
    (dict(kl_rho=0.0), "'l2.kl_rho' must be a number in (0, 1)"),
    (dict(lr_schedule="cosine"), "'l2.lr_schedule' must be one of 'constant', 'exponential'"),
    (dict(patience=0), "'l2.patience' must be a whole number in [1,"),
    (dict(lr=float("nan")), "'l2.lr' must be a number"),
])
def test_bad_method_values_name_the_key_and_what_is_allowed(method_kw, message):
    with pytest.raises(ReglabError) as e:
        MethodConfig("l2", **method_kw)
    assert str(e.value).startswith(message)


def test_unknown_keys_are_named_with_the_allowed_ones():
    with pytest.raises(ReglabError, match=r"unknown key study.toml.methods\[0\].l3; allowed: name, l2"):
        study_from_dict({"name": "x", "methods": [{"name": "a", "l3": 1}]}, where="study.toml")
    with pytest.raises(ReglabError, match=r"unknown key cfg.data.nosie"):
        study_from_dict({"name": "x", "data": {"nosie": 0.1}, "methods": [{"name": "a"}]}, where="cfg")


def test_study_level_rules():
    with pytest.raises(ReglabError, match="at least one method"):
        StudyConfig(name="s")
    with pytest.raises(ReglabError, match="unique"):
        _study(methods=(MethodConfig("a"), MethodConfig("a")))
    with pytest.raises(ReglabError, match="distinct"):
        _study(seeds=(1, 1))
    with pytest.raises(ReglabError, match="'optimizer' must be one of 'sgd', 'adam'"):
        _study(optimizer="rmsprop")


def test_bad_toml_syntax_and_missing_file_are_one_line(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("name = \n")
    with pytest.raises(ReglabError, match="not valid TOML"):
        load_toml(p)
    with pytest.raises(ReglabError, match="does not exist"):
        load_toml(tmp_path / "nope.toml")


def test_zero_and_inf_disable_max_norm():
    assert not MethodConfig("a", max_norm=0.0).uses_max_norm
    assert not MethodConfig("a").uses_max_norm
    assert MethodConfig("a", max_norm=3.0).uses_max_norm


# ----------------------------------------------------------------------------
# --set PATH=VALUE

def test_a_setting_changes_one_value_and_equals_the_same_change_written_in_toml(tmp_path):
    cfg = _study(data=DataConfig(name="moons"), hidden=(64, 32))
    changed = apply_settings(cfg, ["methods.max_norm.max_norm=2.5", "n_epochs=30", "data.noise=0.1",
                                   "hidden=[8, 8]", "methods.l2.early_stopping=true", "data.name=circles"])
    text = to_toml(cfg).replace("n_epochs = 10", "n_epochs = 30").replace("noise = 0.2", "noise = 0.1")
    text = text.replace("hidden = [64, 32]", "hidden = [8, 8]").replace('name = "moons"', 'name = "circles"')
    text = text.replace("max_norm = 3.0", "max_norm = 2.5")
    first_method = text.index("[[methods]]")
    text = text[:first_method] + text[first_method:].replace("early_stopping = false", "early_stopping = true", 1)
    p = tmp_path / "s.toml"
    p.write_text(text)
    assert changed == load_toml(p)
    assert changed.methods[1].max_norm == 2.5 and changed.methods[0].early_stopping
    assert not changed.methods[1].early_stopping  # only the method named


def test_a_star_sets_every_method_and_inf_and_integers_read_as_numbers():
    changed = apply_settings(_study(), ["methods.*.lr=1", "methods.l2.max_norm=inf", "methods.max_norm.lr=.2"])
    assert [m.lr for m in changed.methods] == [1.0, 0.2]
    assert changed.methods[0].max_norm == math.inf


def test_later_settings_win_and_an_empty_list_changes_nothing():
    cfg = _study()
    assert apply_settings(cfg, []) == cfg
    assert apply_settings(cfg, ["n_epochs=3", "n_epochs=4"]).n_epochs == 4


FIX = " Fix: change that value (docs/studies.md lists every key and its range)."


def test_every_bad_setting_is_its_own_line_with_the_toml_message():
    with pytest.raises(ReglabError) as e:
        apply_settings(_study(), ["methods.max_norm.dropout_hidden=1.5", "n_epocs=3", "methods.l3.l2=1",
                                  "methods.l2.l3=1", "data.foo=1", "n_epochs", "n_epochs=0", "methods.l2=1",
                                  "methods.l2.lr=abc", "n_epochs=5"])
    assert e.value.lines == [
        "--set methods.max_norm.dropout_hidden=1.5: 'max_norm.dropout_hidden' must be a number in [0, 1); got 1.5."
        + FIX,
        "--set n_epocs=3: unknown key n_epocs. Fix: use one of name, hidden, init, optimizer, n_epochs, batch_size, "
        "seeds, log_every, checkpoint_every, eval_batch_size, device, matmul_dtype, tensorboard, plugins.",
        "--set methods.l3.l2=1: this study has no method named 'l3'; its methods: l2, max_norm. "
        "Fix: use one of those names, or * for every method.",
        "--set methods.l2.l3=1: unknown key methods.l2.l3. Fix: use one of " + ", ".join(
            f for f in MethodConfig.__dataclass_fields__ if f != "plugin_values") + ".",
        "--set data.foo=1: unknown key data.foo. Fix: use one of " + ", ".join(DataConfig.__dataclass_fields__) + ".",
        "--set n_epochs: expected PATH=VALUE. Fix: e.g. --set n_epochs=30 or --set methods.l2.l2=1e-3.",
        "--set n_epochs=0: 'n_epochs' must be a whole number in [1, 10000000]; got 0." + FIX,
        "--set methods.l2=1: a method setting is methods.NAME.KEY. Fix: e.g. methods.dropout+l2.dropout_hidden=0.3.",
        "--set methods.l2.lr=abc: 'l2.lr' must be a number; got 'abc'." + FIX,
    ]


# ----------------------------------------------------------------------------
# names are strings; [method_defaults]

def test_a_method_or_study_named_inf_or_nan_stays_that_name_in_toml_json_and_back(tmp_path):
    from reglab.config import study_from_dict, to_toml
    from reglab.results import atomic_write_json, read_json

    p = tmp_path / "s.toml"
    p.write_text('name = "nan"\nhidden = [8]\n[data]\nname = "moons"\n'
                 '[[methods]]\nname = "inf"\nmax_norm = inf\n[[methods]]\nname = "nan"\n[[methods]]\nname = "1"\n')
    cfg = load_toml(p)
    assert cfg.name == "nan" and [m.name for m in cfg.methods] == ["inf", "nan", "1"]
    assert cfg.methods[0].max_norm == math.inf
    (tmp_path / "again.toml").write_text(to_toml(cfg))
    assert load_toml(tmp_path / "again.toml") == cfg
    atomic_write_json(tmp_path / "c.json", cfg.to_dict())
    assert study_from_dict(read_json(tmp_path / "c.json")) == cfg


def test_method_defaults_fill_every_method_and_a_methods_own_value_wins(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('name = "d"\nhidden = [8]\n[data]\nname = "moons"\n[method_defaults]\nlr = 0.1\nmomentum = 0.95\n'
                 '[[methods]]\nname = "a"\nlr = 0.05\n[[methods]]\nname = "b"\n')
    a, b = load_toml(p).methods
    assert (a.lr, a.momentum, b.lr, b.momentum) == (0.05, 0.95, 0.1, 0.95)


@pytest.mark.parametrize("table, named", [('[method_defaults]\nlrr = 1\n', "method_defaults.lrr"),
                                          ('[method_defaults]\nname = "x"\n', "'name'"),
                                          ('method_defaults = 3\n', "method_defaults must be a table")])
def test_a_bad_method_defaults_table_is_one_line_naming_it(tmp_path, table, named):
    p = tmp_path / "s.toml"
    p.write_text('name = "d"\n' + table + '[[methods]]\nname = "a"\n')
    with pytest.raises(ReglabError) as e:
        load_toml(p)
    assert named in str(e.value) and "Fix: " in str(e.value) and "\n" not in str(e.value)


def test_the_settings_of_the_built_ins_beyond_table_9_are_written_only_when_set(tmp_path):
    from reglab.config import METHOD_FIELDS, WRITTEN_WHEN_SET
    # a study that does not use them is written as before they existed (config.json, digests, fingerprints)
    assert set(MethodConfig("plain", l2=1e-4).to_dict()) == set(METHOD_FIELDS) - WRITTEN_WHEN_SET
    cfg = _study(methods=(MethodConfig("g", gaussian_dropout_hidden=0.5),
                          MethodConfig("h", gaussian_dropout_input=0.2, gaussian_dropout_hidden=0.3)))
    assert cfg.methods[0].to_dict() == dict(MethodConfig("g").to_dict(), gaussian_dropout_hidden=0.5)
    p = tmp_path / "s.toml"
    p.write_text(to_toml(cfg))
    assert load_toml(p) == cfg and study_from_dict(cfg.to_dict()) == cfg
    changed = apply_settings(cfg, ["methods.h.gaussian_dropout_input=0.1", "methods.g.gaussian_dropout_hidden=0"])
    assert changed.methods[1].gaussian_dropout_input == 0.1
    assert "gaussian_dropout_hidden" not in changed.to_dict()["methods"][0]


@pytest.mark.parametrize("method_kw, message", [
    (dict(gaussian_dropout_input=-0.1), "'l2.gaussian_dropout_input' must be a number in [0, 1); got -0.1. Fix: use 0"),
    (dict(gaussian_dropout_hidden=1.0), "'l2.gaussian_dropout_hidden' must be a number in [0, 1); got 1.0."),
    (dict(orthogonality=float("inf")), "'l2.orthogonality' must be a number in [0, inf); got inf. Fix: use 0"),
    (dict(label_smoothing=1.5), "'l2.label_smoothing' must be a number in [0, 1); got 1.5. Fix: use 0"),
    (dict(decoupled_weight_decay=-1), "'l2.decoupled_weight_decay' must be a number in [0, inf); got -1. Fix: use 0"),
    (dict(dropconnect=1.0), "'l2.dropconnect' must be a number in [0, 1); got 1.0. Fix: use 0 to disable"),
    (dict(dropconnect=-0.5), "'l2.dropconnect' must be a number in [0, 1); got -0.5. Fix: use 0 to disable"),
    (dict(dropout_input=0.2, gaussian_dropout_hidden=0.5), "method 'l2' sets both Bernoulli dropout"),
])
def test_bad_values_of_the_built_ins_beyond_table_9_are_one_line_with_a_fix(method_kw, message):
    with pytest.raises(ReglabError) as e:
        MethodConfig("l2", **method_kw)
    assert str(e.value).startswith(message) and len(e.value.lines) == 1 and " Fix: " in str(e.value)
