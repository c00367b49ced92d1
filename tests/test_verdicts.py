"""Verdicts with confidence: intervals, the threshold rule, homogeneity, two-sample and rank tests."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from universality.verdicts import (
    ALPHA,
    Claim,
    against_threshold,
    fisher_lower_p,
    homogeneity_p,
    mean_ci,
    proportion_ci,
    rank_p,
    rate_claim,
)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 200), data=st.data())
def test_proportion_ci_is_clopper_pearson(n, data):
    # The exact interval by its definition: beta quantiles (Clopper & Pearson 1934).
    k = data.draw(st.integers(0, n))
    low = 0.0 if k == 0 else stats.beta.ppf(0.025, k, n - k + 1)
    high = 1.0 if k == n else stats.beta.ppf(0.975, k + 1, n - k)
    assert proportion_ci(k, n) == pytest.approx((low, high), abs=1e-9)


def test_the_threshold_rule():
    assert against_threshold(0.92, 0.99, 0.9) == "pass"
    assert against_threshold(0.5, 0.89, 0.9) == "fail"
    assert against_threshold(0.83, 0.97, 0.9) == "inconclusive"
    assert against_threshold(0.1, 0.2, 0.3, at_least=False) == "pass"
    assert against_threshold(0.35, 0.5, 0.3, at_least=False) == "fail"
    assert against_threshold(0.9, 1.0, 0.5, n=1) == "inconclusive"
    assert against_threshold(math.nan, math.nan, 0.5) == "inconclusive"


def test_eight_of_eight_is_not_proof_of_ninety_percent():
    # The review's point: ">= 0.9 of 8" made 8/8 a coin flip at a true rate of 92%; an
    # exact interval cannot put 8 networks above 0.9.
    claim = rate_claim("x", "g", [True] * 8, 0.9)
    assert claim.verdict == "inconclusive" and claim.ci_low < 0.9
    assert rate_claim("x", "g", [True] * 64, 0.9).verdict == "pass"
    assert rate_claim("x", "g", [True] * 4 + [False] * 60, 0.9).verdict == "fail"
    assert not rate_claim("x", "g", [True] * 8, 0.9).passed


def test_homogeneity_equal_and_unequal_rates():
    equal = [[True] * 28 + [False] * 12 for _ in range(4)]  # 70% in every group
    assert homogeneity_p(equal) > 0.9
    close = [[True] * k + [False] * (40 - k) for k in (27, 29, 28, 30)]
    assert homogeneity_p(close) > 0.5
    unequal = [[True] * 38 + [False] * 2, [True] * 39 + [False], [True] * 5 + [False] * 35, [True] * 37 + [False] * 3]
    assert homogeneity_p(unequal) < ALPHA
    assert homogeneity_p([[True] * 5, [True] * 8]) == 1.0  # one outcome: nothing differs
    assert 0 < homogeneity_p([[False], [True] * 9 + [False]]) <= 1  # a group of one network is allowed


def test_fisher_and_rank_tests_are_one_sided():
    assert fisher_lower_p(0, 8, 60, 64) < ALPHA
    assert fisher_lower_p(8, 8, 30, 64) > 0.5
    assert rank_p([1, 1, 1, 1, 2, 1, 1, 1], [3, 4, 3, 5, 4, 3, 4, 6]) < ALPHA
    assert rank_p([3, 4, 3, 5, 4, 3, 4, 6], [1, 1, 1, 1, 2, 1, 1, 1]) > 0.5


def test_mean_ci_covers_the_mean_and_degenerates_to_the_exact_interval():
    scores = np.r_[np.ones(30), np.zeros(10), np.full(10, 0.5)]
    low, high = mean_ci(scores)
    assert low < scores.mean() < high and high - low < 0.4
    assert mean_ci(np.ones(8)) == pytest.approx(proportion_ci(8, 8))


def test_claim_rows_round_trip_through_json_and_refuse_other_verdicts():
    claim = Claim("c", "g", 0.5, "rate >= 0.9", "fail", 10, 0.2, 0.8, {"met": 5})
    row = json.loads(json.dumps(claim.as_dict()))
    assert row["passed"] is False and row["verdict"] == "fail"
    assert Claim.from_dict(row) == claim
    with pytest.raises(ValueError, match="verdict"):
        Claim("c", "g", 0.5, "t", "maybe", 1)  # type: ignore[arg-type]
