"""``universality check`` against the stored reference populations, with README's worked example."""

import json
import math
from pathlib import Path

from universality.cli import main
from universality.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "reference_results" / "run"


def test_the_worked_example_is_placed_among_every_reference_architecture(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # README runs it from the repository root: `examples` is importable
    out = tmp_path / "check"
    code = main(["check", "examples.leaky_rnn:LeakyRNN", "--tasks", "flipflop", "--reference", str(REFERENCE),
                 "--out", str(out)])
    printed = capsys.readouterr().out
    # The leaky rate network learns the flip-flop (both quick-preset members pass) and holds
    # the memory cube, the scaffold the paper finds universal: the claim holds and check exits 0.
    assert code == 0 and "flipflop_scaffold" in printed
    verdicts = json.loads((out / "report" / "check.json").read_text())
    scaffold = next(v for v in verdicts if v["check"] == "flipflop_scaffold")
    assert scaffold["passed"] is True and scaffold["value"] == 1.0
    assert scaffold["detail"]["passed_members"] == scaffold["detail"]["members"] >= 2
    archs = {r.arch for r in RunStore(REFERENCE).members() if r.task == "flipflop"}
    placement = [v for v in verdicts if v["passed"] is None]
    assert {v["check"].split(":")[0] for v in placement} == {"geometry (SVCCA)", "topology (scaffold)"}
    for v in placement:
        distances = v["detail"]["mean_distance_by_arch"]
        assert set(distances) == archs and all(math.isfinite(d) for d in distances.values())
