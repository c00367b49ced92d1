"""Verdicts with confidence: intervals, the threshold rule, group rows (non-inferiority, Holm),
between-group spread, homogeneity, two-sample and rank tests."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from universality.claims import THRESHOLDS
from universality.claims.verdicts import (
    ALPHA,
    GROUP_FAIL_ALPHA,
    Claim,
    against_threshold,
    betabinom_spread,
    fisher_lower_p,
    group_pass_probability,
    group_rate_claims,
    group_verdict,
    holm,
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


# ---------------------------------------------------------------- group rows of a rate claim
THRESHOLD, MARGIN = THRESHOLDS["scaffold_rate"], THRESHOLDS["scaffold_group_margin"]
DOCS = Path(__file__).resolve().parents[1] / "docs" / "claims.md"


def binomial_cdf(k, n, p):
    """P(X <= k) for X ~ Binomial(n, p), summed from its definition (not scipy)."""
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k + 1))


def groups(*counts):
    """``{"g0": [True] * k0 + [False] * (n0 - k0), ...}`` from ``(k, n)`` pairs."""
    return {f"g{i}": [True] * k + [False] * (n - k) for i, (k, n) in enumerate(counts)}


def test_holm_matches_the_textbook_example():
    # Holm-Bonferroni's textbook example (four hypotheses, alpha 0.05, H1 and H4 rejected).
    # Adjusted by hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06,
    # 0.04, running maximum 0.02, 0.03, 0.06, 0.06; back in the order given:
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert (adjusted < 0.05).tolist() == [True, False, False, True]
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # 2 x 0.6 capped at 1, then non-decreasing
    assert holm([0.2]) == pytest.approx([0.2])


def test_a_group_row_can_pass_and_sixteen_networks_cannot():
    # With every network meeting the criterion the lower end of the exact 95 % interval is
    # 0.025 ** (1 / n) (Clopper-Pearson for k = n): 0.794 at n = 16, 0.805 at n = 17,
    # against threshold - margin = 0.8. Moving the margin either way by 0.01 breaks this.
    assert 0.025 ** (1 / 16) < THRESHOLD - MARGIN <= 0.025 ** (1 / 17)
    rows = {c.group: c for c in group_rate_claims("x", groups((16, 16), (17, 17)), THRESHOLD, MARGIN)}
    assert rows["g0"].verdict == "inconclusive" and rows["g1"].verdict == "pass"
    assert rows["g1"].ci_low == pytest.approx(0.025 ** (1 / 17))


def test_a_group_fails_only_when_shown_below_the_threshold_after_holm():
    p10, p9 = binomial_cdf(10, 16, THRESHOLD), binomial_cdf(9, 16, THRESHOLD)  # 0.0033, 0.0005
    assert 7 * p10 < GROUP_FAIL_ALPHA < 8 * p10 and 8 * p9 < GROUP_FAIL_ALPHA
    for low, others, verdict in [(10, 7, "inconclusive"), (10, 6, "fail"), (9, 7, "fail")]:
        rows = group_rate_claims("x", groups((low, 16), *[(16, 16)] * others), THRESHOLD, MARGIN)
        assert rows[0].detail["p_below"] == pytest.approx(p10 if low == 10 else p9)
        assert rows[0].detail["p_below_holm"] == pytest.approx((others + 1) * rows[0].detail["p_below"])
        assert rows[0].verdict == verdict, (low, others)
        assert all(r.verdict == "inconclusive" for r in rows[1:])  # 16/16: cannot pass, never fails
    # without the correction, one group at 10/16 among eight would have failed
    assert group_verdict(10, 16, THRESHOLD, MARGIN, p10) == "fail"


def test_a_lone_group_fails_exactly_when_its_interval_lies_below_the_threshold():
    # The fail level is the lower tail of the 95 % interval: with one group (Holm changes
    # nothing) the rule is the interval rule, upper Clopper-Pearson end < threshold.
    for n in range(2, 41):
        for k in range(n + 1):
            upper = 1.0 if k == n else stats.beta.ppf(0.975, k + 1, n - k)
            (row,) = group_rate_claims("x", groups((k, n)), THRESHOLD, MARGIN)
            assert (row.verdict == "fail") == (upper < THRESHOLD), (k, n)


def test_a_large_group_shown_below_the_threshold_fails_even_within_the_margin():
    (row,) = group_rate_claims("x", groups((340, 400)), THRESHOLD, MARGIN)  # rate 0.85
    assert stats.beta.ppf(0.025, 340, 61) > THRESHOLD - MARGIN  # non-inferior by the interval
    assert binomial_cdf(340, 400, THRESHOLD) < GROUP_FAIL_ALPHA and row.verdict == "fail"


def test_group_pass_probability_by_closed_form():
    for n in (2, 16, 17, 30):
        assert group_pass_probability(1.0, n, THRESHOLD, MARGIN) == (1.0 if n >= 17 else 0.0)
    # n = 24: only 24/24 passes (23/24 has a lower end of 0.786); n = 32: 31/32 and 32/32
    assert stats.beta.ppf(0.025, 23, 2) < 0.8 and stats.beta.ppf(0.025, 31, 2) >= 0.8 > stats.beta.ppf(0.025, 30, 3)
    assert group_pass_probability(0.97, 24, THRESHOLD, MARGIN) == pytest.approx(0.97**24)
    assert group_pass_probability(0.97, 32, THRESHOLD, MARGIN) == pytest.approx(0.97**32 + 32 * 0.03 * 0.97**31)


def test_docs_table_of_decidable_group_sizes_matches_the_rule():
    text = DOCS.read_text()
    table = text[text.index("<!-- decidability table: start -->"):text.index("<!-- decidability table: end -->")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()
            if re.match(r"\| [0-9]", line)]
    by_n = [r for r in rows if len(r) == 5]
    assert [int(r[0]) for r in by_n] == [16, 24, 32, 48]
    for n, k_pass, *probabilities in by_n:
        n = int(n)
        passing = [k for k in range(n + 1) if group_rate_claims("x", groups((k, n)), THRESHOLD, MARGIN)[0].passed]
        assert k_pass == (str(min(passing)) if passing else "none")
        for rate, shown in zip((0.95, 0.97, 1.0), probabilities, strict=True):
            assert shown == f"{group_pass_probability(rate, n, THRESHOLD, MARGIN):.2f}", (n, rate)
    by_rate = [r for r in rows if len(r) == 3]
    assert [float(r[0]) for r in by_rate] == [1.0, 0.97, 0.95]
    for rate, first, stays in by_rate:
        enough = [group_pass_probability(float(rate), n, THRESHOLD, MARGIN) >= 0.8 for n in range(101)]
        assert int(first) == enough.index(True) and all(enough[int(stays):]) and not enough[int(stays) - 1]


def test_betabinom_spread_recovers_a_known_intra_class_correlation():
    # 400 groups of 20 from a beta-binomial of mean 0.8 and ICC 0.3 (a + b = 1 / 0.3 - 1).
    # Tolerances: 3 standard errors from the expected information at the truth (0.011 for
    # the mean, 0.019 for the ICC).
    s = 1 / 0.3 - 1
    met = stats.betabinom.rvs(20, 0.8 * s, 0.2 * s, size=400, random_state=np.random.default_rng(0))
    spread = betabinom_spread(met, [20] * 400)
    assert spread["mean"] == pytest.approx(0.8, abs=0.035) and spread["icc"] == pytest.approx(0.3, abs=0.06)
    assert spread["overdispersion"] == pytest.approx(1 + 19 * spread["icc"])
    # binomial groups (ICC 0): standard error about 0.004 near 0, so below 3 of them
    met = stats.binom.rvs(20, 0.8, size=400, random_state=np.random.default_rng(1))
    assert betabinom_spread(met, [20] * 400)["icc"] < 0.012
    # no variance to share out, or one group: undefined
    assert math.isnan(betabinom_spread([16, 16], [16, 16])["icc"]) and math.isnan(betabinom_spread([3], [16])["icc"])
    assert betabinom_spread([16, 16], [16, 16])["mean"] == 1.0
