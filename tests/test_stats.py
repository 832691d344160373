"""reglab.stats against printed t-tables, closed forms and hand-computed intervals."""

import math

import pytest

from reglab import stats

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


def test_betainc_matches_closed_forms():
    # I_x(1, 1) = x;  I_x(a, 1) = x^a;  I_x(1, b) = 1 - (1 - x)^b
    for x in (0.0, 0.1, 0.5, 0.93, 1.0):
        assert stats.betainc(1, 1, x) == pytest.approx(x, abs=1e-14)
        assert stats.betainc(3.5, 1, x) == pytest.approx(x ** 3.5, abs=1e-14)
        assert stats.betainc(1, 2.5, x) == pytest.approx(1 - (1 - x) ** 2.5, abs=1e-14)


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
