"""Cost-model speed: one ~20-layer network (median) and the vectorised batch path (networks/s).

Run: python benchmarks/cost_model_speed.py [--networks 2000] [--batch 20000] [--instructions]
     python benchmarks/cost_model_speed.py --against 6917fcd [--rounds 5]   (side by side with a release)

The networks are distinct 20-layer SNASNet-shaped CIFAR networks (stem, 9 cell convs at C
channels, reduction, 7 cell convs at 2C, two linear layers) with random channels and kernels.
"Warm" is the steady state of a search: the cost model memoises per-layer counts, and layers repeat
across candidates. "Cold" clears that memo before every call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    _tree = os.environ.get("HASNAS_COST_MODEL_TREE")  # --measure on another release (--against)
    if _tree:
        sys.path.insert(0, _tree)

from benchmarks._common import ROOT, TREE_VARIABLE, release_tree
from hasnas_optuna.cim import Layer, Network, NetworkBatch, estimate_cost, estimate_costs, load_hardware

PREVIOUS_RELEASE = "6917fcd"
"""The last commit before cost model v2 (issue 12): what the side-by-side comparison runs against."""


def random_network(rng: random.Random) -> Network:
    c = rng.choice([16, 32, 64])
    layers = [Layer.conv(3, c, kernel_size=3, input_size=(32, 32), padding=1, name="stem")]
    for _ in range(9):
        k = rng.choice([1, 3])
        layers.append(Layer.conv(c, c, kernel_size=k, input_size=(32, 32), padding=k // 2))
    layers.append(Layer.conv(c, 2 * c, kernel_size=3, input_size=(32, 32), padding=1, pool_after=2))
    for i in range(7):
        k = rng.choice([1, 3])
        layers.append(Layer.conv(2 * c, 2 * c, kernel_size=k, input_size=(16, 16), padding=k // 2,
                                 pool_after=2 if i == 6 else 1))
    layers += [Layer.linear(2 * c * 64, 128), Layer.linear(128, 10)]
    return Network(tuple(layers), timesteps=5)


def single(networks: list[Network], preset: str, *, cold: bool) -> float:
    hw = load_hardware(preset)
    times = []
    for net in networks:
        if cold:
            hw._cache.clear()
        start = time.perf_counter()
        estimate_cost(net, hw)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def batch(networks: list[Network], preset: str, repeats: int = 5) -> float:
    hw = load_hardware(preset)
    packed = NetworkBatch.from_networks(networks)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        estimate_costs(packed, hw, timesteps=np.full(packed.size, 5))
        best = min(best, time.perf_counter() - start)
    return packed.size / best


def chunking(networks: list[Network], preset: str, *, repeats: int = 5) -> dict[int, float]:
    """Batch networks/s at the package's chunk size and at twice it, alternating (A B B A ...).

    Twice the default (1024 20-layer networks per pass) makes every ``[networks, layers]`` array
    160 KiB, above glibc's 128 KiB mmap threshold: each temporary is then a fresh, page-faulting
    ``mmap`` (a process that already keeps freed memory, see ``hasnas_optuna/_malloc.py``, would not
    show it: :func:`chunking_in_fresh_process` measures with glibc's defaults).
    """
    from hasnas_optuna.cim import _batch

    hw = load_hardware(preset)
    packed = NetworkBatch.from_networks(networks)
    steps = np.full(packed.size, 5)
    default = _batch._CHUNK_CELLS
    rates: dict[int, list[float]] = {default: [], 2 * default: []}
    try:
        for r in range(repeats):
            for cells in (default, 2 * default) if r % 2 == 0 else (2 * default, default):
                _batch._CHUNK_CELLS = cells
                start = time.perf_counter()
                estimate_costs(packed, hw, timesteps=steps)
                rates[cells].append(packed.size / (time.perf_counter() - start))
    finally:
        _batch._CHUNK_CELLS = default
    return {cells: statistics.median(values) for cells, values in rates.items()}


def chunking_in_fresh_process(networks: int) -> dict[int, float]:
    """:func:`chunking` in a new interpreter, whose allocator has glibc's defaults (as ``hasnas cost`` has)."""
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--chunking", "--batch", str(networks)],
                         check=True, capture_output=True, text=True).stdout
    return {int(cells): rate for cells, rate in json.loads(out.strip().splitlines()[-1]).items()}


