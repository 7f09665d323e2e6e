"""The ``hasnas`` command line.

Every error a user can cause is reported as one line on stderr with exit status 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import sys
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from hasnas_optuna._errors import ConfigError, HasnasError
from hasnas_optuna.storage import DEFAULT_STORAGE

if TYPE_CHECKING:
    from hasnas_optuna.cim import Network

__all__ = ["main"]


def _load_cost_input(path: str) -> Network:
    """A NETWORK.json layer list, an architecture JSON, or one row of ``hasnas best --json``."""
    from hasnas_optuna.architecture import Architecture
    from hasnas_optuna.cim import Network, load_network

    network = load_network(path, allow_unknown=True)
    if isinstance(network, Network):
        return network
    data = network
    if isinstance(data, list) and data and isinstance(data[0], dict):  # `hasnas best --json` output
        data = data[0]
    if isinstance(data, dict) and isinstance(data.get("architecture"), dict):
        data = data["architecture"]
    if isinstance(data, dict) and "cell_a" in data:
        return Architecture.from_dict(data).to_network()
    return Network.from_dict(data)  # raises the layer-list error that names the problem


def _cost(args: argparse.Namespace) -> int:
    from hasnas_optuna.cim import Budgets, estimate_cost, load_hardware

    network = _load_cost_input(args.network)
    hardware = load_hardware(args.hardware)
    if args.spike_rate is not None:
        hardware = hardware.replace(default_spike_rate=args.spike_rate)
    report = estimate_cost(network, hardware, timesteps=args.timesteps)
    given = {"memory": args.max_params, "area": args.max_area, "latency": args.max_latency,
             "energy": args.max_energy}
    base = Budgets.hasnas_paper() if args.paper_budgets else Budgets()
    budgets = Budgets({**base, **{name: limit for name, limit in given.items() if limit is not None}})
    failed = any(slack > 0 for _, _, _, slack in budgets.check(report))
    if args.json:
        out = report.to_dict()
        if budgets.items():
            out["budgets"] = {
                name: {"cost": cost, "budget": limit, "slack": slack, "pass": slack <= 0}
                for name, cost, limit, slack in budgets.check(report)
            }
        print(json.dumps(out, indent=2))
    else:
        print(report.format_table(budgets if budgets.items() else None))
    return 1 if failed else 0


def _search(args: argparse.Namespace) -> int:
    from hasnas_optuna.config import load_config
    from hasnas_optuna.storage import sqlite_path

    if args.storage.startswith("sqlite:") and sqlite_path(args.storage) is None:
        raise ConfigError(f"storage {args.storage!r} is an in-memory database: the search would be lost when it "
                          "ends; give a file (sqlite:///NAME.db)")
    config = load_config(args.config)  # a bad config answers before torch and Lightning are imported
    from hasnas_optuna.study import best_rows, format_best, next_steps, run_search
    worker = args.command == "worker"
    if args.seed is not None and not worker:
        config = dataclasses.replace(config, seed=args.seed)
    if args.training_progress:
        config = dataclasses.replace(config, training=dataclasses.replace(config.training, progress_bar=True))
    sampler_seed = None
    if worker:  # workers sharing a study must not all propose the same networks, but must share its data split
        sampler_seed = args.seed if args.seed is not None else (
            config.seed * 1_000_003 + os.getpid() + zlib.crc32(socket.gethostname().encode())) % 2**31
    out = None if args.quiet else sys.stdout
    if worker and out is not None:
        print(f"worker {socket.gethostname()}:{os.getpid()}, sampler seed {sampler_seed}", file=out)
    study = run_search(
        config, storage=args.storage, study_name=args.study_name, n_trials=None if worker else args.n_trials,
        worker_trials=args.n_trials if worker else None, timeout=args.timeout, artifact_dir=args.artifact_dir,
        out=out, sampler_seed=sampler_seed,
    )
    if not args.quiet:
        print()
    print(format_best(study, best_rows(study)))
    print(next_steps(study.study_name, args.storage))
    return 0


def _best(args: argparse.Namespace) -> int:
    from hasnas_optuna.results import best_rows, format_best, rows_json
    from hasnas_optuna.storage import load_study_for_reading

    study = load_study_for_reading(args.storage, args.study_name)
    rows = best_rows(study, limit=args.limit)
    print(rows_json(rows) if args.json else format_best(study, rows, storage=args.storage, wide=args.wide))
    return 0


def _artifact_store(storage: str, artifact_dir: str | None, study: Any, *, required: bool) -> Any:
    """The study's artifact store if its folder exists; ``None`` (or, if ``required``, an error) if not."""
    from hasnas_optuna.artifacts import artifact_dir_for, open_artifact_store

    try:
        folder = artifact_dir_for(storage, artifact_dir, study=study)
    except ConfigError:
        if required:
            raise
        return None
    if not folder.is_dir():
        if required or artifact_dir is not None:
            raise ConfigError(f"artifact folder {str(folder)!r} does not exist; the search keeps trial artifacts "
                              "there (give the right one with --artifact-dir DIR)")
        return None
    return open_artifact_store(folder, create=False)


