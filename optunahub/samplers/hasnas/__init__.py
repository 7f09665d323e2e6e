"""OptunaHub package ``samplers/hasnas``: hardware-aware spiking neural architecture search.

A thin shim over the pip distribution ``hasnas-optuna`` (see ``requirements.txt``): the search
space (define-by-run, fixed-length genome), the compute-in-memory cost model that turns a sampled
spiking network into memory, area, latency and energy, a training-free fitness, and the
hardware-aware sampler that filters any Optuna sampler's proposals against hardware budgets
before a trial runs.
"""

from __future__ import annotations

from hasnas_optuna import (
    Architecture,
    Cell,
    HardwareSpace,
    SearchSpace,
    architecture_from_params,
    hardware_from_params,
    suggest_architecture,
    suggest_hardware,
)
from hasnas_optuna.cim import Budgets, CostReport, estimate_cost, list_presets, load_hardware

__all__ = [
    "Architecture", "Budgets", "Cell", "CostReport", "HardwareSpace", "SearchSpace", "architecture_from_params",
    "estimate_cost", "hardware_from_params", "list_presets", "load_hardware", "score_architecture",
    "suggest_architecture", "suggest_hardware",
]

try:  # the sampler ships with hasnas-optuna releases after 0.1.0
    from hasnas_optuna.sampler import HardwareAwareSampler
except ImportError:  # pragma: no cover - an older hasnas-optuna
    pass
else:
    __all__ += ["HardwareAwareSampler"]

try:  # training-free SAHD / NASWOT scores (needs torch, a dependency of hasnas-optuna)
    from hasnas_optuna.fitness import score_architecture
except ImportError:  # pragma: no cover - an older hasnas-optuna
    __all__.remove("score_architecture")
