"""Storage writes of one trained trial: Optuna's one call per item against our grouped writes.

Run: python benchmarks/storage_writes.py [--trials 20] [--storage URL ...]

A trained trial of the digits study writes about 20 parameters, 30 user attributes, 4
constraints and 6 artifact records. Each repetition makes two running trials in one study and
writes that set into each, once with Optuna's public calls (``trial.suggest_*``,
``trial.set_user_attr``, ``trial.set_constraint``, one ``set_trial_system_attr`` per artifact
record) and once with ``hasnas_optuna._trial_writes`` (what the objective uses), in alternating
order; the ratio is the median over repetitions of (Optuna's seconds / ours). Storages: a SQLite
file in WAL mode (what ``hasnas search`` opens), and PostgreSQL and MySQL/MariaDB when a URL for
them is given (the development machines run both on localhost).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial

from benchmarks._common import Paired
from hasnas_optuna._trial_writes import set_constraints, set_user_attrs, write_relative_params, write_system_attrs
from hasnas_optuna.storage import open_storage

PARAMS: dict[str, BaseDistribution] = {
    **{f"arch/edge{i}": CategoricalDistribution(["zero", "skip", "conv1x1", "conv3x3", "avgpool3x3"])
       for i in range(12)},
    **{f"arch/knob{i}": CategoricalDistribution([4, 8, 16]) for i in range(4)},
    **{f"snn/x{i}": FloatDistribution(0.1, 2.0) for i in range(4)},
}
USER_ATTRS = {f"cost/a{i}": 1.5 * i for i in range(24)} | {
    "architecture": {"cells": ["0302 0030 0003 0000"] * 2, "channels": 8},
    "history": [{"epoch": e, "train_loss": 0.5 / (e + 1), "val_acc": 0.9} for e in range(10)],
    "status": "trained", "trained": True, "summary": "C=8 T=4", "spike_rates": {"stem": 0.2, "fc_out": 0.1},
}
CONSTRAINTS = {"memory": -0.5, "area": -0.2, "latency": -0.9, "energy": 0.1}
ARTIFACT_RECORDS = {f"artifacts:{uuid.UUID(int=i)}": json.dumps({"filename": f"f{i}.json"}) for i in range(6)}


class _Joint(BaseSampler):
    """Chooses every parameter at once (relative sampling), as NSGA-II and our sampler do."""

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(PARAMS)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {name: dist.choices[trial.number % len(dist.choices)] if isinstance(dist, CategoricalDistribution)
                else 0.5 for name, dist in search_space.items()}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        raise AssertionError("every parameter comes from the joint sample")


def _suggest(trial: optuna.Trial) -> None:
    for name, dist in PARAMS.items():
        if isinstance(dist, CategoricalDistribution):
            trial.suggest_categorical(name, dist.choices)  # type: ignore[arg-type]
        else:
            trial.suggest_float(name, dist.low, dist.high)  # type: ignore[attr-defined]


def write_like_optuna(trial: optuna.Trial) -> None:
    """One public call per item."""
    _suggest(trial)
    for key, value in USER_ATTRS.items():
        trial.set_user_attr(key, value)
    for key, value in CONSTRAINTS.items():
        trial.set_constraint(key, value)
    for key, value in ARTIFACT_RECORDS.items():
        trial.storage.set_trial_system_attr(trial._trial_id, key, value)


def write_grouped(trial: optuna.Trial) -> None:
    """What the objective does: grouped writes (hasnas_optuna/_trial_writes.py)."""
    write_relative_params(trial, PARAMS)
    _suggest(trial)  # reads the parameters back
    set_user_attrs(trial, USER_ATTRS)
    set_constraints(trial, CONSTRAINTS)
    write_system_attrs(trial.storage, trial._trial_id, ARTIFACT_RECORDS)


@dataclass
class WriteResult:
    """One storage: seconds per trial's writes, each way."""

    storage: str
    paired: Paired


def measure(url: str, *, trials: int) -> WriteResult:
    """``trials`` repetitions of both ways on ``url``, alternating; the study is deleted afterwards."""
    storage = open_storage(url)
    name = f"bench-writes-{uuid.uuid4().hex[:12]}"
    study = optuna.create_study(storage=storage, study_name=name, sampler=_Joint())
    optunas: list[float] = []
    ours: list[float] = []
    try:
        for r in range(trials + 1):  # the first round warms up connections and caches
            for fn, times in ((write_like_optuna, optunas), (write_grouped, ours))[:: 1 if r % 2 else -1]:
                trial = study.ask()
                start = time.perf_counter()
                fn(trial)
                took = time.perf_counter() - start
                study.tell(trial, 0.0)
                if r:
                    times.append(took)
    finally:
        optuna.delete_study(study_name=name, storage=storage)
    return WriteResult(url.split("://", 1)[0], Paired(optunas, ours))


def run(urls: list[str], *, trials: int) -> list[WriteResult]:
    """A SQLite file in WAL mode, then each server URL that answers."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results = []
    with tempfile.TemporaryDirectory(prefix="hasnas-writes-") as tmp:
        results.append(measure(f"sqlite:///{tmp}/writes.db", trials=trials))
    for url in urls:
        try:
            results.append(measure(url, trials=trials))
        except Exception as exc:  # a server that is not there: say so, measure the rest
            print(f"skipped {url}: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
    return results


def table(results: list[WriteResult]) -> str:
    """Markdown rows: milliseconds per trial's writes, each way, and the median ratio."""
    lines = ["| storage | Optuna, one call per item: ms per trial | grouped (ours): ms per trial | "
             "speed-up, median (min-max) |", "|---|---|---|---|"]
    for r in results:
        low, high = r.paired.spread
        lines.append(f"| {r.storage} | {statistics.median(r.paired.baseline) * 1e3:.1f} | "
                     f"{statistics.median(r.paired.candidate) * 1e3:.1f} | **{r.paired.ratio:.1f}x** "
                     f"({low:.1f}-{high:.1f}, {len(r.paired.ratios)} trials) |")
    return "\n".join(lines)


SERVERS = ["postgresql://postgres@127.0.0.1:5432/test", "mysql://root@127.0.0.1:3306/test"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="repetitions (default 20)")
    parser.add_argument("--storage", nargs="*", default=SERVERS,
                        help="database URLs besides the SQLite file (default: local PostgreSQL and MariaDB)")
    args = parser.parse_args(argv)
    print(f"{len(PARAMS)} parameters, {len(USER_ATTRS)} user attributes, {len(CONSTRAINTS)} constraints, "
          f"{len(ARTIFACT_RECORDS)} artifact records per trial")
    print(table(run(args.storage, trials=args.trials)))


if __name__ == "__main__":
    main()
