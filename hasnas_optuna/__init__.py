"""hasnas-optuna: hardware-aware spiking neural architecture search as an Optuna plugin.

The light parts (errors, architecture, search space, the cost model in :mod:`hasnas_optuna.cim`)
import at once; the parts that need torch and Lightning (network, training, data, objective,
study) load on first use, so ``hasnas cost`` and plain sampling stay fast to start.

Example:
    >>> import optuna
    >>> from hasnas_optuna import SearchSpace, suggest_architecture
    >>> trial = optuna.create_study().ask()
    >>> arch = suggest_architecture(trial, SearchSpace())
    >>> arch.to_network().params > 0
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hasnas_optuna._errors import ConfigError, HasnasError
from hasnas_optuna._malloc import keep_freed_memory
from hasnas_optuna.architecture import OPS, Architecture, Cell
from hasnas_optuna.sampler import CandidateSpace, HardwareAwareSampler
from hasnas_optuna.search_space import (
    HardwareSpace,
    SearchSpace,
    architecture_from_params,
    chip_with_knobs,
    hardware_from_params,
    suggest_architecture,
    suggest_hardware,
)

if TYPE_CHECKING:
    from hasnas_optuna.config import StudyConfig, load_config
    from hasnas_optuna.data import DigitsDataModule, make_datamodule
    from hasnas_optuna.network import SpikingNetwork, build_network
    from hasnas_optuna.objective import HasnasObjective, set_budget_constraints
    from hasnas_optuna.quantization import Precision
    from hasnas_optuna.storage import load_study_for_reading, open_storage
    from hasnas_optuna.study import best_rows, counted_trials, run_search
    from hasnas_optuna.training import SNNClassifier, TrialFailed, train_architecture

_LAZY = {
    "StudyConfig": "config", "load_config": "config",
    "DigitsDataModule": "data", "make_datamodule": "data",
    "SpikingNetwork": "network", "build_network": "network",
    "HasnasObjective": "objective", "set_budget_constraints": "objective",
    "Precision": "quantization",
    "best_rows": "study", "counted_trials": "study", "run_search": "study",
    "open_storage": "storage", "load_study_for_reading": "storage",
    "SNNClassifier": "training", "TrialFailed": "training", "train_architecture": "training",
}

__all__ = [
    "OPS", "Architecture", "CandidateSpace", "Cell", "ConfigError", "DigitsDataModule", "HardwareAwareSampler",
    "HardwareSpace",
    "HasnasError", "HasnasObjective", "Precision", "SNNClassifier", "SearchSpace", "SpikingNetwork", "StudyConfig",
    "TrialFailed", "__version__", "architecture_from_params", "best_rows", "build_network", "chip_with_knobs",
    "counted_trials",
    "hardware_from_params", "keep_freed_memory", "load_config", "load_study_for_reading", "make_datamodule",
    "open_storage", "run_search", "set_budget_constraints", "suggest_architecture", "suggest_hardware",
    "train_architecture",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"hasnas_optuna.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hasnas_optuna' has no attribute {name!r}")
