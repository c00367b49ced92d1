"""The end-to-end benchmark: presets, claims, ``universality run`` and its report."""

import json

import numpy as np
import pytest

from universality.benchmark import PRESETS, Preset, load_preset
from universality.benchmark.claims import THRESHOLDS, scaffold_claims, separability_claims
from universality.benchmark.reference import ExportRecord, export
from universality.cli import main
from universality.store import MemberRow, RunStore


def test_built_in_presets_cover_the_paper_grid():
    quick, paper = PRESETS["quick"], PRESETS["paper"]
    for preset in (quick, paper, PRESETS["reference"]):
        assert set(preset.tasks) == {"flipflop", "sine", "cdi"}
        assert set(preset.archs) == {"vanilla", "ugrnn", "gru", "lstm"} and set(preset.activations) == {"tanh", "relu"}
    assert paper.hidden == (64, 128, 256) and paper.l2 == (1e-5, 1e-4, 1e-3, 1e-2) and paper.seeds >= 10
    assert len(paper.shards()) == 3 * 4 * 2 * 3
    assert PRESETS["reference"].seeds >= 8


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


def member_row(member, task, arch, activation, passed=True, status="trained"):
    return MemberRow(member=member, shard=f"{task}-{arch}-{activation}", idx=member, task=task, arch=arch,
                     activation=activation, hidden=8, l2=0.0, lr=1e-3, seed=member, status=status, loss=0.0,
                     score=1.0, passed=passed, steps=1)


def rows_for(archs, acts, passed=None):
    return {i: member_row(i, "flipflop", a, b, True if passed is None else passed[i])
            for i, (a, b) in enumerate(zip(archs, acts, strict=True))}


def test_separability_claims_follow_the_distances():
    rng = np.random.default_rng(0)
    archs = ["vanilla", "gru", "lstm", "ugrnn"] * 6
    acts = ["tanh"] * 12 + ["relu"] * 12  # independent of the architecture
    centres = {a: rng.normal(size=5) * 10 for a in set(archs)}
    points = np.stack([centres[a] + rng.normal(size=5) for a in archs])
    clustered = np.linalg.norm(points[:, None] - points[None], axis=-1)
    noise = rng.random((24, 24))
    unclustered = noise + noise.T
    np.fill_diagonal(unclustered, 0)
    rows = rows_for(archs, acts)
    claims = {c.claim: c for c in separability_claims("flipflop", list(range(24)), clustered, unclustered, rows,
                                                        n_permutations=200)}
    assert claims["geometry_architecture"].passed and claims["geometry_architecture"].value == 1.0
    assert not claims["geometry_activation"].passed  # activation is not encoded in these distances
    topo = claims["topology_architecture"]
    assert topo.passed and topo.value <= topo.detail["chance"] + THRESHOLDS["topology_margin_over_chance"]
    # members that did not pass are left out
    rows = rows_for(archs, acts, passed=[i % 3 != 0 for i in range(24)])
    claims = separability_claims("flipflop", list(range(24)), clustered, None, rows, n_permutations=50)
    assert claims[0].n == 16


def test_topology_must_also_fall_below_the_geometry_accuracy():
    archs = ["vanilla", "gru", "lstm", "ugrnn"] * 6
    x = np.arange(24.0)  # geometry: every nearest neighbour has another architecture (1-NN accuracy 0)
    geometry = np.abs(x[:, None] - x[None])
    y = x.copy()
    y[4] = 0.1  # topology: members 0 and 4 (both vanilla) are each other's nearest neighbour
    topology = np.abs(y[:, None] - y[None])
    claims = {c.claim: c for c in separability_claims("flipflop", list(range(24)), geometry, topology,
                                                        rows_for(archs, ["tanh"] * 24), n_permutations=50)}
    topo = claims["topology_architecture"]
    assert topo.value == pytest.approx(2 / 24) and claims["geometry_architecture"].value == 0.0
    assert topo.value <= topo.detail["chance"] + THRESHOLDS["topology_margin_over_chance"]  # at chance ...
    assert not topo.passed  # ... yet above the geometry accuracy: the claim does not hold


