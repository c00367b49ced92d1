"""Command line: ``universality run | train | analyze | report | check | zoo | reference | members | verify``."""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .cells import ACTIVATIONS, CELLS
from .claims import Claim
from .pipeline.config import PRESETS, Preset, load_preset
from .pipeline.driver import Event, analyze_run, open_run, record_analysis, run_preset, stale_analyses, train_shard
from .pipeline.stages import AnalysisConfig
from .report.check import CheckError, check_cell, exit_code, load_cell
from .report.reference import SUMMARY, make_reference
from .report.report import write_report
from .report.tables import CHECK_TERMINAL, CLAIMS_TERMINAL, PASS_RATES_TERMINAL, Column, claim_table, pass_rates, render
from .report.zoo import DEFAULT_ZOO, TABLE, exported, load_zoo, run_zoo
from .run.cache import analysis_rows
from .run.catalog import CatalogError, MemberRow, RunStore, catalog_problem, package_version
from .run.files import RunError
from .run.layout import BACKUP, CATALOG, RunLayout
from .run.lock import run_lock
from .tasks import TASKS
from .training import Progress, TrainConfig

log = logging.getLogger("universality")


class UsageError(Exception):
    """Bad command-line input: one line to stderr, exit code 2."""


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be positive and finite, got {text}")
        return value

    return parse


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be >= 0 and finite, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _add_runtime(p: argparse.ArgumentParser, threads: bool = True) -> None:
    """``--device`` and (optionally) ``--threads``, shared by the commands that compute."""
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    if threads:
        p.add_argument("--threads", type=_positive(int), default=1,
                       help="torch CPU threads (default 1: fastest for small recurrent ops)")


def _add_train(sub: Any) -> None:
    t = sub.add_parser("train", help="train a population of one architecture on one task")
    t.add_argument("--task", required=True, choices=sorted(TASKS))
    t.add_argument("--arch", required=True, choices=sorted(CELLS))
    t.add_argument("--activation", default="tanh", choices=sorted(ACTIVATIONS))
    t.add_argument("--hidden", type=_positive(int), default=32, help="hidden units (default 32)")
    t.add_argument("--l2", type=_non_negative_float, nargs="+", default=[0.0],
                   help="L2 coefficients; one member per (l2, seed) (default 0)")
    t.add_argument("--lr", type=_positive(float), default=Preset.lr, help=f"Adam learning rate (default {Preset.lr})")
    t.add_argument("--seeds", type=_positive(int), default=4, help="seeds per l2 value (default 4)")
    t.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed+1, ...")
    t.add_argument("--steps", type=_positive(int), default=TrainConfig.steps,
                   help=f"maximum training steps (default {TrainConfig.steps})")
    t.add_argument("--batch-size", type=_positive(int), default=TrainConfig.batch_size)
    _add_runtime(t)
    t.add_argument("--out", required=True, help="run directory (created, or an existing run to add to)")
    t.add_argument("--replace", action="store_true",
                   help="retrain a shard the run already holds and replace it (refused without this flag)")


def _add_run(sub: Any) -> None:
    r = sub.add_parser("run", help="train (and analyse) every population of a preset; resumable, repairs damage")
    r.add_argument("--preset", default="quick", help=f"one of {sorted(PRESETS)} or a TOML file (default quick)")
    r.add_argument("--out", default="runs/quick", help="run directory (default runs/quick)")
    _add_runtime(r)
    r.add_argument("--workers", type=_positive(int), default=None,
                   help="local worker processes, one thread each (default: one per CPU core on cpu, 1 on cuda)")
    r.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where shards train: local processes, or Ray tasks (pip install 'universality[ray]')")
    r.add_argument("--address", default=None,
                   help="Ray cluster: auto or HOST:PORT of its head (default: start a local cluster for the run)")
    r.add_argument("--cpus-per-shard", type=_positive(float), default=1.0,
                   help="Ray: CPUs (and torch threads) per shard task (default 1)")
    r.add_argument("--gpus-per-shard", type=_non_negative_float, default=0.0,
                   help="Ray: GPUs per shard task, fractions share a GPU (default 0; needs --device cuda)")
    r.add_argument("--train-only", action="store_true",
                   help="train the shards not yet trained and stop (analyse later with run, analyze or report)")


