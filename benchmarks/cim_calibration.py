"""Print the cost model against every reference simulator run (NeuroSim V1.4, SpikeSim ELA).

Run: python benchmarks/cim_calibration.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cim_reference import NETWORKS, NEUROSIM_RUNS, SPIKESIM_RUNS

from hasnas_optuna.cim import estimate_cost, load_hardware


def main() -> None:
    print(f"{'run':<12} {'area ref':>9} {'model':>9} {'err':>7}  {'energy ref':>10} {'model':>9} "
          f"{'err':>7}  {'lat ref':>8} {'model':>8} {'err':>7}")
    for ref in (*NEUROSIM_RUNS, *SPIKESIM_RUNS):
        hw = load_hardware(ref.preset, default_spike_rate=ref.spike_rate, **ref.overrides)
        report = estimate_cost(NETWORKS[ref.network](), hw, timesteps=ref.timesteps)
        cells = []
        for got, want in ((report.area_mm2, ref.area_mm2), (report.energy_uj, ref.energy_uj),
                          (report.latency_ms, ref.latency_ms)):
            cells.append(f"{want:>9.3f} {got:>9.3f} {got / want - 1:>+7.1%}")
        print(f"{ref.run:<12} " + "  ".join(cells))


if __name__ == "__main__":
    main()
