"""reglab.stats against printed t-tables, closed forms, hand-computed intervals, and the
hand-written incomplete-beta implementation it replaced (kept here as an independent reference)."""

import math

import pytest

from reglab import stats

# ----------------------------------------------------------------------------
# reference: reglab's former Student-t code (no SciPy), the regularized incomplete beta function
# I_x(a, b) by Lentz's continued fraction (Numerical Recipes, 3rd ed., 6.4), quantile by bisection

def _ref_betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = tiny if abs(d) < tiny else d
    d = 1.0 / d
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def _ref_betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta ``I_x(a, b) = B(x; a, b) / B(a, b)`` for a, b > 0, x in [0, 1]."""
    if not (a > 0 and b > 0):
        raise ValueError(f"betainc needs a, b > 0; got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs x in [0, 1]; got {x}")
    if x == 0.0 or x == 1.0:
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    # the continued fraction converges fast for x < (a+1)/(a+b+2); use the symmetry otherwise
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _ref_betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _ref_betacf(b, a, 1.0 - x) / b


def _ref_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` > 0 degrees of freedom.

    Uses ``P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2)``.
    """
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0; got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    if math.isinf(df):
        return 0.5 * math.erfc(-t / math.sqrt(2.0))
    tail = 0.5 * _ref_betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def _ref_t_quantile(p: float, df: float) -> float:
    """The t with ``P(T <= t) = p`` for Student's t with `df` degrees of freedom (inverse CDF).

    Bisection on :func:`t_cdf`: 200 halvings of a bracket that doubles until it
    holds the answer, so the result is exact to the last few ulps.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile needs p in (0, 1); got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -_ref_t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _ref_t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _ref_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)




# two-sided 95% critical values t_{0.975, df} from standard tables (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2)
T_TABLE_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228,
               20: 2.086, 29: 2.045, 30: 2.042, 100: 1.984}
T_TABLE_95 = {1: 6.314, 5: 2.015, 10: 1.812, 30: 1.697}
# closed form for df = 2: t_p = (2p - 1) / sqrt(2 p (1 - p))
T_975_DF2 = (2 * 0.975 - 1) / math.sqrt(2 * 0.975 * 0.025)


@pytest.mark.parametrize("df,expected", sorted(T_TABLE_975.items()))
def test_t_quantile_matches_the_printed_975_table(df, expected):
    assert stats.t_quantile(0.975, df) == pytest.approx(expected, abs=6e-4)


@pytest.mark.parametrize("df,expected", sorted(T_TABLE_95.items()))
def test_t_quantile_matches_the_printed_95_table(df, expected):
    assert stats.t_quantile(0.95, df) == pytest.approx(expected, abs=6e-4)


@pytest.mark.parametrize("p", [0.6, 0.8, 0.9, 0.975, 0.995, 0.9999])
def test_t_quantile_with_one_df_is_the_cauchy_quantile(p):
    assert stats.t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-12)


@pytest.mark.parametrize("p", [0.55, 0.8, 0.975, 0.999])
def test_t_quantile_with_two_df_has_its_closed_form(p):
    # for df = 2: t = (2p - 1) / sqrt(2 p (1 - p))
    assert stats.t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-12)


@pytest.mark.parametrize("t", [-30.0, -2.0, -0.3, 0.0, 0.7, 4.0, 100.0])
def test_t_cdf_has_the_closed_forms_for_one_and_two_df(t):
    assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-14)
    assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-14)


def test_t_quantile_tends_to_the_normal_quantile_for_many_df():
    assert stats.t_quantile(0.975, 1e7) == pytest.approx(1.959963984540054, abs=1e-5)
    assert stats.t_quantile(0.975, math.inf) == pytest.approx(1.959963984540054, abs=1e-12)


def test_t_quantile_is_antisymmetric_and_inverts_the_cdf():
    for df in (1, 3, 7.5, 40):
        for p in (0.01, 0.3, 0.9):
            q = stats.t_quantile(p, df)
            assert stats.t_quantile(1 - p, df) == pytest.approx(-q, rel=1e-12)
            assert stats.t_cdf(q, df) == pytest.approx(p, abs=1e-13)


def test_the_reference_incomplete_beta_matches_closed_forms():
    # I_x(1, 1) = x;  I_x(a, 1) = x^a;  I_x(1, b) = 1 - (1 - x)^b
    for x in (0.0, 0.1, 0.5, 0.93, 1.0):
        assert _ref_betainc(1, 1, x) == pytest.approx(x, abs=1e-14)
        assert _ref_betainc(3.5, 1, x) == pytest.approx(x ** 3.5, abs=1e-14)
        assert _ref_betainc(1, 2.5, x) == pytest.approx(1 - (1 - x) ** 2.5, abs=1e-14)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 7.5, 9, 19, 29, 100, 1e4])
def test_scipy_quantiles_equal_the_former_hand_written_ones_within_1e_9(df):
    for p in (0.6, 0.9, 0.95, 0.975, 0.995):
        assert abs(stats.t_quantile(p, df) - _ref_t_quantile(p, df)) < 1e-9
        assert abs(stats.t_quantile(1 - p, df) - _ref_t_quantile(1 - p, df)) < 1e-9
    # far tail: t_{0.9999, 1} = 3183 moves by dq/dp = pi (1 + q^2) = 3e7 per unit of p, so one ulp of
    # p (1.1e-16) is 3.5e-9 in q: there the two agree to 1e-9 relative, as well as p itself is known
    q = stats.t_quantile(0.9999, df)
    assert abs(q - _ref_t_quantile(0.9999, df)) < 1e-9 * abs(q)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 29, 1e4])
def test_scipy_cdf_equals_the_former_hand_written_one_within_1e_9(df):
    for t in (-40.0, -4.3, -1.0, 0.0, 0.2, 2.0, 3.18, 12.7, 100.0):
        assert abs(stats.t_cdf(t, df) - _ref_t_cdf(t, df)) < 1e-9


def test_paired_p_values_and_intervals_equal_the_former_formulas_within_1e_9():
    cases = [([13.0, 24.0, 35.0], [10.0, 20.0, 30.0]),
             ([0.0171, 0.0165, 0.0169], [0.0163, 0.0168, 0.0160]),
             ([1.0, 2.0, 3.0, 4.0, 5.0], [1.10, 2.12, 3.09, 4.11, 5.10]),
             ([0.3, 0.1, 0.4, 0.1, 0.5, 0.9, 0.2], [0.2, 0.2, 0.1, 0.3, 0.4, 0.6, 0.2])]
    for a, b in cases:
        c = stats.paired_comparison(a, b)
        d = [x - y for x, y in zip(a, b)]
        n, m, s = len(d), stats.mean(d), stats.std(d)
        t = m / (s / math.sqrt(n))
        p = 2.0 * (1.0 - _ref_t_cdf(abs(t), n - 1))
        half = _ref_t_quantile(0.975, n - 1) * s / math.sqrt(n)
        assert abs(c["t"] - t) < 1e-9 * max(1.0, abs(t))
        assert abs(c["p_value"] - p) < 1e-9
        assert abs(c["ci95"][0] - (m - half)) < 1e-9 and abs(c["ci95"][1] - (m + half)) < 1e-9


# ----------------------------------------------------------------------------
# Holm's step-down correction

def test_holm_adjusts_a_hand_worked_family_of_five():
    # raw p sorted: 0.01, 0.02, 0.03, 0.04, 0.30 (m = 5), given out of order
    # multipliers 5, 4, 3, 2, 1 -> 0.05, 0.08, 0.09, 0.08, 0.30; running max -> 0.05, 0.08, 0.09, 0.09, 0.30
    raw = [0.04, 0.30, 0.01, 0.03, 0.02]
    assert stats.holm(raw) == pytest.approx([0.09, 0.30, 0.05, 0.09, 0.08], abs=1e-15)


def test_holm_caps_at_one_and_leaves_missing_p_values_out_of_the_family():
    # family of 3 (the None is not a test): 0.001*3 = 0.003, 0.5*2 = 1.0, 0.6*1 -> max(1.0, 0.6) = 1.0
    assert stats.holm([0.5, None, 0.001, 0.6]) == pytest.approx([1.0, None, 0.003, 1.0])
    assert stats.holm([]) == []
    assert stats.holm([0.2]) == [0.2]


def test_holm_rejects_exactly_the_hypotheses_of_the_step_down_procedure():
    # Holm: reject p_(i) while p_(i) < alpha / (m - i + 1); stop at the first that is not
    # 0.0126 >= 0.05/4 stops the procedure, so 0.013 (3 x 0.013 = 0.039) and 0.02 are not rejected either
    raw = [0.004, 0.013, 0.0126, 0.02, 0.5, 0.001]
    order = sorted(range(len(raw)), key=raw.__getitem__)
    rejected = set()
    for rank, i in enumerate(order):
        if raw[i] < 0.05 / (len(raw) - rank):
            rejected.add(i)
        else:
            break
    adjusted = stats.holm(raw)
    assert {i for i, q in enumerate(adjusted) if q < 0.05} == rejected == {5, 0}


def test_holm_agrees_with_statsmodels_multipletests():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = __import__("random").Random(3)
    for m in (2, 6, 15, 40):
        raw = [rng.random() ** 3 for _ in range(m)]
        reject, expected, _, _ = multitest.multipletests(raw, alpha=0.05, method="holm")
        assert stats.holm(raw) == pytest.approx(list(expected), abs=1e-15)
        assert [q < 0.05 for q in stats.holm(raw)] == list(reject)


def test_holm_adjust_keeps_the_raw_p_and_adds_the_family_judgement():
    family = [stats.paired_comparison([13.0, 24.0, 35.0], [10.0, 20.0, 30.0]),   # p = 0.0121
              stats.paired_comparison([11.0, 22.0, 33.0], [10.0, 20.0, 30.0]),   # p = 0.0742
              stats.paired_comparison([1.0], [2.0])]                             # n = 1: no p
    out = stats.holm_adjust(family)
    assert [c["p_value"] for c in out] == [c["p_value"] for c in family]
    assert out[0]["significant"] is True
    assert out[0]["p_holm"] == pytest.approx(2 * family[0]["p_value"])   # m = 2: the n = 1 one has no p
    assert out[0]["significant_holm"] is (2 * family[0]["p_value"] < 0.05)
    assert out[2]["p_holm"] is None and out[2]["significant_holm"] is None


def test_mean_and_sample_std_are_the_textbook_ones():
    xs = [2, 4, 4, 4, 5, 5, 7, 9]
    assert stats.mean(xs) == 5.0
    assert stats.std(xs) == pytest.approx(math.sqrt(32 / 7), rel=1e-15)


def test_t_interval_of_three_values_is_computed_by_hand():
    # mean 2, s = 1, n = 3: 2 +- t_{0.975,2} / sqrt(3)
    lo, hi = stats.t_interval([1.0, 2.0, 3.0])
    half = T_975_DF2 / math.sqrt(3)
    assert lo == pytest.approx(2 - half, rel=1e-12)
    assert hi == pytest.approx(2 + half, rel=1e-12)


def test_one_value_has_no_interval_and_no_std():
    d = stats.describe([0.5])
    assert d["n"] == 1 and d["mean"] == 0.5
    assert d["std"] is None and d["ci95"] is None


def test_describe_leaves_out_non_finite_values_and_counts_them():
    d = stats.describe([1.0, float("nan"), 3.0, float("inf")])
    assert d["n"] == 2 and d["n_excluded"] == 2
    assert d["mean"] == 2.0
    assert d["values"] == [1.0, None, 3.0, None]


def test_paired_comparison_uses_per_seed_differences():
    # the per-seed differences are 3, 4, 5: mean 4, s 1 -> 4 +- t_{0.975,2} / sqrt(3) = [1.52, 6.48]
    a = [13.0, 24.0, 35.0]
    b = [10.0, 20.0, 30.0]
    c = stats.paired_comparison(a, b)
    half = T_975_DF2 / math.sqrt(3)
    assert c["mean_difference"] == pytest.approx(4.0)
    assert c["ci95"] == pytest.approx([4 - half, 4 + half], rel=1e-12)
    assert c["significant"] is True
    # t = 4 / (1/sqrt 3) = 4 sqrt 3 with 2 df: two-sided p = 1 - t/sqrt(2 + t^2) (closed form for df 2)
    t = 4 * math.sqrt(3)
    assert c["t"] == pytest.approx(t)
    assert c["p_value"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-10)


def test_a_small_paired_difference_over_three_seeds_is_not_significant():
    # differences 1, 2, 3: 2 +- 2.48 contains 0
    c = stats.paired_comparison([11.0, 22.0, 33.0], [10.0, 20.0, 30.0])
    assert c["ci95"][0] < 0 < c["ci95"][1]
    assert c["significant"] is False and c["p_value"] > 0.05


def test_pairing_finds_a_difference_the_unpaired_intervals_miss():
    # big seed-to-seed spread, constant small advantage: the method intervals overlap,
    # the paired difference interval excludes zero
    a = [1.00, 2.00, 3.00, 4.00, 5.00]
    b = [1.10, 2.12, 3.09, 4.11, 5.10]
    ia, ib = stats.t_interval(a), stats.t_interval(b)
    assert ia[1] > ib[0]
    c = stats.paired_comparison(a, b)
    assert c["significant"] is True and c["ci95"][1] < 0


def test_a_difference_at_the_critical_value_has_p_value_five_percent():
    tq = stats.t_quantile(0.975, 3)
    # differences with mean m and s chosen so that t = m / (s / 2) = tq
    d = [-1.0, 1.0, -1.0, 1.0]  # s = 2/sqrt(3)
    s = stats.std(d)
    m = tq * s / 2
    c = stats.paired_comparison([x + m for x in d], [0.0] * 4)
    assert c["p_value"] == pytest.approx(0.05, abs=1e-12)
    assert c["ci95"][0] == pytest.approx(0.0, abs=1e-12)


def test_paired_comparison_drops_pairs_with_a_diverged_member():
    c = stats.paired_comparison([1.0, float("nan"), 3.0, 4.0], [0.5, 0.1, 2.0, 3.5])
    assert c["n"] == 3 and c["n_excluded"] == 1


def test_identical_methods_are_not_significantly_different():
    c = stats.paired_comparison([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert c["mean_difference"] == 0.0 and c["significant"] is False


def test_differences_equal_but_for_float_rounding_have_no_spread_and_no_scipy_warning():
    import warnings
    # 150/10000 - 156/10000 and 153/10000 - 159/10000 are both -6/10000, but not in float
    a, b = [0.0150, 0.0153], [0.0156, 0.0159]
    assert a[0] - b[0] != a[1] - b[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = stats.paired_comparison(a, b)
    assert c["ci95"][0] == c["ci95"][1] == pytest.approx(-0.0006) and c["p_value"] == 0.0
