"""``universality analyze``: fixed points, states and geometry stored per run; resumable."""

import json

import pytest
import torch

from universality.cli import main
from universality.geometry import pairwise_distances
from universality.pipeline.stages import AnalysisConfig, probe_states
from universality.run.cache import load_fixed_points, load_geometry
from universality.run.catalog import RunStore


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze") / "run"
    common = ["--task", "flipflop", "--hidden", "8", "--steps", "150", "--batch-size", "32", "--lr", "1e-2"]
    assert main(["train", "--arch", "gru", "--seeds", "2", *common, "--out", str(out)]) == 0
    assert main(["train", "--arch", "vanilla", "--seeds", "1", *common, "--out", str(out)]) == 0
    return out


def test_analyze_json_reports_fixed_points_per_member(run_dir, capsys):
    capsys.readouterr()
    assert main(["analyze", str(run_dir), "--candidates", "128", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["member"] for r in rows] == [0, 1, 2]
    store = RunStore(run_dir)
    for r in rows:
        fp = r["fixed_points"]
        assert set(fp) >= {"count", "stable", "index_counts", "max_residual"}
        assert fp["count"] == sum(fp["index_counts"].values()) and fp["stable"] == fp["index_counts"].get("0", 0)
        assert fp["count"] >= 1 and fp["max_residual"] <= 1e-10
        assert isinstance(r["scaffold"]["canonical"], bool)
        # the scaffold's stability counts are those of the stored fixed points
        assert r["scaffold"]["n_stable"] == fp["stable"]
    # the stored fixed points are those reported, and each certified one is a root of its member's map
    # (the flip-flop's analysis keeps slow points too, for its slow-point memories)
    fps = load_fixed_points(store, "flipflop-gru-tanh-h8")
    pop = store.load_population("flipflop-gru-tanh-h8").to("cpu", torch.float64)
    pts = fps.points[:, 0]  # [P, N, S] at the single zero-input condition
    mapped = pop.step(torch.zeros(len(pop), pts.shape[1], 3, dtype=torch.float64), pts)
    certified = fps.mask[:, 0] & fps.fixed[:, 0]
    assert ((mapped - pts).abs().amax(-1)[certified] < 1e-9).all()
    assert ((mapped - pts).abs().amax(-1)[fps.mask[:, 0] & ~fps.fixed[:, 0]] > 1e-9).all()


def test_geometry_matrices_match_a_direct_computation(run_dir):
    main(["analyze", str(run_dir), "--candidates", "128"])
    geo = load_geometry(RunStore(run_dir), "flipflop")
    assert geo["members"].tolist() == [0, 1, 2]
    for metric in ("svcca", "cca_angular", "cka", "procrustes"):
        d = geo[metric]
        assert d.shape == (3, 3) and torch.allclose(d, d.T) and (d.diagonal() == 0).all()
    store = RunStore(run_dir)
    reps = []
    for shard in store.shards():
        pop = store.load_population(shard)
        s = probe_states(pop, AnalysisConfig())[..., :8]
        reps += [s[i].reshape(-1, 8) for i in range(len(pop))]
    torch.testing.assert_close(geo["cka"], pairwise_distances(reps, "cka"))


def test_topology_matrices_are_stored(run_dir):
    from universality.run.cache import load_topology

    main(["analyze", str(run_dir), "--candidates", "128"])
    topo = load_topology(RunStore(run_dir), "flipflop")
    assert topo["members"].tolist() == [0, 1, 2]
    for name in ("topology", "dynamics", "homology"):
        d = topo[name]
        assert d.shape == (3, 3) and torch.equal(d, d.T) and (d.diagonal() == 0).all() and (d >= 0).all()


def test_analyze_is_resumable(run_dir):
    main(["analyze", str(run_dir), "--candidates", "128"])
    files = sorted((run_dir / "analysis").rglob("*.safetensors"))
    stamps = {f: f.stat().st_mtime_ns for f in files}
    main(["analyze", str(run_dir), "--candidates", "128"])
    assert {f: f.stat().st_mtime_ns for f in files} == stamps  # nothing recomputed
    main(["analyze", str(run_dir), "--candidates", "64"])  # new fixed points: and what depends on them
    changed = {f.parent.name for f in files if f.stat().st_mtime_ns != stamps[f]}
    assert changed == {"fixed_points", "scaffold", "topology"}


def test_analyze_refuses_a_missing_run(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "none")]) == 2
    assert "no such run directory" in capsys.readouterr().err


def test_diverged_members_are_skipped_and_the_others_analysed_as_alone(tmp_path):
    from universality.cells import make_cell
    from universality.dynamics import find_fixed_points
    from universality.pipeline.driver import analyze_run
    from universality.population import Population
    from universality.run.cache import load_scaffolds
    from universality.tasks import make_task
    from universality.training import DIVERGED, TrainConfig, train

    pop = Population.create(make_cell("gru"), make_task("flipflop"), 6, [0, 1, 2], lr=[1e-2, 1e35, 1e-2])
    config = TrainConfig(steps=40, batch_size=16, eval_every=20)
    result = train(pop, config)
    assert result.status[1] == DIVERGED
    store = RunStore.create(tmp_path / "run")
    store.save_population("ff", pop, config.as_dict(), result)
    analysis = AnalysisConfig(candidate_budget=64)
    analyze_run(store, analysis)

    fps = load_fixed_points(store, "ff")
    assert fps.n_members == 3 and not fps.mask[1].any() and fps.status_counts[1].sum() == 0
    alone = find_fixed_points(store.load_population("ff").select([0, 2]),
                              config=analysis.fixed_point_config("flipflop", 1))
    for name in ("points", "mask", "residual", "index"):
        torch.testing.assert_close(getattr(fps.select([0, 2]), name), getattr(alone, name))
    numbers, tensors = load_scaffolds(store, "ff")
    assert numbers[1] == {"canonical": False, "diverged": True}
    assert "diverged" not in numbers[0] and "diverged" not in numbers[2]
    for signature in ("topology", "dynamics"):
        assert torch.isnan(tensors[signature][1]).all() and torch.isfinite(tensors[signature][[0, 2]]).all()
    assert torch.isnan(tensors["fingerprints"][1]).all()


def test_a_shard_whose_members_all_diverged_is_stored_empty(tmp_path):
    from universality.cells import make_cell
    from universality.pipeline.driver import analyze_run
    from universality.population import Population
    from universality.run.cache import load_scaffolds
    from universality.tasks import make_task
    from universality.training import DIVERGED, TrainConfig, train

    pop = Population.create(make_cell("vanilla"), make_task("flipflop"), 4, [0, 1], lr=1e35)
    config = TrainConfig(steps=20, batch_size=8, eval_every=10)
    result = train(pop, config)
    assert result.status == [DIVERGED, DIVERGED]
    store = RunStore.create(tmp_path / "run")
    store.save_population("ff", pop, config.as_dict(), result)
    analyze_run(store, AnalysisConfig(candidate_budget=16))
    fps = load_fixed_points(store, "ff")
    assert fps.n_members == 2 and fps.points.shape[2] == 0 and fps.conditions.shape == (1, 3)
    assert [s["count"] for s in fps.summary()] == [0, 0]
    numbers, tensors = load_scaffolds(store, "ff")
    assert numbers == [{"canonical": False, "diverged": True}] * 2 and tensors["topology"].shape[0] == 2
