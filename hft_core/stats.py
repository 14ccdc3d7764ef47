"""How sure a comparison over a few seeds is: means with 95% intervals, paired differences, a verdict.

The lab compares variants (alpha 1 vs alpha 0.5, LoRA vs full) trained on the same few
seeds, usually three. A difference of means says little on its own, so every comparison
comes with:

    mean_interval        one variant's final metric over its seeds: mean and a 95% interval
    paired_difference    a - b on the seeds both were trained on (same seed = same data order
                         and initial head, so the seed-to-seed noise they share cancels), with
                         a 95% interval of the mean difference and the per-seed differences
    seeds_held           on how many of those seeds the expectation held
    verdict              "held with confidence" | "held on the mean" | "did not hold"

Method (the statistics are scipy's, not re-implemented here):

    "t"          Student's t interval on n - 1 degrees of freedom: ``scipy.stats.ttest_1samp``
                 for a mean, ``scipy.stats.ttest_rel`` (the paired t-test) for a difference,
                 each with ``.confidence_interval(confidence)``. With 3 seeds the interval is
                 mean +- 4.30 standard errors: honest about how little 3 seeds tell.
    "bootstrap"  percentile bootstrap of the mean (``scipy.stats.bootstrap``, 9,999 resamples,
                 a fixed generator so the numbers repeat). Below about 10 seeds it is too
                 narrow (3 values have only 10 distinct resamples): the t interval is the default.

Values that do not vary at all across seeds (a parameter count) get the exact interval
[mean, mean]; a single seed gets none (lo = hi = nan). Fewer than ``MIN_SEEDS`` seeds carry
a warning. No streamlit, no store: plain numbers in, plain numbers out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

CONFIDENCE = 0.95
MIN_SEEDS = 3          # fewer: the interval is very wide (or missing) and the result says so
BOOTSTRAP_RESAMPLES = 9999

METHODS = {
    "t": "t-interval (Student's t over seeds, scipy.stats)",
    "bootstrap": "percentile bootstrap (scipy.stats.bootstrap, 9,999 resamples)",
}

HELD_WITH_CONFIDENCE = "held with confidence"
HELD_ON_THE_MEAN = "held on the mean"
DID_NOT_HOLD = "did not hold"
NOT_MEASURABLE = "not measurable"
NOT_JUDGED_QUICK = "not judged (quick check)"
VERDICTS = (HELD_WITH_CONFIDENCE, HELD_ON_THE_MEAN, DID_NOT_HOLD, NOT_MEASURABLE, NOT_JUDGED_QUICK)

EXPECTATIONS = ("higher", "near")


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its interval. ``method``: "t" | "bootstrap" | "exact" (all values
    equal: the interval is the value) | "none" (one value or none: no interval, lo = hi = nan)."""

    mean: float
    lo: float
    hi: float
    n: int
    method: str
    confidence: float = CONFIDENCE

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    @property
    def warning(self) -> str:
        return few_seeds_warning(self.n)


@dataclass(frozen=True)
class PairedDifference:
    """``a`` minus ``b`` on the seeds both have: the per-seed differences and their mean's interval."""

    a: str
    b: str
    seeds: tuple[int, ...]          # the seeds both were measured on, sorted
    diffs: tuple[float, ...]        # a - b on each of those seeds
    estimate: Estimate              # of the mean difference
    only_a: tuple[int, ...] = ()    # seeds measured for a only (left out of the pairing)
    only_b: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        return len(self.seeds)


def few_seeds_warning(n: int) -> str:
    """A sentence when ``n`` seeds are too few to trust an interval, else ""."""
    if n >= MIN_SEEDS:
        return ""
    if n <= 1:
        return (f"{n} seed: no interval can be computed from one value; run at least {MIN_SEEDS} seeds "
                f"(e.g. --seeds {MIN_SEEDS}) before trusting the difference")
    return (f"only {n} seeds: the 95% interval is very wide and rests on two values; run at least {MIN_SEEDS} "
            f"(e.g. --seeds {MIN_SEEDS})")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"interval method {method!r} is not known; choose one of {sorted(METHODS)}")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} must be between 0 and 1, e.g. 0.95")


def _finite(values: Iterable[float], what: str) -> np.ndarray:
    x = np.asarray([float(v) for v in values], dtype=float)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: got non-finite values {x.tolist()}; leave out runs without a final value")
    return x


