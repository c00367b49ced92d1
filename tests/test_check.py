"""``universality check``: a user cell held against a (small) reference run."""

import json
import textwrap
from pathlib import Path

import pytest

from universality.cli import main
from universality.run.catalog import RunStore

CELLS = textwrap.dedent(
    """
    import torch
    from torch import nn


    class WrappedGRU(nn.Module):
        '''A user's cell: torch's GRUCell behind the (x, state) -> state protocol.'''

        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.cell = nn.GRUCell(input_size, hidden_size)

        def forward(self, x, h):
            return self.cell(x, h)


    class Forgetful(nn.Module):
        '''No recurrence and a strong leak: it cannot hold a memory.'''

        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.inp = nn.Linear(input_size, hidden_size)

        def forward(self, x, h):
            return 0.2 * h + 0.8 * torch.tanh(self.inp(x))


    class Broken(nn.Module):
        def __init__(self, input_size, hidden_size):
            super().__init__()

        def forward(self, x, h):
            return h, h
    """
)

PRESET = ('tasks = ["flipflop"]\narchs = ["vanilla", "gru"]\nactivations = ["tanh"]\nhidden = [16]\nseeds = 4\n'
          'steps = 400\nlr = 0.01\nfixed_point_candidates = 256\n')


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    (root / "user_cells.py").write_text(CELLS)
    (root / "preset.toml").write_text(PRESET)
    assert main(["run", "--preset", str(root / "preset.toml"), "--out", str(root / "reference"),
                 "--workers", "1"]) == 0
    return root


def check(root, name, monkeypatch, capsys, grid=("0.01",)):
    """``check`` of ``user_cells:<name>`` (``grid``: the learning rates screened; by default
    the preset's one rate, no screen; empty: the default grid)."""
    monkeypatch.syspath_prepend(str(root))
    capsys.readouterr()
    code = main(["check", f"user_cells:{name}", "--preset", str(root / "preset.toml"),
                 "--reference", str(root / "reference"), "--out", str(root / name),
                 *(["--lr-grid", *grid] if grid else [])])
    return code, capsys.readouterr()


def rows_of(root, name):
    return {(r["group"], r["claim"]): r for r in json.loads((root / name / "report" / "check.json").read_text())}


def test_a_cell_with_the_universal_scaffold_fails_nothing(setup, monkeypatch, capsys):
    code, out = check(setup, "WrappedGRU", monkeypatch, capsys, grid=())  # the default grid: 0.01 x (1/3, 1, 3)
    rows = rows_of(setup, "WrappedGRU")
    assert all(r["verdict"] != "fail" for r in rows.values()), out.out
    judged = [r for (_, c), r in rows.items() if c in ("flipflop_scaffold", "topology_among_reference")]
    assert code == (0 if all(r["verdict"] == "pass" for r in judged) else 3), out.out + out.err
    train = rows[("flipflop", "trainability")]
    assert train["value"] >= 0.75 and train["verdict"] == "pass" and train["detail"]["reference_rate"] > 0.5
    # the screen: 2 seeds at each rate of the grid, the judged networks at the chosen rate
    assert set(train["detail"]["lr_screen"]) == {"0.00333", "0.01", "0.03"}
    assert all(n == 2 for _, n in train["detail"]["lr_screen"].values())
    assert {r.lr for r in RunStore(setup / "WrappedGRU").members()} == {train["detail"]["lr"]}
    scaffold = rows[("flipflop", "flipflop_scaffold")]
    from universality.scaffold import SCAFFOLDS

    # 4 networks are too few for a pass (even 0/4 would not be significant): said so, with what they show
    assert scaffold["verdict"] == "inconclusive"
    assert scaffold["detail"]["outcome"] == SCAFFOLDS["flipflop"].universal_kind
    assert scaffold["detail"]["reason"].startswith("trains too rarely to judge: "), scaffold
    # every row has a verdict and a reason; no NaN value without a reason
    assert all(r["verdict"] in ("pass", "fail", "inconclusive") and r["detail"]["reason"] for r in rows.values())
    assert {c for _, c in rows} >= {"flipflop_scaffold", "geometry_own", "topology_among_reference",
                                    *(f"criterion {c.name}" for c in SCAFFOLDS["flipflop"].criteria)}
    for check_name in ("geometry_own", "topology_among_reference"):
        assert set(rows[("flipflop", check_name)]["detail"]["mean_distance_by_arch"]) == {"vanilla", "gru"}
    report = (setup / "WrappedGRU" / "report" / "check.md").read_text()
    assert "Not like for like" in report and f"| NEW | {round(train['value'] * 4)}/4 |" in report
    assert "chosen from 0.00333 (" in report and "## Universality" in report
    assert (setup / "WrappedGRU" / "report" / "figures" / "flipflop_geometry_placement.png").is_file()


