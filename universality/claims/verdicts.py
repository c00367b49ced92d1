"""Verdicts with confidence: claim rows, intervals and tests (all statistics from scipy).

Every claim row has a ``verdict``: ``pass``, ``fail`` or ``inconclusive``.

* **Rates** (a fraction of networks meeting a criterion, against "at least ``threshold``"):
  the exact (Clopper-Pearson) 95 % interval of the binomial proportion,
  ``scipy.stats.binomtest(k, n).proportion_ci``. ``pass`` when the whole interval is at or
  above the threshold, ``fail`` when it is wholly below, ``inconclusive`` when it straddles
  it or ``n < MIN_MEMBERS``.
* **Group rows of a rate** (one per group of networks, :func:`group_rate_claims`): a
  non-inferiority test. ``pass`` when the lower end of the group's exact 95 % interval is at
  or above ``threshold - margin``; ``fail`` when the one-sided exact binomial test of "rate
  below ``threshold``" (``binomtest(k, n, threshold, alternative="less")``), Holm-adjusted
  across the groups (:func:`holm`), is below :data:`GROUP_FAIL_ALPHA` (fail wins over
  pass); ``inconclusive`` otherwise or when ``n < MIN_MEMBERS``.
* **Spread** of a rate between groups: a beta-binomial fitted by maximum likelihood
  (``scipy.stats.betabinom``, ``scipy.optimize.minimize``), :func:`betabinom_spread`.
* **Homogeneity** of a rate across groups: a permutation test (``scipy.stats.permutation_test``,
  group labels permuted over networks) of the chi-square statistic of the groups x
  {met, not met} table (``scipy.stats.chi2_contingency``). Exact in the limit of many
  resamples and valid for the small counts of a few networks per group, where the
  asymptotic chi-square p-value is not.
* **Mean scores** (1-NN accuracy, ties scored by expectation, so per-network scores are
  fractions): a percentile bootstrap interval over networks, ``scipy.stats.bootstrap``.
* **Two-sample rates** (a new architecture against the reference): Fisher's exact test,
  one-sided (is the new rate lower?), ``scipy.stats.fisher_exact``.
* **Rank comparisons** (e.g. modes of vanilla vs gated networks): Mann-Whitney U,
  ``scipy.stats.mannwhitneyu``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import optimize, special, stats

Verdict = Literal["pass", "fail", "inconclusive"]
VERDICTS: tuple[Verdict, ...] = ("pass", "fail", "inconclusive")
#: Confidence level of every interval.
CONFIDENCE = 0.95
#: Significance level of every test that decides a verdict.
ALPHA = 0.01
#: Fewest networks a rate or separability verdict rests on (below: inconclusive). With
#: one network there is no rate to speak of, and no leave-one-out neighbour.
MIN_MEMBERS = 2
#: Resamples of the homogeneity permutation test (p resolution 1/(1 + this)).
HOMOGENEITY_RESAMPLES = 4999
#: Family-wise one-sided level at which a group row of a rate fails (Holm across groups):
#: one tail of the 95 % interval, so that a lone group fails exactly when its exact
#: interval lies wholly below the threshold (the Clopper-Pearson interval inverts this test).
GROUP_FAIL_ALPHA = (1 - CONFIDENCE) / 2


@dataclass(frozen=True)
class Claim:
    """One claim in one group: the measured ``value`` against ``threshold`` (a readable
    condition), the interval ``[ci_low, ci_high]`` where the value is an estimate (NaN
    where not), the ``verdict`` and the number of networks ``n`` it rests on. ``passed``
    is true only for ``pass``. ``detail``: the numbers behind the verdict and its reason."""

    claim: str
    group: str
    value: float
    threshold: str
    verdict: Verdict
    n: int
    ci_low: float = math.nan
    ci_high: float = math.nan
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Claim:
        """The inverse of :meth:`as_dict` (JSON ``null`` values read back as NaN)."""
        nan = {k: math.nan for k in ("value", "ci_low", "ci_high") if row.get(k) is None}
        return cls(**{k: v for k, v in row.items() if k != "passed"}, **nan)  # type: ignore[arg-type]


def proportion_ci(k: int, n: int) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of ``k`` successes in ``n`` (NaNs when ``n == 0``)."""
    if n == 0:
        return math.nan, math.nan
    ci = stats.binomtest(int(k), int(n)).proportion_ci(CONFIDENCE, method="exact")
    return float(ci.low), float(ci.high)


