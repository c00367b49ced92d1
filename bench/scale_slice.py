"""Scale or criterion? The reference's failing and inconclusive claims, re-measured on larger networks.

Train a slice of the reference's groups at a larger size (a preset TOML naming the tasks,
architectures and activations, e.g. ``hidden = [128]``, ``l2 = [1e-4]``) with
``universality run --preset SLICE.toml --out SLICE_DIR``, then::

    .venv/bin/python bench/scale_slice.py --reference reference_results/run --slice SLICE_DIR

prints, for every claim row that does not pass on the reference and is measured on the
slice, both verdicts (value, 95% interval, n), and for each scaffold task the rate of every
per-network criterion in each architecture x activation group on both populations. A
verdict that turns to pass at the larger size points to scale; one that stays, with the
same criterion failing at a similar rate, points to the criterion (or to a real failure of
the claim); the criteria rows tell which component moves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from universality.claims.rules import criteria_rates
from universality.report.report import collect
from universality.report.tables import number as fmt_number
from universality.run.catalog import MemberRow, RunStore
from universality.run.layout import RunLayout
from universality.scaffold import SCAFFOLDS


def claims_of(run: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The run's ``claims.json`` rows by (claim, group)."""
    rows = json.loads(RunLayout(run).claims_json.read_text())
    return {(r["claim"], r["group"]): r for r in rows}


def shown(row: dict[str, Any] | None) -> str:
    if row is None:
        return "not measured"
    return (f"{row['verdict'].upper()} {fmt_number(row['value'])} [{fmt_number(row['ci_low'])}, "
            f"{fmt_number(row['ci_high'])}] n={row['n']}")


def claim_lines(reference: Path, slice_: Path) -> list[str]:
    ref, new = claims_of(reference), claims_of(slice_)
    lines = ["| claim | group | reference | slice | verdict changed |", "|---|---|---|---|---|"]
    for key, row in ref.items():
        if row["verdict"] == "pass" or key not in new:
            continue
        changed = "yes" if new[key]["verdict"] != row["verdict"] else "no"
        lines.append(f"| {key[0]} | {key[1]} | {shown(row)} | {shown(new[key])} | {changed} |")
    return lines


def groups(rows: list[MemberRow], task: str) -> dict[str, list[MemberRow]]:
    out: dict[str, list[MemberRow]] = {}
    for r in rows:
        if r.task == task:
            out.setdefault(f"{r.arch}/{r.activation}", []).append(r)
    return out


def criteria_lines(reference: RunStore, slice_: RunStore) -> list[str]:
    (ref_rows, ref_scaffolds, _), (new_rows, new_scaffolds, tasks) = collect(reference), collect(slice_)
    lines: list[str] = []
    for task in tasks:
        names = [c.name for c in SCAFFOLDS[task].criteria]
        lines += ["", f"{task}: rate of each criterion over passed networks, reference -> slice "
                  "(n reference / n slice)", "", "| group | n | " + " | ".join(names) + " |",
                  "|---|---|" + "---|" * len(names)]
        ref_groups = groups(ref_rows, task)
        for group, members in sorted(groups(new_rows, task).items()):
            before = criteria_rates(task, ref_groups.get(group, []), ref_scaffolds).get("criteria", {})
            after = criteria_rates(task, members, new_scaffolds).get("criteria", {})
            n = f"{next(iter(before.values()))['n'] if before else 0} / {next(iter(after.values()))['n']}"
            cells = [f"{fmt_number(before[c]['rate']) if c in before else '-'} -> {fmt_number(after[c]['rate'])}"
                     for c in names]
            lines.append(f"| {group} | {n} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", default="reference_results/run", help="the reference run")
    parser.add_argument("--slice", required=True, help="the slice's run directory (trained and reported)")
    args = parser.parse_args(argv)
    reference, slice_ = Path(args.reference), Path(args.slice)
    for run in (reference, slice_):
        if not RunLayout(run).claims_json.is_file():
            parser.error(f"{run}: no report/claims.json (run `universality run` / `universality report` first)")
    print("\n".join(claim_lines(reference, slice_) + criteria_lines(RunStore(reference), RunStore(slice_))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
