"""The cost model's answer: totals, a per-layer per-component breakdown, budgets and formatting."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from hasnas_optuna._errors import ConfigError

__all__ = ["AREA_PARTS", "ENERGY_PARTS", "Budgets", "CostReport", "LayerCost"]

AREA_PARTS = ("arrays", "adcs", "periphery", "buffers_interconnect", "neurons")
"""Area components: cell arrays, ADCs (with muxes), per-line periphery (drivers, decoders,
shift-add), tile buffers/adders/interconnect, neurons (LIF logic, membrane and input buffers)."""
ENERGY_PARTS = ("arrays", "adcs", "accumulation", "neurons", "buffers_interconnect", "leakage")
"""Energy components, the last one static (leakage power x latency)."""


@dataclass(frozen=True, slots=True)
class LayerCost:
    """One layer's share of the chip: counts, area (mm^2), energy (uJ) and time (ms)."""

    index: int
    name: str
    type: str
    params: int
    spike_rate: float
    passes: int
    crossbars: int
    crossbars_allocated: float
    tiles: float
    duplication: int
    conversions: float
    cells: int
    neuron_state_bits: int
    area_mm2: Mapping[str, float]
    energy_uj: Mapping[str, float]
    latency_ms: float

    @property
    def area_total_mm2(self) -> float:
        return sum(self.area_mm2.values())

    @property
    def energy_total_uj(self) -> float:
        return sum(self.energy_uj.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "name": self.name, "type": self.type, "params": self.params,
            "spike_rate": self.spike_rate, "passes": self.passes, "crossbars": self.crossbars,
            "crossbars_allocated": self.crossbars_allocated, "tiles": self.tiles,
            "duplication": self.duplication, "adc_conversions": self.conversions, "cells": self.cells,
            "neuron_state_bits": self.neuron_state_bits,
            "area_mm2": self.area_total_mm2, "energy_uj": self.energy_total_uj,
            "latency_ms": self.latency_ms,
            "area_breakdown_mm2": dict(self.area_mm2), "energy_breakdown_uj": dict(self.energy_uj),
        }


