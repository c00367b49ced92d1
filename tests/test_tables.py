"""report.tables: one renderer, the same cells in the terminal and in Markdown."""

import math

from universality.claims import Claim
from universality.report.tables import (
    CHECK_TERMINAL,
    CLAIMS_MARKDOWN,
    CLAIMS_TERMINAL,
    PASS_RATES_TERMINAL,
    claim_table,
    interval,
    missing,
    number,
    pass_rates,
    render,
)

ROWS = [Claim("geometry_architecture", "flipflop", 0.8125, "1-NN CI >= 0.6", "pass", 16, 0.7, 0.9,
              {"chance": 0.25, "p_value": 0.001, "other_metrics": {"cka": 0.5}}),
        Claim("cdi_modes", "vanilla vs gated", math.nan, "U p < 0.01", "inconclusive", 3,
              detail={"vanilla": [], "reason": "too few"})]


def test_missing_values_share_one_test():
    assert missing(None) and missing(math.nan) and not missing(0.0) and not missing(0)
    assert number(None) == number(math.nan) == "n/a" and number(0.81249) == "0.812"
    assert interval(math.nan, math.nan) == interval(None, None) == "" and interval(0.1, 0.25) == "[0.10, 0.25]"


def test_claim_tables_in_both_styles():
    assert claim_table(ROWS, CLAIMS_MARKDOWN, "markdown") == [
        "| claim | group | value | 95% CI | threshold | n | verdict | details |",
        "|---|---|---|---|---|---|---|---|",
        "| geometry_architecture | flipflop | 0.812 | [0.70, 0.90] | 1-NN CI >= 0.6 | 16 | PASS | chance=0.25, "
        "p_value=0.001, cka=0.5 |",
        "| cdi_modes | vanilla vs gated | n/a |  | U p < 0.01 | 3 | INCONCLUSIVE | vanilla=none, reason=too few |"]
    assert claim_table(ROWS, CLAIMS_TERMINAL, "terminal") == [
        "claim                    group              value         95% CI    n  verdict      threshold",
        "geometry_architecture    flipflop           0.812   [0.70, 0.90]   16  PASS         1-NN CI >= 0.6",
        "cdi_modes                vanilla vs gated     n/a                   3  INCONCLUSIVE U p < 0.01"]
    assert claim_table(ROWS[1:], CHECK_TERMINAL, "terminal")[1] == (
        "vanilla vs gated cdi_modes                              n/a                 INCONCLUSIVE too few")


def test_pass_rates_group_and_sort():
    class Row:
        def __init__(self, task, arch, passed):
            self.task, self.arch, self.activation, self.passed = task, arch, "tanh", passed

    rows = [Row("sine", "gru", True), Row("flipflop", "lstm", False), Row("sine", "gru", False)]
    assert render(PASS_RATES_TERMINAL, pass_rates(rows).items(), "terminal") == [
        "task      arch     act   passed", "flipflop  lstm     tanh  0/1", "sine      gru      tanh  1/2"]
