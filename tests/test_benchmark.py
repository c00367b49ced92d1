"""The end-to-end benchmark: presets, claims, ``universality run`` and its report."""

import json

import numpy as np
import pytest
from scipy import stats

from universality.claims import error_matched, scaffold_claims, separability_claims
from universality.cli import main
from universality.pipeline.config import PRESETS, Preset, load_preset
from universality.report.reference import ExportRecord, describe_preset, export
from universality.report.report import matched_table, training_table
from universality.report.tables import number as fmt_number
from universality.run.catalog import MemberRow, RunStore
from universality.scaffold import SCAFFOLDS, StoredScaffold


def test_built_in_presets_cover_the_paper_grid():
    quick, paper = PRESETS["quick"], PRESETS["paper"]
    for preset in (quick, paper, PRESETS["reference"]):
        assert set(preset.tasks) == {"flipflop", "sine", "cdi"}
        assert set(preset.archs) == {"vanilla", "ugrnn", "gru", "lstm"} and set(preset.activations) == {"tanh", "relu"}
    assert paper.hidden == (64, 128, 256) and paper.l2 == (1e-5, 1e-4, 1e-3, 1e-2) and paper.seeds >= 10
    assert len(paper.shards()) == 3 * 4 * 2 * 3
    reference = PRESETS["reference"]  # at the paper's scale: its sizes, at least two of its L2 values
    assert set(reference.hidden) <= set(paper.hidden) and len(set(reference.l2) & set(paper.l2)) >= 2
    assert reference.min_passed >= 16 and len(reference.l2) * reference.seeds >= reference.min_passed


def test_preset_files_and_their_errors(tmp_path):
    good = tmp_path / "mine.toml"
    good.write_text('tasks = ["flipflop"]\narchs = ["gru"]\nactivations = ["tanh"]\nhidden = [8]\nseeds = 3\n'
                    '[task_params.flipflop]\np_pulse = 0.1\n')
    preset = load_preset(str(good))
    assert preset.name == "mine" and preset.seeds == 3 and preset.hidden == (8,)
    assert [s.name for s in preset.shards()] == ["flipflop-gru-tanh-h8"]
    (tmp_path / "bad.toml").write_text("seeds = 3\ncolour = 'red'\n")
    with pytest.raises(ValueError, match="unknown preset fields"):
        load_preset(str(tmp_path / "bad.toml"))
    with pytest.raises(ValueError, match="unknown preset"):
        load_preset("nonexistent")
    with pytest.raises(ValueError, match="unknown task/arch"):
        Preset(name="x", archs=("transformer",))


def member_row(member, task, arch, activation, passed=True, status="trained", score=1.0, steps=1):
    return MemberRow(member=member, shard=f"{task}-{arch}-{activation}", idx=member, task=task, arch=arch,
                     activation=activation, hidden=8, l2=0.0, lr=1e-3, seed=member, status=status, loss=0.0,
                     score=score, passed=passed, steps=steps)


def rows_for(archs, acts, passed=None):
    return {i: member_row(i, "flipflop", a, b, True if passed is None else passed[i])
            for i, (a, b) in enumerate(zip(archs, acts, strict=True))}


def clustered_distances(archs, seed=0):
    rng = np.random.default_rng(seed)
    centres = {a: rng.normal(size=5) * 10 for a in sorted(set(archs))}
    points = np.stack([centres[a] + rng.normal(size=5) for a in archs])
    return np.linalg.norm(points[:, None] - points[None], axis=-1)


