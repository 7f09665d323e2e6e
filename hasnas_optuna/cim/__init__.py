"""Analytical compute-in-memory cost model: memory, area, latency and energy of an SNN on RRAM.

Example:
    >>> from hasnas_optuna.cim import Layer, Network, estimate_cost, load_hardware
    >>> net = Network([Layer.conv(3, 64, kernel_size=3, input_size=(32, 32), padding=1,
    ...                           pool_after=2), Layer.linear(16384, 10)], timesteps=5)
    >>> report = estimate_cost(net, load_hardware("neurosim-22nm"))
    >>> report.memory_params
    165568
"""

from __future__ import annotations

from hasnas_optuna.cim._accounting import estimate_cost
from hasnas_optuna.cim._batch import BatchCosts, NetworkBatch, estimate_costs
from hasnas_optuna.cim._hardware import (
    DEFAULT_PRESET,
    Hardware,
    Technology,
    list_presets,
    load_hardware,
)
from hasnas_optuna.cim._network import ENCODINGS, Layer, Network, load_network
from hasnas_optuna.cim._report import (
    AREA_PARTS,
    ENERGY_PARTS,
    METRICS,
    Budgets,
    CostReport,
    LayerCost,
    Metric,
    metric,
    register_metric,
    unregister_metric,
)

__all__ = [
    "AREA_PARTS",
    "DEFAULT_PRESET",
    "ENCODINGS",
    "ENERGY_PARTS",
    "METRICS",
    "BatchCosts",
    "Budgets",
    "CostReport",
    "Hardware",
    "Layer",
    "LayerCost",
    "Metric",
    "Network",
    "NetworkBatch",
    "Technology",
    "estimate_cost",
    "estimate_costs",
    "list_presets",
    "load_hardware",
    "load_network",
    "metric",
    "register_metric",
    "unregister_metric",
]