def test_a_cell_that_cannot_remember_fails_trainability_with_its_scores(setup, monkeypatch, capsys):
    code, out = check(setup, "Forgetful", monkeypatch, capsys)
    assert code == 1
    rows = rows_of(setup, "Forgetful")
    train = rows[("flipflop", "trainability")]
    assert train["verdict"] == "fail" and train["value"] == 0.0 and len(train["detail"]["scores"]) == 4
    assert "significantly fewer" in train["detail"]["reason"] and "FAIL" in out.out
    scaffold = rows[("flipflop", "flipflop_scaffold")]  # nothing passed while the reference learns: it cannot
    assert scaffold["verdict"] == "fail" and scaffold["detail"]["reason"].startswith("cannot learn the task: 0/4")
    assert scaffold["detail"]["outcome"] == "cannot learn" and "nan" not in out.out.lower()


@pytest.mark.parametrize("name, message", [("Broken", "does not follow the cell protocol"),
                                           ("Missing", "has no attribute")])
def test_bad_cells_exit_2_with_the_protocol(setup, monkeypatch, capsys, name, message):
    code, out = check(setup, name, monkeypatch, capsys)
    assert code == 2 and message in out.err and len(out.err.strip().splitlines()) == 1


def test_missing_module_and_reference(tmp_path, capsys):
    assert main(["check", "no_such_module_xyz:Cell"]) == 2
    assert "cannot import module" in capsys.readouterr().err
    assert main(["check", "torch.nn:GRUCell", "--reference", str(tmp_path / "none")]) == 2
    assert "no reference run" in capsys.readouterr().err


def test_the_linear_example_cell_fails(setup, monkeypatch, capsys):
    # examples/linear_rnn.py: one fixed point per input, so it cannot hold flip-flop memories
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    code = main(["check", "examples.linear_rnn:LinearRNN", "--preset", str(setup / "preset.toml"),
                 "--reference", str(setup / "reference"), "--out", str(setup / "linear")])
    out = capsys.readouterr().out
    rows = rows_of(setup, "linear")
    assert code == 1 and rows[("flipflop", "trainability")]["verdict"] == "fail", out
    assert all(r["verdict"] in ("pass", "fail", "inconclusive") for r in rows.values())


def test_an_out_dir_with_networks_of_other_settings_is_refused(setup, monkeypatch, capsys):
    # The Forgetful check's directory holds 4 networks of the 16-unit preset; checking again
    # at 8 units (or with other L2 values) into it would judge both sizes together.
    check(setup, "Forgetful", monkeypatch, capsys)
    weights = {p: p.stat().st_mtime_ns for p in (setup / "Forgetful" / "shards").iterdir()}
    for change in ("hidden = [8]", "l2 = [0.001]"):
        other = setup / "other.toml"
        other.write_text(PRESET.replace("hidden = [16]", change) if "hidden" in change else PRESET + change + "\n")
        capsys.readouterr()
        code = main(["check", "user_cells:Forgetful", "--preset", str(other), "--reference",
                     str(setup / "reference"), "--out", str(setup / "Forgetful"), "--lr-grid", "0.01"])
        err = capsys.readouterr().err
        assert code == 2 and "already holds networks trained with other settings" in err, err
        assert "flipflop-Forgetful-custom-h16" in err and len(err.strip().splitlines()) == 1
    assert {p: p.stat().st_mtime_ns for p in (setup / "Forgetful" / "shards").iterdir()} == weights
    # the same settings again: resumed, not refused
    code, out = check(setup, "Forgetful", monkeypatch, capsys)
    assert code == 1 and "already holds" not in out.err


