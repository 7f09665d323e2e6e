"""Search efficiency on digits: our hardware-aware NSGA-II against plain Optuna samplers.

Run: python benchmarks/search_efficiency.py [--trials 24] [--seeds 0 1 2] [--out benchmarks/search_efficiency.json]

Every method runs the same multi-objective study (validation accuracy against energy; Optuna
cannot prune multi-objective studies, so no method prunes) on the embedded digits data with the
digits study's budgets, which rule out roughly half of the search space, for the same number of
trials, one seed after another, side by side in one process:

* ``ours``: HardwareAwareSampler around NSGA-II (never trains a network the model rules out,
  never repeats an architecture);
* ``nsga2``, ``tpe``, ``random``: the plain Optuna samplers with ``set_constraint``; as plain
  Optuna would, they train every network they propose and learn the budgets from the constraints;
* ``ours-sahd``: the training-free mode: score ``--score-factor`` x trials candidates by SAHD,
  train the best ``--trials // 4``.

Reported per method (mean over seeds): training seconds spent on networks that break a budget,
trials and seconds to the first feasible trained network, best feasible validation accuracy, the
feasible hypervolume (accuracy x energy, reference point accuracy 0 and the energy budget) at
fixed fractions of the slowest run's wall time, and the total wall time.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch

from hasnas_optuna.config import StudyConfig, load_config
from hasnas_optuna.data import DigitsDataModule
from hasnas_optuna.study import run_search

METHODS = {
    "ours": {"sampler": "nsga2", "hardware_aware": True, "skip_infeasible": True},
    "nsga2": {"sampler": "nsga2", "hardware_aware": False, "skip_infeasible": False},
    "tpe": {"sampler": "tpe", "hardware_aware": False, "skip_infeasible": False},
    "random": {"sampler": "random", "hardware_aware": False, "skip_infeasible": False},
}
FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def config_for(study: dict[str, Any], trials: int, seed: int) -> StudyConfig:
    base = load_config(None)  # the digits study: its space, budgets and training settings
    space = {"channels": list(base.space.channels), "hidden_features": list(base.space.hidden_features),
             "timesteps": list(base.space.timesteps)}
    return StudyConfig.from_dict({
        "study": {"name": "bench", "objectives": ["accuracy", "energy"], "n_trials": trials, "seed": seed,
                  "population_size": 8, **study},
        "budgets": dict(base.budgets.items()),
        "space": space,
        "training": {"epochs": 3, "pruner": "none", "energy_stop_margin": -1},
    })


def run(method: str, trials: int, seed: int, data: DigitsDataModule, score_factor: int) -> dict[str, Any]:
    if method == "ours-sahd":
        config = config_for({**METHODS["ours"], "fitness": "sahd", "score_trials": trials * score_factor},
                            max(trials // 4, 1), seed)
    else:
        config = config_for(METHODS[method], trials, seed)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        study = run_search(config, storage=f"sqlite:///{tmp}/bench.db", datamodule=data, out=None)
        wall = time.time() - start
        trials_list = study.get_trials(deepcopy=False)
    return summarise(trials_list, config, start, wall)


def summarise(trials: list[optuna.trial.FrozenTrial], config: StudyConfig, start: float, wall: float
              ) -> dict[str, Any]:
    energy_budget = float(config.budgets.energy or 1.0)
    done = sorted((t for t in trials if t.datetime_complete is not None), key=lambda t: t.datetime_complete)
    infeasible_seconds = 0.0
    first: tuple[int, float] | None = None
    points: list[tuple[float, float, float]] = []  # (elapsed, accuracy, energy) of feasible trained trials
    for index, t in enumerate(done, start=1):
        elapsed = t.datetime_complete.timestamp() - start  # type: ignore[union-attr]
        trained = bool(t.user_attrs.get("trained"))
        feasible = all(v <= 0 for v in t.constraints.values())
        if trained and not feasible:
            infeasible_seconds += float(t.user_attrs.get("train_seconds", 0.0))
        if trained and feasible and t.values is not None:
            points.append((elapsed, float(t.values[0]), float(t.values[1])))
            if first is None:
                first = (index, elapsed)
    return {
        "wall_s": wall,
        "trials": len(done),
        "trained": sum(bool(t.user_attrs.get("trained")) for t in done),
        "infeasible_train_s": infeasible_seconds,
        "first_feasible_trial": first[0] if first else None,
        "first_feasible_s": first[1] if first else None,
        "best_feasible_acc": max((p[1] for p in points), default=0.0),
        "points": points,
        "energy_budget": energy_budget,
    }


def hypervolume(points: list[tuple[float, float, float]], until: float, energy_budget: float) -> float:
    """2-D hypervolume of (accuracy up, energy down) points completed by ``until`` seconds."""
    front = sorted(((acc, energy) for t, acc, energy in points if t <= until and energy <= energy_budget),
                   key=lambda p: p[1])
    volume, best = 0.0, 0.0
    for i, (acc, energy) in enumerate(front):
        best = max(best, acc)
        next_energy = front[i + 1][1] if i + 1 < len(front) else energy_budget
        volume += best * (next_energy - energy)
    return volume / energy_budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--score-factor", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=[*METHODS, "ours-sahd"])
    parser.add_argument("--out", default="benchmarks/search_efficiency.json")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(2)
    data = DigitsDataModule(batch_size=64)
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in args.methods}
    for seed in args.seeds:
        for method in args.methods:
            result = run(method, args.trials, seed, data, args.score_factor)
            results[method].append(result)
            print(f"seed {seed} {method:<10} wall {result['wall_s']:6.1f} s  trained {result['trained']:>3}  "
                  f"infeasible training {result['infeasible_train_s']:6.1f} s  best feasible acc "
                  f"{result['best_feasible_acc']:.3f}", flush=True)
    slowest = max(r["wall_s"] for rs in results.values() for r in rs)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
          f"{args.trials} trials, seeds {args.seeds}; means over seeds")
    header = (f"{'method':<10} {'wall s':>7} {'trained':>7} {'infeas. train s':>15} {'1st feasible (trial, s)':>24} "
              f"{'best feas. acc':>14} " + " ".join(f"{'HV@' + format(f, '.0%'):>8}" for f in FRACTIONS))
    print(header)
    table = {}
    for method, runs in results.items():
        firsts = [r for r in runs if r["first_feasible_trial"] is not None]
        row = {
            "wall_s": statistics.mean(r["wall_s"] for r in runs),
            "trained": statistics.mean(r["trained"] for r in runs),
            "infeasible_train_s": statistics.mean(r["infeasible_train_s"] for r in runs),
            "first_feasible_trial": statistics.mean(r["first_feasible_trial"] for r in firsts) if firsts else None,
            "first_feasible_s": statistics.mean(r["first_feasible_s"] for r in firsts) if firsts else None,
            "runs_without_feasible": len(runs) - len(firsts),
            "best_feasible_acc": statistics.mean(r["best_feasible_acc"] for r in runs),
            "hypervolume": {f: statistics.mean(hypervolume(r["points"], f * slowest, r["energy_budget"]) for r in runs)
                            for f in FRACTIONS},
        }
        table[method] = row
        first = (f"{row['first_feasible_trial']:.1f}, {row['first_feasible_s']:.1f}"
                 if row["first_feasible_trial"] is not None else "none")
        print(f"{method:<10} {row['wall_s']:>7.1f} {row['trained']:>7.1f} {row['infeasible_train_s']:>15.1f} "
              f"{first:>24} {row['best_feasible_acc']:>14.3f} "
              + " ".join(f"{row['hypervolume'][f]:>8.3f}" for f in FRACTIONS))
    Path(args.out).write_text(json.dumps({"args": vars(args), "slowest_wall_s": slowest, "table": table,
                                          "runs": results}, indent=1))


if __name__ == "__main__":
    main()
