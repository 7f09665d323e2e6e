"""Co-design evidence: the chip's weight and ADC precision change the accuracy of the trained network.

Run: python benchmarks/codesign.py [--quick] [--seeds 3] [--part grid|search|all] [--trials 16]
     [--datasets digits fashion_mnist] [--adc-test N] [--json PATH] [--tables-from LOG ...]

1. **Grid** (fixed architectures, several seeds): for ``weight_bits`` in {2, 3, 4, 6, 8, float} each
   network is trained (quantisation-aware at that precision, or in float) and its test accuracy
   measured with an ideal ADC, then through the simulated ADCs of the ``neurosim-22nm`` chip:
   the preset's own (5 bits, ``rows_per_read = 128``: partial sums in [0, 128]) and, reading 16
   rows at a time (partial sums in [0, 16]), ``adc_bits`` in {3, 4, 5, 6}. The float-trained network is also
   evaluated after post-training quantisation to each ``weight_bits`` (the "costed quantised,
   trained float" accuracy). Datasets: digits (8x8, the whole split) and Fashion-MNIST (28x28, a
   training subset and fixed validation/test subsets: see the constants below).
2. **Search**: a joint NSGA-II search of architecture and chip knobs (``weight_bits``,
   ``bits_per_cell``, ``adc_bits``, ``crossbar_size``) on Fashion-MNIST, accuracy against energy,
   each trial trained at its chip's weight precision and evaluated through its ADCs
   (``adc_aware = "eval"``) on a chip that reads 16 rows at a time. The architecture space is
   small (base width 4 or 8, hidden 0 or 32, T = 2, direct encoding, cells of zero/skip/conv ops)
   so that the chip knobs move energy as much as the architecture does. The energy budget is the
   median prior energy of 300 random samples of the space, so about half of it is infeasible.
   Every feasible trial on the Pareto front is then trained again in float32 with the same seed
   (``quantize = false``), and its float accuracy is shown next to the accuracy the chip delivers.

Everything runs on the CPU; the Fashion-MNIST idx files come from Debian's
``dataset-fashion-mnist`` package (``hasnas_optuna.data``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine
from hasnas_optuna.architecture import Architecture, Cell
from hasnas_optuna.cim import estimate_cost, load_hardware
from hasnas_optuna.config import StudyConfig
from hasnas_optuna.dashboard import best_feasible_trials
from hasnas_optuna.data import TensorDataModule, make_datamodule
from hasnas_optuna.network import SpikingNetwork, release_neurons
from hasnas_optuna.objective import HasnasObjective
from hasnas_optuna.quantization import Precision
from hasnas_optuna.search_space import suggest_architecture, suggest_hardware
from hasnas_optuna.training import SNNClassifier, train_architecture

WEIGHT_BITS: tuple[int | None, ...] = (2, 3, 4, 6, 8, None)
ADC_BITS = (3, 4, 5, 6)
ROWS_PER_READ = (16,)
PRESET_ADC = 5
"""The preset's own ADC, also evaluated with the preset's 128 rows per read."""
CELL = Cell.from_matrix("0302 0030 0003 0000")
"""0->1 conv3x3, 1->2 conv3x3, 2->3 conv3x3, 0->3 conv1x1 (SNASNet's CIFAR cell, forward edges only)."""
FMNIST = {"max_train_samples": 2000, "val": 500, "test": 500, "epochs": 2}
DIGITS = {"epochs": 3}


def architecture(dataset: str) -> Architecture:
    if dataset == "digits":
        return Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=CELL, cell_b=CELL, channels=8,
                            timesteps=4)
    return Architecture(input_shape=(1, 28, 28), num_classes=10, cell_a=CELL, cell_b=CELL, channels=4, timesteps=2)


def datamodule(dataset: str, seed: int) -> TensorDataModule:
    """The data of ``dataset``; Fashion-MNIST with a training subset and fixed-size val/test subsets."""
    if dataset == "digits":
        return make_datamodule("digits", seed=seed).prepare()
    dm = make_datamodule("fashion_mnist", seed=seed, max_train_samples=FMNIST["max_train_samples"]).prepare()
    for split in ("val", "test"):
        x, y = dm.splits[split]
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[: FMNIST[split]]
        dm.splits[split] = (x[keep], y[keep])
    return dm


def accuracy(net: SpikingNetwork, dm: TensorDataModule, split: str = "test", limit: int | None = None) -> float:
    x, y = dm.splits[split]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    correct = 0
    with torch.no_grad():
        for start in range(0, len(y), 250):
            correct += int((net(x[start:start + 250]).argmax(1) == y[start:start + 250]).sum())
    return correct / len(y)