def test_separability_claims_follow_the_distances():
    rng = np.random.default_rng(0)
    archs = ["vanilla", "gru", "lstm", "ugrnn"] * 6
    acts = ["tanh"] * 12 + ["relu"] * 12  # independent of the architecture
    clustered = clustered_distances(archs)
    noise = rng.random((24, 24))
    unclustered = noise + noise.T
    np.fill_diagonal(unclustered, 0)
    rows = rows_for(archs, acts)
    claims = {c.claim: c for c in separability_claims(
        "flipflop", list(range(24)), {"svcca": clustered, "cka": unclustered}, {"topology": unclustered,
                                                                                 "dynamics": clustered},
        rows, n_permutations=200)}
    geometry = claims["geometry_architecture"]
    assert geometry.verdict == "pass" and geometry.value == 1.0 and geometry.ci_low >= 0.6
    assert geometry.detail["other_metrics"]["cka"] < 0.6  # reported beside, not deciding
    assert claims["geometry_activation"].verdict != "pass"  # activation is not encoded in these distances
    assert claims["dynamics_architecture"].verdict == "pass"
    for label in ("architecture", "activation"):  # topology rows exist for both labels
        topo = claims[f"topology_{label}"]
        assert topo.ci_low <= topo.value <= topo.ci_high
        assert topo.verdict == ("pass" if topo.ci_high <= topo.detail["bound"] else
                                "fail" if topo.ci_low > topo.detail["bound"] else "inconclusive")
    # members that did not pass are left out
    rows = rows_for(archs, acts, passed=[i % 3 != 0 for i in range(24)])
    claims = separability_claims("flipflop", list(range(24)), {"svcca": clustered}, {}, rows, n_permutations=50)
    assert claims[0].n == 16 and len(claims) == 2


def test_clustered_topology_fails_universality_and_tied_topology_passes_it():
    archs = ["vanilla", "gru", "lstm", "ugrnn"] * 40
    clustered = clustered_distances(archs, seed=1)
    tied = np.ones((160, 160)) - np.eye(160)  # every network has the same topology distance to every other
    rows = rows_for(archs, ["tanh"] * 160)
    by_topology = {}
    for name, topology in (("clustered", clustered), ("tied", tied)):
        claims = separability_claims("flipflop", list(range(160)), {"svcca": clustered},
                                     {"topology": topology, "dynamics": topology}, rows, n_permutations=100)
        by_topology[name] = next(c for c in claims if c.claim == "topology_architecture")
        dynamics = next(c for c in claims if c.claim == "dynamics_architecture")
        # the same distances as dynamics: individual when clustered, not when tied
        assert dynamics.verdict == {"clustered": "pass", "tied": "fail"}[name], dynamics
    assert by_topology["clustered"].verdict == "fail" and by_topology["clustered"].value == 1.0
    # all 159 others tied: each network scores 39/159, the expected accuracy, exactly chance
    tied_claim = by_topology["tied"]
    assert tied_claim.value == pytest.approx(39 / 159) == pytest.approx(tied_claim.detail["chance"])
    assert tied_claim.verdict == "pass" and tied_claim.ci_high < tied_claim.detail["bound"]


def test_geometry_needs_a_significant_permutation_test():
    archs = ["vanilla", "gru", "lstm", "ugrnn"] * 6
    # 1-NN accuracy is perfect, but 50 permutations cannot give p < 0.01 (the least p is 1/51)
    geometry = separability_claims("flipflop", list(range(24)), {"svcca": clustered_distances(archs)}, {},
                                   rows_for(archs, ["tanh"] * 24), n_permutations=50)[0]
    assert geometry.value == 1.0 and geometry.detail["p_value"] == pytest.approx(1 / 51)
    assert geometry.verdict == "inconclusive" and not geometry.passed


def flipflop_numbers(canonical, **criteria):
    names = [c.name for c in SCAFFOLDS["flipflop"].criteria]
    return StoredScaffold(canonical, {n: criteria.get(n, canonical) for n in names}, None)


def test_scaffold_claims_pool_groups_with_intervals_and_exclusions():
    rows = [member_row(i, "flipflop", "vanilla" if i < 40 else "gru", "tanh", i not in (39, 79),
                       "trained" if i not in (39, 79) else "failed") for i in range(80)]
    scaffolds = {i: flipflop_numbers(i not in (0, 40)) for i in range(80)}
    claims = {(c.claim, c.group): c for c in scaffold_claims("flipflop", rows, scaffolds)}
    vanilla = claims[("flipflop_scaffold", "vanilla/tanh")]
    assert vanilla.value == pytest.approx(38 / 39) and vanilla.n == 39
    assert vanilla.detail["excluded"] == {"failed": 1, "diverged": 0}
    # 38/39: the exact interval reaches below 0.9 but not below 0.9 - margin (non-inferior)
    assert stats.beta.ppf(0.025, 38, 2) == pytest.approx(vanilla.ci_low) and 0.8 <= vanilla.ci_low < 0.9
    assert vanilla.verdict == "pass"
    pooled = claims[("flipflop_scaffold", "all")]
    assert pooled.n == 78 and pooled.value == pytest.approx(76 / 78) and pooled.verdict == "pass"
    assert pooled.detail["homogeneity_p"] == pytest.approx(1.0) and pooled.detail["groups_failed"] == []
    assert pooled.detail["icc"] < 0.01  # two groups at the same rate: no spread between them
    assert set(pooled.detail["criteria"]) == set(flipflop_numbers(True).criteria)


