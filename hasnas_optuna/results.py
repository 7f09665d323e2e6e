"""What a trial records about its costs: the attribute names, in one place.

A trial's costs are user attributes ``cost/<key>`` (at its measured spike rates, or its prior
ones when it ends untrained) and ``prior/<key>`` (before training, at the chip's prior rates),
one per registered metric (:data:`hasnas_optuna.cim.METRICS`) plus the report's breakdown totals.
The objective writes them; the dashboard, the report, the export and the CLI read them by these
names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hasnas_optuna.cim import METRICS, CostReport, Metric
from hasnas_optuna.storage import masked

__all__ = [
    "ARCHITECTURE_COLUMNS", "COST_ATTRS", "COST_PREFIX", "PRIOR_PREFIX", "UNITS", "WORKER_ATTR", "best_feasible_trials",
    "best_rows", "cost_attrs", "format_best", "format_cost", "is_feasible", "rows_json", "trial_row", "worker_id",
]

COST_PREFIX = "cost/"
PRIOR_PREFIX = "prior/"
WORKER_ATTR = "worker"
"""User attribute: ``host:pid`` of the process running the trial (a rerun fails trials of dead ones)."""


def worker_id() -> str:
    """``host:pid`` of this process.

    Example:
        >>> import os
        >>> worker_id().endswith(f":{os.getpid()}")
        True
    """
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


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


# ---------------------------------------------------------------------------------------------
# Best feasible trials

def is_feasible(trial: FrozenTrial | optuna.Trial) -> bool:
    """True when every constraint of the trial is <= 0 (a trial without constraints is feasible).

    Example:
        >>> from optuna.trial import create_trial
        >>> is_feasible(create_trial(value=1.0, system_attrs={"constraints:area": 0.1}))
        False
        >>> is_feasible(create_trial(value=1.0))  # no constraints
        True
    """
    return all(value <= 0 for value in trial.constraints.values())


def best_feasible_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Feasible, trained, complete trials, best first (by accuracy); for several objectives only
    those on Optuna's constraint-aware Pareto front (``study.best_trials``).

    Example:
        >>> from optuna.trial import create_trial
        >>> study = optuna.create_study(direction="maximize")
        >>> for acc, slack in [(0.9, -0.1), (0.95, 0.2), (0.8, -0.5)]:
        ...     study.add_trial(create_trial(value=acc, user_attrs={"trained": True},
        ...                                  system_attrs={"constraints:energy": slack}))
        >>> [t.number for t in best_feasible_trials(study)]
        [0, 2]
    """
    trials = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("trained") and is_feasible(t)
    ]
    if len(study.directions) > 1:
        front = {t.number for t in study.best_trials}
        trials = [t for t in trials if t.number in front]
    trials.sort(key=lambda t: (-(t.values[0] if t.values else 0.0), t.number))
    return trials


def format_cost(name: str, value: Any) -> str:
    """A metric's value as text: memory with thousands separators, others to 4 significant digits.

    Example:
        >>> format_cost("memory", 1234567), format_cost("energy", 12.34567), format_cost("area", None)
        ('1,234,567', '12.35', '-')
    """
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value:,.0f}" if name == "memory" else f"{value:.4g}"


def best_rows(study: optuna.Study, limit: int = 10) -> list[dict[str, Any]]:
    """The best feasible trained trials (:func:`best_feasible_trials`) as rows (:func:`trial_row`)."""
    return [trial_row(t) for t in best_feasible_trials(study)[:limit]]


def trial_row(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as a row: number, accuracies, one column per registered metric (its key), summary.

    Example:
        >>> import optuna
        >>> t = optuna.trial.create_trial(value=0.9, user_attrs={"val_accuracy": 0.9, "cost/energy_uj": 12.5})
        >>> row = trial_row(t)
        >>> row["val_accuracy"], row["energy_uj"], row["area_mm2"]
        (0.9, 12.5, None)
    """
    attrs = trial.user_attrs
    return {
        "trial": trial.number, "val_accuracy": attrs.get("val_accuracy"), "test_accuracy": attrs.get("test_accuracy"),
        **{metric.key: attrs.get(COST_PREFIX + metric.key) for metric in METRICS.values()},
        "summary": attrs.get("summary", ""), "architecture": attrs.get("architecture"), "params": trial.params,
    }


ARCHITECTURE_COLUMNS = 100
"""Width the best-trials table keeps to: longer architecture summaries are cut (``hasnas best --wide``)."""


def format_best(study: optuna.Study, rows: Sequence[dict[str, Any]], *, storage: str | None = None,
                wide: bool = False) -> str:
    """The table ``hasnas search`` ends with and ``hasnas best`` prints; summaries cut to fit 100 columns
    unless ``wide``."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    trained = sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("trained"))
    lines = [
        f"study {study.study_name!r}: {len(states)} trials ({states.count(TrialState.COMPLETE)} complete, "
        f"{states.count(TrialState.PRUNED)} pruned, {states.count(TrialState.FAIL)} failed), "
        f"{trained} trained, {len(states) - trained} never trained",
    ]
    cut = False
    if not rows:
        lines.append("no feasible trained trial yet")
    else:
        lines.append(f"{'trial':>5} {'val acc':>7} {'test acc':>8} {'params':>9} {'area mm2':>9} "
                     f"{'latency ms':>10} {'energy uJ':>9}  architecture")
        for r in rows:
            test = f"{r['test_accuracy']:.3f}" if r["test_accuracy"] is not None else "-"
            line = (f"{r['trial']:>5} {r['val_accuracy']:>7.3f} {test:>8} {r['memory_params']:>9,} "
                    f"{r['area_mm2']:>9.3f} {r['latency_ms']:>10.4f} {r['energy_uj']:>9.4f}  ")
            room = ARCHITECTURE_COLUMNS - len(line)
            summary = str(r["summary"])
            if not wide and len(summary) > room:
                summary, cut = summary[:room - 1] + "…", True
            lines.append(line + summary)
        if cut:
            lines.append("(architectures cut to fit 100 columns: hasnas best --wide or --json shows them whole)")
    if storage is not None:
        lines.append(f"watch it: hasnas dashboard --storage {masked(storage)} --study-name {study.study_name}")
    return "\n".join(lines)


def rows_json(rows: Sequence[dict[str, Any]]) -> str:
    """:func:`best_rows` as JSON text."""
    return json.dumps(list(rows), indent=2)