def mean_interval(values: Iterable[float], confidence: float = CONFIDENCE, method: str = "t",
                  seed: int = 0) -> Estimate:
    """Mean of ``values`` (one per seed) and its ``confidence`` interval by ``method`` ("t" or "bootstrap").

    ``seed`` fixes the bootstrap's resampling (the t interval has none).
    """
    _check_method(method)
    _check_confidence(confidence)
    x = _finite(values, "mean_interval")
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "none", confidence)
    mean = float(np.mean(x))
    if n == 1:
        return Estimate(mean, math.nan, math.nan, 1, "none", confidence)
    if np.all(x == x[0]):  # no spread: scipy would warn of precision loss and return the same point
        return Estimate(mean, mean, mean, n, "exact", confidence)
    from scipy import stats

    if method == "t":
        ci = stats.ttest_1samp(x, 0.0).confidence_interval(confidence_level=confidence)
    else:
        ci = stats.bootstrap((x,), np.mean, confidence_level=confidence, method="percentile",
                             n_resamples=BOOTSTRAP_RESAMPLES, rng=np.random.default_rng(seed)).confidence_interval
    return Estimate(mean, float(ci.low), float(ci.high), n, method, confidence)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], confidence: float = CONFIDENCE,
                      method: str = "t", labels: tuple[str, str] = ("a", "b"), seed: int = 0) -> PairedDifference:
    """``a`` - ``b`` paired by seed (``{seed: final value}`` each), with the interval of the mean difference.

    Only seeds present in both are paired; the others are listed in ``only_a`` / ``only_b``.
    The t method is scipy's paired t-test (``scipy.stats.ttest_rel``); its interval is the same
    as a one-sample t interval of the differences.
    """
    _check_method(method)
    _check_confidence(confidence)
    common = tuple(sorted(set(a) & set(b)))
    xa = _finite((a[s] for s in common), f"paired_difference {labels[0]!r}")
    xb = _finite((b[s] for s in common), f"paired_difference {labels[1]!r}")
    diffs = xa - xb
    if method == "t" and len(diffs) >= 2 and not np.all(diffs == diffs[0]):
        from scipy import stats

        ci = stats.ttest_rel(xa, xb).confidence_interval(confidence_level=confidence)
        est = Estimate(float(np.mean(diffs)), float(ci.low), float(ci.high), len(diffs), "t", confidence)
    else:  # the bootstrap, or no spread / one seed / none (exact or no interval, as for a mean)
        est = mean_interval(diffs, confidence, method, seed)
    return PairedDifference(labels[0], labels[1], common, tuple(float(d) for d in diffs), est,
                            tuple(sorted(set(a) - set(b))), tuple(sorted(set(b) - set(a))))


def _seed_holds(d: float, expect: str, tol: float) -> bool:
    return d > 0 if expect == "higher" else abs(d) <= tol


def seeds_held(diff: PairedDifference, expect: str = "higher", tol: float = 0.0) -> int:
    """On how many paired seeds the expectation held: a > b ("higher"), or |a - b| <= tol ("near")."""
    _check_expect(expect, tol)
    return sum(_seed_holds(d, expect, tol) for d in diff.diffs)


def _check_expect(expect: str, tol: float) -> None:
    if expect not in EXPECTATIONS:
        raise ValueError(f"expect={expect!r}: choose 'higher' (a above b) or 'near' (|a - b| <= tol)")
    if tol < 0:
        raise ValueError(f"tol={tol!r} must be >= 0 (a tolerance in the metric's own units, e.g. 0.03)")


def verdict(diff: PairedDifference, expect: str = "higher", tol: float = 0.0) -> str:
    """Which of three the paired comparison ``diff`` (a - b) is, for an expectation:

    ``expect="higher"`` (a above b):
        held with confidence  the interval lies above 0 and a was above b on every seed
        held on the mean      the mean difference is above 0, but the interval reaches 0 or below,
                              or some seed went the other way, or there is one seed (no interval)
        did not hold          the mean difference is 0 or below
    ``expect="near"`` (a within ``tol`` of b), the same with "inside [-tol, +tol]" for "above 0"
    (an equivalence check: the whole 95% interval must lie within the tolerance).

    No paired seed at all: "not measurable".
    """
    _check_expect(expect, tol)
    if diff.n == 0:
        return NOT_MEASURABLE
    est = diff.estimate
    if expect == "higher":
        if not est.mean > 0:
            return DID_NOT_HOLD
        confident = est.has_interval and est.lo > 0
    else:
        if not abs(est.mean) <= tol:
            return DID_NOT_HOLD
        confident = est.has_interval and -tol <= est.lo and est.hi <= tol
    if confident and seeds_held(diff, expect, tol) == diff.n:
        return HELD_WITH_CONFIDENCE
    return HELD_ON_THE_MEAN


def worst(verdicts: Iterable[str]) -> str:
    """The weakest of several verdicts (a check over three labels is as strong as its weakest pair)."""
    order = (NOT_JUDGED_QUICK, NOT_MEASURABLE, DID_NOT_HOLD, HELD_ON_THE_MEAN, HELD_WITH_CONFIDENCE)
    vs = list(verdicts)
    for v in vs:
        if v not in order:
            raise ValueError(f"unknown verdict {v!r}; verdicts are {list(order)}")
    return min(vs, key=order.index) if vs else NOT_MEASURABLE


def method_note(method: str, n_seeds: int | Iterable[int], confidence: float = CONFIDENCE) -> str:
    """"95% t-interval (Student's t over seeds, scipy.stats), 3 seeds; differences paired by seed"."""
    _check_method(method)
    ns = sorted({n_seeds} if isinstance(n_seeds, int) else set(n_seeds))
    seeds = "no seeds" if not ns else f"{ns[0]} seed{'s' if ns[0] != 1 else ''}" if len(ns) == 1 else \
        f"{ns[0]}-{ns[-1]} seeds"
    return f"{confidence:.0%} {METHODS[method]}, {seeds}; differences paired by seed"
