"""What a trial records about its costs: the attribute names, in one place.

A trial's costs are user attributes ``cost/<key>`` (at its measured spike rates, or its prior
ones when it ends untrained) and ``prior/<key>`` (before training, at the chip's prior rates),
one per registered metric (:data:`hasnas_optuna.cim.METRICS`) plus the report's breakdown totals.
The objective writes them; the dashboard, the report, the export and the CLI read them by these
names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hasnas_optuna.cim import METRICS, CostReport, Metric

__all__ = ["COST_ATTRS", "COST_PREFIX", "PRIOR_PREFIX", "UNITS", "cost_attrs"]

COST_PREFIX = "cost/"
PRIOR_PREFIX = "prior/"


class _MetricView(Mapping[str, str]):
    """A read-only ``{metric name: text}`` view of the metric registry, current at every read."""

    def __init__(self, text: Callable[[Metric], str]) -> None:
        self._text = text

    def __getitem__(self, name: str) -> str:
        return self._text(METRICS[name])

    def __iter__(self) -> Iterator[str]:
        return iter(list(METRICS))

    def __len__(self) -> int:
        return len(METRICS)


COST_ATTRS: Mapping[str, str] = _MetricView(lambda m: COST_PREFIX + m.key)
"""Metric (budget and cost objective) name -> the user attribute holding the trial's cost.

Example:
    >>> COST_ATTRS["energy"], dict(COST_ATTRS)["memory"]
    ('cost/energy_uj', 'cost/memory_params')
"""
UNITS: Mapping[str, str] = _MetricView(lambda m: m.unit)
"""Metric name -> its unit as displayed (``mm²``, ``µJ``)."""


def cost_attrs(prefix: str, report: CostReport) -> dict[str, Any]:
    """The user attributes ``<prefix><key>`` of a cost report: every metric, and the breakdown totals.

    Example:
        >>> from hasnas_optuna.cim import Layer, Network, estimate_cost, load_hardware
        >>> report = estimate_cost(Network([Layer.linear(64, 10)], timesteps=2), load_hardware())
        >>> attrs = cost_attrs(COST_PREFIX, report)
        >>> attrs["cost/memory_params"], sorted(attrs)[:3]
        (640, ['cost/area_mm2', 'cost/energy_dynamic_uj', 'cost/energy_leakage_uj'])
    """
    values: dict[str, Any] = {m.key: m.value(report) for m in METRICS.values()}
    values.update({
        "memory_params": report.memory_params, "memory_bits": report.memory_bits,
        "energy_dynamic_uj": report.energy_dynamic_uj, "energy_leakage_uj": report.energy_leakage_uj,
    })
    return {prefix + key: value for key, value in values.items()}