def _dashboard(args: argparse.Namespace) -> int:
    from hasnas_optuna.dashboard import serve_dashboard

    serve_dashboard(args.storage, study_name=args.study_name, artifact_dir=args.artifact_dir, port=args.port,
                    annotate=not args.no_annotate, allow_writes=args.allow_writes)
    return 0


def _report(args: argparse.Namespace) -> int:
    from hasnas_optuna.report import write_report
    from hasnas_optuna.storage import load_study_for_reading

    study = load_study_for_reading(args.storage, args.study_name)
    store = _artifact_store(args.storage, args.artifact_dir, study, required=False)
    written = write_report(study, args.out, artifact_store=store, storage=args.storage)
    figures = ", ".join(path.name for key, path in written.items() if key != "html")
    print(f"wrote {written['html']} (figures: {figures})")
    return 0


def _export(args: argparse.Namespace) -> int:
    from hasnas_optuna.export import export_trial
    from hasnas_optuna.storage import load_study_for_reading

    study = load_study_for_reading(args.storage, args.study_name)
    store = _artifact_store(args.storage, args.artifact_dir, study, required=True)
    written = export_trial(study, args.out, artifact_store=store, trial_number=args.trial)
    trial = json.loads(written["trial"].read_text(encoding="utf-8"))["trial"]
    print(f"trial {trial} exported to {args.out}: " + ", ".join(path.name for path in written.values()))
    return 0


def _checked(kind: Callable[[str], float], allowed: Callable[[float], bool], rule: str) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses with ``kind`` and names the rule a bad value breaks."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not allowed(value):
            raise argparse.ArgumentTypeError(f"{text!r} {rule}")
        return value

    return parse


_positive_int = _checked(int, lambda v: v >= 1, "must be >= 1")
_non_negative_int = _checked(int, lambda v: v >= 0, "must be >= 0")
_rate = _checked(float, lambda v: 0.0 <= v <= 1.0, "is out of range; a spike rate is in [0, 1]")
_budget = _checked(float, lambda v: v > 0, "must be > 0")
_port = _checked(int, lambda v: 0 <= v <= 65535, "is not a port number (0..65535; 0 picks a free port)")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2), like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _run_options(parser: argparse.ArgumentParser, *, seed_help: str = "sampler, data split and training seed") -> None:
    """Arguments ``search`` and ``worker`` share."""
    parser.add_argument("config", nargs="?", metavar="CONFIG", help="study TOML file (default: digits)")
    parser.add_argument("--study-name", metavar="NAME", help="study name (default: the config's)")
    parser.add_argument("--timeout", type=_budget, metavar="S", help="stop after S seconds (default: the config's)")
    parser.add_argument("--seed", type=_non_negative_int, metavar="S", help=seed_help)
    parser.add_argument("--quiet", action="store_true",
                        help="no line per trial; print only the table of best trials at the end")
    parser.add_argument("--training-progress", action="store_true",
                        help="show Lightning's progress bar while each trial trains")
    parser.add_argument("--artifact-dir", metavar="DIR",
                        help="where trained trials keep drawings, costs, curves and weights "
                        "(default: <db>-artifacts/ beside a SQLite or journal file)")


