"""optuna-dashboard views of a HASNAS study: cost and feasibility columns, a note, a Pareto plot.

optuna-dashboard 0.21 reads only the legacy ``constraints`` system attribute, not Optuna 5's
named constraints (``trial.set_constraint``): out of the box every trial looks feasible and its
best trials include infeasible ones (optuna.md section 6). Writing the legacy list as well is
not safe: Optuna 5 merges both formats, so each budget would count twice in the samplers'
constraint handling (and it could only be written while a trial runs). Instead:

* :func:`annotate_trial` (inside the objective, after the constraints are set) mirrors them into
  numeric user attributes, which the dashboard shows as sortable columns: ``feasible`` (1 or 0),
  ``slack/<budget>`` (``cost / budget - 1``, <= 0 meets it) and ``slack/max``, next to the
  objective's ``cost/*`` columns;
* :func:`annotate_study` (after each trial or at the end) writes a study note with the budgets,
  the chip and the best feasible trial, and a constraint-aware Pareto plot per cost objective
  (:func:`pareto_figure`, saved with ``optuna_dashboard.save_plotly_graph_object``);
* :func:`serve_dashboard` (``hasnas dashboard``) serves the storage through :class:`DashboardView`,
  a read-side view that adds the legacy ``constraints`` list and any missing columns to the
  trials it hands to the dashboard, without writing them: the dashboard then colours infeasible
  trials in its plots and its single-objective "best trial" is the best feasible one. It binds to
  127.0.0.1 and wires in the study's artifact store. In that process only, the dashboard's
  multi-objective best trials are computed over the feasible trials (its own Pareto front code
  ignores constraints, optuna-dashboard #772): see :func:`dashboard_app`.

Example:
    >>> import optuna
    >>> study = optuna.create_study()
    >>> trial = study.ask()
    >>> trial.set_constraint("memory", 0.25)
    >>> annotate_trial(trial)
    {'feasible': 0, 'slack/memory': 0.25, 'slack/max': 0.25}
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
from collections.abc import Container, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from hasnas_optuna._errors import ConfigError
from hasnas_optuna._trial_writes import set_user_attrs
from hasnas_optuna.artifacts import artifact_dir_for, open_artifact_store
from hasnas_optuna.results import COST_ATTRS, UNITS, best_feasible_trials, format_cost, is_feasible
from hasnas_optuna.storage import masked, open_storage

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import StudyDirection
    from optuna.study._frozen import FrozenStudy

    from hasnas_optuna.config import StudyConfig

__all__ = [
    "BUDGETS_ATTR", "COST_ATTRS", "FEASIBLE_ATTR", "HARDWARE_ATTR", "SLACK_PREFIX", "DashboardView",
    "annotate_study", "annotate_trial", "best_feasible_trials", "dashboard_app", "is_feasible",
    "pareto_figure", "serve_dashboard", "study_budgets", "study_note",
    "trial_columns",
]

_LOG = optuna.logging.get_logger("hasnas_optuna.dashboard")

FEASIBLE_ATTR = "feasible"
SLACK_PREFIX = "slack/"
BUDGETS_ATTR = "hasnas/budgets"
"""Study user attribute: ``{budget name: limit}``, written by :func:`annotate_study` from the config."""
HARDWARE_ATTR = "hasnas/hardware"
"""Study user attribute: ``{"preset": name, "overrides": {...}, "searched_knobs": bool}``."""
_CONFIG_ATTR = "hasnas/config"  # written by hasnas_optuna.study.open_study
_PLOT_HASH_PREFIX = "hasnas:plot-hash:"
_ORDER = ("memory", "area", "latency", "energy")
_WARNED: list[bool] = []  # the missing-plotly warning, once per process


# ---------------------------------------------------------------------------------------------
# Per trial

def _ordered(constraints: Mapping[str, float]) -> list[str]:
    known = [name for name in _ORDER if name in constraints]
    return known + sorted(name for name in constraints if name not in _ORDER)


def trial_columns(trial: FrozenTrial | optuna.Trial) -> dict[str, float | int]:
    """The dashboard columns of a trial: ``feasible`` (1/0), ``slack/<budget>`` and ``slack/max``.

    Example:
        >>> from optuna.trial import create_trial
        >>> trial = create_trial(value=0.9, system_attrs={"constraints:area": -0.5, "constraints:energy": 0.1})
        >>> trial_columns(trial)
        {'feasible': 0, 'slack/area': -0.5, 'slack/energy': 0.1, 'slack/max': 0.1}
    """
    return _columns(trial.constraints)


def _columns(constraints: Mapping[str, float]) -> dict[str, float | int]:
    columns: dict[str, float | int] = {FEASIBLE_ATTR: int(all(value <= 0 for value in constraints.values()))}
    for name in _ordered(constraints):
        columns[SLACK_PREFIX + name] = float(constraints[name])
    if constraints:
        columns[SLACK_PREFIX + "max"] = max(float(v) for v in constraints.values())
    return columns


def annotate_trial(trial: optuna.Trial, *, constraints: Mapping[str, float] | None = None,
                   extra: Mapping[str, Any] | None = None) -> dict[str, float | int]:
    """Write :func:`trial_columns` (and ``extra`` user attributes) to a running trial; returns the columns.

    Call it in the objective after the trial's constraints are set (and before it returns or
    raises ``TrialPruned``): Optuna refuses to change finished trials. ``constraints``, when the
    caller has just set them, saves reading them back. One storage transaction.
    """
    columns = _columns(trial.constraints if constraints is None else constraints)
    set_user_attrs(trial, {**columns, **(extra or {})})
    return columns


# ---------------------------------------------------------------------------------------------
# Per study: budgets, best trials

def study_budgets(study: optuna.Study) -> tuple[dict[str, float], str]:
    """The study's budgets and where they came from: ``"config"`` (stored by :func:`annotate_study`),
    ``"inferred"`` (from trials' costs and slacks: ``budget = cost / (slack + 1)``) or ``"none"``.

    Example:
        >>> from optuna.trial import create_trial
        >>> study = optuna.create_study()
        >>> study.add_trial(create_trial(value=0.5, user_attrs={"cost/energy_uj": 3.0},
        ...                              system_attrs={"constraints:energy": 0.5}))
        >>> study_budgets(study)
        ({'energy': 2.0}, 'inferred')
    """
    stored = study.user_attrs.get(BUDGETS_ATTR)
    if isinstance(stored, Mapping):
        return {name: float(stored[name]) for name in _ordered(stored)}, "config"
    found: dict[str, float] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, slack in trial.constraints.items():
            cost = trial.user_attrs.get(COST_ATTRS.get(name, ""))
            if name in found or not isinstance(cost, (int, float)) or slack <= -1 or cost <= 0:
                continue
            found[name] = float(f"{cost / (slack + 1.0):.6g}")
    return ({name: found[name] for name in _ordered(found)}, "inferred") if found else ({}, "none")


def _accuracy(trial: FrozenTrial) -> float | None:
    value = trial.user_attrs.get("val_accuracy")
    if isinstance(value, (int, float)):
        return float(value)
    if trial.user_attrs.get("trained") is False:
        return 0.0
    return None


def _cost_objectives(study: optuna.Study) -> list[str]:
    names = study.metric_names or []
    return [name for name in names[1:] if name in COST_ATTRS]


def _fmt(name: str, value: float) -> str:
    return f"{format_cost(name, value)} {UNITS[name]}"


# ---------------------------------------------------------------------------------------------
# Pareto plot

def _front(points: Sequence[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Non-dominated (cost low, accuracy high) points, by increasing cost."""
    front: list[tuple[float, float, int]] = []
    best = -math.inf
    for cost, acc, number in sorted(points, key=lambda p: (p[0], -p[1], p[2])):
        if acc > best:
            front.append((cost, acc, number))
            best = acc
    return front


def pareto_figure(study: optuna.Study, *, cost: str | None = None, budgets: Mapping[str, float] | None = None
                  ) -> Any:
    """Accuracy against one cost, feasible and infeasible trials told apart (a plotly ``Figure``).

    Traces: feasible trained trials, trained trials that break a budget, trials rejected before
    training (drawn at accuracy 0), and the Pareto front of the feasible ones; the budget on
    ``cost`` is a dashed line. ``cost`` defaults to the study's first cost objective, else energy.

    Example:
        >>> from optuna.trial import create_trial
        >>> study = optuna.create_study(direction="maximize")
        >>> for acc, energy, slack in [(0.9, 1.0, -0.5), (0.8, 0.5, -0.75), (0.95, 3.0, 0.5)]:
        ...     study.add_trial(create_trial(value=acc, user_attrs={"trained": True, "val_accuracy": acc,
        ...                     "cost/energy_uj": energy}, system_attrs={"constraints:energy": slack}))
        >>> fig = pareto_figure(study)
        >>> [(trace.name, len(trace.x)) for trace in fig.data]
        [('feasible', 2), ('trained, breaks a budget', 1), ('feasible Pareto front', 2)]
    """
    import plotly.graph_objects as go

    if cost is None:
        objectives = _cost_objectives(study)
        cost = objectives[0] if objectives else "energy"
    if cost not in COST_ATTRS:
        raise ConfigError(f"cost={cost!r} is not a cost; use one of {', '.join(COST_ATTRS)}")
    if budgets is None:
        budgets = study_budgets(study)[0]
    attr = COST_ATTRS[cost]
    groups: dict[str, list[tuple[float, float, int, str]]] = {"feasible": [], "infeasible": [], "rejected": []}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        value, acc = trial.user_attrs.get(attr), _accuracy(trial)
        if not isinstance(value, (int, float)) or acc is None:
            continue
        if trial.user_attrs.get("trained") is False:
            group = "rejected"
        else:
            group = "feasible" if is_feasible(trial) else "infeasible"
        broken = [name for name, slack in trial.constraints.items() if slack > 0]
        hover = (f"trial {trial.number}<br>accuracy {acc:.3f}<br>{cost} {_fmt(cost, float(value))}<br>"
                 + (f"breaks {', '.join(broken)}" if broken else "meets every budget"))
        groups[group].append((float(value), acc, trial.number, hover))
    styles = {
        "feasible": ("feasible", dict(color="#1f77b4", size=9, symbol="circle")),
        "infeasible": ("trained, breaks a budget", dict(color="#d62728", size=9, symbol="x")),
        "rejected": ("rejected before training", dict(color="#9a9a9a", size=7, symbol="x-thin-open",
                                                      line=dict(width=1.5, color="#9a9a9a"))),
    }
    fig = go.Figure()
    for key, points in groups.items():
        if not points:
            continue
        name, marker = styles[key]
        fig.add_trace(go.Scatter(
            x=[p[0] for p in points], y=[p[1] for p in points], mode="markers", name=name, marker=marker,
            text=[p[3] for p in points], hovertemplate="%{text}<extra></extra>",
            customdata=[p[2] for p in points],
        ))
    front = _front([(p[0], p[1], p[2]) for p in groups["feasible"]])
    if front:
        fig.add_trace(go.Scatter(
            x=[p[0] for p in front], y=[p[1] for p in front], mode="lines", name="feasible Pareto front",
            line=dict(color="#1f77b4", shape="hv", width=1.5), hoverinfo="skip",
        ))
    values = [p[0] for points in groups.values() for p in points]
    log = bool(values) and min(values) > 0 and max(values) / min(values) > 30
    if cost in budgets:
        fig.add_vline(x=budgets[cost], line=dict(color="#d62728", dash="dash", width=1),
                      annotation_text=f"{cost} budget {_fmt(cost, budgets[cost])}", annotation_position="top")
    counts = ", ".join(f"{len(points)} {styles[key][0]}" for key, points in groups.items() if points)
    fig.update_layout(
        template="none", height=460, margin=dict(l=70, r=30, t=70, b=60),
        title=dict(text=f"Accuracy vs {cost}: feasible vs infeasible ({counts or 'no trials yet'})",
                   font=dict(size=15)),
        xaxis=dict(title=f"{cost} ({UNITS[cost]})", type="log" if log else "linear", gridcolor="#e5e5e5"),
        yaxis=dict(title="validation accuracy", range=[-0.03, 1.03], gridcolor="#e5e5e5"),
        legend=dict(orientation="h", y=-0.18),
    )
    return fig


# ---------------------------------------------------------------------------------------------
# Note and study annotation

def _hardware_line(hardware: Mapping[str, Any] | None) -> str:
    if not hardware:
        return "unknown (annotate the study with its config to record it)"
    overrides = hardware.get("overrides") or {}
    text = f"`{hardware.get('preset')}`"
    if overrides:
        text += " with " + ", ".join(f"{k} = {v}" for k, v in sorted(overrides.items()))
    if hardware.get("searched_knobs"):
        text += "; chip knobs searched per trial"
    quantize = hardware.get("quantize")
    if quantize is False:
        text += "; networks trained in float32 (costed at the chip's precision)"
    elif quantize is not None:
        text += (f"; networks trained and evaluated at each trial's weight_bits "
                 f"({'per_channel' if quantize is True else quantize} steps)")
        if hardware.get("adc_aware"):
            text += f", ADC simulated ({hardware['adc_aware']})"
    return text


def study_note(study: optuna.Study) -> str:
    """The markdown note :func:`annotate_study` saves: budgets, chip, counts and best feasible trial.

    Example:
        >>> study = optuna.create_study(study_name="demo")
        >>> study_note(study).splitlines()[0]
        '### HASNAS study `demo`'
    """
    budgets, source = study_budgets(study)
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.is_finished()]
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    trained = sum(1 for t in complete if t.user_attrs.get("trained"))
    rejected = sum(1 for t in complete if t.user_attrs.get("trained") is False)
    feasible = sum(1 for t in complete if is_feasible(t) and t.user_attrs.get("trained"))
    directions = [d.name.lower() for d in study.directions]
    names = study.metric_names or [f"objective {i}" for i in range(len(directions))]
    lines = [
        f"### HASNAS study `{study.study_name}`",
        "",
        f"**Chip:** {_hardware_line(study.user_attrs.get(HARDWARE_ATTR))}  ",
        "**Objectives:** " + ", ".join(f"{n} ({d})" for n, d in zip(names, directions, strict=True)),
        "",
    ]
    if budgets:
        lines += ["| budget | limit | trials within it |", "|:--|--:|--:|"]
        for name, limit in budgets.items():
            within = sum(1 for t in complete if name in t.constraints and t.constraints[name] <= 0)
            lines.append(f"| {name} | {_fmt(name, limit)} | {within} of {len(complete)} |")
        if source == "inferred":
            lines.append("")
            lines.append("_Budgets inferred from the trials' costs and slacks._")
    else:
        lines.append("**Budgets:** none")
    lines += [
        "",
        f"**Trials:** {len(finished)} finished ({len(complete)} complete, "
        f"{sum(t.state == TrialState.PRUNED for t in finished)} pruned, "
        f"{sum(t.state == TrialState.FAIL for t in finished)} failed): {trained} trained, "
        f"{rejected} rejected before training, {feasible} trained and feasible.",
        "",
    ]
    best = best_feasible_trials(study)
    if best:
        t = best[0]
        attrs = t.user_attrs
        test = attrs.get("test_accuracy")
        costs = ", ".join(_fmt(name, float(attrs[attr])) for name, attr in COST_ATTRS.items()
                          if isinstance(attrs.get(attr), (int, float)))
        precision = attrs.get("precision")
        bits = (f"; {precision['weight_bits']}-bit weights" if isinstance(precision, Mapping)
                and precision.get("weight_bits") else "")
        lines += [
            f"**Best feasible trial: #{t.number}**, validation accuracy {attrs.get('val_accuracy', 0.0):.3f}"
            + (f" (test {test:.3f})" if isinstance(test, (int, float)) else "") + f"{bits}; {costs}.  ",
            f"`{attrs.get('summary', '')}`",
        ]
        if len(best) > 1 and len(study.directions) > 1:
            lines.append(f"\n{len(best)} feasible trials on the Pareto front: "
                         + ", ".join(f"#{b.number}" for b in best[:20]) + ("..." if len(best) > 20 else ""))
    else:
        lines.append("**Best feasible trial:** none yet.")
    lines += [
        "",
        "Columns: `feasible` (1 meets every budget), `slack/<budget>` = cost / budget - 1 (<= 0 meets it; "
        "`slack/max` is the worst), `cost/*` the costs (at measured spike rates once trained), `prior/*` "
        "before training. The study page's plot *Accuracy vs ...: feasible vs infeasible* (`hasnas-pareto-*`) "
        "tells feasible from infeasible trials; served by `hasnas dashboard`, the dashboard's own plots grey out "
        "infeasible trials and its best trials are feasible ones (plain `optuna-dashboard` ignores Optuna 5 "
        "constraints).",
    ]
    return "\n".join(lines) + "\n"


