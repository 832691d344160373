"""The report's tables judge a family of paired comparisons by Holm's adjusted p, not the raw p."""

from __future__ import annotations

from types import SimpleNamespace

from reglab import stats
from reglab.report.tables import fmt_median_range, headline, paired_table, regularizer_formulas


def _comparison(mean_difference: float, p: float) -> dict:
    return {"n": 3, "mean_difference": mean_difference, "ci95": [mean_difference - 0.001, mean_difference + 0.001],
            "p_value": p, "significant": p < 0.05}


def _digest(raw: dict[tuple[str, str], float]):
    """A stand-in Digest: only what paired_table and headline read."""
    pairs = list(raw)
    family = stats.holm_adjust([_comparison(-0.002, raw[k]) for k in pairs])
    paired = [{"a": a, "b": b, "test_error": c, "val_error": c} for (a, b), c in zip(pairs, family)]
    best = SimpleNamespace(name="a", returned_model="last epoch",
                           stats={"test_error": {"n": 3, "mean": 0.01, "ci95_half_width": 0.001}})
    others = [SimpleNamespace(name=n, returned_model="last epoch",
                              stats={"test_error": {"n": 3, "mean": 0.02, "ci95_half_width": 0.001}})
              for n in ("b", "c", "d")]
    return SimpleNamespace(paired=paired, methods=[best, *others], paper={}, complete=True)


def test_a_raw_p_below_five_percent_that_holm_rejects_gets_no_star_and_no_highlight():
    # family of 3: 0.001 -> 0.003 (significant); 0.03 -> 0.06 (not, though raw p < 0.05); 0.04 -> 0.06
    d = _digest({("a", "b"): 0.001, ("a", "c"): 0.03, ("a", "d"): 0.04})
    t = paired_table(d)
    assert t.emphasis == [True, False, False]
    assert t.rows[0][3].endswith(" *") and not t.rows[1][3].endswith("*")
    assert t.rows[1][5] == "0.030" and t.rows[1][6] == "0.060"   # raw p and Holm's p side by side
    assert "Holm" in t.notes[0]


def test_the_headline_names_only_the_differences_that_survive_holm_and_says_so():
    d = _digest({("a", "b"): 0.001, ("a", "c"): 0.03, ("a", "d"): 0.04})
    text = headline(d)
    assert "Significantly lower than b (" in text and "Holm-adjusted p < 0.05 over the 3" in text
    assert "Not distinguishable from c, d" in text


def test_training_time_is_shown_as_median_and_range():
    assert fmt_median_range([3.0, 1.0, 2.5]) == "2.5 [1.0 – 3.0]"
    assert fmt_median_range([4.0, 1.0, 2.0, 3.0]) == "2.5 [1.0 – 4.0]"
    assert fmt_median_range([7.25]) == "7.2"
    assert fmt_median_range([]) == "—"



def _method(regularizer: str | None = None, **hyperparameters):
    """A stand-in MethodData: the hyperparameters and the regularizers.json entry regularizer_formulas reads."""
    used = [] if regularizer is None else [{"name": regularizer, "formula": "declared", "source": "reglab",
                                            "hyperparameters": []}]
    return SimpleNamespace(hyperparameters=hyperparameters, regularizers=used)


def test_a_method_without_a_setting_written_only_when_set_shows_its_default_in_the_hyperparameter_table():
    from reglab.report.tables import hyperparameter_table
    d = SimpleNamespace(methods=[SimpleNamespace(name="g", hyperparameters={"l2": 0.0, "gaussian_dropout_hidden": 0.5}),
                                 SimpleNamespace(name="plain", hyperparameters={"l2": 0.0})])
    rows = {r[0]: r[1:] for r in hyperparameter_table(d).rows}
    assert rows["gaussian_dropout_hidden"] == ["0.5", "0"] and "gaussian_dropout_input" not in rows


def test_gaussian_dropout_has_its_formula_with_the_methods_rates():
    text = " ".join(regularizer_formulas(_method("gaussian_dropout", gaussian_dropout_hidden=0.5)))
    assert "Gaussian dropout (Srivastava et al. 2014, sec. 10): each hidden unit h ← h·r, r ~ N(1, σ²), " \
           "σ² = p/(1−p) = 1 (p = 0.5)" in text and "input unit" not in text and "off at evaluation" in text
    assert "declared" not in text            # the hand-written text, not the registry's line a second time
    assert regularizer_formulas(_method()) == ["No regularization: plain cross-entropy."]


def test_soft_orthogonality_has_its_formula_and_says_which_side_of_w():
    text = " ".join(regularizer_formulas(_method("orthogonality", orthogonality=1e-4)))
    assert "‖Wₗᵀ Wₗ − I‖²_F, λₒ = 0.0001" in text and "Gram matrix of the units' incoming weight vectors" in text
    assert "declared" not in text


def test_label_smoothing_has_its_formula_and_says_which_loss_is_recorded():
    text = " ".join(regularizer_formulas(_method("label_smoothing", label_smoothing=0.1)))
    assert "(1−ε)·one-hot + ε/C, ε = 0.1" in text and "recorded training loss is this smoothed" in text
    assert "declared" not in text


def test_decoupled_weight_decay_has_its_formula_and_says_it_is_not_a_loss_term():
    text = " ".join(regularizer_formulas(_method("decoupled_weight_decay", decoupled_weight_decay=0.01)))
    assert "before every update w ← w − ηₜ·λ_d·w, λ_d = 0.01" in text and "not a loss term" in text
    assert "declared" not in text


def test_dropconnect_has_its_formula_with_the_rate_and_says_what_evaluation_reads():
    text = " ".join(regularizer_formulas(_method("dropconnect", dropconnect=0.5)))
    assert "DropConnect (Wan et al. 2013)" in text and "W ⊙ M/(1−p), M ~ Bernoulli(1−p) per weight, p = 0.5" in text
    assert "one M per minibatch" in text and "biases never masked" in text and "plain W (mean-field)" in text
    assert "declared" not in text