@dataclass(frozen=True, slots=True)
class CostReport:
    """Memory, area, latency and energy of one network on one chip.

    ``latency_ms`` is the whole inference (all timesteps); ``energy_uj`` is dynamic plus leakage.
    ``layers`` holds the per-layer, per-component breakdown; components sum to the totals.
    """

    network: str
    hardware: str
    timesteps: int
    memory_params: int
    weight_bits: int
    area_mm2: float
    latency_ms: float
    energy_dynamic_uj: float
    energy_leakage_uj: float
    layer_builder: Callable[[], tuple[LayerCost, ...]] = field(repr=False, compare=False)
    _layers: tuple[LayerCost, ...] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def layers(self) -> tuple[LayerCost, ...]:
        """Per-layer breakdown (built on first access: the search only reads totals)."""
        if self._layers is None:
            object.__setattr__(self, "_layers", self.layer_builder())
        assert self._layers is not None
        return self._layers

    @property
    def memory_bits(self) -> int:
        """Weight storage in bits (parameters x weight bits)."""
        return self.memory_params * self.weight_bits

    @property
    def neuron_state_bits(self) -> int:
        """Membrane-state storage in bits."""
        return sum(layer.neuron_state_bits for layer in self.layers)

    @property
    def memory_cells(self) -> int:
        """Memory cells holding weights (parameters x cells per weight, both signs)."""
        return sum(layer.cells for layer in self.layers)

    @property
    def crossbars(self) -> float:
        """Crossbars allocated on the chip (including tile fragmentation and duplication).

        With shared tiles a layer's share of a partly filled tile is fractional.
        """
        return sum(layer.crossbars_allocated for layer in self.layers)

    @property
    def energy_uj(self) -> float:
        """Total energy of one inference: dynamic plus leakage."""
        return self.energy_dynamic_uj + self.energy_leakage_uj

    def area_breakdown(self) -> dict[str, float]:
        """Chip area per component, mm^2."""
        return {part: sum(layer.area_mm2[part] for layer in self.layers) for part in AREA_PARTS}

    def energy_breakdown(self) -> dict[str, float]:
        """Energy per component, uJ."""
        return {part: sum(layer.energy_uj[part] for layer in self.layers) for part in ENERGY_PARTS}

    def costs(self) -> dict[str, float]:
        """The four budgeted quantities by name (see :class:`Budgets`)."""
        return {
            "memory": float(self.memory_params), "area": self.area_mm2,
            "latency": self.latency_ms, "energy": self.energy_uj,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the CLI's ``--json`` output)."""
        return {
            "network": self.network, "hardware": self.hardware, "timesteps": self.timesteps,
            "memory_params": self.memory_params, "memory_bits": self.memory_bits,
            "memory_cells": self.memory_cells,
            "neuron_state_bits": self.neuron_state_bits, "crossbars": self.crossbars,
            "area_mm2": self.area_mm2, "latency_ms": self.latency_ms, "energy_uj": self.energy_uj,
            "energy_dynamic_uj": self.energy_dynamic_uj, "energy_leakage_uj": self.energy_leakage_uj,
            "area_breakdown_mm2": self.area_breakdown(), "energy_breakdown_uj": self.energy_breakdown(),
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def format_table(self, budgets: Budgets | None = None) -> str:
        """A readable table: one row per layer, totals, and a pass/fail line per budget."""
        head = (
            f"{'#':>3} {'layer':<16} {'type':<6} {'params':>10} {'rate':>5} {'xbars':>6} "
            f"{'area mm2':>9} {'energy uJ':>10} {'latency ms':>11}"
        )
        lines = [
            f"network {self.network!r} on {self.hardware}, T = {self.timesteps}",
            head, "-" * len(head),
        ]
        for layer in self.layers:
            lines.append(
                f"{layer.index:>3} {layer.name[:16]:<16} {layer.type:<6} {layer.params:>10,} "
                f"{layer.spike_rate:>5.2f} {layer.crossbars_allocated:>6.0f} "
                f"{layer.area_total_mm2:>9.3f} {layer.energy_total_uj:>10.3f} {layer.latency_ms:>11.4f}"
            )
        lines.append("-" * len(head))
        lines.append(
            f"{'':>3} {'total':<16} {'':<6} {self.memory_params:>10,} {'':>5} {self.crossbars:>6.0f} "
            f"{self.area_mm2:>9.3f} {self.energy_uj:>10.3f} {self.latency_ms:>11.4f}"
        )
        lines.append("")
        lines.append(
            f"memory  {self.memory_params:,} parameters, {self.memory_bits:,} weight bits in "
            f"{self.memory_cells:,} cells, {self.neuron_state_bits:,} neuron-state bits"
        )
        lines.append("area    " + _parts(self.area_breakdown(), "mm2"))
        lines.append(
            f"energy  {self.energy_dynamic_uj:.3f} uJ dynamic + {self.energy_leakage_uj:.3f} uJ leakage: "
            + _parts(self.energy_breakdown(), "uJ")
        )
        if budgets is not None:
            lines.append("")
            for name, cost, limit, slack in budgets.check(self):
                verdict = "PASS" if slack <= 0 else "FAIL"
                lines.append(
                    f"{verdict}  {name:<8} {cost:>14.6g} {Budgets.UNITS[name]:<6} "
                    f"budget {limit:.6g} ({slack:+.1%})"
                )
        return "\n".join(lines)


def _parts(parts: Mapping[str, float], unit: str) -> str:
    return ", ".join(f"{name} {value:.3f}" for name, value in parts.items()) + f" ({unit})"


@dataclass(frozen=True, slots=True)
class Budgets:
    """Hardware budgets; ``None`` means unconstrained. The paper's are :meth:`hasnas_paper`.

    Example:
        >>> b = Budgets.hasnas_paper()
        >>> b.memory, b.area, b.latency, b.energy
        (4000000.0, 100.0, 400.0, 120.0)
        >>> Budgets(area=0)
        Traceback (most recent call last):
        ...
        hasnas_optuna._errors.ConfigError: budget area=0 must be a number > 0 (mm2)
    """

    memory: float | None = None
    area: float | None = None
    latency: float | None = None
    energy: float | None = None

    NAMES: ClassVar[tuple[str, ...]] = ("memory", "area", "latency", "energy")
    UNITS: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"memory": "params", "area": "mm2", "latency": "ms", "energy": "uJ"}
    )

    def __post_init__(self) -> None:
        for name in self.NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and value > 0
            ):
                raise ConfigError(f"budget {name}={value!r} must be a number > 0 ({self.UNITS[name]})")
            object.__setattr__(self, name, float(value))

    @classmethod
    def hasnas_paper(cls) -> Budgets:
        """HASNAS's budgets: 4x10^6 parameters, 100 mm^2, 400 ms, 120 uJ."""
        return cls(memory=4e6, area=100.0, latency=400.0, energy=120.0)

    def items(self) -> list[tuple[str, float]]:
        """The set budgets, in the fixed order memory, area, latency, energy."""
        return [(n, v) for n in self.NAMES if (v := getattr(self, n)) is not None]

    def check(self, report: CostReport) -> list[tuple[str, float, float, float]]:
        """``(name, cost, budget, cost / budget - 1)`` per set budget; slack <= 0 passes."""
        costs = report.costs()
        return [(name, costs[name], limit, costs[name] / limit - 1.0) for name, limit in self.items()]
