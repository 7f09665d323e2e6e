"""hasnas-optuna: hardware-aware spiking neural architecture search as an Optuna plugin."""

from __future__ import annotations

from hasnas_optuna._errors import ConfigError, HasnasError

__all__ = ["ConfigError", "HasnasError", "__version__"]
__version__ = "0.1.0"
