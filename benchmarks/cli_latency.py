"""How fast the read-only commands and a config error answer: wall time of fresh ``hasnas`` processes.

Run: python benchmarks/cli_latency.py [--repeats 5]

Each command runs ``--repeats`` times in a new process (as a user runs it, imports included) on a
small study made first; the median is printed next to the 2 s target. Nothing is timed in tests.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 2.0
STUDY = """[study]
name = "latency"
n_trials = 2
[budgets]
memory = 1
"""
"""Every network breaks the memory budget: the study fills in a second and trains nothing."""


def commands(folder: Path) -> dict[str, list[str]]:
    storage = f"sqlite:///{folder / 'latency.db'}"
    typo = folder / "typo.toml"
    typo.write_text(STUDY.replace("n_trials", "n_trails"))
    network = Path(__file__).resolve().parents[1] / "examples" / "vgg-small.json"
    return {
        "hasnas --version": ["--version"],
        "hasnas best --json": ["best", "--storage", storage, "--study-name", "latency", "--json"],
        "hasnas best (table)": ["best", "--storage", storage, "--study-name", "latency"],
        "hasnas cost NETWORK.json": ["cost", str(network)],
        "hasnas search with a misspelled config key": ["search", str(typo), "--storage", storage],
    }


def measure(repeats: int) -> dict[str, float]:
    """Median wall seconds per command, in fresh processes."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = folder / "study.toml"
        config.write_text(STUDY)
        subprocess.run([sys.executable, "-m", "hasnas_optuna.cli", "search", str(config), "--storage",
                        f"sqlite:///{folder / 'latency.db'}", "--quiet"], check=True, capture_output=True)
        times: dict[str, list[float]] = {name: [] for name in commands(folder)}
        for _ in range(repeats):
            for name, args in commands(folder).items():
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "hasnas_optuna.cli", *args], capture_output=True)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def table(medians: dict[str, float]) -> str:
    lines = ["| command | median wall time | target |", "|---|---|---|"]
    lines += [f"| `{name}` | {seconds:.2f} s | <= {TARGET_S:.0f} s{'' if seconds <= TARGET_S else ' (missed)'} |"
              for name, seconds in medians.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(table(measure(args.repeats)))


if __name__ == "__main__":
    main()