def _add_analyze(sub: Any) -> None:
    a = sub.add_parser("analyze", help="fixed points, states and geometry of every member of a run (resumable)")
    a.add_argument("run", help="run directory")
    a.add_argument("--json", action="store_true", help="print per-member results as JSON")
    a.add_argument("--candidates", type=_positive(int), default=AnalysisConfig.candidate_budget,
                   help="fixed-point candidates per member, split over the task's conditions "
                        f"(default {AnalysisConfig.candidate_budget})")
    _add_runtime(a)


def _add_check(sub: Any) -> None:
    c = sub.add_parser("check", help="hold a new cell (MODULE:ATTR) against the reference populations")
    c.add_argument("cell", help="MODULE:ATTR of a torch.nn.Module cell factory (see README)")
    c.add_argument("--preset", default="reference",
                   help="training settings (default: reference, like the reference populations; quick or a TOML "
                        "file are allowed, and the report says the comparison is not like for like)")
    c.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=None, help="tasks (default: the preset's)")
    c.add_argument("--reference", default="reference_results/run", help="reference run (default reference_results/run)")
    c.add_argument("--out", default=None, help="run directory for the new cell (default runs/check-<name>)")
    c.add_argument("--lr-grid", nargs="+", type=_positive(float), default=None, metavar="LR",
                   help="learning rates screened before the cell is judged (default: the preset's rate and a "
                        "factor of 3 either side); one rate: no screen")
    _add_runtime(c)


def _add_zoo(sub: Any) -> None:
    z = sub.add_parser("zoo", help="check every cell of a zoo (default examples/zoo) on every task; one table")
    z.add_argument("--cells", nargs="+", default=None, help="names of the zoo's cells to check (default: all)")
    z.add_argument("--zoo", default=DEFAULT_ZOO,
                   help=f"MODULE:ATTR of a dict name -> cell spec (default {DEFAULT_ZOO})")
    z.add_argument("--preset", default="reference", help="training settings (default: the reference's)")
    z.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=None, help="tasks (default: the preset's)")
    z.add_argument("--reference", default="reference_results/run", help="reference run (default reference_results/run)")
    z.add_argument("--work", default="runs/zoo", help="working directory, one check run per cell (default runs/zoo)")
    z.add_argument("--out", default="reference_results/zoo", help="export directory (default reference_results/zoo)")
    z.add_argument("--readme", default="README.md", help="README whose zoo table is rewritten (default README.md; "
                                                          "'' for none)")
    z.add_argument("--lr-grid", nargs="+", type=_positive(float), default=None, metavar="LR",
                   help="learning rates screened per cell and task (default: the preset's and a factor 3 either side)")
    z.add_argument("--again", action="store_true", help="check cells already exported with these settings again")
    z.add_argument("--list", action="store_true", help="list the zoo and what is exported, check nothing")
    _add_runtime(z)


def _add_reference(sub: Any) -> None:
    rf = sub.add_parser("reference", help="run the reference preset and export reference_results/")
    rf.add_argument("--out", default="reference_results", help="export directory (default reference_results)")
    rf.add_argument("--work", default="runs/reference", help="working run directory (default runs/reference)")
    _add_runtime(rf, threads=False)
    rf.add_argument("--workers", type=_positive(int), default=None)


