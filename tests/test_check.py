"""``universality check``: a user cell held against a (small) reference run."""

import json
import textwrap

import pytest

from universality.cli import main

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

PRESET = ('tasks = ["flipflop"]\narchs = ["vanilla", "gru"]\nactivations = ["tanh"]\nhidden = [16]\nseeds = 2\n'
          'steps = 400\nlr = 0.01\nfixed_point_candidates = 256\n')


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    (root / "user_cells.py").write_text(CELLS)
    (root / "preset.toml").write_text(PRESET)
    assert main(["run", "--preset", str(root / "preset.toml"), "--out", str(root / "reference"),
                 "--workers", "1"]) == 0
    return root


def check(root, name, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(root))
    capsys.readouterr()
    code = main(["check", f"user_cells:{name}", "--preset", str(root / "preset.toml"),
                 "--reference", str(root / "reference"), "--out", str(root / name)])
    return code, capsys.readouterr()


def test_a_cell_with_the_universal_scaffold_passes(setup, monkeypatch, capsys):
    code, out = check(setup, "WrappedGRU", monkeypatch, capsys)
    assert code == 0, out.out + out.err
    verdicts = json.loads((setup / "WrappedGRU" / "report" / "check.json").read_text())
    scaffold = next(v for v in verdicts if v["check"] == "flipflop_scaffold")
    assert scaffold["passed"] and scaffold["value"] >= 0.9
    placement = [v for v in verdicts if v["passed"] is None]
    assert {v["check"].split(":")[0] for v in placement} == {"geometry (SVCCA)", "topology (scaffold)"}
    for v in placement:
        assert set(v["detail"]["mean_distance_by_arch"]) == {"vanilla", "gru"}
    assert (setup / "WrappedGRU" / "report" / "figures" / "flipflop_geometry_placement.png").is_file()


def test_a_cell_that_cannot_remember_fails_the_flipflop_scaffold(setup, monkeypatch, capsys):
    code, out = check(setup, "Forgetful", monkeypatch, capsys)
    assert code == 1
    assert "flipflop_scaffold" in out.out and "FAIL" in out.out


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
