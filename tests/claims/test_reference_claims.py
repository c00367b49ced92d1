"""The stored reference results (``reference_results/``) against the code.

* consistency: ``claims.json`` equals the claims recomputed from the stored per-member data
  (values to a relative 1e-9: the same arithmetic on the same stored numbers);
* regression: re-analysing stored members (drawn by hypothesis) from their stored weights
  reproduces their stored scaffold signatures and key numbers. Tolerances
  (:data:`TOLERANCES`): booleans, counts and labels exactly; eigenvalue-derived numbers to
  a relative 1e-4 (float64 searches from the same seeded candidates agree to ~1e-10; the
  margin covers BLAS differences between machines); numbers from simulations and
  correlations (sine) to a relative 1e-3;
* robustness: no claim that holds on the reference population fails on random subsets of
  it drawn by hypothesis (it may turn inconclusive: fewer networks, wider intervals),
  keeping at least :data:`MIN_PER_GROUP` members (or all, if fewer) of every task x
  architecture x activation group.

A failure names the claim, group and value that moved. If the change is deliberate,
regenerate the references with ``universality reference`` and review the diff of
``reference_results/`` (SUMMARY.md shows the claims).
"""

import json
import math
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from universality.dynamics import find_fixed_points
from universality.pipeline.config import PRESETS
from universality.pipeline.stages import analysis_config
from universality.report.report import evaluate
from universality.run.cache import load_scaffolds
from universality.run.catalog import RunStore
from universality.scaffold import SCAFFOLDS
from universality.tasks import task_from_config

REFERENCE = Path(__file__).resolve().parents[2] / "reference_results" / "run"
REGENERATE = ("if this change is deliberate, regenerate with `universality reference` and review the diff of "
              "reference_results/")
STORE = RunStore(REFERENCE)
ROWS = STORE.members()
STORED_CLAIMS = json.loads((REFERENCE / "report" / "claims.json").read_text())
PASSED = [r for r in ROWS if r.passed]
#: Relative tolerance of re-analysed float numbers, by task (see the module docstring).
TOLERANCES = {"flipflop": 1e-4, "cdi": 1e-4, "sine": 1e-3}
MIN_PER_GROUP = 6