def _stored_study(parser: argparse.ArgumentParser, *, artifacts: bool = True) -> None:
    """The ``--storage URL --study-name NAME [--artifact-dir DIR]`` of commands reading a study."""
    parser.add_argument("--storage", required=True, metavar="URL", help="Optuna storage URL")
    parser.add_argument("--study-name", required=True, metavar="NAME", help="study name")
    if artifacts:
        parser.add_argument("--artifact-dir", metavar="DIR",
                            help="trial artifacts (default: NAME-artifacts beside a sqlite:///NAME.db file)")


def _version() -> str:
    """The installed distribution's version (the package's own when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hasnas-optuna")
    except PackageNotFoundError:
        from hasnas_optuna import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``hasnas`` (one sub-command per job)."""
    parser = _Parser(
        prog="hasnas", description="Hardware-aware spiking neural architecture search on Optuna."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cost = sub.add_parser(
        "cost", help="cost a network on a compute-in-memory chip",
        description="Memory, area, latency and energy of a network (NETWORK.json layer list) on a "
        "CIM chip, with a per-layer breakdown. Exit status: 0, or 1 when a given budget is exceeded, "
        "or 2 for bad input.",
    )
    cost.add_argument("network", metavar="NETWORK.json",
                      help="layer-list network, or an architecture JSON written by the search")
    cost.add_argument(
        "--hardware", default="neurosim-22nm", metavar="PRESET_OR_FILE",
        help="preset name (neurosim-22nm, neurosim-32nm, neurosim-65nm, spikesim-65nm) or a .toml file "
        "(default: %(default)s)",
    )
    cost.add_argument("--timesteps", type=_positive_int, metavar="T",
                      help="timesteps (default: the network file's 'timesteps')")
    cost.add_argument("--spike-rate", type=_rate, metavar="R",
                      help="input spike rate of layers that state none (default: the preset's)")
    cost.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cost.add_argument("--max-params", type=_budget, metavar="N", help="memory budget, parameters")
    cost.add_argument("--max-area", type=_budget, metavar="MM2", help="area budget, mm^2")
    cost.add_argument("--max-latency", type=_budget, metavar="MS", help="latency budget, ms")
    cost.add_argument("--max-energy", type=_budget, metavar="UJ", help="energy budget, uJ")
    cost.add_argument("--paper-budgets", action="store_true",
                      help="HASNAS's budgets: 4e6 parameters, 100 mm^2, 400 ms, 120 uJ "
                      "(a --max-* flag given with it replaces that one budget)")
    cost.set_defaults(handler=_cost)

    search = sub.add_parser(
        "search", help="run (or resume) a hardware-aware search",
        description="Search spiking networks that meet a chip's budgets. Without CONFIG it runs the "
        "embedded digits study (studies/digits.toml). Rerunning with the same study name resumes. Ctrl-C "
        "stops cleanly: the running trial is marked interrupted and runs again on resume.",
    )
    search.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                        help="Optuna storage: database URL or journal file (default: %(default)s)")
    search.add_argument("--n-trials", type=_positive_int, metavar="N",
                        help="the total of finished trials the study should hold, those of earlier runs "
                        "included (not N more, as Optuna's n_trials is); default: the config's n_trials")
    _run_options(search)
    search.set_defaults(handler=_search)

    worker = sub.add_parser(
        "worker", help="join a study as one of many workers on a shared storage",
        description="Run trials of a study on a shared storage (PostgreSQL, MySQL/MariaDB, a journal file on a "
        "shared disk, Redis) next to other workers, each with its own hardware-aware sampler. Start as many "
        "as you like, on as many machines; each stops when the study holds the config's n_trials. A killed "
        "worker's trial is failed after two heartbeat intervals and trained again by another worker "
        "(database storages). See docs/distributed.md.",
    )
    worker.add_argument("--storage", required=True, metavar="URL",
                        help="shared storage: postgresql://..., mysql://..., journal:///PATH, redis://...")
    worker.add_argument("--n-trials", type=_positive_int, metavar="N",
                        help="trials this worker runs (default: until the study holds the config's n_trials)")
    _run_options(worker, seed_help="this worker's sampler seed (default: derived from the config's seed, host and "
                 "process id); the data split and training keep the config's seed, as in every other worker")
    worker.set_defaults(handler=_search)

    best = sub.add_parser("best", help="print the best feasible trials of a study")
    _stored_study(best, artifacts=False)
    best.add_argument("--limit", type=_positive_int, default=10, metavar="N", help="rows (default: %(default)s)")
    best.add_argument("--json", action="store_true", help="print JSON instead of a table")
    best.add_argument("--wide", action="store_true", help="whole architecture summaries (cut to 100 columns otherwise)")
    best.set_defaults(handler=_best)

    dashboard = sub.add_parser(
        "dashboard", help="open optuna-dashboard with costs, feasibility and artifacts",
        description="Serve optuna-dashboard on 127.0.0.1 for a storage, with the trials' artifacts, cost, slack "
        "and feasible columns, a constraint-aware Pareto plot and a note per HASNAS study. Ctrl-C stops it.",
    )
    dashboard.add_argument("--storage", required=True, metavar="URL", help="Optuna storage URL (or journal file)")
    dashboard.add_argument("--study-name", metavar="NAME", help="open this study (default: the list of studies)")
    dashboard.add_argument("--artifact-dir", metavar="DIR",
                           help="trial artifacts (default: NAME-artifacts beside a sqlite:///NAME.db file)")
    dashboard.add_argument("--port", type=_port, default=8080, metavar="P", help="port (default: %(default)s)")
    dashboard.add_argument("--no-annotate", action="store_true",
                           help="do not (re)write the studies' notes and Pareto plots before serving")
    dashboard.add_argument("--allow-writes", action="store_true",
                           help="let the browser change studies (notes, deletes); it then needs the token in the "
                           "printed address (default: read-only)")
    dashboard.set_defaults(handler=_dashboard)

    report = sub.add_parser(
        "report", help="write an HTML report with figures for a study",
        description="Write DIR/report.html (self-contained) and PNG figures: Pareto front feasible vs infeasible, "
        "each cost against its budget, the best feasible network's per-layer costs, and search progress.",
    )
    _stored_study(report)
    report.add_argument("--out", required=True, metavar="DIR", help="output folder (made if missing)")
    report.set_defaults(handler=_report)

    export = sub.add_parser(
        "export", help="export a trained network: architecture, weights, costs and a NIR graph",
        description="Write DIR/architecture.json, weights.pt, cost_report.json, network.nir (Neuromorphic "
        "Intermediate Representation) and trial.json for one trained trial (default: the best feasible one).",
    )
    _stored_study(export)
    export.add_argument("--trial", type=_non_negative_int, metavar="N",
                        help="trial number (default: the best feasible trained trial)")
    export.add_argument("--out", required=True, metavar="DIR", help="output folder (made if missing)")
    export.set_defaults(handler=_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hasnas`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except HasnasError as exc:
        print(f"hasnas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        done = ("; the running trial is marked interrupted and runs again when you resume: run the same "
                "command again") if args.command in ("search", "worker") else ""
        print(f"hasnas {args.command}: interrupted{done}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