def mean_ci(scores: Sequence[float] | np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95 % interval of the mean of per-network ``scores`` in [0, 1] (e.g. 1-NN scores,
    fractional under ties): percentile bootstrap over networks (``scipy.stats.bootstrap``).
    When every score is equal the bootstrap has no spread to show, and the exact binomial
    interval of the rounded count is used instead (conservative). NaNs when empty."""
    x = np.asarray(scores, dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan
    if np.ptp(x) == 0:
        return proportion_ci(round(float(x.sum())), len(x))
    ci = stats.bootstrap((x,), np.mean, confidence_level=CONFIDENCE, method="percentile", n_resamples=4999,
                         rng=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


def against_threshold(low: float, high: float, threshold: float, at_least: bool = True, n: int | None = None,
                      ) -> Verdict:
    """``pass`` if the interval ``[low, high]`` lies on the required side of ``threshold``
    (at or above it when ``at_least``, at or below it otherwise), ``fail`` if it lies
    wholly on the other side, ``inconclusive`` if it straddles it, is undefined, or
    ``n < MIN_MEMBERS``."""
    if (n is not None and n < MIN_MEMBERS) or math.isnan(low) or math.isnan(high):
        return "inconclusive"
    good, bad = (low >= threshold, high < threshold) if at_least else (high <= threshold, low > threshold)
    return "pass" if good else "fail" if bad else "inconclusive"


def rate_claim(claim: str, group: str, met: Sequence[bool], threshold: float,
               detail: dict[str, Any] | None = None) -> Claim:
    """The rate of ``met`` (one bool per network) against "at least ``threshold``"."""
    k, n = int(np.sum(met)), len(met)
    low, high = proportion_ci(k, n)
    return Claim(claim, group, k / n if n else math.nan, f"rate >= {threshold} ({CONFIDENCE:.0%} CI)",
                 against_threshold(low, high, threshold, n=n), n, low, high,
                 {"met": k, **(detail or {})})


def p_below(k: int, n: int, threshold: float) -> float:
    """One-sided exact binomial p-value that the rate behind ``k`` of ``n`` is below
    ``threshold`` (1.0 when ``n == 0``)."""
    return float(stats.binomtest(int(k), int(n), threshold, alternative="less").pvalue) if n else 1.0


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values ``[m]``, in the order given: the i-th
    smallest p times ``m - i + 1`` (i from 1), made non-decreasing, capped at 1."""
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    return adjusted


def group_verdict(k: int, n: int, threshold: float, margin: float, p_adjusted: float) -> Verdict:
    """The verdict of a group row (see the module docstring): ``k`` of ``n`` networks met the
    criterion, ``p_adjusted`` is the group's Holm-adjusted :func:`p_below`."""
    if n < MIN_MEMBERS:
        return "inconclusive"
    if p_adjusted < GROUP_FAIL_ALPHA:
        return "fail"
    return "pass" if proportion_ci(k, n)[0] >= threshold - margin else "inconclusive"


def group_rate_claims(claim: str, met_by_group: Mapping[str, Sequence[bool]], threshold: float, margin: float,
                      details: Mapping[str, dict[str, Any]] | None = None) -> list[Claim]:
    """One row per group of ``met_by_group`` (group name -> one bool per network): the
    non-inferiority verdict against ``threshold - margin``, failing groups found by the
    one-sided exact test against ``threshold`` with Holm's correction over the groups that
    have at least ``MIN_MEMBERS`` networks. ``details``: extra ``detail`` per group."""
    counts = {g: (int(np.sum(met)), len(met)) for g, met in met_by_group.items()}
    family = [g for g, (_, n) in counts.items() if n >= MIN_MEMBERS]
    raw = {g: p_below(*counts[g], threshold) for g in counts}
    adjusted = dict(zip(family, holm([raw[g] for g in family]).tolist(), strict=True))
    condition = (f"CI low >= {threshold - margin:g} (margin {margin:g}); fail: below {threshold:g} "
                 f"(one-sided exact, Holm, p < {GROUP_FAIL_ALPHA:g})")
    out = []
    for g, (k, n) in counts.items():
        low, high = proportion_ci(k, n)
        p_adj = adjusted.get(g, 1.0)
        out.append(Claim(claim, g, k / n if n else math.nan, condition,
                         group_verdict(k, n, threshold, margin, p_adj), n, low, high,
                         {"met": k, "p_below": raw[g], "p_below_holm": p_adj, "groups_tested": len(family),
                          **(details or {}).get(g, {})}))
    return out


def group_pass_probability(rate: float, n: int, threshold: float, margin: float) -> float:
    """Probability that a lone group (no other groups in the Holm family) of ``n`` networks,
    each meeting the criterion with probability ``rate``, gets ``pass``. With more groups
    Holm only makes ``fail`` rarer, so this is a lower bound. The passing counts are the top
    ones (the interval's lower end and the p-value of "below" both rise with the count)."""
    k = n
    while k >= 0 and group_verdict(k, n, threshold, margin, p_below(k, n, threshold)) == "pass":
        k -= 1
    return float(stats.binom.sf(k, n, rate))  # P(count > k)


def betabinom_spread(met: Sequence[int], n: Sequence[int]) -> dict[str, float]:
    """Between-group spread of a rate: a beta-binomial fitted by maximum likelihood to
    ``met[g]`` of ``n[g]`` networks per group (``[G]`` each). Returns ``mean`` (fitted rate),
    ``icc`` (intra-class correlation ``1 / (a + b + 1)``: the share of one network's outcome
    variance that lies between groups) and ``overdispersion`` (``1 + (mean n - 1) icc``: a
    group count's variance over a binomial's). ``icc`` and ``overdispersion`` are NaN with
    fewer than 2 non-empty groups or when every network has the same outcome."""
    k, size = np.asarray(met, dtype=np.float64), np.asarray(n, dtype=np.float64)
    k, size = k[size > 0], size[size > 0]
    mean = float(k.sum() / size.sum()) if size.sum() else math.nan
    if len(size) < 2 or k.sum() in (0, size.sum()):
        return {"mean": mean, "icc": math.nan, "overdispersion": math.nan}

    def nll(x: np.ndarray) -> float:  # x = (logit mean, logit icc)
        mu, rho = special.expit(x)
        s = 1 / rho - 1  # a + b
        return -float(stats.betabinom.logpmf(k, size, mu * s, (1 - mu) * s).sum())

    # icc bounded in [1e-6, 1 - 1e-6]: below 1e-6, a + b > 1e6 and the log-pmf loses precision
    bound = (float(special.logit(1e-6)), float(special.logit(1 - 1e-6)))
    fit = optimize.minimize(nll, np.array([special.logit(min(max(mean, 1e-3), 1 - 1e-3)), special.logit(0.1)]),
                            method="L-BFGS-B", bounds=[(-30.0, 30.0), bound])
    mu, rho = (float(v) for v in special.expit(fit.x))
    return {"mean": mu, "icc": rho, "overdispersion": 1 + (float(size.mean()) - 1) * rho}


def homogeneity_p(met_by_group: Sequence[Sequence[bool]], seed: int = 0) -> float:
    """Permutation p-value that the rate of met criteria is the same in every group (1.0
    when every network has the same outcome or there is one group)."""
    groups = [np.asarray(g, dtype=bool) for g in met_by_group if len(g)]
    pooled = np.concatenate(groups) if groups else np.zeros(0, dtype=bool)
    if len(groups) < 2 or pooled.all() or not pooled.any():
        return 1.0

    labels = np.repeat(np.arange(len(groups)), [len(g) for g in groups])

    def chi2(outcomes: np.ndarray) -> float:  # outcomes permuted over networks, group labels fixed
        met = np.bincount(labels, weights=outcomes, minlength=len(groups))
        table = np.stack([met, np.bincount(labels, minlength=len(groups)) - met], axis=1)
        return float(stats.chi2_contingency(table, correction=False).statistic)

    result = stats.permutation_test((pooled.astype(np.float64),), chi2, permutation_type="pairings",
                                    alternative="greater", n_resamples=HOMOGENEITY_RESAMPLES,
                                    rng=np.random.default_rng(seed))
    return float(result.pvalue)


def fisher_lower_p(k_new: int, n_new: int, k_ref: int, n_ref: int) -> float:
    """One-sided Fisher exact p-value that the new rate ``k_new / n_new`` is lower than the
    reference rate ``k_ref / n_ref``."""
    table = [[k_new, n_new - k_new], [k_ref, n_ref - k_ref]]
    return float(stats.fisher_exact(table, alternative="less").pvalue)


def rank_p(smaller: Sequence[float], larger: Sequence[float]) -> float:
    """One-sided Mann-Whitney U p-value that ``smaller``'s values tend to be below ``larger``'s."""
    return float(stats.mannwhitneyu(smaller, larger, alternative="less").pvalue)