def run_grid(dataset: str, seeds: list[int], *, quick: bool, adc_test: int | None = None) -> list[dict[str, Any]]:
    arch = architecture(dataset)
    epochs = 1 if quick else (DIGITS if dataset == "digits" else FMNIST)["epochs"]
    rows = []
    for seed in seeds:
        dm = datamodule(dataset, seed)
        for bits in WEIGHT_BITS:
            chip = load_hardware() if bits is None else load_hardware().replace(weight_bits=bits)
            precision = None if bits is None else Precision.from_hardware(chip)
            modules: list[SNNClassifier] = []
            start = time.perf_counter()
            result = train_architecture(arch, dm, epochs=epochs, seed=seed, precision=precision,
                                        on_module=modules.append)
            net = modules[0].network.eval()
            row: dict[str, Any] = {"dataset": dataset, "seed": seed, "weight_bits": bits, "adc_test_images": adc_test,
                                   "test_ideal_adc": result.test_accuracy, "train_seconds": result.seconds}
            if bits is None:  # float-trained, quantised after training (no retraining)
                for ptq in (b for b in WEIGHT_BITS if b is not None):
                    net.set_precision(Precision(weight_bits=ptq))
                    row[f"ptq{ptq}"] = accuracy(net, dm)
            else:
                for adc, rpr in [(PRESET_ADC, 128)] + [(a, r) for r in ROWS_PER_READ for a in ADC_BITS]:
                    net.set_precision(Precision.from_hardware(chip.replace(adc_bits=adc, rows_per_read=rpr), adc=True))
                    row[f"adc{adc}_rpr{rpr}"] = accuracy(net, dm, limit=adc_test)
            release_neurons(net)
            row["seconds"] = time.perf_counter() - start
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def search_config(trials: int, *, quick: bool, energy_budget: float | None) -> StudyConfig:
    data = {
        "study": {"name": "codesign", "objectives": ["accuracy", "energy"], "sampler": "nsga2",
                  "population_size": 8, "seed": 0, "n_trials": trials},
        "dataset": {"name": "fashion_mnist", "max_train_samples": FMNIST["max_train_samples"]},
        "hardware": {"preset": "neurosim-22nm", "rows_per_read": 16},
        "budgets": {} if energy_budget is None else {"energy": energy_budget},
        "space": {"channels": [4, 8], "hidden_features": [0, 32], "timesteps": [2], "encodings": ["direct"],
                  "ops": ["zero", "skip", "conv1x1", "conv3x3"],
                  "hardware": {"weight_bits": [2, 3, 4, 6, 8], "bits_per_cell": [1, 2], "adc_bits": list(ADC_BITS),
                               "crossbar_size": [64, 128]}},
        "training": {"epochs": 1 if quick else FMNIST["epochs"], "pruner": "none", "adc_aware": "eval",
                     "energy_stop_margin": -1.0},
    }
    return StudyConfig.from_dict(data, origin="codesign")