def same(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    a = math.nan if a is None else a
    b = math.nan if b is None else b
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


def test_claims_json_equals_the_claims_recomputed_from_stored_data():
    recomputed = [c.as_dict() for c in evaluate(STORE)]
    assert [(c["claim"], c["group"]) for c in recomputed] == [(c["claim"], c["group"]) for c in STORED_CLAIMS], (
        f"the set of claims changed; {REGENERATE}")
    for stored, new in zip(STORED_CLAIMS, recomputed, strict=True):
        where = f"claim {stored['claim']} group {stored['group']}"
        moved = f"{where}: stored {stored['value']}, now {new['value']}; {REGENERATE}"
        assert same(stored["value"], new["value"]), moved
        for bound in ("ci_low", "ci_high"):
            assert same(stored[bound], new[bound]), f"{where}: {bound} {stored[bound]} -> {new[bound]}; {REGENERATE}"
        assert stored["verdict"] == new["verdict"], f"{where}: verdict moved to {new['verdict']}; {REGENERATE}"


def compare_numbers(where: str, stored: dict, now: dict, rel: float) -> None:
    assert set(now) == set(stored), f"{where}: keys {sorted(set(stored) ^ set(now))} moved; {REGENERATE}"
    for key, value in now.items():
        old = stored[key]
        if isinstance(value, bool | int | str) or value is None:
            assert value == old, f"{where}: {key} {old} -> {value}; {REGENERATE}"
        elif isinstance(value, float):
            assert same(value, old, rel), f"{where}: {key} {old} -> {value}; {REGENERATE}"
        elif isinstance(value, list | np.ndarray):
            a, b = np.asarray(value, dtype=float), np.asarray(old, dtype=float)
            assert a.shape == b.shape and np.allclose(a, b, rtol=rel, atol=1e-9, equal_nan=True), (
                f"{where}: {key} moved; {REGENERATE}")


@settings(max_examples=6, deadline=None, derandomize=True)
@given(row=st.sampled_from(PASSED))
def test_reanalysing_a_stored_member_reproduces_its_scaffold(row):
    info = STORE.shard_record(row.shard)
    task = task_from_config(info.task_config)
    pop = STORE.load_population(row.shard).select([row.idx])
    config = analysis_config(PRESETS["reference"]).fixed_point_config(row.task, len(task.conditions()))
    (scaffold,) = SCAFFOLDS[row.task].compute(pop, find_fixed_points(pop, config=config))
    numbers, tensors = load_scaffolds(STORE, row.shard)
    where = f"member {row.member} ({row.shard}, idx {row.idx})"
    rel = TOLERANCES[row.task]
    compare_numbers(where, numbers[row.idx], scaffold.as_dict(), rel)
    for signature in ("topology", "dynamics"):
        assert np.allclose(getattr(scaffold, signature), tensors[signature][row.idx].numpy(), rtol=rel, atol=1e-9,
                           equal_nan=True), f"{where}: {signature} signature moved; {REGENERATE}"


HOLDING = [c for c in STORED_CLAIMS if c["passed"]]
GROUPS: dict[tuple[str, str, str], list[int]] = {}
for r in ROWS:
    GROUPS.setdefault((r.task, r.arch, r.activation), []).append(r.member)


def test_the_reference_has_holding_claims_and_enough_members():
    assert HOLDING, "no claim holds on the reference population"
    preset = PRESETS["reference"]
    for (task, arch, act), members in GROUPS.items():
        passed = [r for r in PASSED if r.member in members]
        want, most = preset.min_passed, preset.max_rounds * preset.seeds * len(preset.l2)
        # a group short of min_passed must have trained every round the preset allows
        assert len(passed) >= want or len(members) == most, (
            f"{task} {arch}/{act}: {len(passed)} passed of {len(members)} trained; the reference wants {want} "
            f"passed or all {most} trained")


@settings(max_examples=5, deadline=None, derandomize=True)
@given(data=st.data())
def test_holding_claims_survive_random_subsets(data):
    subset: set[int] = set()
    for group, members in GROUPS.items():
        size = data.draw(st.integers(min(MIN_PER_GROUP, len(members)), len(members)), label=f"size {group}")
        subset |= set(data.draw(st.permutations(members), label=str(group))[:size])
    now = {(c.claim, c.group): c for c in evaluate(STORE, n_permutations=200, members=subset)}
    left_out = sorted({r.member for r in ROWS} - subset)
    for claim in HOLDING:
        c = now[(claim["claim"], claim["group"])]
        # fewer networks may widen an interval past its threshold (inconclusive), never reverse it
        assert c.verdict != "fail", (f"claim {claim['claim']} group {claim['group']} holds on the reference "
                                     f"({claim['value']:.3g}) but fails without members {left_out} ({c.value:.3g}); "
                                     "it hangs on a few networks")


def test_reference_results_are_small_and_complete():
    root = REFERENCE.parent
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.name.endswith(".bak"))
    # 40 MB: up to 48 networks in each of 24 groups at 64 units (the old 30 MB held 16-32)
    assert size <= 40 * 2**20, f"reference_results/ is {size / 2**20:.1f} MB (limit 40)"
    provenance = json.loads((root / "provenance.json").read_text())
    for key in ("command", "preset", "package_version", "config_hashes", "torch_version", "device", "threads",
                "date", "wall_seconds"):
        assert key in provenance, key
    assert (root / "SUMMARY.md").read_text().count("|") > 10
    assert set(provenance["config_hashes"]) == set(STORE.shards())
    assert np.isfinite([r.loss for r in PASSED]).all()
