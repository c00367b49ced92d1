"""The stored reference results (``reference_results/``) against the code.

* consistency: ``claims.json`` equals the claims recomputed from the stored per-member data;
* regression: re-analysing stored members (drawn by hypothesis) reproduces their stored
  scaffold signatures and key numbers;
* robustness: every claim that holds on the reference population still holds when one
  member per architecture x activation group is left out (drawn by hypothesis).

A failure names the claim, group and value that moved. If the change is deliberate,
regenerate the references with ``universality reference`` and review the diff of
``reference_results/`` (SUMMARY.md shows the claims).
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from universality.benchmark import PRESETS
from universality.benchmark.analyze import load_scaffolds
from universality.benchmark.pipeline import analysis_config
from universality.benchmark.report import evaluate
from universality.dynamics import find_fixed_points
from universality.scaffold import SCAFFOLDS
from universality.store import RunStore
from universality.tasks import task_from_config

REFERENCE = Path(__file__).resolve().parents[2] / "reference_results" / "run"
REGENERATE = ("if this change is deliberate, regenerate with `universality reference` and review the diff of "
              "reference_results/")
STORE = RunStore(REFERENCE)
ROWS = STORE.members()
STORED_CLAIMS = json.loads((REFERENCE / "report" / "claims.json").read_text())
# Fast-to-reanalyse members: passed flip-flop and cdi networks (sine adds 51 inputs each).
REANALYSABLE = [r for r in ROWS if r["passed"] and r["task"] in ("flipflop", "cdi")]


def same(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    a = math.nan if a is None else a
    b = math.nan if b is None else b
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def test_claims_json_equals_the_claims_recomputed_from_stored_data():
    recomputed = [c.as_dict() for c in evaluate(STORE)]
    assert [(c["claim"], c["group"]) for c in recomputed] == [(c["claim"], c["group"]) for c in STORED_CLAIMS], (
        f"the set of claims changed; {REGENERATE}")
    for stored, new in zip(STORED_CLAIMS, recomputed, strict=True):
        where = f"claim {stored['claim']} group {stored['group']}"
        moved = f"{where}: stored {stored['value']}, now {new['value']}; {REGENERATE}"
        assert same(stored["value"], new["value"]), moved
        assert stored["passed"] == new["passed"], f"{where}: verdict moved to {new['passed']}; {REGENERATE}"


@settings(max_examples=4, deadline=None, derandomize=True)
@given(row=st.sampled_from(REANALYSABLE))
def test_reanalysing_a_stored_member_reproduces_its_scaffold(row):
    info = STORE.shard_info(row["shard"])
    task = task_from_config(info["task_config"])
    pop = STORE.load_population(row["shard"]).select([row["idx"]])
    config = analysis_config(PRESETS["reference"]).fixed_point_config(len(task.conditions()))
    (scaffold,) = SCAFFOLDS[row["task"]].compute(pop, find_fixed_points(pop, config=config))
    stored = load_scaffolds(STORE, row["shard"])[0][row["idx"]]
    where = f"member {row['member']} ({row['shard']})"
    assert scaffold.canonical == stored["canonical"], f"{where}: canonical moved; {REGENERATE}"
    for key, value in scaffold.as_dict().items():
        if isinstance(value, bool | int):
            assert value == stored[key], f"{where}: {key} {stored[key]} -> {value}; {REGENERATE}"
        elif isinstance(value, float) and key.startswith(("top_eig", "line_pc1", "second_eig")):
            assert same(value, stored[key], rel=1e-4), f"{where}: {key} {stored[key]} -> {value}; {REGENERATE}"


HOLDING = [c for c in STORED_CLAIMS if c["passed"]]
GROUPS: dict[tuple[str, str, str], list[int]] = {}
for r in ROWS:
    GROUPS.setdefault((r["task"], r["arch"], r["activation"]), []).append(r["member"])


@pytest.mark.skipif(not HOLDING, reason="no claim holds on the reference population")
@settings(max_examples=5, deadline=None, derandomize=True)
@given(data=st.data())
def test_holding_claims_survive_leaving_one_member_out_per_group(data):
    left_out = {data.draw(st.sampled_from(members), label=str(group)) for group, members in GROUPS.items()}
    subset = {r["member"] for r in ROWS} - left_out
    now = {(c.claim, c.group): c for c in evaluate(STORE, n_permutations=200, members=subset)}
    for claim in HOLDING:
        c = now[(claim["claim"], claim["group"])]
        assert c.passed, (f"claim {claim['claim']} group {claim['group']} holds on the reference "
                          f"({claim['value']:.3g}) but not without members {sorted(left_out)} ({c.value:.3g}); "
                          "it hangs on a few networks")


def test_reference_results_are_small_and_complete():
    root = REFERENCE.parent
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size <= 30 * 2**20, f"reference_results/ is {size / 2**20:.1f} MB (limit 30)"
    provenance = json.loads((root / "provenance.json").read_text())
    for key in ("command", "preset", "package_version", "config_hashes", "torch_version", "device", "threads",
                "date", "wall_seconds"):
        assert key in provenance, key
    assert (root / "SUMMARY.md").read_text().count("|") > 10
    assert set(provenance["config_hashes"]) == set(STORE.shards())
    assert np.isfinite([r["loss"] for r in ROWS if r["passed"]]).all()
