"""End-to-end: the built-in digits search until a feasible network reaches 95 % validation accuracy.

Run: python benchmarks/e2e_search.py [--target 0.95] [--max-seconds 240]

Runs ``hasnas search``'s default study (studies/digits.toml: NSGA-II inside the hardware-aware
sampler, four budgets, 3 epochs per network) through :func:`hasnas_optuna.study.run_search` on a
SQLite file with artifacts, one generation at a time, and stops at the first generation after which
a trained trial that meets every budget has validation accuracy >= ``--target``. The time is from
the search's start (imports already done) to the end of that trial.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@dataclass
class SearchResult:
    """When the target was reached (``None``: not within the time cap), and what the search did."""

    target: float
    seconds: float | None
    trial: int | None
    accuracy: float | None
    trials: int
    trained: int
    wall_s: float
    best: float


def run(*, target: float = 0.95, max_seconds: float = 240.0, seed: int = 0) -> SearchResult:
    """Run the digits search in generations until ``target`` or ``max_seconds``."""
    import dataclasses

    import optuna

    from hasnas_optuna.config import load_config
    from hasnas_optuna.study import run_search

    config = load_config(None)
    config = dataclasses.replace(config, seed=seed, timeout=None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="hasnas-e2e-") as tmp:
        storage = f"sqlite:///{tmp}/e2e.db"
        start_wall = datetime.now()
        start = time.perf_counter()
        n = 0
        hit = None
        while hit is None and time.perf_counter() - start < max_seconds and n < config.n_trials:
            n += config.population_size
            study = run_search(config, storage=storage, n_trials=n, out=io.StringIO())
            good = [t for t in study.get_trials(deepcopy=False)
                    if t.user_attrs.get("trained") and t.user_attrs.get("val_accuracy", 0.0) >= target
                    and all(v <= 0 for v in t.constraints.values()) and t.datetime_complete is not None]
            if good:
                hit = min(good, key=lambda t: t.datetime_complete)  # type: ignore[arg-type,return-value]
        wall = time.perf_counter() - start
        trials = study.get_trials(deepcopy=False)
        feasible = [t.user_attrs.get("val_accuracy", 0.0) for t in trials
                    if t.user_attrs.get("trained") and all(v <= 0 for v in t.constraints.values())]
        if hit is None or hit.datetime_complete is None:
            return SearchResult(target, None, None, None, len(trials), sum(bool(t.user_attrs.get("trained"))
                                                                           for t in trials), wall, max(feasible or [0]))
        return SearchResult(
            target, (hit.datetime_complete - start_wall).total_seconds(), hit.number,
            float(hit.user_attrs["val_accuracy"]), len(trials), sum(bool(t.user_attrs.get("trained")) for t in trials),
            wall, max(feasible or [0]),
        )


def table(result: SearchResult) -> str:
    """Markdown rows for the end-to-end search."""
    if result.seconds is None:
        reached = f"not reached within {result.wall_s:.0f} s (best feasible {result.best:.3f})"
    else:
        reached = (f"**{result.seconds:.1f} s**, trial {result.trial} (val. accuracy {result.accuracy:.3f}; "
                   f"{(result.trial or 0) + 1} trials started by then)")
    return "\n".join([
        "| digits search (built-in study, 3 epochs per network) | result |", "|---|---|",
        f"| first feasible network with val. accuracy >= {result.target:.2f} | {reached} |",
        f"| search run | {result.trials} trials ({result.trained} trained) in {result.wall_s:.1f} s; "
        f"best feasible val. accuracy {result.best:.3f} |",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.95, help="validation accuracy to reach (default 0.95)")
    parser.add_argument("--max-seconds", type=float, default=240.0, help="give up after this long (default 240)")
    parser.add_argument("--seed", type=int, default=0, help="study seed (default 0)")
    args = parser.parse_args(argv)
    if not 0 < args.target <= 1:
        parser.error(f"--target must be in (0, 1], got {args.target}")
    print(table(run(target=args.target, max_seconds=args.max_seconds, seed=args.seed)))


if __name__ == "__main__":
    main()