def test_heterogeneous_groups_fail_the_pooled_claim():
    rows = [member_row(i, "flipflop", arch, "tanh") for i, arch in enumerate(["vanilla"] * 60 + ["gru"] * 20)]
    scaffolds = {r.member: flipflop_numbers(r.arch == "vanilla" or r.member % 2 == 0) for r in rows}
    claims = {c.group: c for c in scaffold_claims("flipflop", rows, scaffolds) if c.claim == "flipflop_scaffold"}
    assert claims["gru/tanh"].verdict == "fail" and claims["vanilla/tanh"].verdict == "pass"
    assert claims["all"].value == pytest.approx(70 / 80) and claims["all"].detail["homogeneity_p"] < 0.01
    assert claims["all"].ci_low < 0.9 < claims["all"].ci_high  # inconclusive by its own interval ...
    assert claims["all"].verdict == "fail" and claims["all"].detail["groups_failed"] == ["gru/tanh"]  # ... fails


def test_heterogeneity_alone_does_not_fail_or_downgrade_the_pooled_claim():
    # 100/100, 100/100 and 90/100: the groups differ (every miss in one group), yet none is
    # shown below 0.9 and the pooled 290/300 is shown above it.
    rows = [member_row(i, "flipflop", arch, "tanh") for i, arch in enumerate(["vanilla", "gru", "lstm"] * 100)]
    scaffolds = {r.member: flipflop_numbers(r.arch != "lstm" or r.member < 270) for r in rows}
    claims = {c.group: c for c in scaffold_claims("flipflop", rows, scaffolds) if c.claim == "flipflop_scaffold"}
    assert claims["lstm/tanh"].value == 0.9 and claims["lstm/tanh"].verdict == "pass"
    pooled = claims["all"]
    assert pooled.detail["homogeneity_p"] < 0.01 and pooled.detail["icc"] > 0.01
    assert pooled.ci_low >= 0.9 and pooled.verdict == "pass"


def test_training_table_shows_score_and_steps_of_the_passed_networks():
    rows = [member_row(i, "cdi", "gru", "tanh", score=s, steps=t) for i, (s, t) in
            enumerate([(0.1, 100), (0.3, 300), (0.2, 200)])]
    rows.append(member_row(3, "cdi", "gru", "tanh", passed=False, status="failed", score=0.9, steps=5000))
    (line,) = [x for x in training_table(rows) if x.startswith("| cdi |")]
    assert line.endswith("| 3/4 | 1 | 0 | 0 | 0.2 [0.1, 0.3] | 200 [100, 300] |")


def two_groups(scores, canonical):
    """Flip-flop rows of vanilla/tanh then gru/tanh, one per ``scores`` pair (vanilla, gru),
    and their scaffolds (``canonical(arch, score)``)."""
    rows = [member_row(2 * i + j, "flipflop", arch, "tanh", score=score) for i, pair in enumerate(scores)
            for j, (arch, score) in enumerate(zip(("vanilla", "gru"), pair, strict=True))]
    return rows, {r.member: flipflop_numbers(canonical(r.arch, r.score)) for r in rows}


def verdicts_on_all_and_matched(rows, scaffolds):
    kept, bands = error_matched(rows)
    everything = scaffold_claims("flipflop", rows, scaffolds)
    matched = scaffold_claims("flipflop", [r for r in rows if r.member in kept], scaffolds)
    table = matched_table(everything, matched, rows)
    return ({c.group: c.verdict for c in everything}, {c.group: c.verdict for c in matched}, kept, bands["flipflop"],
            table)


