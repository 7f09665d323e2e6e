"""hasnas-optuna: hardware-aware spiking neural architecture search as an Optuna plugin."""

from __future__ import annotations

from hasnas_optuna._errors import ConfigError, HasnasError
from hasnas_optuna.architecture import OPS, Architecture, Cell
from hasnas_optuna.search_space import (
    HardwareSpace,
    SearchSpace,
    architecture_from_params,
    hardware_from_params,
    suggest_architecture,
    suggest_hardware,
)

__all__ = [
    "OPS", "Architecture", "Cell", "ConfigError", "HardwareSpace", "HasnasError", "SearchSpace",
    "__version__", "architecture_from_params", "hardware_from_params", "suggest_architecture",
    "suggest_hardware",
]
__version__ = "0.1.0"
