"""hft_core.stats against scipy's own results and known textbook numbers, and the three verdicts."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hft_core import stats as S  # noqa: E402

# Fixed numbers: eval accuracy of two variants on seeds 0, 1, 2 (finetune_vs_scratch-like)
ALPHA1 = {0: 0.895, 1: 0.905, 2: 0.975}
ALPHA05 = {0: 0.720, 1: 0.695, 2: 0.940}


def test_mean_interval_is_scipys_t_interval():
    est = S.mean_interval(ALPHA1.values())
    x = np.array(list(ALPHA1.values()))
    lo, hi = sps.t.interval(0.95, df=len(x) - 1, loc=x.mean(), scale=sps.sem(x))  # the textbook formula
    assert (est.mean, est.lo, est.hi) == pytest.approx((x.mean(), lo, hi), rel=1e-12)
    assert est.n == 3 and est.method == "t" and est.warning == ""


def test_mean_interval_matches_a_known_answer():
    # 1, 2, 3: mean 2, sd 1, se 1/sqrt(3), t(0.975, 2) = 4.302653: 2 -+ 2.484138 (R: t.test(c(1,2,3)))
    est = S.mean_interval([1.0, 2.0, 3.0])
    assert (est.lo, est.hi) == pytest.approx((-0.484138, 4.484138), abs=1e-6)
    wider = S.mean_interval([1.0, 2.0, 3.0], confidence=0.99)
    assert wider.lo < est.lo < est.mean < est.hi < wider.hi


def test_paired_difference_is_scipys_paired_t_test():
    d = S.paired_difference(ALPHA1, ALPHA05, labels=("alpha 1", "alpha 0.5"))
    a, b = np.array(list(ALPHA1.values())), np.array(list(ALPHA05.values()))
    ref = sps.ttest_rel(a, b).confidence_interval(confidence_level=0.95)
    assert (d.estimate.lo, d.estimate.hi) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert d.estimate.mean == pytest.approx(np.mean(a - b))
    assert d.diffs == pytest.approx(tuple(a - b)) and d.seeds == (0, 1, 2)
    # the same interval as a one-sample t interval on the differences (what "paired" means)
    one = sps.ttest_1samp(a - b, 0).confidence_interval(confidence_level=0.95)
    assert (d.estimate.lo, d.estimate.hi) == pytest.approx((one.low, one.high), rel=1e-12)
    # unpaired (Welch) would be wider here: the seeds' shared noise cancels in the pairing
    welch = sps.ttest_ind(a, b, equal_var=False).confidence_interval(confidence_level=0.95)
    assert d.estimate.hi - d.estimate.lo < welch.high - welch.low


def test_paired_difference_pairs_only_common_seeds():
    d = S.paired_difference({0: 1.0, 1: 2.0, 3: 9.0}, {0: 0.5, 1: 1.0, 2: 7.0})
    assert d.seeds == (0, 1) and d.diffs == (0.5, 1.0) and d.only_a == (3,) and d.only_b == (2,)
    assert d.estimate.n == 2 and "only 2 seeds" in d.estimate.warning


def test_bootstrap_is_scipys_bootstrap_with_a_fixed_generator():
    x = [0.61, 0.72, 0.55, 0.80, 0.67, 0.70]
    est = S.mean_interval(x, method="bootstrap", seed=7)
    ref = sps.bootstrap((np.array(x),), np.mean, confidence_level=0.95, method="percentile", n_resamples=9999,
                        rng=np.random.default_rng(7)).confidence_interval
    assert (est.lo, est.hi) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert est.method == "bootstrap" and est.lo < est.mean < est.hi
    assert S.mean_interval(x, method="bootstrap", seed=7) == est  # repeatable
    shift = np.array([0.08, 0.12, 0.10, 0.09, 0.11, 0.10])
    d = S.paired_difference(dict(enumerate(x)), dict(enumerate(np.array(x) - shift)), method="bootstrap", seed=7)
    ref = sps.bootstrap((shift,), np.mean, confidence_level=0.95, method="percentile", n_resamples=9999,
                        rng=np.random.default_rng(7)).confidence_interval
    assert d.estimate.method == "bootstrap" and d.estimate.mean == pytest.approx(0.1)
    assert (d.estimate.lo, d.estimate.hi) == pytest.approx((ref.low, ref.high), rel=1e-9)


def test_degenerate_inputs():
    assert S.mean_interval([]).n == 0 and math.isnan(S.mean_interval([]).mean)
    one = S.mean_interval([0.8])
    assert one.mean == 0.8 and not one.has_interval and one.method == "none" and "1 seed" in one.warning
    same = S.mean_interval([22715141.0] * 3)  # a parameter count: identical on every seed
    assert (same.lo, same.hi, same.method) == (22715141.0, 22715141.0, "exact")
    with pytest.raises(ValueError, match="non-finite"):
        S.mean_interval([0.5, float("nan")])
    with pytest.raises(ValueError, match="choose one of"):
        S.mean_interval([1.0, 2.0], method="bca")
    with pytest.raises(ValueError, match="between 0 and 1"):
        S.mean_interval([1.0, 2.0], confidence=95)


def test_held_with_confidence_when_the_interval_excludes_zero_and_every_seed_agrees():
    d = S.paired_difference({0: 0.90, 1: 0.92, 2: 0.95}, {0: 0.70, 1: 0.71, 2: 0.76})
    assert d.estimate.lo > 0
    assert S.verdict(d) == S.HELD_WITH_CONFIDENCE and S.seeds_held(d) == 3


def test_a_check_that_holds_on_two_of_three_seeds_is_held_on_the_mean():
    # L2-SP-like: ahead by 10 and 8 points on seeds 0 and 1, behind by 1 on seed 2
    d = S.paired_difference({0: 0.80, 1: 0.78, 2: 0.69}, {0: 0.70, 1: 0.70, 2: 0.70})
    assert d.estimate.mean > 0 and S.seeds_held(d) == 2
    assert S.verdict(d) == S.HELD_ON_THE_MEAN


def test_held_on_the_mean_when_every_seed_agrees_but_the_interval_reaches_zero():
    d = S.paired_difference(ALPHA1, ALPHA05)  # +17.5, +21.0, +3.5 points: 3/3 seeds, but only 3
    assert S.seeds_held(d) == 3 and d.estimate.lo < 0  # t(2) = 4.30: the interval still reaches below 0
    assert S.verdict(d) == S.HELD_ON_THE_MEAN


def test_did_not_hold_and_not_measurable():
    d = S.paired_difference({0: 0.5, 1: 0.6, 2: 0.55}, {0: 0.6, 1: 0.61, 2: 0.7})
    assert S.verdict(d) == S.DID_NOT_HOLD and S.seeds_held(d) == 0
    assert S.verdict(S.paired_difference({0: 1.0}, {1: 1.0})) == S.NOT_MEASURABLE
    assert S.verdict(S.paired_difference({0: 0.9}, {0: 0.5})) == S.HELD_ON_THE_MEAN  # one seed: no interval


def test_near_is_an_equivalence_check_within_the_tolerance():
    full, lora = {0: 0.90, 1: 0.91, 2: 0.92}, {0: 0.895, 1: 0.905, 2: 0.915}
    d = S.paired_difference(full, lora)
    assert S.verdict(d, "near", tol=0.03) == S.HELD_WITH_CONFIDENCE
    assert S.verdict(d, "near", tol=0.001) == S.DID_NOT_HOLD
    loose = S.paired_difference({0: 0.90, 1: 0.85, 2: 0.92}, {0: 0.88, 1: 0.88, 2: 0.88})  # mean 0.01, spread
    assert abs(loose.estimate.mean) <= 0.03 and loose.estimate.hi > 0.03
    assert S.verdict(loose, "near", tol=0.03) == S.HELD_ON_THE_MEAN
    with pytest.raises(ValueError, match="choose 'higher'"):
        S.verdict(d, "lower")


def test_parameter_counts_identical_on_every_seed_hold_with_confidence():
    d = S.paired_difference({0: 22.7e6, 1: 22.7e6}, {0: 0.3e6, 1: 0.3e6})
    assert d.estimate.method == "exact" and S.verdict(d) == S.HELD_WITH_CONFIDENCE


def test_worst_and_method_note():
    assert S.worst([S.HELD_WITH_CONFIDENCE, S.HELD_ON_THE_MEAN]) == S.HELD_ON_THE_MEAN
    assert S.worst([S.HELD_WITH_CONFIDENCE, S.DID_NOT_HOLD, S.HELD_ON_THE_MEAN]) == S.DID_NOT_HOLD
    assert S.worst([]) == S.NOT_MEASURABLE
    note = S.method_note("t", 3)
    assert note.startswith("95% t-interval") and "3 seeds" in note and "paired" in note
    assert "2-3 seeds" in S.method_note("t", [3, 2])