FAILING_CELLS = textwrap.dedent(
    """
    import torch
    from torch import nn


    class HardCodedShape(nn.Module):
        '''Follows the protocol only at the probe's shapes (batch 2, 4 units).'''

        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.inp = nn.Linear(input_size, hidden_size)

        def forward(self, x, h):
            return torch.tanh(self.inp(x) + h).reshape(2, 4)


    class OnlyBatchesOfTwo(nn.Module):
        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.inp = nn.Linear(input_size, hidden_size)

        def forward(self, x, h):
            if x.shape[0] != 2:
                raise ValueError("only batches of 2")
            return torch.tanh(self.inp(x) + h)


    class DataDependentIf(nn.Module):
        '''Python control flow on values: fine alone, refused under vmap.'''

        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.inp = nn.Linear(input_size, hidden_size)

        def forward(self, x, h):
            if (h > 0).any():
                return torch.tanh(self.inp(x) + h)
            return self.inp(x)


    class SmallState(nn.Module):
        '''A state smaller than the hidden size the readout reads.'''

        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.state_size = hidden_size - 1
            self.inp = nn.Linear(input_size, self.state_size)

        def forward(self, x, h):
            return torch.tanh(self.inp(x) + h)


    class NoParameters(nn.Module):
        def __init__(self, input_size, hidden_size):
            super().__init__()

        def forward(self, x, h):
            return torch.tanh(h + x.sum(-1, keepdim=True))
    """
)


@pytest.mark.parametrize("name", ["HardCodedShape", "OnlyBatchesOfTwo", "DataDependentIf", "SmallState",
                                  "NoParameters"])
def test_a_cell_failing_in_training_is_one_line_and_leaves_a_reusable_directory(setup, monkeypatch, capsys, name):
    (setup / "failing_cells.py").write_text(FAILING_CELLS)
    monkeypatch.syspath_prepend(str(setup))
    out = setup / f"failing-{name}"
    argv = ["check", f"failing_cells:{name}", "--preset", str(setup / "preset.toml"), "--reference",
            str(setup / "reference"), "--out", str(out), "--lr-grid", "0.01"]
    for _ in range(2):  # the second attempt reuses the directory the first left, and fails the same way
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "the cell failed while training on flipflop (" in err and "a cell is MODULE:ATTR" in err, err
        assert sorted(p.name for p in out.iterdir()) == ["catalog.sqlite", "catalog.sqlite.bak", "shards"]
        assert RunStore(out).shards() == []


@pytest.mark.parametrize("source, says", [("def broken(:\n", "SyntaxError"),
                                          ("raise RuntimeError('needs a GPU')\n", "RuntimeError: needs a GPU"),
                                          ("import sys\nsys.exit(3)\n", "SystemExit: 3")])
