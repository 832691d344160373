"""Statistics over seeds: mean, standard deviation, Student-t intervals, paired comparisons.

Every number a study reports is a mean over n seeds with its spread:

* ``std`` is the sample standard deviation, ``s = sqrt(sum (x_i - mean)^2 / (n - 1))``.
* ``ci95`` is the two-sided 95% Student-t interval for the mean,
  ``mean +- t_{0.975, n-1} * s / sqrt(n)``; it needs n >= 2 (with n = 1 it is
  undefined and reported as ``None``).
* A *paired* comparison of methods A and B uses the per-seed differences
  ``d_s = A_s - B_s`` (seed s gives both methods the same data order, so the
  pairing removes the shared part of the noise) and the same t-interval on
  the mean difference; it is *significant* at the 5% level when that interval
  excludes 0, equivalently when the two-sided p-value of the paired t-test is
  below 0.05.

A study's paired comparisons form a *family* (15 pairs for six methods): with
15 tests at the 5% level, one false "significant" is likely even when no method
differs. :func:`holm` applies Holm's (1979) step-down correction: sort the m
raw p-values ascending, ``p_(1) <= ... <= p_(m)``; the adjusted value of the
i-th is ``max_{j <= i} min(1, (m - j + 1) p_(j))``; a comparison is significant
in the family when its adjusted p is below 0.05. That controls the chance of
any false "significant" in the family at 5%, whatever the dependence between
the tests, and is uniformly more powerful than Bonferroni.

Student-t quantiles and CDF and the paired t-test come from :mod:`scipy.stats`
(``t.ppf``, ``t.cdf``, ``ttest_rel``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats as _scipy_stats

CONFIDENCE = 0.95  # every interval in reglab is a two-sided 95% interval
ALPHA = 1.0 - CONFIDENCE  # the level every test is judged at (after Holm for a family)
ROUNDING_SPREAD = 1e-12   # a spread of paired differences below this x the values' magnitude is float rounding


# ----------------------------------------------------------------------------
# the Student-t distribution

def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` > 0 degrees of freedom (scipy.stats.t.cdf)."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0; got {df}")
    if math.isinf(df):
        return float(_scipy_stats.norm.cdf(t))
    return float(_scipy_stats.t.cdf(t, df))


def t_quantile(p: float, df: float) -> float:
    """The t with ``P(T <= t) = p`` for Student's t with `df` degrees of freedom (scipy.stats.t.ppf)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile needs p in (0, 1); got {p}")
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0; got {df}")
    if math.isinf(df):
        return float(_scipy_stats.norm.ppf(p))
    return float(_scipy_stats.t.ppf(p, df))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values of a family of tests, in the order given.

    ``None`` (a comparison with too few pairs) stays None and is not counted in the
    family size m. For the sorted raw values ``p_(1) <= ... <= p_(m)`` the adjusted
    value is ``p~_(i) = max_{j <= i} min(1, (m - j + 1) * p_(j))`` (the running
    maximum keeps the adjusted values in the order of the raw ones). Reject at level
    alpha exactly when ``p~ < alpha``, which is Holm's procedure: reject while
    ``p_(i) < alpha / (m - i + 1)``, stop at the first that is not.
    """
    present = [(float(p), i) for i, p in enumerate(p_values) if p is not None and math.isfinite(float(p))]
    m = len(present)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


# ----------------------------------------------------------------------------
# summaries over seeds

def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; NaN for no values."""
    xs = [float(v) for v in values]
    return math.fsum(xs) / len(xs) if xs else math.nan


def std(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1 in the denominator); NaN for fewer than two values."""
    xs = [float(v) for v in values]
    if len(xs) < 2:
        return math.nan
    m = mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Two-sided Student-t interval for the mean: ``mean +- t_{(1+c)/2, n-1} * s / sqrt(n)``.

    None for fewer than two values (the interval is undefined).
    """
    xs = [float(v) for v in values]
    n = len(xs)
    if n < 2:
        return None
    m, s = mean(xs), std(xs)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * s / math.sqrt(n)
    return (m - half, m + half)


