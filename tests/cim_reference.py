"""SpikeSim reference runs the cost model is checked against, and the two VGG-style networks.

SpikeSim rows: SpikeSim's ELA script (SNN_train_infer_quantization_ela/ela_spikesim.py) as
shipped, on the 7 conv layers of its VGG9 demo. The NeuroSim V1.4 runs, with per-layer outputs,
are data: benchmarks/data/neurosim_v14_runs.json (read by benchmarks/cim_calibration.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hasnas_optuna.cim import Layer, Network


def snn4m() -> Network:
    """The 4.58 M-weight VGG-style CIFAR SNN of the first NeuroSim calibration runs (snn4m)."""
    spec = [(32, 3, 64, 1), (32, 64, 128, 2), (16, 128, 256, 1), (16, 256, 256, 2),
            (8, 256, 512, 1), (8, 512, 512, 2)]
    layers = [Layer.conv(cin, cout, kernel_size=3, input_size=(size, size), padding=1, pool_after=pool)
              for size, cin, cout, pool in spec]
    return Network((*layers, Layer.linear(8192, 10)), name="snn4m", encoding="rate")


def vgg9conv(encoding: str = "rate") -> Network:
    """The 7 conv layers of SpikeSim's VGG9 demo."""
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


SPIKESIM_RUNS = (
    ReferenceRun("VGG9 T=5", "spikesim-65nm", "vgg9conv-direct", 0.15, 8.43, 15.9, 62.8, timesteps=5),
    ReferenceRun("VGG9 T=4", "spikesim-65nm", "vgg9conv-direct", 0.15, 8.43, 12.7, 50.3, timesteps=4),
    ReferenceRun("VGG9 T=8", "spikesim-65nm", "vgg9conv-direct", 0.15, 8.43, 25.5, 100.5, timesteps=8),
)

NETWORKS = {"vgg9conv-direct": lambda: vgg9conv("direct")}
