"""Cost-model speed: one ~20-layer network (median) and the vectorised batch path (networks/s).

Run: python benchmarks/cost_model_speed.py [--networks 2000] [--batch 20000]

The networks are distinct 20-layer SNASNet-shaped CIFAR networks (stem, 9 cell convs at C
channels, reduction, 7 cell convs at 2C, two linear layers) with random channels and kernels.
"Warm" is the steady state of a search: the cost model memoises per-layer counts, and layers repeat
across candidates. "Cold" clears that memo before every call.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import numpy as np

from hasnas_optuna.cim import Layer, Network, NetworkBatch, estimate_cost, estimate_costs, load_hardware


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=20000)
    args = parser.parse_args()
    rng = random.Random(0)
    nets = [random_network(rng) for _ in range(args.networks)]
    pool = [random_network(rng) for _ in range(args.batch)]
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"{'preset':<15} {'single warm (us)':>17} {'single cold (us)':>17} {'batch (networks/s)':>19}")
    for preset in ("neurosim-22nm", "spikesim-65nm"):
        print(f"{preset:<15} {single(nets, preset, cold=False):>17.1f} {single(nets, preset, cold=True):>17.1f} "
              f"{batch(pool, preset):>19,.0f}")


if __name__ == "__main__":
    main()