def _config_attrs(config: StudyConfig) -> tuple[dict[str, float], dict[str, Any]]:
    budgets = dict(config.budgets.items())
    hardware = {"preset": config.hardware_preset, "overrides": dict(config.hardware_overrides),
                "searched_knobs": config.space.hardware is not None, "quantize": config.training.quantize,
                "adc_aware": config.training.adc_aware}
    return budgets, json.loads(json.dumps(hardware, default=str))


def annotate_study(study: optuna.Study, *, config: StudyConfig | None = None, plots: bool = True) -> str:
    """(Re)write the study's dashboard annotations; returns the note.

    Stores the config's budgets and chip as study user attributes (``hasnas/budgets``,
    ``hasnas/hardware``), saves :func:`study_note` as the study note and one
    :func:`pareto_figure` per cost objective (energy for an accuracy-only study) as plotly graph
    objects ``hasnas-pareto-<cost>``. Only what changed is written, so calling it after every
    trial is cheap. Without plotly the plots are skipped (with one warning per process).

    Example:
        >>> from hasnas_optuna.config import StudyConfig
        >>> study = optuna.create_study(direction="maximize")
        >>> note = annotate_study(study, config=StudyConfig.from_dict({"budgets": {"energy": 2.0}}))
        >>> study.user_attrs["hasnas/budgets"], "| energy | 2 µJ | 0 of 0 |" in note
        ({'energy': 2.0}, True)
    """
    from optuna_dashboard import get_note, save_note, save_plotly_graph_object

    if config is not None:
        budgets, hardware = _config_attrs(config)
        if study.user_attrs.get(BUDGETS_ATTR) != budgets:
            study.set_user_attr(BUDGETS_ATTR, budgets)
        if study.user_attrs.get(HARDWARE_ATTR) != hardware:
            study.set_user_attr(HARDWARE_ATTR, hardware)
    note = study_note(study)
    if get_note(study) != note:
        save_note(study, note)
    if not plots:
        return note
    try:
        import plotly  # noqa: F401
    except ImportError:
        if not _WARNED:
            _LOG.warning("plotly is not installed: no Pareto plot in the dashboard (pip install 'hasnas-optuna[plot]')")
            _WARNED.append(True)
        return note
    budgets_now = study_budgets(study)[0]
    system = study._storage.get_study_system_attrs(study._study_id)
    for cost in _cost_objectives(study) or ["energy"]:
        fig = pareto_figure(study, cost=cost, budgets=budgets_now)
        body = fig.to_json()
        digest = hashlib.sha1(body.encode("utf-8")).hexdigest()
        key = _PLOT_HASH_PREFIX + cost
        if system.get(key) != digest:
            save_plotly_graph_object(study, fig, graph_object_id=f"hasnas-pareto-{cost}")
            study._storage.set_study_system_attr(study._study_id, key, digest)
    return note


