"""``universality zoo``: several cells checked in turn, exported with provenance, one table."""

import json

import pytest
from test_check import CELLS  # WrappedGRU, Forgetful, Broken

from universality.cli import main
from universality.report.zoo import README_MARKERS
from universality.run.catalog import RunStore

ZOO_MODULE = CELLS + '''
ZOO = {"gru": "tiny_zoo:WrappedGRU", "forgetful": "tiny_zoo:Forgetful", "later": "tiny_zoo:WrappedGRU",
       "broken": "tiny_zoo:Broken"}
'''

PRESET = ('tasks = ["flipflop"]\narchs = ["gru"]\nactivations = ["tanh"]\nhidden = [16]\nseeds = 6\n'
          'steps = 400\nlr = 0.01\nfixed_point_candidates = 256\n')


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    (root / "tiny_zoo.py").write_text(ZOO_MODULE)
    (root / "preset.toml").write_text(PRESET)
    (root / "README.md").write_text(f"# Project\n\nBefore.\n\n{README_MARKERS[0]}\nold table\n{README_MARKERS[1]}\n"
                                    "\nAfter.\n")
    assert main(["run", "--preset", str(root / "preset.toml"), "--out", str(root / "reference"),
                 "--workers", "1"]) == 0
    return root


def zoo_cli(root, *args):
    return main(["zoo", "--zoo", "tiny_zoo:ZOO", "--preset", str(root / "preset.toml"), "--reference",
                 str(root / "reference"), "--work", str(root / "work"), "--out", str(root / "out"), "--readme",
                 str(root / "README.md"), "--lr-grid", "0.01", *args])


def test_the_zoo_checks_each_cell_exports_it_and_writes_one_table(zoo, monkeypatch, capsys):
    monkeypatch.chdir(zoo)
    assert zoo_cli(zoo, "--cells", "gru", "forgetful") == 0
    table = (zoo / "out" / "ZOO.md").read_text()
    rows = {name: json.loads((zoo / "out" / name / "run" / "report" / "check.json").read_text())
            for name in ("gru", "forgetful")}
    forgetful = {r["claim"]: r for r in rows["forgetful"]}
    assert forgetful["flipflop_scaffold"]["verdict"] == "fail"
    assert "| forgetful | flipflop | 0/6 at lr 0.01 (fail) | **FAIL**: cannot learn the task" in table
    assert "| later | flipflop | not checked yet |" in table
    for name, checked in rows.items():  # every claim of every cell, with its verdict and reason
        for r in checked:
            assert f"| {name} | flipflop | {r['claim']} |" in table and r["detail"]["reason"]
    assert "| flipflop | gru/tanh (reference) | " in table  # trainability beside the reference's
    # each cell exported as reference results are: the run (weights, scaffold numbers, report)
    # with its provenance
    record = json.loads((zoo / "out" / "gru" / "provenance.json").read_text())
    assert record["spec"] == "tiny_zoo:WrappedGRU" and record["lr_grid"] == [0.01]
    assert record["lr_chosen"] == {"flipflop": 0.01} and len(record["reference"]) == 16
    exported = RunStore(zoo / "out" / "gru" / "run")
    assert exported.shards() == ["flipflop-WrappedGRU-custom-h16"] and exported.damage() == []
    # the README's table is replaced between its markers, the rest kept
    readme = (zoo / "README.md").read_text()
    assert readme.startswith("# Project\n\nBefore.\n\n") and readme.endswith("\n\nAfter.\n")
    assert "old table" not in readme and "| forgetful | flipflop | 0/6 at lr 0.01 (fail) |" in readme


def test_the_zoo_resumes_skips_what_is_done_and_refuses_bad_input(zoo, monkeypatch, capsys):
    monkeypatch.chdir(zoo)
    if not (zoo / "out" / "gru" / "provenance.json").is_file():
        assert zoo_cli(zoo, "--cells", "gru") == 0
    before = (zoo / "out" / "gru" / "provenance.json").stat().st_mtime_ns
    capsys.readouterr()
    assert zoo_cli(zoo, "--cells", "gru") == 0  # same settings: skipped
    assert (zoo / "out" / "gru" / "provenance.json").stat().st_mtime_ns == before
    assert zoo_cli(zoo, "--cells", "gru", "--again") == 0  # --again: checked again (reusing its networks)
    assert (zoo / "out" / "gru" / "provenance.json").stat().st_mtime_ns > before
    capsys.readouterr()
    assert zoo_cli(zoo, "--list") == 0
    listing = capsys.readouterr().out
    assert "gru" in listing and "exported" in listing and "not checked" in listing
    capsys.readouterr()  # a cell that cannot be checked is named, the others still checked
    assert zoo_cli(zoo, "--cells", "broken", "later") == 2
    assert "1 cell(s) could not be checked (the others were): broken: " in capsys.readouterr().err
    assert (zoo / "out" / "later" / "provenance.json").is_file() and not (zoo / "out" / "broken").exists()
    assert zoo_cli(zoo, "--cells", "nosuchcell") == 2
    assert "no cells ['nosuchcell'] in the zoo" in capsys.readouterr().err
    assert main(["zoo", "--zoo", "no_such_zoo_module:ZOO"]) == 2
    assert "cannot load the zoo" in capsys.readouterr().err


def test_the_table_reads_each_task_scaffold_claim_by_its_name(tmp_path):
    # the cdi scaffold claim is cdi_line_attractor, not cdi_scaffold: the table finds it by
    # the task's registered claim
    from universality.claims import Claim
    from universality.report.zoo import readme_table
    from universality.run.layout import RunLayout
    from universality.scaffold import SCAFFOLDS

    rows = [Claim("trainability", "cdi", 0.5, "", "pass", 4, detail={"lr": 0.003, "reason": "trains"}),
            Claim(SCAFFOLDS["cdi"].claim, "cdi", 1.0, "", "pass", 2, detail={"reason": "a line attractor"}),
            Claim("topology_among_reference", "cdi", 0.1, "", "pass", 2, detail={"reason": "among"})]
    check_json = RunLayout(tmp_path / "cell" / "run").check_json
    check_json.parent.mkdir(parents=True)
    check_json.write_text(json.dumps([r.as_dict() for r in rows]))
    (tmp_path / "cell" / "provenance.json").write_text(json.dumps({"tasks": ["cdi"]}))
    table = "\n".join(readme_table({"cell": "m:C"}, tmp_path, ["cdi", "sine"]))
    assert "| cell | cdi | 2/4 at lr 0.003 (pass) | **PASS**: a line attractor | **PASS**: among |" in table
    assert "| cell | sine | not checked yet |" in table
