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

The Student-t distribution is computed here (no SciPy dependency): its CDF via
the regularized incomplete beta function ``I_x(a, b)`` evaluated by Lentz's
continued fraction (Numerical Recipes, 3rd ed., section 6.4), and its quantile
by bisection on that CDF, which is monotone, to full double precision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

CONFIDENCE = 0.95  # every interval in reglab is a two-sided 95% interval


# ----------------------------------------------------------------------------
# the Student-t distribution

def _betacf(a: float, b: float, x: float) -> float:
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


def betainc(a: float, b: float, x: float) -> float:
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
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` > 0 degrees of freedom.

    Uses ``P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2)``.
    """
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0; got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    if math.isinf(df):
        return 0.5 * math.erfc(-t / math.sqrt(2.0))
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with ``P(T <= t) = p`` for Student's t with `df` degrees of freedom (inverse CDF).

    Bisection on :func:`t_cdf`: 200 halvings of a bracket that doubles until it
    holds the answer, so the result is exact to the last few ulps.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile needs p in (0, 1); got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


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
    test's, ``t = mean(d) / (s_d / sqrt(n))`` with n - 1 degrees of freedom.
    With a zero spread of differences the interval collapses to a point and the
    difference is significant exactly when it is non-zero.
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
    if s == 0.0:
        out.update(ci95=[m, m], significant=m != 0.0, p_value=0.0 if m != 0.0 else 1.0,
                   t=None if m == 0.0 else math.copysign(math.inf, m))
        return out
    se = s / math.sqrt(n)
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * se
    t = m / se
    p = 2.0 * (1.0 - t_cdf(abs(t), n - 1))
    out.update(ci95=[m - half, m + half], t=t, p_value=p,
               significant=bool(m - half > 0.0 or m + half < 0.0))
    return out


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x