def test_error_matched_claims_where_the_subset_changes_a_verdict():
    # vanilla: 12 networks trained to 0.90-0.945, the 8 below 0.935 without the scaffold, and
    # 12 at 0.96-0.99 with it; gru: 24 at 0.95-0.99, all with it. Common band: [0.95, 0.99].
    vanilla = [0.90, 0.91, 0.92, 0.93] * 2 + [0.935, 0.94, 0.945, 0.94] + [0.96, 0.97, 0.98, 0.99] * 3
    gru = [0.95, 0.96, 0.97, 0.98, 0.99, 0.97] * 4
    rows, scaffolds = two_groups(list(zip(vanilla, gru, strict=True)),
                                 lambda arch, score: arch == "gru" or score >= 0.935)
    assert sum(not scaffolds[r.member].canonical for r in rows) == 8
    on_all, on_matched, kept, band, table = verdicts_on_all_and_matched(rows, scaffolds)
    assert band == (0.95, 0.99) and len(kept) == 12 + 24
    # all: vanilla 16/24 is shown below 0.9 (Holm p 0.003), so the pooled 40/48 fails;
    # matched: vanilla 12/12 (cannot pass below 17), gru 24/24 passes, pooled 36/36 passes
    assert on_all == {"all": "fail", "vanilla/tanh": "fail", "gru/tanh": "pass"}
    assert on_matched == {"all": "pass", "vanilla/tanh": "inconclusive", "gru/tanh": "pass"}
    assert "| flipflop | [0.95, 0.99] | 36/48 |" in table
    cells = [line.split("|") for line in table if "| flipflop_scaffold |" in line]
    flags = {c[2].strip(): c[5].strip() for c in cells}
    assert flags == {"all": "REVERSED", "vanilla/tanh": "DIFFERS", "gru/tanh": ""}
    assert "1/3 claim rows agree; 2 differ, 1 of them reversed." in table


def test_error_matched_claims_where_the_subset_agrees():
    # the same scores in both groups, plus one network per group outside the other's range;
    # every network has the scaffold whatever its score
    shared = [0.95, 0.96, 0.97, 0.98, 0.99] * 4
    rows, scaffolds = two_groups([*zip(shared, shared, strict=True), (0.90, 1.0)], lambda arch, score: True)
    on_all, on_matched, kept, band, table = verdicts_on_all_and_matched(rows, scaffolds)
    assert band == (0.95, 0.99) and len(kept) == 40
    assert on_all == on_matched == {"all": "pass", "vanilla/tanh": "pass", "gru/tanh": "pass"}
    assert "3/3 claim rows agree; 0 differ, 0 of them reversed." in table
    # groups whose scores do not overlap leave nothing to match
    rows, scaffolds = two_groups([(0.90, 0.99), (0.91, 0.98)], lambda arch, score: True)
    kept, bands = error_matched(rows)
    assert kept == set() and bands == {"flipflop": None}