def describe(values: Sequence[float]) -> dict:
    """Mean, std, n and 95% t-interval of the finite values; non-finite ones are counted, not used.

    Returns a JSON-safe dict: ``{"n", "n_excluded", "mean", "std", "ci95": [lo, hi] | None,
    "ci95_half_width", "min", "max", "values"}``; statistics that need more values are None.
    """
    xs = _finite(values)
    n = len(xs)
    ci = t_interval(xs)
    return {
        "n": n,
        "n_excluded": len(values) - n,
        "mean": _none_if_nan(mean(xs)),
        "std": _none_if_nan(std(xs)),
        "ci95": list(ci) if ci else None,
        "ci95_half_width": (ci[1] - ci[0]) / 2.0 if ci else None,
        "min": min(xs) if xs else None,
        "max": max(xs) if xs else None,
        "values": [None if v is None or not math.isfinite(float(v)) else float(v) for v in values],
    }


def paired_comparison(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> dict:
    """Paired comparison of A against B over the same seeds: statistics of ``d_s = a_s - b_s``.

    Pairs where either value is not finite (a diverged variant) are dropped and
    counted. ``significant`` is True when the 95% interval of the mean difference
    excludes 0 (same as the two-sided paired t-test p < 0.05); ``p_value`` is that
    test's (scipy.stats.ttest_rel), ``t = mean(d) / (s_d / sqrt(n))`` with n - 1 degrees
    of freedom. This is one test: across a family of comparisons judge by
    :func:`holm_adjust`'s ``p_holm``.
    With a zero spread of differences (below ``ROUNDING_SPREAD`` times the values'
    magnitude: float rounding of equal differences) the interval collapses to a point
    and the difference is significant exactly when it is non-zero.
    """
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs equal lengths; got {len(a)} and {len(b)}")
    pairs = [(float(x), float(y)) for x, y in zip(a, b)
             if x is not None and y is not None and math.isfinite(float(x)) and math.isfinite(float(y))]
    d = [x - y for x, y in pairs]
    n = len(d)
    out = {"n": n, "n_excluded": len(a) - n, "mean_difference": _none_if_nan(mean(d)),
           "std_difference": _none_if_nan(std(d)), "ci95": None, "t": None, "p_value": None,
           "significant": None}
    if n < 2:
        return out
    m, s = mean(d), std(d)
    # errors are multiples of 1/n_examples, so per-seed differences that are equal in exact arithmetic
    # differ in float by a few ulps; a spread that small is rounding, and t = m / (s / sqrt n) of it
    # would be an artefact (scipy warns of catastrophic cancellation): it is treated as no spread
    scale = max(abs(v) for pair in pairs for v in pair)
    if s <= ROUNDING_SPREAD * scale:
        out.update(ci95=[m, m], significant=m != 0.0, p_value=0.0 if m != 0.0 else 1.0,
                   t=None if m == 0.0 else math.copysign(math.inf, m))
        return out
    se = s / math.sqrt(n)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * se
    test = _scipy_stats.ttest_rel([x for x, _ in pairs], [y for _, y in pairs])
    t, p = float(test.statistic), float(test.pvalue)
    out.update(ci95=[m - half, m + half], t=t, p_value=p,
               significant=bool(m - half > 0.0 or m + half < 0.0))
    return out


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def holm_adjust(comparisons: list[dict], alpha: float = ALPHA) -> list[dict]:
    """The family `comparisons` (dicts from :func:`paired_comparison`) with ``p_holm`` and
    ``significant_holm`` added (new dicts; the raw ``p_value`` and ``significant`` are kept).

    ``significant_holm`` is ``p_holm < alpha``; both are None where the raw p-value is.
    """
    adjusted = holm([c.get("p_value") for c in comparisons])
    return [{**c, "p_holm": q, "significant_holm": None if q is None else bool(q < alpha)}
            for c, q in zip(comparisons, adjusted)]
