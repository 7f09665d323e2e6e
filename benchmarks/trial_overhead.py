"""Per-trial overhead of a real digits search: everything a trial costs besides training its network.

Run: python benchmarks/trial_overhead.py [--trials 4] [--epochs 10] [--profile] [--quick]

It runs the built-in digits study (``hasnas search``'s default, with ``[training] epochs`` set to
10) through :func:`hasnas_optuna.study.run_search` on a SQLite file with per-trial artifacts, as a
user would, and times, per trial, from outside the code it measures:

* training: the Lightning training loop, ``on_train_start`` to ``on_train_end`` (every epoch's
  training and validation batches);
* test: evaluating the test split once after training;
* Lightning set-up: the rest of ``train_architecture`` (module and Trainer construction, fit
  set-up and teardown);
* objective: the rest of ``HasnasObjective.__call__`` (costing, user attributes, artifacts);
* outside the objective: the rest of ``Study.optimize`` per trial (sampling, creating and finishing
  the trial in storage, the dashboard annotation and progress-line callbacks).

A warm-up search of one one-epoch trial runs first in the same process, so one-time costs
(imports, the first Trainer) are not counted per trial; they are reported separately, as the import
time of a fresh interpreter. ``--rollback-journal`` measures the same with SQLite's default journal
mode instead of the write-ahead log that ``hasnas search`` uses.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROFILED = (
    "save_trial_artifacts", "write_training_curve", "upload_artifact", "annotate_trial", "annotate_study",
    "study_note", "pareto_figure", "set_user_attr", "set_constraint", "_record_costs", "estimate_cost",
    "sample_relative", "_run_trial", "_tell", "get_trials", "create_new_trial", "set_trial_state_values",
    "gc.collect", "torch/serialization.py.*[(]save[)]", "trainer.py.*__init__", "_ProgressLine",
)
"""Functions of the per-trial overhead that ``--profile`` lists (regular expressions)."""
IMPORT_PROBE = "import time; t = time.perf_counter(); import hasnas_optuna.study; print(time.perf_counter() - t)"


def import_seconds() -> float:
    """Seconds a fresh interpreter spends importing the search (torch, Lightning, Optuna, ours)."""
    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


@dataclass
class TrialTimes:
    """Seconds per trial, by part (see the module docstring)."""

    training: list[float] = field(default_factory=list)
    test: list[float] = field(default_factory=list)
    train_architecture: list[float] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)
    optimize: float = 0.0

    @property
    def trials(self) -> int:
        """Trials run (objective calls)."""
        return len(self.objective)

    def per_trial(self) -> dict[str, float]:
        """Mean seconds per trial of each part; parts add up to ``total``."""
        n = self.trials
        training = sum(self.training) / n
        test = sum(self.test) / n
        lightning = (sum(self.train_architecture) - sum(self.training) - sum(self.test)) / n
        objective = (sum(self.objective) - sum(self.train_architecture)) / n
        total = self.optimize / n
        return {"training": training, "test": test, "lightning": lightning, "objective": objective,
                "outside": total - training - test - lightning - objective, "total": total}


def _instrument(times: TrialTimes) -> Callable[[], None]:
    """Wrap the search's own functions with timers; returns the function that undoes it."""
    import optuna
    import pytorch_lightning as pl

    from hasnas_optuna import objective as objective_module

    class Clock(pl.Callback):
        def __init__(self) -> None:
            self.marks: dict[str, float] = {}

        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.marks["train"] = time.perf_counter()

        def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            times.training.append(time.perf_counter() - self.marks["train"])

        def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.marks["test"] = time.perf_counter()

        def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            times.test.append(time.perf_counter() - self.marks["test"])

    original_train = objective_module.train_architecture
    original_call = objective_module.HasnasObjective.__call__
    original_optimize = optuna.Study.optimize

    def train(*args: Any, **kwargs: Any) -> Any:
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), Clock()]
        start = time.perf_counter()
        try:
            return original_train(*args, **kwargs)
        finally:
            times.train_architecture.append(time.perf_counter() - start)

    def call(self: Any, trial: Any) -> Any:
        start = time.perf_counter()
        try:
            return original_call(self, trial)
        finally:
            times.objective.append(time.perf_counter() - start)

    def optimize(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original_optimize(self, *args, **kwargs)
        finally:
            times.optimize += time.perf_counter() - start

    objective_module.train_architecture = train  # type: ignore[assignment]
    objective_module.HasnasObjective.__call__ = call  # type: ignore[method-assign]
    optuna.Study.optimize = optimize  # type: ignore[method-assign]

    def undo() -> None:
        objective_module.train_architecture = original_train
        objective_module.HasnasObjective.__call__ = original_call  # type: ignore[method-assign]
        optuna.Study.optimize = original_optimize  # type: ignore[method-assign]

    return undo


@dataclass
class OverheadResult:
    """Mean seconds per trial by part, the trials measured, and an optional profile."""

    parts: dict[str, float]
    trials: int
    epochs: int
    import_s: float
    profile: str = ""

    @property
    def overhead(self) -> float:
        """Seconds per trial outside training and test: sampling, costing, storage, Lightning set-up."""
        return self.parts["lightning"] + self.parts["objective"] + self.parts["outside"]

    @property
    def fraction(self) -> float:
        """:attr:`overhead` as a fraction of the whole trial."""
        return self.overhead / self.parts["total"]


def measure(*, trials: int = 4, epochs: int = 10, profile: bool = False,
            rollback_journal: bool = False) -> OverheadResult:
    """Warm up with a one-epoch trial, then time ``trials`` trials of the digits search.

    The storage is what ``hasnas search`` opens: a SQLite file in write-ahead-log mode with
    ``synchronous=NORMAL`` (:mod:`hasnas_optuna.storage`). ``rollback_journal`` uses a plain
    ``RDBStorage`` instead: SQLite's default mode, which syncs the disk at every commit.
    """
    import optuna

    from hasnas_optuna.config import load_config
    from hasnas_optuna.study import run_search

    base = load_config(None)
    config = dataclasses.replace(base, training=dataclasses.replace(base.training, epochs=epochs), timeout=None)
    warm = dataclasses.replace(base, training=dataclasses.replace(base.training, epochs=1), timeout=None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="hasnas-overhead-") as tmp:
        url = f"sqlite:///{tmp}/overhead.db"
        storage: str | optuna.storages.BaseStorage = optuna.storages.RDBStorage(url) if rollback_journal else url
        run_search(warm, storage=storage, n_trials=1, out=None)  # warm-up, not counted
        times = TrialTimes()
        undo = _instrument(times)
        profiler = cProfile.Profile() if profile else None
        try:
            if profiler is not None:
                profiler.enable()
            run_search(config, storage=storage, n_trials=1 + trials, out=io.StringIO())
        finally:
            if profiler is not None:
                profiler.disable()
            undo()
    text = ""
    if profiler is not None:
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(45)
        pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats("|".join(PROFILED))
        text = buffer.getvalue()
    return OverheadResult(times.per_trial(), times.trials, epochs, import_seconds(), text)


def table(result: OverheadResult) -> str:
    """Markdown rows: seconds per trial by part and the overhead's share of the trial."""
    p = result.parts
    total = p["total"]
    rows = [
        ("training loop (training + validation epochs)", p["training"]),
        ("test-split evaluation", p["test"]),
        ("Lightning set-up and teardown (module, Trainer, fit)", p["lightning"]),
        ("objective besides training (costing, user attributes, artifacts)", p["objective"]),
        ("outside the objective (sampling, trial storage, dashboard annotation, progress line)", p["outside"]),
    ]
    lines = ["| part of a trial | s per trial | share |", "|---|---|---|"]
    lines += [f"| {name} | {value:.3f} | {value / total:.1%} |" for name, value in rows]
    lines.append(f"| **whole trial** | {total:.3f} | 100 % |")
    lines.append(f"| **overhead** (set-up, objective, outside; excludes training and test) | {result.overhead:.3f} | "
                 f"**{result.fraction:.1%}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="trials timed after the warm-up (default 4)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial (default 10)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the timed trials")
    parser.add_argument("--rollback-journal", action="store_true",
                        help="SQLite's default rollback journal instead of the WAL mode hasnas uses")
    parser.add_argument("--quick", action="store_true", help="1 trial of 2 epochs (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs = 1, 2
    if args.trials < 1 or args.epochs < 1:
        parser.error("--trials and --epochs must be >= 1")
    result = measure(trials=args.trials, epochs=args.epochs, profile=args.profile,
                     rollback_journal=args.rollback_journal)
    print(f"{result.trials} trials of {result.epochs} epochs; importing the search in a fresh process: "
          f"{result.import_s:.2f} s (once per process)")
    print(table(result))
    if result.profile:
        print(result.profile)


if __name__ == "__main__":
    main()