def test_a_module_failing_at_import_is_one_line(tmp_path, monkeypatch, capsys, source, says):
    (tmp_path / "unimportable_cell.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", "unimportable_cell:Cell", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot import module 'unimportable_cell' (" in err, err
    assert says in err and "a cell is MODULE:ATTR" in err and not (tmp_path / "out").exists()


def test_a_cell_failing_in_analysis_is_one_line_and_keeps_its_trained_networks(setup, tmp_path, monkeypatch,
                                                                               capsys):
    (tmp_path / "single_cells.py").write_text(textwrap.dedent(
        """
        import torch
        from torch import nn


        class SinglePrecision(nn.Module):
            '''Trains (in float32), but refuses the float64 of the fixed-point search.'''

            def __init__(self, input_size, hidden_size):
                super().__init__()
                self.inp = nn.Linear(input_size, hidden_size)

            def forward(self, x, h):
                if h.dtype != torch.float32:
                    raise TypeError(f"float32 only, got {h.dtype}")
                return torch.tanh(self.inp(x) + h)
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    preset = tmp_path / "short.toml"
    preset.write_text(PRESET.replace("steps = 400", "steps = 5"))
    argv = ["check", "single_cells:SinglePrecision", "--preset", str(preset), "--reference",
            str(setup / "reference"), "--out", str(tmp_path / "out"), "--lr-grid", "0.01"]
    for _ in range(2):  # trained once; the second attempt reuses the networks and fails the same way
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert "the cell failed while analysing its networks (TypeError: float32 only" in err, err
        assert RunStore(tmp_path / "out").shards() == ["flipflop-SinglePrecision-custom-h16"]


def test_loading_a_cell_leaves_sys_path_as_it_was(tmp_path, monkeypatch):
    import sys

    from universality.report.check import load_cell

    (tmp_path / "cwd_cell.py").write_text(CELLS)
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    try:
        assert load_cell("cwd_cell:WrappedGRU").arch == "WrappedGRU"  # imported from the working directory
        assert sys.path == before
    finally:
        sys.modules.pop("cwd_cell", None)


def test_every_hidden_size_of_the_preset_is_trained_and_judged(setup, tmp_path, monkeypatch, capsys):
    preset = tmp_path / "two_sizes.toml"
    preset.write_text(PRESET.replace("hidden = [16]", "hidden = [6, 8]").replace("steps = 400", "steps = 20")
                      .replace("seeds = 4", "seeds = 1"))
    monkeypatch.syspath_prepend(str(setup))
    out = tmp_path / "out"
    main(["check", "user_cells:WrappedGRU", "--preset", str(preset), "--reference", str(setup / "reference"),
          "--out", str(out)])
    assert RunStore(out).shards() == ["flipflop-WrappedGRU-custom-h6", "flipflop-WrappedGRU-custom-h8"]
    trainability = {(r["group"], r["claim"]): r for r in json.loads((out / "report" / "check.json").read_text())}
    assert trainability[("flipflop", "trainability")]["n"] == 2  # one network of each size
    assert "hidden 6/8 vs the reference's [16]" in (out / "report" / "check.md").read_text()


def test_rounds_stop_once_trainability_is_decided(setup, monkeypatch, capsys):
    # examples/linear_rnn.py cannot learn the flip-flop: 0/16 in round 1 against the reference's
    # 8/8 is a fail that round 2 cannot undo (even 16/32 would give p < 0.01), so it is not trained
    from universality.claims.verdicts import ALPHA, fisher_lower_p

    reference = RunStore(setup / "reference").members()
    k_ref, n_ref = sum(r.passed for r in reference), len(reference)
    assert fisher_lower_p(16, 32, k_ref, n_ref) < ALPHA, f"premise: the reference passed {k_ref}/{n_ref}"
    preset = setup / "rounds.toml"
    preset.write_text(PRESET.replace("seeds = 4", "seeds = 16\nmin_passed = 16\nmax_rounds = 2")
                      .replace("steps = 400", "steps = 20").replace("fixed_point_candidates = 256",
                                                                     "fixed_point_candidates = 32"))
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    capsys.readouterr()
    code = main(["check", "examples.linear_rnn:LinearRNN", "--preset", str(preset),
                 "--reference", str(setup / "reference"), "--out", str(setup / "linear-rounds"), "--lr-grid", "0.01"])
    out = capsys.readouterr().out
    assert code == 1, out
    train = rows_of(setup, "linear-rounds")[("flipflop", "trainability")]
    assert train["verdict"] == "fail" and train["n"] == 16, out  # one round of 16, not two
    stopped = train["detail"]["stopped_early"]
    assert stopped.startswith(f"stopped after round 1 of 2: trainability already decided (0/16 against the "
                              f"reference's {k_ref / n_ref:.0%}, p = "), stopped
    assert stopped in train["detail"]["reason"] and "stopped after round 1" in out
    assert "stopped after round 1" in (setup / "linear-rounds" / "report" / "check.md").read_text()


def test_trainability_is_decided_only_when_no_later_round_can_change_it():
    from universality.pipeline.config import PRESETS, Preset
    from universality.report.check import trainability_decided

    reference = PRESETS["reference"]  # rounds of 16, up to 3, while fewer than 16 passed
    p = trainability_decided(reference, 1, 0, 16, 127, 128)
    assert p is not None and p < 1e-10  # 0/16 against 127/128: even 32/48 would fail
    assert trainability_decided(reference, 1, 14, 16, 127, 128) is None  # round 2 could reach 30/32
    small = Preset(name="small", seeds=4, min_passed=4, max_rounds=2)
    assert trainability_decided(small, 1, 0, 4, 8, 8) is None  # 4/8 against 8/8 is not significant
    assert trainability_decided(small, 2, 0, 8, 8, 8) is not None  # no round left: the verdict stands
    assert trainability_decided(small, 1, 0, 4, 0, 0) is None  # nothing to compare with


def test_the_screen_judges_the_cell_at_the_rate_where_it_learns(setup, tmp_path, monkeypatch, capsys):
    # At the preset's rate 1e-5 nothing learns in 400 steps; at 0.01 the GRU does. The rule
    # takes the rate with the most passes (a tie would keep the preset's 1e-5), and the judged
    # networks train there with seeds of their own; a second check reuses the screen.
    preset = tmp_path / "slow.toml"
    preset.write_text(PRESET.replace("lr = 0.01", "lr = 0.00001"))
    monkeypatch.syspath_prepend(str(setup))
    out = tmp_path / "out"
    argv = ["check", "user_cells:WrappedGRU", "--preset", str(preset), "--reference", str(setup / "reference"),
            "--out", str(out), "--lr-grid", "0.00001", "0.01"]
    main(argv)
    train = {(r["group"], r["claim"]): r for r in json.loads((out / "report" / "check.json").read_text())}[
        ("flipflop", "trainability")]
    assert train["detail"]["lr_screen"]["1e-05"] == [0, 2] and train["detail"]["lr_screen"]["0.01"][0] >= 1
    assert train["detail"]["lr"] == 0.01 and "lr 0.01, chosen from 1e-05 (0/2), 0.01 (" in train["detail"]["reason"]
    judged, screened = RunStore(out).members(), RunStore(out / "lr_screen" / "flipflop-lr0.01").members()
    assert {r.lr for r in judged} == {0.01} and not {r.seed for r in judged} & {r.seed for r in screened}
    weights = {p: p.stat().st_mtime_ns for p in (out / "lr_screen").rglob("*.safetensors")}
    main(argv)
    assert {p: p.stat().st_mtime_ns for p in (out / "lr_screen").rglob("*.safetensors")} == weights


def test_the_rate_rule():
    from universality.pipeline.config import PRESETS
    from universality.report.screen import choose, default_grid

    assert default_grid(PRESETS["reference"]) == (0.001, 0.003, 0.009)
    assert choose([0.001, 0.003, 0.009], [1, 2, 3], 0.003) == 0.009  # most passes
    assert choose([0.001, 0.003, 0.009], [3, 3, 0], 0.003) == 0.003  # tie: the preset's rate
    assert choose([0.001, 0.003, 0.009], [0, 0, 0], 0.003) == 0.003  # nothing learns: the preset's rate
    assert choose([0.001, 0.009], [2, 2], 0.003) == 0.001  # equally far in log: the smaller
    with pytest.raises(ValueError):
        choose([0.001], [1, 2], 0.003)


def test_the_exit_code_follows_the_universality_rows_not_trainability():
    from universality.claims import Claim
    from universality.report.check import EXIT, exit_code

    def rows(train, scaffold, topology, geometry="fail"):
        return [Claim("trainability", "flipflop", 0.5, "", train, 16), Claim("flipflop_scaffold", "flipflop", 1.0,
                "", scaffold, 8), Claim("topology_among_reference", "flipflop", 0.3, "", topology, 8),
                Claim("geometry_own", "flipflop", 0.9, "", geometry, 8),
                Claim("criterion hypercube", "flipflop", 1.0, "", "fail", 8)]

    assert exit_code(rows("fail", "pass", "pass")) == EXIT["pass"]  # learns rarely, universal when it does
    assert exit_code(rows("pass", "fail", "pass")) == EXIT["fail"]
    assert exit_code(rows("pass", "pass", "inconclusive")) == EXIT["inconclusive"]
    assert exit_code(rows("pass", "inconclusive", "fail")) == EXIT["fail"]


def test_a_check_of_fewer_tasks_judges_only_those_in_a_directory_of_more(setup, tmp_path, monkeypatch, capsys):
    # the zoo exports the tasks a cell has finished: a flip-flop check into the directory of a
    # flip-flop + sine check judges the flip-flop networks and leaves the sine ones alone
    preset = tmp_path / "two_tasks.toml"
    preset.write_text(PRESET.replace('tasks = ["flipflop"]', 'tasks = ["flipflop", "sine"]')
                      .replace("steps = 400", "steps = 5").replace("seeds = 4", "seeds = 1")
                      .replace("fixed_point_candidates = 256", "fixed_point_candidates = 16"))
    monkeypatch.syspath_prepend(str(setup))
    out = tmp_path / "out"
    argv = ["check", "user_cells:Forgetful", "--preset", str(preset), "--reference", str(setup / "reference"),
            "--out", str(out), "--lr-grid", "0.01"]
    main(argv)
    assert len(RunStore(out).shards()) == 2
    capsys.readouterr()
    main([*argv, "--tasks", "flipflop"])
    assert "already holds" not in capsys.readouterr().err
    rows = json.loads((out / "report" / "check.json").read_text())
    assert {r["group"] for r in rows} == {"flipflop"} and len(RunStore(out).shards()) == 2


def test_the_scaffold_row_says_which_other_scaffold_the_cell_learned():
    # 12 networks that learned the flip-flop on a 3-dimensional continuum and 4 with the cube,
    # against a reference with the cube in 127/128: a fail, and the reason names the continuum
    from dataclasses import replace

    from universality.claims import Claim
    from universality.report.check import _rate_row, _scaffold_row
    from universality.scaffold import StoredScaffold
    from universality.scaffold.flipflop import FlipFlopNumbers

    def network(cube):
        numbers = FlipFlopNumbers(patterns_held=8, escape_times=[640] * 8, hold_steps=640,
                                  n_stable=8 if cube else 0, n_patterns=8 if cube else 0,
                                  n_hypercube_edges=12 if cube else 0, n_other_edges=0, n_continua=0 if cube else 1,
                                  continuum_dims=[] if cube else [3], continuum_index=[] if cube else [0],
                                  slow_point_memories=0)
        return StoredScaffold(cube, {"hypercube": cube, "functional_memory": True}, numbers)

    passed = [network(False)] * 12 + [network(True)] * 4
    train = Claim("trainability", "flipflop", 1.0, "", "pass", 16, detail={"reason": "16/16"})
    row = _scaffold_row(_rate_row("flipflop_scaffold", "flipflop", 4, 16, 127, 128, "the scaffold holds", {}),
                        passed, 16, train)
    assert row.verdict == "fail" and row.detail["outcome"] == "continuum"
    assert row.detail["reason"].startswith(
        "learns the task with a different scaffold: memories held on a 3-dimensional continuum of marginally stable "
        "states (neutral dimension 3), not 8 isolated attractors (12/16 networks; the universal one in 4/16)"), \
        row.detail["reason"]
    assert row.detail["kinds"] == {"continuum": 12, "hypercube": 4}
    # mostly the cube, but fewer than the reference: the other kind is still what it names
    mostly = _scaffold_row(_rate_row("flipflop_scaffold", "flipflop", 10, 16, 127, 128, "the scaffold holds", {}),
                           [network(False)] * 6 + [network(True)] * 10, 16, train)
    assert mostly.verdict == "fail" and "3-dimensional continuum" in mostly.detail["reason"]
    assert "(6/16 networks; the universal one in 10/16)" in mostly.detail["reason"]
    # networks of one kind whose phrases differ (their numbers) are counted as one kind
    leaky = [network(False)] * 5 + [replace(network(False), numbers=replace(network(False).numbers,
                                                                             continuum_dims=[2]))] * 4
    mixed = _scaffold_row(_rate_row("flipflop_scaffold", "flipflop", 7, 16, 127, 128, "the scaffold holds", {}),
                          leaky + [network(True)] * 7, 16, train)
    assert "(9/16 networks; the universal one in 7/16)" in mixed.detail["reason"], mixed.detail["reason"]
    # where the reference has the cube in 51/128, 4/16 is not significantly fewer (and 0/16 would be)
    kept = _scaffold_row(_rate_row("flipflop_scaffold", "flipflop", 4, 16, 51, 128, "the scaffold holds", {}),
                         passed, 16, train)
    assert kept.verdict == "pass" and kept.detail["reason"].startswith(
        "learns the task with the universal scaffold: 4/16 networks, the most common kind being memories held on a "
        "3-dimensional continuum"), kept.detail["reason"]