def instructions_per_network(networks: int = 300) -> dict[str, int]:
    """Instructions one warm ``estimate_cost`` call executes, per preset, counted by callgrind.

    Two runs under ``valgrind --tool=callgrind`` (Python's hash seed fixed): one that only warms
    the memo on ``networks`` networks, one that then costs them twice more; the difference over
    ``2 * networks`` calls. Repeatable to a fraction of a percent, whatever else the machine does.
    """
    counts: dict[str, int] = {}
    for preset in ("neurosim-22nm", "spikesim-65nm"):
        totals = []
        for passes in (0, 2):
            command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                       str(Path(__file__).resolve()), "--passes", str(passes), "--networks", str(networks),
                       "--preset", preset]
            err = subprocess.run(command, check=True, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONHASHSEED": "0"}).stderr
            totals.append(int(next(line for line in err.splitlines() if "Collected" in line).split()[-1]))
        counts[preset] = (totals[1] - totals[0]) // (2 * networks)
    return counts


def measure(networks: int, batch_networks: int) -> dict[str, float]:
    """Warm and cold single-network medians (us) and batch networks/s on neurosim-22nm, this process."""
    rng = random.Random(0)
    nets = [random_network(rng) for _ in range(networks)]
    pool = [random_network(rng) for _ in range(batch_networks)]
    return {"warm_us": single(nets, "neurosim-22nm", cold=False), "cold_us": single(nets, "neurosim-22nm", cold=True),
            "batch_per_s": batch(pool, "neurosim-22nm")}


def against(revision: str, *, networks: int, batch_networks: int, rounds: int) -> dict[str, dict[str, float]]:
    """:func:`measure` for this tree and for ``revision`` (``git archive``), alternating, in fresh processes.

    Returns the median over ``rounds`` of each number, keyed ``"this"`` and ``revision``.
    """
    results: dict[str, list[dict[str, float]]] = {"this": [], revision: []}
    with release_tree(revision) as old_tree:
        trees = {"this": str(ROOT), revision: old_tree}
        for r in range(rounds):
            for name in (("this", revision) if r % 2 == 0 else (revision, "this")):
                out = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--measure", "--networks", str(networks),
                     "--batch", str(batch_networks)],
                    check=True, capture_output=True, text=True, env={**os.environ, TREE_VARIABLE: trees[name]}).stdout
                results[name].append(json.loads(out.strip().splitlines()[-1]))
    return {name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            for name, runs in results.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=20000)
    parser.add_argument("--chunking", action="store_true", help="only the chunk-size comparison, as JSON")
    parser.add_argument("--instructions", action="store_true",
                        help="only instructions per warm call, counted by valgrind's callgrind (needs valgrind)")
    parser.add_argument("--against", metavar="REV", help="side by side with the cost model of a git revision")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of --against")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # one side of --against
    parser.add_argument("--passes", type=int, help=argparse.SUPPRESS)  # the inner runs of --instructions
    parser.add_argument("--preset", default="neurosim-22nm", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rng = random.Random(0)
    if args.passes is not None:
        nets, hw = [random_network(rng) for _ in range(args.networks)], load_hardware(args.preset)
        for _ in range(1 + args.passes):
            for net in nets:
                estimate_cost(net, hw)
        return
    if args.measure:
        import hasnas_optuna

        expected = os.environ.get(TREE_VARIABLE, str(ROOT))
        assert str(Path(hasnas_optuna.__file__).resolve()).startswith(str(Path(expected).resolve()))
        print(json.dumps(measure(args.networks, args.batch)))
        return
    if args.against:
        both = against(args.against, networks=args.networks, batch_networks=args.batch, rounds=args.rounds)
        print(f"neurosim-22nm, median of {args.rounds} alternating rounds in fresh processes")
        print(f"{'':<22} {'this tree':>12} {args.against:>12} {'speed-up':>9}")
        for key, label, faster in (("warm_us", "single warm (us)", "lower"), ("cold_us", "single cold (us)", "lower"),
                                   ("batch_per_s", "batch (networks/s)", "higher")):
            new, old = both["this"][key], both[args.against][key]
            ratio = old / new if faster == "lower" else new / old
            print(f"{label:<22} {new:>12,.1f} {old:>12,.1f} {ratio:>8.2f}x")
        return
    if args.instructions:
        for preset, count in instructions_per_network(min(args.networks, 300)).items():
            print(f"{preset}: {count:,} instructions per warm estimate_cost call")
        return
    if args.chunking:
        print(json.dumps(chunking([random_network(rng) for _ in range(args.batch)], "neurosim-22nm")))
        return
    nets = [random_network(rng) for _ in range(args.networks)]
    pool = [random_network(rng) for _ in range(args.batch)]
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"{'preset':<15} {'single warm (us)':>17} {'single cold (us)':>17} {'batch (networks/s)':>19}")
    for preset in ("neurosim-22nm", "spikesim-65nm"):
        print(f"{preset:<15} {single(nets, preset, cold=False):>17.1f} {single(nets, preset, cold=True):>17.1f} "
              f"{batch(pool, preset):>19,.0f}")
    rates = chunking_in_fresh_process(args.batch)
    print("batch chunk (network-layer cells per pass): " + ", ".join(
        f"{cells:,}: {rate:,.0f} networks/s" for cells, rate in rates.items()))


if __name__ == "__main__":
    main()