def median_prior_energy(config: StudyConfig, samples: int = 300) -> float:
    """Median energy (uJ, prior spike rates) of random (architecture, chip) samples of the space."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    energies = []
    for _ in range(samples):
        trial = study.ask()
        arch = suggest_architecture(trial, config.space, record=False)
        chip = suggest_hardware(trial, config.space, config.hardware())
        energies.append(estimate_cost(arch.to_network(), chip).energy_uj)
        study.tell(trial, 0.0)
    return float(f"{statistics.median(energies):.4g}")


def run_search(trials: int, *, quick: bool) -> dict[str, Any]:
    budget = median_prior_energy(search_config(trials, quick=quick, energy_budget=None))
    config = search_config(trials, quick=quick, energy_budget=budget)
    dm = datamodule("fashion_mnist", config.seed)
    from hasnas_optuna.study import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=config.directions, sampler=make_sampler(config))
    study.set_metric_names(list(config.objectives))
    start = time.perf_counter()
    study.optimize(HasnasObjective(config, dm), n_trials=trials)
    seconds = time.perf_counter() - start
    front = []
    for t in sorted(best_feasible_trials(study), key=lambda t: t.values[1]):
        attrs = t.user_attrs
        arch = Architecture.from_dict(attrs["architecture"])
        floated = train_architecture(arch, dm, epochs=config.training.epochs, seed=config.seed + t.number)
        row = {
            "trial": t.number, "summary": attrs.get("summary"),
            **{k[3:]: v for k, v in t.params.items() if k.startswith("hw/")},
            "energy_uj": t.values[1], "val_adc": attrs["val_accuracy"], "test_adc": attrs["test_accuracy"],
            "test_ideal_adc": attrs.get("ideal_adc_test_accuracy"), "test_float_trained": floated.test_accuracy,
        }
        print(json.dumps(row), flush=True)
        front.append(row)
    trained = [t for t in study.trials if t.user_attrs.get("trained")]
    return {
        "energy_budget_uj": budget, "trials": trials, "trained": len(trained), "seconds": seconds,
        "front": front, "front_weight_bits": sorted({row["weight_bits"] for row in front}),
        "all": [{"trial": t.number, **{k[3:]: v for k, v in t.params.items() if k.startswith("hw/")},
                 "values": t.values, "trained": bool(t.user_attrs.get("trained")),
                 "feasible": t.user_attrs.get("feasible")} for t in study.trials],
    }


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def grid_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: mean ± std test accuracy (%) over seeds per dataset and weight precision."""
    pairs = [(PRESET_ADC, 128)] + [(a, r) for r in ROWS_PER_READ for a in ADC_BITS]
    adc_cols = [f"adc{a}_rpr{r}" for a, r in pairs]
    head = ["dataset", "weight_bits", "ideal ADC"] + [f"ADC {a}b, {r} rows" for a, r in pairs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        for bits in WEIGHT_BITS:
            sel = [r for r in rows if r["dataset"] == dataset and r["weight_bits"] == bits]
            cells = [dataset, "float" if bits is None else str(bits), _fmt([r["test_ideal_adc"] for r in sel])]
            cells += [_fmt([r[c] for r in sel if c in r]) for c in adc_cols]
            lines.append("| " + " | ".join(cells) + " |")
    ptq = [f"ptq{b}" for b in WEIGHT_BITS if b is not None]
    lines += ["", "| dataset | trained float, evaluated at " + " | ".join(f"{b} bits" for b in WEIGHT_BITS if b)
              + " |", "|" + "---|" * (len(ptq) + 1)]
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        sel = [r for r in rows if r["dataset"] == dataset and r["weight_bits"] is None]
        lines.append(f"| {dataset} | " + " | ".join(_fmt([r[c] for r in sel]) for c in ptq) + " |")
    return "\n".join(lines)


def search_table(result: dict[str, Any]) -> str:
    head = ["trial", "weight_bits", "bits_per_cell", "adc_bits", "crossbar", "energy uJ", "val (ADC)",
            "test (ADC)", "test (ideal ADC)", "test, same net trained float"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["front"]:
        lines.append(
            f"| {row['trial']} | {row['weight_bits']} | {row['bits_per_cell']} | {row['adc_bits']} | "
            f"{row['crossbar_size']} | {row['energy_uj']:.4g} | {100 * row['val_adc']:.1f} | "
            f"{100 * row['test_adc']:.1f} | {100 * (row['test_ideal_adc'] or 0):.1f} | "
            f"{100 * row['test_float_trained']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, one epoch, 4 search trials (a smoke run)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--part", choices=("grid", "search", "all"), default="all")
    parser.add_argument("--datasets", nargs="+", default=["digits", "fashion_mnist"])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--adc-test", type=int, default=None, metavar="N",
                        help="evaluate through the ADCs on the first N test images only (ideal ADC: all)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a shared machine more threads oversubscribe the cores)")
    parser.add_argument("--json", type=Path, default=None, help="write the raw results here")
    parser.add_argument("--tables-from", type=Path, nargs="+", metavar="LOG",
                        help="print the tables of the JSON rows earlier runs printed (their stdout), run nothing")
    args = parser.parse_args(argv)
    if args.tables_from:
        lines = [json.loads(line) for path in args.tables_from for line in path.read_text().splitlines()
                 if line.startswith("{")]
        grid = [row for row in lines if "dataset" in row]
        front = [row for row in lines if "trial" in row]
        if grid:
            print(grid_table(grid))
        if front:
            print(search_table({"front": front}))
        return 0
    torch.set_num_threads(args.threads)
    seeds = [0] if args.quick else list(range(args.seeds))
    out: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv)}
    if args.part in ("grid", "all"):
        rows = [row for dataset in args.datasets
                for row in run_grid(dataset, seeds, quick=args.quick, adc_test=args.adc_test)]
        out["grid"] = rows
        print(grid_table(rows))
    if args.part in ("search", "all"):
        result = run_search(4 if args.quick else args.trials, quick=args.quick)
        out["search"] = result
        print(search_table(result))
        print(f"front weight_bits: {result['front_weight_bits']}; trained {result['trained']} of "
              f"{result['trials']}; budget {result['energy_budget_uj']} uJ; {result['seconds']:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