def _add_listing(sub: Any) -> None:
    """The commands that read a run: ``report``, ``members``, ``verify``."""
    rp = sub.add_parser("report", help="evaluate the claims and write the report of an analysed run")
    rp.add_argument("run", help="run directory")
    m = sub.add_parser("members", help="list the members of a run")
    m.add_argument("run", help="run directory")
    m.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    v = sub.add_parser("verify", help="check every weights and analysis file of a run against its checksum")
    v.add_argument("run", help="run directory")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="universality", description=__doc__)
    parser.add_argument("--version", action="version", version=f"universality {package_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_train, _add_run, _add_analyze, _add_listing, _add_check, _add_zoo, _add_reference):
        add(sub)
    return parser


def _progress_bar(total: int | None, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not sys.stderr.isatty(), leave=False, unit="step")


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:
        raise UsageError(f"universality: device {name!r} is not available ({err})") from None
    return device


def _step_progress(total: int, desc: str) -> tuple[Progress, Any]:
    bar = _progress_bar(total, desc)
    last = [0]

    def progress(step: int, active: int, trained: int) -> None:
        bar.update(step - last[0])
        last[0] = step
        bar.set_postfix(active=active, trained=trained)

    return progress, bar


def cmd_train(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    device = _device(args.device)
    try:
        preset = Preset(name="train", tasks=(args.task,), archs=(args.arch,), activations=(args.activation,),
                        hidden=(args.hidden,), l2=tuple(args.l2), seeds=args.seeds, first_seed=args.first_seed,
                        lr=args.lr, steps=args.steps, batch_size=args.batch_size)
    except ValueError as err:
        raise UsageError(f"universality train: {err}") from None
    (shard,) = preset.shards()
    with run_lock(args.out, args.line):
        store = RunStore.create(args.out)
        old = store.members(shard.name) if shard.name in store.shards() else []
        if old and not args.replace:
            raise UsageError(f"universality train: {store.path} already holds shard {shard.name} ({len(old)} members, "
                             f"{sum(r.passed for r in old)} passed); train adds shards: pass --replace to retrain and "
                             "replace it, or choose another --out")
        progress, bar = _step_progress(args.steps, shard.name)
        try:
            pop, result = train_shard(store, preset, shard, device, progress)
        finally:
            bar.close()
    if old:
        print(f"replaced shard {shard.name}: its {len(old)} members ({sum(r.passed for r in old)} passed, seeds "
              f"{sorted({r.seed for r in old})}, l2 {sorted({r.l2 for r in old})}) by {len(pop)} new ones; "
              f"`universality analyze {store.path}` recomputes its analyses")
    print(f"{shard.name}: {result.status.count('trained')}/{len(pop)} members passed "
          f"in {result.seconds:.1f}s -> {store.path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    ray = args.backend == "ray"
    if not ray and (args.address or args.cpus_per_shard != 1.0 or args.gpus_per_shard):
        raise UsageError("universality run: --address, --cpus-per-shard and --gpus-per-shard need --backend ray")
    if ray and args.workers:
        raise UsageError("universality run: --workers is for --backend local (Ray runs as many shards as the "
                         "cluster's resources allow)")
    # the Ray driver need not have the workers' device (e.g. no GPU on the head node)
    device = _parse_device(args.device) if ray else _device(args.device)
    if args.gpus_per_shard and device.type == "cpu":
        raise UsageError("universality run: --gpus-per-shard needs --device cuda")
    try:
        preset = load_preset(args.preset)
    except ValueError as err:
        raise UsageError(f"universality run: {err}") from None
    existed = Path(args.out).exists()
    with run_lock(args.out, args.line):
        if ray:
            if existed:  # refused before any cluster starts; a new run's directory is made once it answers
                open_run(args.out, preset)
            return _run_on_ray(args, preset, device)
        return _run_locally(args, preset, device)


def _shards_bar(preset: Preset) -> tuple[Any, Any]:
    """A progress bar over the preset's shards and the driver's ``on_event`` that moves it."""
    bar = _progress_bar(len(preset.shards()), "shards")
    bar.unit = "shard"

    def on_event(event: Event) -> None:
        bar.set_description(str(event))
        if event.done:
            bar.update(1)

    return bar, on_event


def _run_locally(args: argparse.Namespace, preset: Preset, device: torch.device) -> int:
    """``run`` on this machine (in this process, or ``--workers`` local processes)."""
    bar, on_event = _shards_bar(preset)
    try:
        report = run_preset(preset, args.out, device, on_event, args.workers, train_only=args.train_only)
    finally:
        bar.close()
    return _summary(RunStore(args.out), report)


def _parse_device(name: str) -> torch.device:
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise UsageError(f"universality: bad device {name!r} ({err})") from None


def _run_on_ray(args: argparse.Namespace, preset: Preset, device: torch.device) -> int:
    """``run --backend ray``: one progress bar over the preset's shards; ``-v`` logs which
    node ran which job."""
    from .pipeline.backends import ClusterError, RayBackend

    bar, on_event = _shards_bar(preset)
    try:
        with RayBackend(args.address, args.cpus_per_shard, args.gpus_per_shard) as backend:
            report = run_preset(preset, args.out, device, on_event, backend=backend, train_only=args.train_only)
    except (ClusterError, RunError) as err:
        raise UsageError(f"universality run: {err}") from None
    finally:
        bar.close()
    return _summary(RunStore(args.out), report)


def _summary(store: RunStore, report: Path | None) -> int:
    print_pass_rates(store.members())
    print()
    if report is None:
        print(f"trained; nothing analysed (--train-only): rerun without it to analyse -> {store.path}")
        return 0
    print_claims(store.layout)
    print(f"\nreport: {report}")
    return 0


def print_claims(layout: RunLayout) -> None:
    """The verdict table of the run's ``claims.json``."""
    claims = [Claim.from_dict(c) for c in json.loads(layout.claims_json.read_text())]
    print("\n".join(claim_table(claims, CLAIMS_TERMINAL, "terminal")))


def cmd_report(args: argparse.Namespace) -> int:
    store = RunStore(args.run)
    damage = store.damage()
    if damage:
        raise RunError(f"{store.path}: {damage[0]}; the run directory is damaged (`universality verify {store.path}` "
                       "lists the damage; `universality run` with its preset repairs it)")
    stale = stale_analyses(store)
    if stale:
        raise RunError(f"{store.path}: the analysis of {stale[0]} is not current (computed for other weights or "
                       f"settings, or not yet); run `universality analyze {store.path}` first")
    path = write_report(store)
    print_claims(store.layout)
    print(f"\nreport: {path}")
    return 0


def cmd_members(args: argparse.Namespace) -> int:
    rows = RunStore(args.run).members()
    if args.json:
        print(json.dumps([{"member": r.member, "shard": r.shard, "idx": r.idx,
                           **{k: v for k, v in r.as_dict().items() if k != "metrics"}} for r in rows], indent=1))
        return 0
    print_members(rows)
    return 0


#: ``members``' table.
MEMBER_COLUMNS: tuple[Column[MemberRow], ...] = (
    Column("member", lambda r: str(r.member), 6, right=True),
    Column("task", lambda r: r.task, 9),
    Column("arch", lambda r: r.arch, 8),
    Column("act", lambda r: r.activation, 5),
    Column("hidden", lambda r: str(r.hidden), 6, right=True),
    Column("l2", lambda r: f"{r.l2:.1g}", 8, right=True),
    Column("seed", lambda r: str(r.seed), 5, right=True),
    Column("status", lambda r: r.status, 9),
    Column("loss", lambda r: "nan" if r.loss is None else f"{r.loss:.3g}", 10, right=True),
    Column("score", lambda r: "nan" if r.score is None else f"{r.score:.4f}", 8, right=True),
    Column("restarts", lambda r: str(r.restarts), 8, right=True),
    Column("passed", lambda r: str(r.passed)),
)

#: ``analyze``'s table over :func:`~universality.run.cache.analysis_rows`.
ANALYSIS_COLUMNS: tuple[Column[dict[str, Any]], ...] = (
    Column("member", lambda r: str(r["member"]), 6, right=True),
    Column("shard", lambda r: r["shard"], 28),
    Column("passed", lambda r: str(r["passed"]), 6),
    Column("points", lambda r: str(r["fixed_points"]["count"]), 6, right=True),
    Column("stable", lambda r: str(r["fixed_points"]["stable"]), 6, right=True),
    Column("indices", lambda r: ",".join(f"{k}:{v}" for k, v in sorted(r["fixed_points"]["index_counts"].items())),
           24),
    Column("max_residual", lambda r: f"{r['fixed_points']['max_residual']:.1e}"),
)


def print_members(rows: list[MemberRow]) -> None:
    print("\n".join(render(MEMBER_COLUMNS, rows, "terminal")))


def print_pass_rates(rows: list[MemberRow]) -> None:
    """Pass rate per task x arch x activation."""
    print("\n".join(render(PASS_RATES_TERMINAL, pass_rates(rows).items(), "terminal")))


def cmd_verify(args: argparse.Namespace) -> int:
    """List the catalog's damage (SQLite's integrity check) or every weights or analysis file
    of the run that is missing or altered; exit 1 if any."""
    path = Path(args.run)
    try:
        store = RunStore(path)  # a missing directory or a foreign one: one line, exit 2
        problem = store.integrity()
    except CatalogError as err:
        problem = catalog_problem(RunLayout(path).catalog) or str(err)
    if problem is not None:
        print(f"catalog {CATALOG}: {problem}")
        print(f"the catalog is damaged; a writing command (e.g. `universality run --out {path}` with its preset) "
              f"restores it from its backup {BACKUP}" if RunLayout(path).backup.exists() else
              "the catalog is damaged and has no backup: move the directory away and run again")
        return 1
    damage = store.damage()
    for d in damage:
        print(d)
    print(f"{store.checked_files()} files with checksums checked, {len(damage)} damaged" +
          (f"; `universality run --out {store.path}` with its preset retrains and recomputes them" if damage else ""))
    return 1 if damage else 0


def cmd_analyze(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    device = _device(args.device)
    if not Path(args.run).is_dir():
        raise RunError(f"{args.run}: no such run directory")
    bar = _progress_bar(None, "analyze")

    def on_event(event: Event) -> None:
        bar.set_description(str(event))
        bar.update(1)

    with run_lock(args.run, args.line):
        store = RunStore.recover(args.run)
        config = AnalysisConfig(candidate_budget=args.candidates)
        record_analysis(store, config)
        try:
            analyze_run(store, config, device, on_event)
        finally:
            bar.close()
    rows = analysis_rows(store)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("\n".join(render(ANALYSIS_COLUMNS, rows, "terminal")))
    return 0


def _preset_and_reference(command: str, args: argparse.Namespace) -> tuple[Preset, RunStore]:
    """``check``'s and ``zoo``'s preset and reference run; a bad one is a one-line refusal."""
    try:
        return load_preset(args.preset), RunStore(args.reference)
    except RunError as err:
        raise UsageError(f"universality {command}: no reference run ({err}); run `universality reference` "
                         "or pass --reference DIR") from None
    except ValueError as err:
        raise UsageError(f"universality {command}: {err}") from None


def cmd_check(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    device = _device(args.device)
    try:
        cell = load_cell(args.cell)
    except CheckError as err:
        raise UsageError(f"universality check: {err}") from None
    preset, reference = _preset_and_reference("check", args)
    tasks = tuple(args.tasks or preset.tasks)
    out = args.out or f"runs/check-{cell.arch}"
    try:
        with run_lock(out, args.line):
            rows = check_cell(cell, reference, preset, tasks, out, device, args.lr_grid)
    except CheckError as err:
        raise UsageError(f"universality check: {err}") from None
    print("\n".join(claim_table(rows, CHECK_TERMINAL, "terminal")))
    print(f"\nreport: {RunLayout(out).check_md}")
    return exit_code(rows)


def cmd_zoo(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    device = _device(args.device)
    try:
        zoo = load_zoo(args.zoo)
        unknown = sorted(set(args.cells or ()) - set(zoo))
        if unknown:
            raise CheckError(f"no cells {unknown} in the zoo; it has {sorted(zoo)}")
    except CheckError as err:
        raise UsageError(f"universality zoo: {err}") from None
    preset, reference = _preset_and_reference("zoo", args)
    out, readme = Path(args.out), Path(args.readme) if args.readme else None
    if args.list:
        cells = exported(zoo, out)
        for name, spec in zoo.items():
            state = f"exported ({cells[name][0]['date']})" if name in cells else "not checked"
            print(f"{name:20s} {spec:45s} {state}")
        return 0
    command = " ".join(["universality", "zoo", *(["--cells", *args.cells] if args.cells else []),
                        "--preset", args.preset, "--out", args.out])
    tasks = tuple(args.tasks or preset.tasks)
    try:
        run_zoo(zoo, args.cells or list(zoo), reference, preset, tasks, Path(args.work), out, device, command,
                args.lr_grid, args.again, readme)
    except CheckError as err:
        raise UsageError(f"universality zoo: {err}") from None
    print((out / TABLE).read_text())
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    command = " ".join(["universality", "reference", "--out", args.out, "--work", args.work, "--device", args.device,
                        *(["--workers", str(args.workers)] if args.workers else [])])
    device = _device(args.device)
    with run_lock(args.work, args.line):
        path = make_reference(command, args.out, args.work, device, args.workers)
    print((path / SUMMARY).read_text())
    return 0


COMMANDS = {"train": cmd_train, "run": cmd_run, "analyze": cmd_analyze, "report": cmd_report,
            "check": cmd_check, "zoo": cmd_zoo, "reference": cmd_reference, "members": cmd_members,
            "verify": cmd_verify}


def main(argv: Sequence[str] | None = None) -> int:
    command = "universality"
    try:
        args = build_parser().parse_args(argv)
        command = f"universality {args.command}"
        args.line = shlex.join(["universality", *(sys.argv[1:] if argv is None else argv)])
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        return COMMANDS[args.command](args)
    except UsageError as err:
        print(str(err).splitlines()[0], file=sys.stderr)
        return 2
    except (RunError, FileNotFoundError) as err:  # a missing, foreign, damaged or locked run: one line, exit 2
        print(f"{command}: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # everything written is complete (atomic writes): a rerun resumes
        print(f"{command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