def test_run_end_to_end_is_resumable_and_reports(tmp_path, capsys):
    preset = tmp_path / "tiny.toml"
    preset.write_text('tasks = ["flipflop"]\narchs = ["vanilla", "gru"]\nactivations = ["tanh"]\nhidden = [8]\n'
                      'seeds = 2\nsteps = 300\nlr = 0.01\nfixed_point_candidates = 64\n'
                      '[task_params.flipflop]\npass_threshold = 0.99\n')
    out = tmp_path / "run"
    assert main(["run", "--preset", str(preset), "--out", str(out), "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "geometry_architecture" in printed and "report:" in printed
    claims = json.loads((out / "report" / "claims.json").read_text())
    assert claims and all(set(c) >= {"claim", "group", "value", "threshold", "verdict", "ci_low", "ci_high", "passed"}
                          for c in claims)
    assert all(c["verdict"] in ("pass", "fail", "inconclusive") and c["passed"] == (c["verdict"] == "pass")
               for c in claims)
    assert {c["claim"] for c in claims} >= {"geometry_architecture", "topology_architecture", "topology_activation",
                                            "dynamics_architecture", "flipflop_scaffold"}
    report = (out / "report" / "report.md").read_text()
    for section in ("## Claims", "## Training", "## Claims on error-matched networks", "## Task: flipflop",
                    "## Provenance"):
        assert section in report
    assert "| flipflop | vanilla | tanh |" in report and "claim rows agree" in report
    figures = {p.name for p in (out / "report" / "figures").iterdir()}
    assert {"flipflop_trajectories.png", "flipflop_mds_svcca.png", "flipflop_mds_topology.png",
            "flipflop_mds_dynamics.png"} <= figures
    weights = {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()}
    analysis = {p: p.stat().st_mtime_ns for p in (out / "analysis").rglob("*.safetensors")}
    assert len(analysis) == 2 * 3 + 2  # states, fixed points, scaffold per shard; geometry, topology per task
    # resumes in one process: nothing retrained or recomputed, and the same members as the worker processes made
    assert main(["run", "--preset", str(preset), "--out", str(out), "--workers", "1"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "shards").iterdir()} == weights
    assert {p: p.stat().st_mtime_ns for p in (out / "analysis").rglob("*.safetensors")} == analysis
    rows = RunStore(out).members()
    assert len(rows) == 4 and sum(r.passed for r in rows) >= 3
    assert main(["report", str(out)]) == 0

    # the reference export keeps weights, signatures, matrices and the report, not states
    record = ExportRecord(command="test", preset=load_preset(str(preset)).as_dict(), wall_seconds=1.0,
                          seconds_since_run_created=2.0, workers=1)
    exported = export(RunStore(out), tmp_path / "reference", record)
    kept = RunStore(exported / "run")
    assert kept.shards() == RunStore(out).shards() and len(kept.members()) == 4
    assert not (exported / "run" / "analysis" / "states").exists()
    assert (exported / "run" / "report" / "claims.json").read_text() == (out / "report" / "claims.json").read_text()
    provenance = json.loads((exported / "provenance.json").read_text())
    assert set(provenance["config_hashes"]) == set(kept.shards()) and "torch_version" in provenance
    summary = (exported / "SUMMARY.md").read_text()
    assert "## Claims" in summary and "`test`" in summary and "## The claims" in summary
    for c in json.loads((out / "report" / "claims.json").read_text()):  # one table row per claim, from the data
        assert f"| {c['claim']} | {c['group']} |" in summary
    assert main(["verify", str(exported / "run")]) == 0  # the left-out states and fixed points are not damage
    assert "Against the previous reference" not in summary  # a first export has nothing to compare with
    # exported again over itself: SUMMARY compares each claim row with the previous export's
    summary = (export(RunStore(out), tmp_path / "reference", record) / "SUMMARY.md").read_text()
    described = describe_preset(record.preset)
    assert f"Previous: {described}. Now: {described}." in summary and "hidden 8" in described
    for c in json.loads((out / "report" / "claims.json").read_text()):
        shown = f"{c['verdict'].upper()} ({fmt_number(c['value'])})"
        assert f"| {c['claim']} | {c['group']} | {shown} | {shown} |" in summary


def test_run_rejects_a_bad_preset(tmp_path, capsys):
    assert main(["run", "--preset", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "unknown preset" in capsys.readouterr().err


@pytest.mark.parametrize("min_passed, threshold, rounds", [(0, 1.0, 1), (2, 1.0, 3), (2, 0.0, 1)])
def test_shards_train_more_seeds_until_enough_pass(tmp_path, min_passed, threshold, rounds):
    import torch

    from universality.pipeline.driver import train_shard

    # 2 steps never reach sign accuracy 1.0 (nothing passes) and always reaches 0.0
    preset = Preset(name="t", tasks=("flipflop",), archs=("gru",), activations=("tanh",), hidden=(4,), seeds=2,
                    first_seed=5, steps=2, batch_size=4, min_passed=min_passed, max_rounds=3,
                    task_params={"flipflop": {"pass_threshold": threshold}})
    store = RunStore.create(tmp_path / "run")
    pop, result = train_shard(store, preset, preset.shards()[0], torch.device("cpu"))
    assert [m.seed for m in pop.members] == list(range(5, 5 + 2 * rounds))
    assert len(result.passed) == 2 * rounds and all(result.passed) == (threshold == 0.0)
    stored = store.members()
    assert [r.seed for r in stored] == list(range(5, 5 + 2 * rounds))
    # a member trained in a later round equals the same seed trained alone
    alone = Preset(**{**preset.as_dict(), "first_seed": 5 + 2 * (rounds - 1), "min_passed": 0, "max_rounds": 1})
    solo, _ = train_shard(RunStore.create(tmp_path / "solo"), alone, alone.shards()[0], torch.device("cpu"))
    for k, v in solo.params.items():
        assert torch.equal(pop.params[k][-2:], v), k
