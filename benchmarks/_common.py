"""Shared benchmark helpers: the machine description and interleaved (A B B A ...) timing."""

from __future__ import annotations

import io
import os
import platform
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE_VARIABLE = "HASNAS_COST_MODEL_TREE"
"""Set to a folder holding another ``hasnas_optuna`` to run a benchmark's inner process on it."""


@contextmanager
def release_tree(revision: str) -> Iterator[str]:
    """A temporary folder with ``hasnas_optuna`` as it was at a git revision (``git archive``).

    A benchmark runs its inner process with ``HASNAS_COST_MODEL_TREE`` set to this folder to
    measure that release side by side with the working tree.
    """
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "hasnas_optuna"], check=True,
                             capture_output=True).stdout
    with tempfile.TemporaryDirectory() as tree:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        yield tree


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    """What ran the benchmark: CPU, cores this process may use, threads, library versions, date."""
    import numpy
    import optuna
    import snntorch
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": f"{usable} usable by this process of {os.cpu_count()} ({platform.machine()})",
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "versions": (f"torch {torch.__version__}, snntorch {snntorch.__version__}, optuna {optuna.__version__}, "
                     f"numpy {numpy.__version__}"),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


@dataclass
class Paired:
    """Interleaved timings of a baseline and a candidate (seconds per repetition)."""

    baseline: list[float]
    candidate: list[float]

    @property
    def ratios(self) -> list[float]:
        """Baseline time / candidate time, per repetition (> 1: the candidate is faster)."""
        return [b / c for b, c in zip(self.baseline, self.candidate, strict=True)]

    @property
    def ratio(self) -> float:
        """Median of the per-repetition ratios."""
        return statistics.median(self.ratios)

    @property
    def spread(self) -> tuple[float, float]:
        """Smallest and largest per-repetition ratio."""
        return min(self.ratios), max(self.ratios)


def interleave(baseline: Callable[[], object], candidate: Callable[[], object], *, repeats: int) -> Paired:
    """Time ``baseline`` and ``candidate`` alternately, A B B A A B ..., so drift and contention hit both."""
    times = interleave_all({"baseline": baseline, "candidate": candidate}, repeats=repeats)
    return Paired(times["baseline"], times["candidate"])


def interleave_all(runs: dict[str, Callable[[], object]], *, repeats: int) -> dict[str, list[float]]:
    """Seconds of each run per round; rounds alternate the order (A B C, C B A, A B C ...)."""
    out: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        order = list(runs.items())
        for name, fn in order if r % 2 == 0 else reversed(order):
            start = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - start)
    return out
