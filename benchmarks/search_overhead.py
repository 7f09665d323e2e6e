"""Search-side speed: sampler overhead per trial, and training-free scoring against training.

Run: python benchmarks/search_overhead.py [--quick]

Sampler overhead: the digits study's space, budgets and NSGA-II settings; an objective that only
suggests the architecture (no training), so a trial's time is the sampler's and Optuna's. Our
hardware-aware sampler (which decodes, costs and deduplicates every proposal) against the plain
NSGA-II it wraps, each on a fresh in-memory study of ``--trials`` trials, interleaved A B B A;
the ratio is the median of (ours / plain) per pair.

Training-free scoring: ``--candidates`` feasible digits candidates drawn by the hardware-aware
sampler, each scored by SAHD on one 128-image batch (what ``[study] fitness = "sahd"`` does per
candidate, without the storage of a scoring study), against training the first ``--trained`` of
them for 10 epochs with the search's own ``train_architecture``. The ratio is (mean seconds to
train one) / (mean seconds to score one), i.e. how many candidates training-free mode ranks in the
time one trained trial takes. The papers' search-time speed-ups (paper.md section 7) are printed
next to it; they compare whole searches on GPUs and CIFAR, not one candidate on a CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import optuna

from benchmarks._common import Paired, interleave
from hasnas_optuna.config import StudyConfig, load_config
from hasnas_optuna.search_space import suggest_architecture
from hasnas_optuna.study import make_sampler

PAPER_SPEEDUPS = [
    ("HASNAS v1 (abstract)", "up to 11x faster search than the state of the art"),
    ("NeuroNAS v2/v3 (abstract)", "up to 6.6x faster search"),
    ("SpikeNAS v1-v3", "4.4x faster search (CIFAR-100, RTX 6000 Ada)"),
    ("SpikeNAS v4", "29x / 117x / 3.7x faster search (CIFAR-10 / CIFAR-100 / TinyImageNet, RTX A6000)"),
]


def _sampling_study(config: StudyConfig, hardware_aware: bool, trials: int) -> None:
    sampler = make_sampler(config, hardware_aware=hardware_aware)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    space = config.space

    def objective(trial: optuna.Trial) -> float:
        arch = suggest_architecture(trial, space)
        return (trial.number * 7919 % 101) / 100 + arch.channels * 1e-3  # a spread of fake accuracies

    study.optimize(objective, n_trials=trials)


def sampler_overhead(*, trials: int, repeats: int) -> Paired:
    """Seconds per study of ``trials`` trials: plain NSGA-II (baseline) and ours (candidate)."""
    config = load_config(None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _sampling_study(config, True, 5)  # warm-up: imports, cost-model tables
    return interleave(lambda: _sampling_study(config, False, trials), lambda: _sampling_study(config, True, trials),
                      repeats=repeats)


@dataclass
class ScoringResult:
    """Mean seconds to score one candidate and to train one, and how many of each."""

    score_s: float
    train_s: float
    scored: int
    trained: int
    epochs: int

    @property
    def ratio(self) -> float:
        """Candidates scored in the time one is trained."""
        return self.train_s / self.score_s


def scoring_vs_training(*, candidates: int, trained: int, epochs: int = 10) -> ScoringResult:
    """Score ``candidates`` digits candidates training-free, train the first ``trained`` of them."""
    from hasnas_optuna.data import DigitsDataModule
    from hasnas_optuna.fitness import score_architecture
    from hasnas_optuna.search_space import architecture_from_params
    from hasnas_optuna.training import train_architecture

    config = load_config(None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = make_sampler(config, hardware_aware=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    archs = []
    for _ in range(candidates):
        trial = study.ask()
        archs.append(suggest_architecture(trial, config.space))
        study.tell(trial, 0.0)
    assert all(architecture_from_params(t.params, config.space) == a for t, a in zip(study.trials, archs, strict=True))
    datamodule = DigitsDataModule(batch_size=config.dataset.batch_size, seed=config.seed)
    images = datamodule.sample_batch(config.score_batch)
    score_architecture(archs[0], images)  # warm-up
    start = time.perf_counter()
    for arch in archs:
        score_architecture(arch, images, fitness="sahd", seed=config.seed)
    score_s = (time.perf_counter() - start) / len(archs)
    train_architecture(archs[0], datamodule, epochs=1, test=False)  # warm-up: Lightning's first fit
    times = []
    for arch in archs[:trained]:
        start = time.perf_counter()
        train_architecture(arch, datamodule, epochs=epochs, lr=config.training.lr, test=False)
        times.append(time.perf_counter() - start)
    return ScoringResult(score_s, statistics.mean(times), len(archs), len(times), epochs)


def sampler_table(paired: Paired, trials: int) -> str:
    """Markdown rows for the sampler overhead."""
    plain = statistics.median(paired.baseline) / trials * 1e3
    ours = statistics.median(paired.candidate) / trials * 1e3
    slowdowns = [c / b for b, c in zip(paired.baseline, paired.candidate, strict=True)]
    return "\n".join([
        "| sampler (digits space and budgets, no training) | ms per trial |", "|---|---|",
        f"| plain NSGA-II | {plain:.1f} |",
        f"| ours: hardware-aware NSGA-II (decode, cost, deduplicate every proposal) | {ours:.1f} |",
        f"| ours / plain, median of {len(paired.ratios)} interleaved pairs of {trials}-trial studies | "
        f"**{statistics.median(slowdowns):.2f}x** ({min(slowdowns):.2f}-{max(slowdowns):.2f}) |",
    ])


def scoring_table(result: ScoringResult) -> str:
    """Markdown rows for training-free scoring, with the papers' claims beside it."""
    lines = [
        "| what | seconds per candidate |", "|---|---|",
        f"| score by SAHD (one 128-image batch; {result.scored} candidates) | {result.score_s:.3f} |",
        f"| train {result.epochs} epochs (train_architecture, no test; {result.trained} candidates) | "
        f"{result.train_s:.2f} |",
        f"| **candidates ranked per candidate trained** | **{result.ratio:.0f}x** |",
        "",
        "Search-time speed-ups the papers report (paper.md section 7), for comparison only: they compare "
        "whole searches on GPUs and CIFAR-scale data against other NAS methods, not one candidate on a CPU.",
        "",
        "| paper | reported |", "|---|---|",
    ]
    lines += [f"| {name} | {claim} |" for name, claim in PAPER_SPEEDUPS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="trials per sampling study (default 40)")
    parser.add_argument("--repeats", type=int, default=4, help="interleaved pairs (default 4)")
    parser.add_argument("--candidates", type=int, default=50, help="candidates scored (default 50)")
    parser.add_argument("--trained", type=int, default=2, help="of them, trained for 10 epochs (default 2)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.repeats, args.candidates, args.trained = 8, 2, 5, 1
    print(sampler_table(sampler_overhead(trials=args.trials, repeats=args.repeats), args.trials))
    print()
    print(scoring_table(scoring_vs_training(candidates=args.candidates, trained=args.trained,
                                            epochs=2 if args.quick else 10)))


if __name__ == "__main__":
    main()
