"""Search efficiency on digits at equal wall time: our hardware-aware search against plain Optuna.

Run (one core, one torch thread, so every method sees the same machine):

    taskset -c 1 python benchmarks/search_efficiency.py --seconds 60 --seeds 0 1 2 3 4

Every run gets the same wall-clock budget (``--seconds``, from the call of ``run_search`` on, so
the training-free mode's screening counts) on the same multi-objective study (validation accuracy
against energy) on the embedded digits data with the digits study's budgets, which rule out about
half of the space; 3 epochs per trained network, no accuracy pruning for anyone. Each run is judged
on the trials that completed within its budget (Optuna finishes the trial in flight, which is not
counted). Methods, seed after seed in this order, one process:

* ``ours``: ``hasnas search`` as configured by default: HardwareAwareSampler around NSGA-II, networks
  that break a budget never trained, energy watch on (stops a network whose measured energy breaks
  the budget by 25 %);
* ``ours-tpe``, ``ours-random``: the same around TPE and around RandomSampler (base-sampler choice;
  ``ours-random`` trains distinct feasible architectures drawn uniformly at random, the control for
  the training-free ranking);
* ``nsga2``, ``tpe``, ``random``: plain Optuna samplers with ``set_constraint``; as plain Optuna
  would, they train every network they propose (no energy watch) and learn the budgets from the
  constraints;
* ``ours-sahd``: the training-free mode: score ``score_trials`` (200) feasible candidates by SAHD
  at initialisation, then train them best first until the time is up.

Reported per method over seeds (mean, standard deviation, min-max; per-seed values in the JSON):
networks trained, training seconds spent on networks that break a budget (at measured spike
rates), trial and seconds to the first feasible trained network, seconds to the first feasible
network with validation accuracy >= 0.90, best feasible validation accuracy and the test accuracy
of that network, and the feasible hypervolume (accuracy x energy, reference accuracy 0 and the
energy budget) at 25/50/75/100 % of the budget; a paired per-seed comparison of ``ours`` against
every other method; and how well the training-free scores rank networks: Kendall's tau between the
SAHD score (and the parameter count, the baseline proxy) and the validation accuracy of the
networks ``ours-random`` trained (an unbiased sample of feasible networks).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from scipy.stats import kendalltau

from hasnas_optuna.config import StudyConfig, load_config
from hasnas_optuna.data import DigitsDataModule
from hasnas_optuna.fitness import score_architecture
from hasnas_optuna.search_space import architecture_from_params
from hasnas_optuna.study import run_search

OURS = {"hardware_aware": True, "skip_infeasible": True}
PLAIN = {"hardware_aware": False, "skip_infeasible": False}
METHODS: dict[str, dict[str, Any]] = {
    "ours": {"study": {"sampler": "nsga2", **OURS}, "margin": 0.25},
    "ours-tpe": {"study": {"sampler": "tpe", **OURS}, "margin": 0.25},
    "ours-random": {"study": {"sampler": "random", **OURS}, "margin": 0.25},
    "nsga2": {"study": {"sampler": "nsga2", **PLAIN}, "margin": -1.0},
    "tpe": {"study": {"sampler": "tpe", **PLAIN}, "margin": -1.0},
    "random": {"study": {"sampler": "random", **PLAIN}, "margin": -1.0},
    "ours-sahd": {"study": {"sampler": "nsga2", **OURS, "fitness": "sahd", "score_trials": 200}, "margin": 0.25},
}
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
TARGET = 0.90
"""Validation accuracy whose first feasible arrival is reported as search time (fixed in advance)."""


def config_for(method: str, seed: int, seconds: float) -> StudyConfig:
    base = load_config(None)  # the digits study: its space, budgets and training settings
    space = {"channels": list(base.space.channels), "hidden_features": list(base.space.hidden_features),
             "timesteps": list(base.space.timesteps)}
    spec = METHODS[method]
    return StudyConfig.from_dict({
        "study": {"name": "bench", "objectives": ["accuracy", "energy"], "n_trials": 10_000, "seed": seed,
                  "population_size": 8, "timeout": seconds, **spec["study"]},
        "budgets": dict(base.budgets.items()),
        "space": space,
        "training": {"epochs": 3, "pruner": "none", "energy_stop_margin": spec["margin"]},
    })


def run(method: str, seed: int, seconds: float, data: DigitsDataModule) -> dict[str, Any]:
    config = config_for(method, seed, seconds)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.time()
        study = run_search(config, storage=f"sqlite:///{tmp}/bench.db", datamodule=data, out=None)
        wall = time.time() - start
        trials = study.get_trials(deepcopy=False)
    return summarise(trials, config, start, wall, seconds)


def summarise(trials: list[optuna.trial.FrozenTrial], config: StudyConfig, start: float, wall: float,
              seconds: float) -> dict[str, Any]:
    done = sorted((t for t in trials if t.datetime_complete is not None), key=lambda t: t.datetime_complete)  # type: ignore[arg-type,return-value]
    rows: list[dict[str, Any]] = []
    for t in done:
        elapsed = t.datetime_complete.timestamp() - start  # type: ignore[union-attr]
        if elapsed > seconds:
            continue  # finished after the budget: not counted
        attrs = t.user_attrs
        rows.append({
            "number": t.number, "started_s": t.datetime_start.timestamp() - start,  # type: ignore[union-attr]
            "elapsed_s": elapsed, "trained": bool(attrs.get("trained")),
            "feasible": all(v <= 0 for v in t.constraints.values()),
            "val": attrs.get("val_accuracy"), "test": attrs.get("test_accuracy"),
            "energy": float(t.values[1]) if t.values else None, "train_s": float(attrs.get("train_seconds", 0.0)),
            "params": t.params, "outcome": attrs.get("sampler/outcome"), "screen_score": attrs.get("screen/score"),
        })
    trained = [r for r in rows if r["trained"]]
    good = [r for r in trained if r["feasible"] and r["val"] is not None]
    first = next(((i, r["elapsed_s"]) for i, r in enumerate(rows, start=1) if r in good), None)
    best = max(good, key=lambda r: (r["val"], -r["elapsed_s"]), default=None)
    reach = next((r["elapsed_s"] for r in good if r["val"] >= TARGET), None)
    points = [(r["elapsed_s"], r["val"], r["energy"]) for r in good]
    energy_budget = float(config.budgets.energy or 1.0)
    return {
        "wall_s": wall, "trials": len(rows), "trained": len(trained), "trained_feasible": len(good),
        "infeasible_train_s": sum(r["train_s"] for r in trained if not r["feasible"]),
        "train_s": sum(r["train_s"] for r in trained),
        "first_training_s": min((r["started_s"] for r in trained), default=None),
        "first_feasible_trial": first[0] if first else None, "first_feasible_s": first[1] if first else None,
        "target_s": reach,
        "best_val": best["val"] if best else 0.0, "best_test": best["test"] if best else None,
        "hypervolume": {str(f): hypervolume(points, f * seconds, energy_budget) for f in FRACTIONS},
        "rows": rows,
    }


def hypervolume(points: list[tuple[float, float, float]], until: float, energy_budget: float) -> float:
    """2-D hypervolume of (accuracy up, energy down) points completed by ``until`` seconds, in [0, 1]."""
    front = sorted(((acc, energy) for t, acc, energy in points if t <= until and energy <= energy_budget),
                   key=lambda p: p[1])
    volume, best = 0.0, 0.0
    for i, (acc, energy) in enumerate(front):
        best = max(best, acc)
        next_energy = front[i + 1][1] if i + 1 < len(front) else energy_budget
        volume += best * (next_energy - energy)
    return volume / energy_budget


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def proxy_check(results: dict[str, list[dict[str, Any]]], data: DigitsDataModule, seeds: list[int]
                ) -> dict[str, Any]:
    """Kendall's tau of SAHD score and parameter count against validation accuracy (ours-random's networks)."""
    config = config_for("ours-sahd", 0, 1.0)
    images = data.sample_batch(config.score_batch)
    per_seed, pooled = [], {"sahd": [], "params": [], "val": []}  # type: ignore[var-annotated]
    for seed, run_ in zip(seeds, results.get("ours-random", []), strict=False):
        nets = [r for r in run_["rows"] if r["trained"] and r["val"] is not None]
        if len(nets) < 3:
            continue
        archs = [architecture_from_params(r["params"], config.space) for r in nets]
        sahd = [score_architecture(a, images, fitness="sahd", seed=seed) for a in archs]
        params = [float(a.to_network().params) for a in archs]
        vals = [float(r["val"]) for r in nets]
        finite = [i for i, s in enumerate(sahd) if math.isfinite(s)]
        tau_sahd = (kendalltau([sahd[i] for i in finite], [vals[i] for i in finite]).statistic
                    if len(finite) > 2 else None)
        per_seed.append({"seed": seed, "networks": len(nets), "finite_sahd": len(finite),
                         "tau_sahd": tau_sahd, "tau_params": kendalltau(params, vals).statistic})
        pooled["sahd"] += [sahd[i] for i in finite]
        pooled["val"] += [vals[i] for i in finite]
        pooled["params"] += params
    all_vals = [float(r["val"]) for run_ in results.get("ours-random", []) for r in run_["rows"]
                if r["trained"] and r["val"] is not None]
    return {"per_seed": per_seed,
            "pooled_tau_sahd_finite": kendalltau(pooled["sahd"], pooled["val"]).statistic if pooled["sahd"] else None,
            "pooled_tau_params": kendalltau(pooled["params"], all_vals).statistic if all_vals else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="wall-clock budget of every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", default="benchmarks/search_efficiency.json")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    data = DigitsDataModule(batch_size=64)
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in args.methods}
    began = time.time()
    for seed in args.seeds:
        for method in args.methods:
            r = run(method, seed, args.seconds, data)
            results[method].append(r)
            print(f"seed {seed} {method:<11} wall {r['wall_s']:5.1f} s trained {r['trained']:>3} "
                  f"(feasible {r['trained_feasible']:>3}) infeasible training {r['infeasible_train_s']:5.1f} s "
                  f"best feasible val {r['best_val']:.3f} test {r['best_test'] or 0:.3f}", flush=True)
    table: dict[str, dict[str, Any]] = {}
    for method, runs in results.items():
        firsts = [r for r in runs if r["first_feasible_s"] is not None]
        reached = [r["target_s"] for r in runs if r["target_s"] is not None]
        table[method] = {
            "trained": spread([r["trained"] for r in runs]),
            "trained_feasible": spread([r["trained_feasible"] for r in runs]),
            "infeasible_train_s": spread([r["infeasible_train_s"] for r in runs]),
            "first_training_s": spread([r["first_training_s"] for r in runs if r["first_training_s"] is not None]
                                       or [math.nan]),
            "first_feasible_trial": spread([r["first_feasible_trial"] for r in firsts] or [math.nan]),
            "first_feasible_s": spread([r["first_feasible_s"] for r in firsts] or [math.nan]),
            "runs_without_feasible": len(runs) - len(firsts),
            "target_s": spread(reached or [math.nan]), "runs_reaching_target": len(reached),
            "best_val": spread([r["best_val"] for r in runs]),
            "best_test": spread([r["best_test"] or 0.0 for r in runs]),
            "hypervolume": {str(f): spread([r["hypervolume"][str(f)] for r in runs]) for f in FRACTIONS},
        }
    paired = {}
    if "ours" in results:
        for method, runs in results.items():
            if method == "ours":
                continue
            diff = [a["best_val"] - b["best_val"] for a, b in zip(results["ours"], runs, strict=True)]
            hv = [a["hypervolume"]["1.0"] - b["hypervolume"]["1.0"] for a, b in zip(results["ours"], runs, strict=True)]
            paired[method] = {"best_val_diff": spread(diff), "wins": sum(d > 0 for d in diff),
                              "ties": sum(d == 0 for d in diff), "losses": sum(d < 0 for d in diff),
                              "per_seed": diff, "hv_diff": spread(hv), "hv_wins": sum(d > 0 for d in hv)}
    proxy = proxy_check(results, data, args.seeds)
    report(table, paired, proxy, args)
    Path(args.out).write_text(json.dumps({
        "args": vars(args), "machine": f"{platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()}", "total_s": time.time() - began, "table": table, "paired": paired,
        "proxy": proxy, "runs": results}, indent=1))


def report(table: dict[str, dict[str, Any]], paired: dict[str, Any], proxy: dict[str, Any],
           args: argparse.Namespace) -> None:
    def ms(s: dict[str, float], digits: int = 3) -> str:
        if math.isnan(s["mean"]):
            return "-"
        return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}"

    print(f"\n{args.seconds:.0f} s per run, seeds {args.seeds}; mean ± sd over seeds\n")
    print("| method | trained (feasible) | training s on infeasible | first feasible (trial, s) | "
          f"s to val >= {TARGET} (runs) | best feasible val acc [min, max] | its test acc | "
          "feasible HV at 25 / 50 / 75 / 100 % |")
    print("|---|---|---|---|---|---|---|---|")
    for method, row in table.items():
        hv = " / ".join(f"{row['hypervolume'][str(f)]['mean']:.3f}" for f in FRACTIONS)
        print(f"| {method} | {ms(row['trained'], 1)} ({ms(row['trained_feasible'], 1)}) | "
              f"{ms(row['infeasible_train_s'], 1)} | {ms(row['first_feasible_trial'], 1)}, "
              f"{ms(row['first_feasible_s'], 1)} | {ms(row['target_s'], 1)} ({row['runs_reaching_target']}) | "
              f"{ms(row['best_val'])} [{row['best_val']['min']:.3f}, {row['best_val']['max']:.3f}] | "
              f"{ms(row['best_test'])} | {hv} |")
    print("\npaired per seed, ours minus method (best feasible val acc; HV at 100 %):\n")
    print("| method | mean diff ± sd | ours wins / ties / losses | per seed | HV diff, ours wins |")
    print("|---|---|---|---|---|")
    for method, p in paired.items():
        per = " ".join(f"{d:+.3f}" for d in p["per_seed"])
        print(f"| {method} | {ms(p['best_val_diff'])} | {p['wins']} / {p['ties']} / {p['losses']} | {per} | "
              f"{ms(p['hv_diff'])}, {p['hv_wins']} of {len(p['per_seed'])} |")
    if "ours-sahd" in table:
        print(f"\nours-sahd: first training starts at {ms(table['ours-sahd']['first_training_s'], 1)} s "
              "(screening + setup)")
    print(f"\nproxy check (Kendall tau vs val acc, ours-random's networks): {json.dumps(proxy)}")


if __name__ == "__main__":
    main()
