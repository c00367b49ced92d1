"""``universality check`` against the stored reference populations, with README's worked example."""

import json
import math
from pathlib import Path

from universality.cli import main
from universality.run.catalog import RunStore
from universality.scaffold import SCAFFOLDS

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "reference_results" / "run"


def test_the_worked_example_passes_the_flipflop_claims_at_the_reference_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # README runs it from the repository root: `examples` is importable
    out = tmp_path / "check"
    code = main(["check", "examples.leaky_rnn:LeakyRNN", "--tasks", "flipflop", "--reference", str(REFERENCE),
                 "--out", str(out)])
    printed = capsys.readouterr().out
    rows = {r["claim"]: r for r in json.loads((out / "report" / "check.json").read_text())}
    # Trained like the reference (its preset by default: like for like), the leaky rate
    # network learns the flip-flop as often as the reference architectures and holds the
    # memory cube, the scaffold the paper finds universal.
    report = (out / "report" / "check.md").read_text()
    assert "Not like for like" not in report
    for name in ("trainability", "flipflop_scaffold"):
        assert rows[name]["verdict"] == "pass", (name, rows[name], printed)
    # Its topology sits among the reference networks': its own networks are each other's
    # nearest neighbours no more often than chance. With 16 networks the exact interval
    # (about +-0.18) cannot clear chance + 0.15, so that row may be inconclusive, never fail.
    topo = rows["topology_among_reference"]
    assert topo["verdict"] != "fail" and topo["value"] <= topo["detail"]["chance"] + 0.15, (topo, printed)
    assert topo["detail"]["p_value"] >= 0.01, (topo, printed)
    headline = [c.name for c in SCAFFOLDS["flipflop"].criteria if c.headline]
    assert all(rows[f"criterion {n}"]["verdict"] == "pass" for n in headline), printed
    assert all(r["verdict"] in ("pass", "fail", "inconclusive") and r["detail"].get("reason") for r in rows.values())
    assert code == (1 if any(r["verdict"] == "fail" for r in rows.values()) else
                    3 if any(r["verdict"] == "inconclusive" for r in rows.values()) else 0)
    archs = {r.arch for r in RunStore(REFERENCE).members() if r.task == "flipflop"}
    for name in ("geometry_own", "topology_among_reference"):
        distances = rows[name]["detail"]["mean_distance_by_arch"]
        assert set(distances) == archs and all(math.isfinite(d) for d in distances.values())
