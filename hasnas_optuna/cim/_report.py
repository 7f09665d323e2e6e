"""The cost model's answer: totals, a per-layer per-component breakdown, budgets and formatting."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hasnas_optuna._errors import ConfigError

__all__ = [
    "AREA_PARTS", "ENERGY_PARTS", "METRICS", "Budgets", "CostReport", "LayerCost", "Metric", "metric",
    "register_metric", "unregister_metric",
]

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
        """Every registered metric (:data:`METRICS`) of this report, by name."""
        return {name: float(m.value(self)) for name, m in METRICS.items()}

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
                    f"{verdict}  {name:<8} {cost:>14.6g} {METRICS[name].ascii_unit:<6} "
                    f"budget {limit:.6g} ({slack:+.1%})"
                )
        return "\n".join(lines)


def _parts(parts: Mapping[str, float], unit: str) -> str:
    return ", ".join(f"{name} {value:.3f}" for name, value in parts.items()) + f" ({unit})"


@dataclass(frozen=True)
class Metric:
    """A cost of a network on a chip that a budget can bound and a study can minimise.

    ``key`` names it in recorded results (the trial's user attribute ``cost/<key>``);
    ``value`` reads it off a :class:`CostReport`.

    Example:
        >>> METRICS["area"].key, METRICS["area"].unit, METRICS["energy"].ascii_unit
        ('area_mm2', 'mm²', 'uJ')
    """

    name: str
    key: str
    unit: str
    ascii_unit: str
    value: Callable[[CostReport], float] = field(compare=False, repr=False)
    description: str = ""


METRICS: dict[str, Metric] = {}
"""The registry of metrics, in display order: the four of the paper, and any registered since."""


def register_metric(
    name: str, value: Callable[[CostReport], float], *, unit: str, ascii_unit: str | None = None,
    key: str | None = None, description: str = "",
) -> Metric:
    """Add a budgetable cost, so that a fifth budget is data: budgets, constraints, the sampler's
    check, objectives, recorded results and the dashboard all read the registry.

    Example:
        >>> power = register_metric("power", lambda r: r.energy_uj / r.latency_ms, unit="mW",
        ...                         description="average power of one inference")
        >>> Budgets(power=5.0).power, "power" in METRICS
        (5.0, True)
        >>> unregister_metric("power")
    """
    if not isinstance(name, str) or not name.isidentifier() or name == "accuracy":
        raise ConfigError(f"metric name {name!r} must be a Python identifier other than 'accuracy'")
    if name in METRICS:
        raise ConfigError(f"metric {name!r} is already registered; registered: {', '.join(METRICS)}")
    if not callable(value):
        raise ConfigError(f"metric {name!r}: value must be a function of a CostReport, got {value!r}")
    found = Metric(name, key or name, unit, ascii_unit or unit, value, description)
    METRICS[name] = found
    return found


def unregister_metric(name: str) -> None:
    """Remove a registered metric (the paper's four stay)."""
    if name in _BUILT_IN:
        raise ConfigError(f"metric {name!r} is built in and cannot be removed")
    METRICS.pop(name, None)


def metric(name: str) -> Metric:
    """The registered metric ``name``, or a one-line error naming the registered ones."""
    found = METRICS.get(name)
    if found is None:
        raise ConfigError(f"{name!r} is not a cost metric; use one of {', '.join(METRICS)}")
    return found


for _builtin in (
    Metric("memory", "memory_params", "params", "params", lambda r: float(r.memory_params),
           "numbers the deployed network stores (weights and per-channel biases)"),
    Metric("area", "area_mm2", "mm²", "mm2", lambda r: r.area_mm2, "chip area"),
    Metric("latency", "latency_ms", "ms", "ms", lambda r: r.latency_ms, "one inference, all timesteps"),
    Metric("energy", "energy_uj", "µJ", "uJ", lambda r: r.energy_uj, "one inference, dynamic plus leakage"),
):
    METRICS[_builtin.name] = _builtin
_BUILT_IN = frozenset(METRICS)


class Budgets(Mapping[str, float]):
    """Budgets by metric name (:data:`METRICS`); a metric without one is unconstrained.

    A read-only mapping of the set budgets, in the registry's order; ``budgets.area`` reads one
    (``None`` when unset). The paper's are :meth:`hasnas_paper`.

    Example:
        >>> b = Budgets.hasnas_paper()
        >>> b.memory, b.area, b.latency, b.energy
        (4000000.0, 100.0, 400.0, 120.0)
        >>> dict(Budgets(area=5, energy=None))
        {'area': 5.0}
        >>> Budgets(area=0)
        Traceback (most recent call last):
        ...
        hasnas_optuna._errors.ConfigError: budget area=0 must be a number > 0 (mm2)
        >>> Budgets(power=1)
        Traceback (most recent call last):
        ...
        hasnas_optuna._errors.ConfigError: 'power' is not a cost metric; use one of memory, area, latency, energy
    """

    __slots__ = ("_limits",)
    _limits: dict[str, float]

    def __init__(self, limits: Mapping[str, float | None] | None = None, /, **named: float | None) -> None:
        values: dict[str, float] = {}
        for name, value in {**(limits or {}), **named}.items():
            unit = metric(name).ascii_unit
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and value > 0
            ):
                raise ConfigError(f"budget {name}={value!r} must be a number > 0 ({unit})")
            values[name] = float(value)
        object.__setattr__(self, "_limits", {name: values[name] for name in METRICS if name in values})

    def __getattr__(self, name: str) -> float | None:
        if name in METRICS:
            return self._limits.get(name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Budgets are read-only")

    def __getitem__(self, name: str) -> float:
        return self._limits[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._limits)

    def __len__(self) -> int:
        return len(self._limits)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Budgets) and self._limits == other._limits

    def __hash__(self) -> int:
        return hash(tuple(self._limits.items()))

    def __repr__(self) -> str:
        return "Budgets(" + ", ".join(f"{k}={v:g}" for k, v in self._limits.items()) + ")"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Budgets, (dict(self._limits),))

    @classmethod
    def hasnas_paper(cls) -> Budgets:
        """HASNAS's budgets: 4x10^6 parameters, 100 mm^2, 400 ms, 120 uJ."""
        return cls(memory=4e6, area=100.0, latency=400.0, energy=120.0)

    def check(self, report: CostReport) -> list[tuple[str, float, float, float]]:
        """``(name, cost, budget, cost / budget - 1)`` per set budget; slack <= 0 passes."""
        out = []
        for name, limit in self._limits.items():
            cost = float(METRICS[name].value(report))
            out.append((name, cost, limit, cost / limit - 1.0))
        return out