# ---------------------------------------------------------------------------------------------
# Serving

class DashboardView(BaseStorage):
    """A storage that forwards everything to ``inner`` but shows the dashboard Optuna 5 constraints.

    Trials it returns carry the legacy ``constraints`` list (built from the named constraints)
    and the :func:`trial_columns` user attributes they lack, and long list or dict user attributes
    (architecture, history, spike rates) shortened to one line so the trials table stays readable
    (the full values stay in storage and in the trial's artifacts); nothing is written to ``inner``.
    ``get_best_trial`` returns the best feasible complete trial when there is one.

    Example:
        >>> from optuna.trial import create_trial
        >>> study = optuna.create_study()
        >>> study.add_trial(create_trial(value=1.0, system_attrs={"constraints:energy": 0.5}))
        >>> view = DashboardView(study._storage)
        >>> trial = view.get_all_trials(study._study_id)[0]
        >>> trial.system_attrs["constraints"], trial.user_attrs["feasible"]
        ([0.5], 0)
        >>> "constraints" in study.trials[0].system_attrs  # the stored trial is unchanged
        False
    """

    def __init__(self, inner: BaseStorage) -> None:
        self.inner = inner

    @staticmethod
    def _view(trial: FrozenTrial) -> FrozenTrial:
        constraints = trial.constraints
        system = trial.system_attrs
        columns = {k: v for k, v in trial_columns(trial).items() if k not in trial.user_attrs} if constraints else {}
        short = {k: _one_line(v) for k, v in trial.user_attrs.items() if isinstance(v, (list, dict))}
        short = {k: v for k, v in short.items() if v is not None}
        add_legacy = bool(constraints) and "constraints" not in system
        if not add_legacy and not columns and not short:
            return trial
        shown = copy.copy(trial)
        if add_legacy:
            shown.system_attrs = {**system, "constraints": [constraints[n] for n in _ordered(constraints)]}
        if columns or short:
            shown.user_attrs = {**trial.user_attrs, **short, **columns}
        return shown

    # -- reads that are changed -------------------------------------------------------------------

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
                       ) -> list[FrozenTrial]:
        return [self._view(t) for t in self.inner.get_all_trials(study_id, deepcopy=deepcopy, states=states)]

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._view(self.inner.get_trial(trial_id))

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        trials = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
        feasible = [t for t in trials if t.constraints and is_feasible(t) and t.values is not None]
        directions = self.get_study_directions(study_id)
        if not feasible or len(directions) != 1:
            return self._view(self.inner.get_best_trial(study_id))
        sign = 1.0 if directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1.0
        return max(feasible, key=lambda t: (sign * t.values[0], -t.number))

    def get_all_studies(self) -> list[FrozenStudy]:
        return sorted(self.inner.get_all_studies(), key=lambda s: s._study_id)

    # -- everything else is forwarded ---------------------------------------------------------------

    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        return self.inner.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self.inner.delete_study(study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self.inner.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.inner.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self.inner.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self.inner.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self.inner.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self.inner.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self.inner.get_study_system_attrs(study_id)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self.inner.create_new_trial(study_id, template_trial)

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        self.inner.set_trial_param(trial_id, param_name, param_value_internal, distribution)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self.inner.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
                               ) -> bool:
        return self.inner.set_trial_state_values(trial_id, state, values)

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self.inner.set_trial_intermediate_value(trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.inner.set_trial_user_attr(trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self.inner.set_trial_system_attr(trial_id, key, value)

    def remove_session(self) -> None:
        self.inner.remove_session()


def _one_line(value: Any, limit: int = 48) -> str | None:
    """``value`` as JSON cut to ``limit`` characters, or ``None`` if it is that short already."""
    text = json.dumps(value, default=str)
    return None if len(text) <= limit else text[: limit - 3] + "..."


class _QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without a log line per request."""

    def log_message(self, format: str, *args: Any) -> None:
        _LOG.debug("%s " + format, self.address_string(), *args)


def _feasible_best_trials() -> bool:
    """Make this process's optuna-dashboard compute multi-objective best trials over feasible trials.

    optuna-dashboard 0.21 takes the Pareto front of all complete trials (``_app.get_pareto_front_trials``,
    a private name); wrapped, a constrained study's front is taken over its feasible trials, as
    ``optuna.Study.best_trials`` does. Returns False (and changes nothing) if that name is gone.
    """
    try:
        from optuna_dashboard import _app
    except ImportError:  # pragma: no cover - optuna-dashboard is a dependency
        return False
    original = getattr(_app, "get_pareto_front_trials", None)
    if original is None:
        _LOG.debug("optuna-dashboard has no _app.get_pareto_front_trials: its best trials ignore constraints")
        return False
    if getattr(original, "hasnas_feasible", False):
        return True

    def feasible_front(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> list[FrozenTrial]:
        if any(t.constraints for t in trials):
            trials = [t for t in trials if is_feasible(t)]
        return list(original(trials=trials, directions=directions))

    feasible_front.hasnas_feasible = True  # type: ignore[attr-defined]
    _app.get_pareto_front_trials = feasible_front
    return True


def dashboard_app(storage: BaseStorage, *, artifact_store: Any = None) -> Any:
    """The optuna-dashboard WSGI app for ``storage`` seen through :class:`DashboardView`.

    In this process the dashboard's multi-objective best trials become the feasible Pareto front.

    Example:
        >>> app = dashboard_app(optuna.storages.InMemoryStorage())
        >>> callable(app)
        True
    """
    from optuna_dashboard import wsgi

    _feasible_best_trials()
    return wsgi(DashboardView(storage), artifact_store=artifact_store)


_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_COOKIE = "hasnas_token"


def guarded(app: Any, *, port: int, writable: bool = False, token: str | None = None) -> Any:
    """Wrap a WSGI app served on 127.0.0.1:``port``: the Host header must name this machine's
    loopback (a page elsewhere cannot reach it through DNS rebinding), and requests that change
    data are refused unless ``writable``; then they need the ``token`` cookie, which a first
    request with ``?token=TOKEN`` sets (HttpOnly, SameSite=Strict).

    Example:
        >>> def app(environ, start_response):
        ...     start_response("200 OK", [])
        ...     return [b"ok"]
        >>> statuses = []
        >>> wrapped = guarded(app, port=8080)
        >>> _ = wrapped({"REQUEST_METHOD": "DELETE", "HTTP_HOST": "127.0.0.1:8080"}, lambda s, h: statuses.append(s))
        >>> _ = wrapped({"REQUEST_METHOD": "GET", "HTTP_HOST": "evil.example:8080"}, lambda s, h: statuses.append(s))
        >>> statuses
        ['403 Forbidden', '403 Forbidden']
    """
    import hmac
    from http.cookies import SimpleCookie
    from urllib.parse import parse_qs

    hosts = {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")} | (
        {"127.0.0.1", "localhost", "[::1]"} if port == 80 else set())

    def refuse(start_response: Any, why: str) -> list[bytes]:
        body = (why + "\n").encode()
        start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", str(len(body)))])
        return [body]

    def serve(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("HTTP_HOST", "") not in hosts:
            return refuse(start_response, "host not allowed: this dashboard answers to 127.0.0.1 and localhost only")
        method = environ.get("REQUEST_METHOD", "GET").upper()
        given = parse_qs(environ.get("QUERY_STRING", "")).get("token", [""])[0]
        if method not in _READ_METHODS:
            if not writable:
                return refuse(start_response, "this dashboard is read-only; start it with hasnas dashboard "
                                              "--allow-writes to change studies")
            cookie = SimpleCookie(environ.get("HTTP_COOKIE", "")).get(TOKEN_COOKIE)
            if token is None or cookie is None or not hmac.compare_digest(cookie.value, token):
                return refuse(start_response, "writes need the token printed when the dashboard started "
                                              "(open its URL with ?token=...)")
        if writable and token is not None and given and hmac.compare_digest(given, token):
            def with_cookie(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                headers = [*headers, ("Set-Cookie", f"{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")]
                return start_response(status, headers, *exc)

            return app(environ, with_cookie)
        return app(environ, start_response)

    return serve


def serve_dashboard(
    storage: str,
    *,
    study_name: str | None = None,
    artifact_dir: str | Path | None = None,
    port: int = 8080,
    annotate: bool = True,
    allow_writes: bool = False,
    out: TextIO | None = sys.stdout,
) -> None:
    """Serve optuna-dashboard for ``storage`` on ``http://127.0.0.1:PORT`` until interrupted.

    The storage is served through :class:`DashboardView`, with the study's artifact store
    (:func:`~hasnas_optuna.artifacts.artifact_dir_for`) so trial artifacts can be previewed and
    downloaded. With ``annotate``, HASNAS studies (``study_name``, else every study made by
    ``hasnas search``) get :func:`annotate_study` first. ``port=0`` picks a free port; the first
    line written to ``out`` holds the address. The server is read-only unless ``allow_writes``;
    then the address carries a one-time token that writes need (:func:`guarded`).
    """
    backend = open_storage(storage, create=False)
    studies = backend.get_all_studies()
    names = [s.study_name for s in studies]
    if study_name is not None and study_name not in names:
        raise ConfigError(f"no study {study_name!r} in {masked(storage)}; studies there: {', '.join(names) or 'none'}")
    store = None
    folder: Path | None = None
    served = [s for s in studies if study_name is None or s.study_name == study_name]
    try:  # one study served: the folder its search recorded (server storages keep it by study)
        folder = artifact_dir_for(storage, artifact_dir, study=served[0] if len(served) == 1 else None)
    except ConfigError:
        _LOG.warning("no artifact folder for %s: serving without artifacts (give --artifact-dir)", masked(storage))
    if folder is not None:
        if artifact_dir is not None and not folder.is_dir():
            raise ConfigError(f"artifact folder {str(folder)!r} does not exist")
        store = open_artifact_store(folder, create=True)
    if annotate:
        for summary in studies:
            if study_name is not None and summary.study_name != study_name:
                continue
            if study_name is None and _CONFIG_ATTR not in summary.user_attrs:
                continue  # not a HASNAS study: leave it alone
            annotate_study(optuna.load_study(study_name=summary.study_name, storage=backend))
    import secrets

    token = secrets.token_urlsafe(24) if allow_writes else None
    app = dashboard_app(backend, artifact_store=store)
    try:
        server = make_server("127.0.0.1", port, app, handler_class=_QuietHandler)
    except OSError as exc:
        raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    server.set_app(guarded(app, port=server.server_port, writable=allow_writes, token=token))
    page = "" if study_name is None else f"studies/{backend.get_study_id_from_name(study_name)}"
    url = f"http://127.0.0.1:{server.server_port}/dashboard/{page}" + (f"?token={token}" if token else "")
    if out is not None:
        print(f"optuna-dashboard at {url} (storage {masked(storage)}; artifacts "
              f"{str(folder) if folder is not None else 'off'}; "
              f"{'writes allowed with this token' if token else 'read-only'}); Ctrl-C stops it", file=out, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
