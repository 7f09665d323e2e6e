"""Reference runs the cost model is checked against (data, each row with its source).

NeuroSim V1.4 rows: shared/research/cim.md section 3.2, one timestep, every layer fed 1-bit
Bernoulli spikes (so the networks use rate encoding), conventional mapping, layers sequential.
SpikeSim rows: cim.md section 4.2 / paper.md 4.1, ela_spikesim.py as shipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hasnas_optuna.cim import Layer, Network


def snn4m() -> Network:
    """4.58 M-weight VGG-style CIFAR SNN of cim.md 3.1."""
    spec = [(32, 3, 64, 1), (32, 64, 128, 2), (16, 128, 256, 1), (16, 256, 256, 2),
            (8, 256, 512, 1), (8, 512, 512, 2)]
    layers = [Layer.conv(cin, cout, kernel_size=3, input_size=(size, size), padding=1, pool_after=pool)
              for size, cin, cout, pool in spec]
    return Network((*layers, Layer.linear(8192, 10)), name="snn4m", encoding="rate")


def vgg9conv(encoding: str = "rate") -> Network:
    """The 7 conv layers of SpikeSim's VGG9 demo (cim.md 3.1 and 4.2)."""
    spec = [(32, 3, 64, 1), (32, 64, 64, 2), (16, 64, 128, 1), (16, 128, 128, 2),
            (8, 128, 256, 1), (8, 256, 256, 1), (8, 256, 256, 2)]
    layers = [Layer.conv(cin, cout, kernel_size=3, input_size=(size, size), padding=1, pool_after=pool)
              for size, cin, cout, pool in spec]
    return Network(tuple(layers), name="vgg9conv", encoding=encoding)


@dataclass(frozen=True)
class ReferenceRun:
    run: str
    preset: str
    network: str
    spike_rate: float
    area_mm2: float
    energy_uj: float
    latency_ms: float
    overrides: dict[str, Any] = field(default_factory=dict)
    timesteps: int = 1


NEUROSIM_RUNS = (
    ReferenceRun("B05", "neurosim-22nm", "snn4m", 0.05, 102.5, 5.50 + 0.13, 0.324),
    ReferenceRun("B15", "neurosim-22nm", "snn4m", 0.15, 102.5, 6.08 + 0.13, 0.324),
    ReferenceRun("B30", "neurosim-22nm", "snn4m", 0.30, 102.5, 6.75 + 0.13, 0.324),
    ReferenceRun("C", "neurosim-22nm", "snn4m", 0.15, 61.1, 3.67 + 0.09, 0.389, {"bits_per_cell": 2}),
    ReferenceRun("D", "neurosim-22nm", "snn4m", 0.15, 92.1, 4.46 + 0.10, 0.296, {"adc_bits": 4}),
    ReferenceRun("E", "neurosim-32nm", "snn4m", 0.15, 226.6, 9.07 + 0.62, 1.027),
    ReferenceRun("G", "neurosim-65nm", "snn4m", 0.15, 659.5, 19.60 + 2.25, 2.792),
    ReferenceRun("B-vgg9conv", "neurosim-22nm", "vgg9conv", 0.15, 43.4, 2.37 + 0.04, 0.254),
    ReferenceRun(
        "F-vgg9conv", "neurosim-65nm", "vgg9conv", 0.15, 145.8, 3.16 + 0.09, 1.215,
        {"crossbar_size": 64, "rows_per_read": 64, "weight_bits": 4, "bits_per_cell": 4, "adc_bits": 4},
    ),
)

SPIKESIM_RUNS = (
    ReferenceRun("VGG9 T=5", "spikesim-65nm", "vgg9conv-direct", 0.15, 8.43, 15.9, 62.8, timesteps=5),
    ReferenceRun("VGG9 T=4", "spikesim-65nm", "vgg9conv-direct", 0.15, 8.43, 12.7, 50.3, timesteps=4),
    ReferenceRun("VGG9 T=8", "spikesim-65nm", "vgg9conv-direct", 0.15, 8.43, 25.5, 100.5, timesteps=8),
)

NETWORKS = {"snn4m": snn4m, "vgg9conv": vgg9conv, "vgg9conv-direct": lambda: vgg9conv("direct")}