def test_scaffold_claims_count_canonical_fractions_and_exclusions():
    rows = [member_row(i, "cdi", "vanilla" if i < 5 else "gru", "tanh", i not in (4, 9),
                       "trained" if i not in (4, 9) else "failed") for i in range(10)]
    canonical = [True, True, True, False, True, True, True, True, True, False]
    modes = [1, 1, 2, 1, 1, 3, 4, 2, 5, 1]
    scaffolds = {i: {"canonical": canonical[i], "modes_90": modes[i]} for i in range(10)}
    claims = {(c.claim, c.group): c for c in scaffold_claims("cdi", rows, scaffolds)}
    vanilla = claims[("cdi_line_attractor", "vanilla/tanh")]
    assert vanilla.value == 0.75 and not vanilla.passed and vanilla.n == 4
    assert vanilla.detail["excluded"] == {"failed": 1, "diverged": 0}
    gru = claims[("cdi_line_attractor", "gru/tanh")]
    assert gru.value == 1.0 and gru.passed
    assert claims[("cdi_modes", "vanilla")].value == 1 and claims[("cdi_modes", "vanilla")].passed
    assert claims[("cdi_modes", "gru")].value == 3.5 and claims[("cdi_modes", "gru")].passed


def test_claim_boundaries():
    # exactly 90% canonical holds; exactly the minimum of 2 passed members is evaluated
    rows = [member_row(i, "flipflop", "gru", "tanh") for i in range(10)]
    rows += [member_row(10 + i, "flipflop", "lstm", "tanh") for i in range(2)]
    scaffolds = {r.member: {"canonical": r.member != 0} for r in rows}
    claims = {c.group: c for c in scaffold_claims("flipflop", rows, scaffolds)}
    assert claims["gru/tanh"].value == 0.9 and claims["gru/tanh"].passed
    assert claims["lstm/tanh"].n == 2 and claims["lstm/tanh"].passed and "note" not in claims["lstm/tanh"].detail
    # gated networks need more than one mode: a gated median of exactly 1 fails
    rows = [member_row(i, "cdi", arch, "tanh") for i, arch in enumerate(["vanilla"] * 3 + ["gru"] * 3)]
    scaffolds = {r.member: {"canonical": True, "modes_90": 1} for r in rows}
    modes = {c.group: c for c in scaffold_claims("cdi", rows, scaffolds) if c.claim == "cdi_modes"}
    assert modes["vanilla"].passed and not modes["gru"].passed


def test_geometry_needs_a_significant_permutation_test():
    rng = np.random.default_rng(0)
    archs = ["vanilla", "gru", "lstm", "ugrnn"] * 6
    centres = {a: rng.normal(size=5) * 10 for a in set(archs)}
    points = np.stack([centres[a] + rng.normal(size=5) for a in archs])
    clustered = np.linalg.norm(points[:, None] - points[None], axis=-1)
    # 1-NN accuracy is perfect, but 50 permutations cannot give p < 0.01 (the least p is 1/51)
    (geometry, _) = separability_claims("flipflop", list(range(24)), clustered, None, rows_for(archs, ["tanh"] * 24),
                                        n_permutations=50)
    assert geometry.value == 1.0 and geometry.detail["p_value"] == pytest.approx(1 / 51) and not geometry.passed


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
    assert claims and all(set(c) >= {"claim", "group", "value", "threshold", "passed"} for c in claims)
    assert {c["claim"] for c in claims} >= {"geometry_architecture", "topology_architecture", "flipflop_scaffold"}
    report = (out / "report" / "report.md").read_text()
    for section in ("## Claims", "## Training", "## Task: flipflop", "## Provenance"):
        assert section in report
    figures = {p.name for p in (out / "report" / "figures").iterdir()}
    assert "flipflop_trajectories.png" in figures and "flipflop_mds_svcca.png" in figures
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
    record = ExportRecord(command="test", preset={}, wall_seconds=1.0, seconds_since_run_created=2.0, workers=1)
    exported = export(RunStore(out), tmp_path / "reference", record)
    kept = RunStore(exported / "run")
    assert kept.shards() == RunStore(out).shards() and len(kept.members()) == 4
    assert not (exported / "run" / "analysis" / "states").exists()
    assert (exported / "run" / "report" / "claims.json").read_text() == (out / "report" / "claims.json").read_text()
    provenance = json.loads((exported / "provenance.json").read_text())
    assert set(provenance["config_hashes"]) == set(kept.shards()) and "torch_version" in provenance
    summary = (exported / "SUMMARY.md").read_text()
    assert "## Claims" in summary and "`test`" in summary
    for c in json.loads((out / "report" / "claims.json").read_text()):  # one table row per claim, from the data
        assert f"| {c['claim']} | {c['group']} |" in summary
    assert main(["verify", str(exported / "run")]) == 0  # the left-out states and fixed points are not damage


def test_run_rejects_a_bad_preset(tmp_path, capsys):
    assert main(["run", "--preset", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "unknown preset" in capsys.readouterr().err


@pytest.mark.parametrize("min_passed, threshold, rounds", [(0, 1.0, 1), (2, 1.0, 3), (2, 0.0, 1)])
def test_shards_train_more_seeds_until_enough_pass(tmp_path, min_passed, threshold, rounds):
    import torch

    from universality.benchmark.pipeline import train_shard

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
