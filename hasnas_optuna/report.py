r"""A study report: one self-contained HTML page plus the PNG figures it shows.

``hasnas report --storage URL --study-name NAME --out DIR`` writes into ``DIR``:

- ``pareto.png``: accuracy against each cost objective (energy for an accuracy-only study),
  feasible trials against infeasible ones, with the feasible Pareto front and the budget;
- ``costs.png``: each cost of every trial against its budget, by trial number;
- ``best_layers.png``: the per-layer energy, area and latency of the best feasible network;
- ``progress.png``: accuracy and the best feasible accuracy so far over the search's time, and
  how many trials were trained and feasible;
- ``report.html``: the study summary, budgets, best feasible trials, the best network's drawing
  and per-layer table, and the four figures embedded (base64), so the page travels alone;
- every figure also as ``.svg`` and ``.pdf`` (vector, for papers), and the best feasible trials
  as ``front.csv`` and ``front.tex`` (a booktabs ``tabular`` to ``\input``).

Example:
    >>> import tempfile
    >>> from optuna.trial import create_trial
    >>> study = optuna.create_study(direction="maximize", study_name="demo")
    >>> study.add_trial(create_trial(value=0.0, user_attrs={"trained": False, "cost/energy_uj": 9.0},
    ...                              system_attrs={"constraints:energy": 2.0}))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     sorted(path.name for path in write_report(study, tmp).values())
    ['costs.png', 'front.csv', 'front.tex', 'pareto.png', 'progress.png', 'report.html']
"""

from __future__ import annotations

import base64
import datetime
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hasnas_optuna._errors import ConfigError
from hasnas_optuna.cim import METRICS
from hasnas_optuna.dashboard import (
    COST_ATTRS,
    HARDWARE_ATTR,
    UNITS,
    _front,
    study_budgets,
)
from hasnas_optuna.results import best_feasible_trials, format_cost, is_feasible, trial_row
from hasnas_optuna.storage import masked

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from optuna.artifacts._protocol import ArtifactStore

__all__ = ["write_report"]

_LOG = optuna.logging.get_logger("hasnas_optuna.report")
_COLORS = {"feasible": "#1f77b4", "infeasible": "#d62728", "rejected": "#9a9a9a", "budget": "#d62728"}
_LABELS = {"feasible": "feasible", "infeasible": "trained, breaks a budget", "rejected": "rejected before training"}
_ENERGY_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#7f7f7f")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("the report needs matplotlib: pip install 'hasnas-optuna[plot]'") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _group(trial: FrozenTrial) -> str:
    if trial.user_attrs.get("trained") is False:
        return "rejected"
    return "feasible" if is_feasible(trial) else "infeasible"


def _accuracy(trial: FrozenTrial) -> float | None:
    value = trial.user_attrs.get("val_accuracy")
    if isinstance(value, (int, float)):
        return float(value)
    return 0.0 if trial.user_attrs.get("trained") is False else None


def _save(fig: Figure, path: Path) -> Path:
    """The figure as PNG at ``path``, and as SVG and PDF beside it (vector, for papers)."""
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    fig.savefig(path.with_suffix(".svg"), metadata={"Date": None})
    fig.savefig(path.with_suffix(".pdf"), metadata={"CreationDate": None})
    _pyplot().close(fig)
    return path


def _front_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    import csv

    names = ["trial", "val_accuracy", "test_accuracy", *(m.key for m in METRICS.values()), "summary"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=names, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


_LATEX_SPECIAL = {**{c: "\\" + c for c in "&%$#_{}"}, "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "\\": r"\textbackslash{}"}


def _latex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def _front_tex(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    r"""A LaTeX ``tabular`` (booktabs rules) of the feasible front, ready to ``\input`` into a paper."""
    head = ["trial", "val. acc.", "test acc.", *(f"{_latex(n)} ({_latex(m.ascii_unit)})" for n, m in METRICS.items())]
    lines = [r"\begin{tabular}{" + "r" * len(head) + "l}", r"\toprule",
             " & ".join([*head, "architecture"]) + r" \\", r"\midrule"]
    for row in rows:
        cells = [str(row["trial"])]
        for key in ("val_accuracy", "test_accuracy"):
            cells.append(f"{row[key]:.3f}" if isinstance(row[key], (int, float)) else "--")
        for metric in METRICS.values():
            value = row.get(metric.key)
            cells.append(f"{value:.4g}" if isinstance(value, (int, float)) else "--")
        cells.append(r"\texttt{" + _latex(str(row["summary"])) + "}")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _legend(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")


def _scatter(ax: Axes, points: Mapping[str, Sequence[tuple[float, float]]]) -> None:
    markers = {"feasible": "o", "infeasible": "X", "rejected": "x"}
    for group, pts in points.items():
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=30 if group != "rejected" else 22,
                       marker=markers[group], color=_COLORS[group], label=f"{_LABELS[group]} ({len(pts)})",
                       alpha=0.85, zorder=3)


def _cost_objectives(study: optuna.Study) -> list[str]:
    names = study.metric_names or []
    return [name for name in names[1:] if name in COST_ATTRS] or ["energy"]


def _pareto_png(study: optuna.Study, path: Path, budgets: Mapping[str, float]) -> Path:
    """Accuracy against each cost objective, feasible against infeasible, with the feasible front."""
    plt = _pyplot()
    costs = _cost_objectives(study)
    fig, axes = plt.subplots(1, len(costs), figsize=(6.4 * len(costs), 4.4), squeeze=False)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for ax, cost in zip(axes[0], costs, strict=True):
        attr = COST_ATTRS[cost]
        points: dict[str, list[tuple[float, float]]] = {"feasible": [], "infeasible": [], "rejected": []}
        for t in trials:
            value, acc = t.user_attrs.get(attr), _accuracy(t)
            if isinstance(value, (int, float)) and acc is not None:
                points[_group(t)].append((float(value), acc))
        _scatter(ax, points)
        front = _front([(x, y, i) for i, (x, y) in enumerate(points["feasible"])])
        if front:
            xs = [p[0] for p in front]
            ys = [p[1] for p in front]
            ax.step(xs, ys, where="post", color=_COLORS["feasible"], lw=1.2, label="feasible Pareto front", zorder=2)
        if cost in budgets:
            ax.axvline(budgets[cost], color=_COLORS["budget"], ls="--", lw=1, label=f"{cost} budget")
        values = [p[0] for pts in points.values() for p in pts]
        if values and min(values) > 0 and max(values) / min(values) > 30:
            ax.set_xscale("log")
        ax.set(xlabel=f"{cost} ({UNITS[cost]})", ylabel="validation accuracy", ylim=(-0.03, 1.03),
               title=f"accuracy vs {cost}")
        ax.grid(alpha=0.3)
        _legend(ax)
    return _save(fig, path)


def _costs_png(study: optuna.Study, path: Path, budgets: Mapping[str, float]) -> Path:
    """Each cost of every complete trial against its budget, by trial number."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.4))
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    for ax, (cost, attr) in zip(axes.flat, COST_ATTRS.items(), strict=True):
        points: dict[str, list[tuple[float, float]]] = {"feasible": [], "infeasible": [], "rejected": []}
        for t in trials:
            value = t.user_attrs.get(attr)
            if isinstance(value, (int, float)) and value > 0:
                points[_group(t)].append((float(t.number), float(value)))
        _scatter(ax, points)
        if cost in budgets:
            ax.axhline(budgets[cost], color=_COLORS["budget"], ls="--", lw=1, label=f"budget {budgets[cost]:.4g}")
        values = [p[1] for pts in points.values() for p in pts]
        if values and max(values) / min(values) > 30:
            ax.set_yscale("log")
        ax.set(xlabel="trial", ylabel=f"{cost} ({UNITS[cost]})",
               title=f"{cost}" + ("" if cost in budgets else " (no budget)"))
        ax.grid(alpha=0.3)
        _legend(ax)
    return _save(fig, path)


def _progress_png(study: optuna.Study, path: Path) -> Path:
    """Accuracy over the search's wall-clock time, best feasible so far, and trial counts."""
    plt = _pyplot()
    trials = sorted((t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None),
                    key=lambda t: (t.datetime_complete, t.number))
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    origin = min(starts) if starts else None
    fig, (acc_ax, count_ax) = plt.subplots(1, 2, figsize=(11, 4))

    span = max(((t.datetime_complete - origin).total_seconds() for t in trials if t.datetime_complete and origin),
               default=0.0)
    unit, per = ("seconds", 1.0) if span < 120 else ("minutes", 60.0) if span < 7200 else ("hours", 3600.0)

    def minutes(t: FrozenTrial) -> float:
        assert t.datetime_complete is not None and origin is not None
        return (t.datetime_complete - origin).total_seconds() / per

    points: dict[str, list[tuple[float, float]]] = {"feasible": [], "infeasible": [], "rejected": []}
    best: list[tuple[float, float]] = []
    counts: list[tuple[float, int, int, int]] = []
    trained = feasible = 0
    for i, t in enumerate(trials, start=1):
        acc = _accuracy(t)
        group = _group(t)
        if t.state == TrialState.COMPLETE and acc is not None:
            points[group].append((minutes(t), acc))
        if t.user_attrs.get("trained"):
            trained += 1
        if t.state == TrialState.COMPLETE and group == "feasible":
            feasible += 1
            if acc is not None and (not best or acc > best[-1][1]):
                best.append((minutes(t), acc))
        counts.append((minutes(t), i, trained, feasible))
    _scatter(acc_ax, points)
    if best:
        xs = [p[0] for p in best] + [minutes(trials[-1])]
        ys = [p[1] for p in best] + [best[-1][1]]
        acc_ax.step(xs, ys, where="post", color="#2ca02c", lw=1.5, label="best feasible so far")
    acc_ax.set(xlabel=f"{unit} since the first trial started", ylabel="validation accuracy", ylim=(-0.03, 1.03),
               title="search progress")
    acc_ax.grid(alpha=0.3)
    _legend(acc_ax)
    if counts:
        xs = [c[0] for c in counts]
        for k, (label, color, width) in enumerate((("finished", "#555555", 1.5), ("trained", "#ff7f0e", 3.5),
                                                    ("trained and feasible", "#1f77b4", 1.5)), start=1):
            count_ax.step(xs, [c[k] for c in counts], where="post", label=label, color=color, lw=width)
    count_ax.set(xlabel=f"{unit} since the first trial started", ylabel="trials", title="trials over time")
    count_ax.grid(alpha=0.3)
    _legend(count_ax)
    return _save(fig, path)


def _layers_png(cost: Mapping[str, Any], path: Path, title: str) -> Path:
    """Per-layer energy (by component), area (by component) and latency of one cost report."""
    plt = _pyplot()
    layers = list(cost["layers"])
    names = [layer["name"] for layer in layers]
    height = max(3.0, 0.32 * len(names) + 1.6)
    fig, axes = plt.subplots(1, 3, figsize=(13, height), sharey=True)
    ys = list(range(len(names)))
    for ax, key, unit in ((axes[0], "energy_breakdown_uj", "µJ"), (axes[1], "area_breakdown_mm2", "mm²")):
        parts = list(layers[0][key]) if layers else []
        left = [0.0] * len(layers)
        for color, part in zip(_ENERGY_COLORS, parts, strict=False):
            widths = [float(layer[key][part]) for layer in layers]
            ax.barh(ys, widths, left=left, color=color, label=part.replace("_", " "))
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.set(xlabel=f"{'energy' if 'energy' in key else 'area'} ({unit})",
               title=f"{'energy per inference' if 'energy' in key else 'area'} by component")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(axis="x", alpha=0.3)
    axes[2].barh(ys, [float(layer["latency_ms"]) for layer in layers], color="#2ca02c")
    axes[2].set(xlabel="latency (ms)", title="latency")
    axes[2].grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys, names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1180px; color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: right; }
th { background: #f4f4f7; } td.l, th.l { text-align: left; }
.muted { color: #666; font-size: .85rem; } img { max-width: 100%; border: 1px solid #eee; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #c62828; font-weight: 600; }
.svg { overflow-x: auto; border: 1px solid #eee; }
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def _cell(value: Any, number_format: str = "") -> str:
    """HTML text of a table cell: a number formatted with ``number_format``, anything else escaped."""
    if number_format and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, number_format)
    return html.escape(str(value)) if value is not None else ""


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = ()) -> str:
    out = ["<table><tr>" + "".join(f'<th class="{"l" if i in left else ""}">{html.escape(h)}</th>'
                                   for i, h in enumerate(head)) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f'<td class="{"l" if i in left else ""}">{cell}</td>'
                                    for i, cell in enumerate(row)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def write_report(study: optuna.Study, out: str | Path, *, artifact_store: ArtifactStore | None = None,
                 storage: str | None = None, limit: int = 10) -> dict[str, Path]:
    """Write the report of ``study`` into the folder ``out``; returns ``{figure or "html": path}``.

    The best feasible network's per-layer costs come from its ``cost_report.json`` artifact when
    ``artifact_store`` holds it, else they are recomputed
    (:func:`hasnas_optuna.export.trial_cost_report`); without a feasible trained trial there is
    no ``best_layers.png``.
    """
    from hasnas_optuna.drawing import architecture_svg
    from hasnas_optuna.export import trial_cost_report

    _pyplot()
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".hasnas-write-test").write_bytes(b"")
        (folder / ".hasnas-write-test").unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to output folder {str(folder)!r}: {exc.strerror or exc}") from None
    budgets, source = study_budgets(study)
    written: dict[str, Path] = {
        "pareto": _pareto_png(study, folder / "pareto.png", budgets),
        "costs": _costs_png(study, folder / "costs.png", budgets),
        "progress": _progress_png(study, folder / "progress.png"),
    }
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = best_feasible_trials(study)
    states = {s.name.lower(): n for s in TrialState if (n := sum(t.state == s for t in trials))}
    hardware = study.user_attrs.get(HARDWARE_ATTR) or {}
    directions = [d.name.lower() for d in study.directions]
    names = study.metric_names or [f"objective {i}" for i in range(len(directions))]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>HASNAS report: {html.escape(study.study_name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>HASNAS study <code>{html.escape(study.study_name)}</code></h1>",
        f'<p class="muted">{html.escape(masked(storage) if storage else "")} &middot; {len(trials)} trials ('
        + ", ".join(f"{n} {html.escape(k)}" for k, n in states.items()) + ") &middot; objectives: "
        + ", ".join(f"{html.escape(n)} ({d})" for n, d in zip(names, directions, strict=True))
        + (f" &middot; chip <code>{html.escape(str(hardware.get('preset')))}</code>" if hardware else "")
        + "</p>",
        "<h2>Budgets</h2>",
    ]
    if budgets:
        rows = []
        for name, limit_value in budgets.items():
            within = sum(1 for t in complete if name in t.constraints and t.constraints[name] <= 0)
            limit_text = f"{format_cost(name, limit_value)} {UNITS.get(name, '')}"
            rows.append([html.escape(name), limit_text, f"{within} of {len(complete)}"])
        parts.append(_table(["budget", "limit", "complete trials within it"], rows, left=[0]))
        if source == "inferred":
            parts.append('<p class="muted">Budgets inferred from the trials\' costs and constraint values.</p>')
    else:
        parts.append("<p>No budgets.</p>")
    parts.append("<h2>Best feasible trials</h2>")
    if best:
        rows = []
        for t in best[:limit]:
            a = t.user_attrs
            test = a.get("test_accuracy")
            rows.append([str(t.number), f"{a.get('val_accuracy', 0.0):.3f}",
                         f"{test:.3f}" if isinstance(test, (int, float)) else "-"]
                        + [format_cost(n, a.get(attr)) for n, attr in COST_ATTRS.items()]
                        + [f"<code>{html.escape(str(a.get('summary', '')))}</code>"])
        head = ["trial", "val acc", "test acc", *(f"{name} {metric.unit}" for name, metric in METRICS.items())]
        parts.append(_table([*head, "architecture"], rows, left=[len(head)]))
    else:
        parts.append("<p>No feasible trained trial yet.</p>")
    figures = [("pareto", "Accuracy against cost: feasible and infeasible trials"),
               ("costs", "Each cost against its budget, by trial"),
               ("progress", "Search progress over time")]
    for key, caption in figures:
        parts += [f"<h2>{html.escape(caption)}</h2>", _img(written[key], caption)]
    if best:
        top = best[0]
        cost = trial_cost_report(study, top, artifact_store=artifact_store)
        title = f"trial {top.number}: per-layer costs on {cost.get('hardware', '?')}"
        written["best_layers"] = _layers_png(cost, folder / "best_layers.png", title)
        parts += [f"<h2>Best feasible network: trial {top.number}</h2>"]
        arch_data = top.user_attrs.get("architecture")
        if isinstance(arch_data, Mapping):
            from hasnas_optuna.architecture import Architecture

            svg = architecture_svg(Architecture.from_dict(arch_data), title=f"trial {top.number}")
            parts.append(f'<div class="svg">{svg}</div>')
        parts.append(_img(written["best_layers"], title))
        if cost.get("source"):
            parts.append(f'<p class="muted">{html.escape(str(cost["source"]))}</p>')
        # the report is read from a trial's artifact, which anyone who can write the study can craft:
        # every cell is escaped, and numbers are formatted only when they are numbers
        rows = [[_cell(layer.get("index")), _cell(layer.get("name")), _cell(layer.get("type")),
                 _cell(layer.get("params"), ","), _cell(layer.get("spike_rate"), ".3f"),
                 _cell(layer.get("area_mm2"), ".4g"), _cell(layer.get("energy_uj"), ".4g"),
                 _cell(layer.get("latency_ms"), ".4g")] for layer in cost["layers"] if isinstance(layer, Mapping)]
        rows.append(["", "<b>total</b>", "", f"<b>{_cell(cost.get('memory_params'), ',')}</b>", "",
                     f"<b>{_cell(cost.get('area_mm2'), '.4g')}</b>", f"<b>{_cell(cost.get('energy_uj'), '.4g')}</b>",
                     f"<b>{_cell(cost.get('latency_ms'), '.4g')}</b>"])
        parts.append(_table(["#", "layer", "type", "params", "spike rate", "area mm²", "energy µJ", "latency ms"],
                            rows, left=[1, 2]))
    stamp = max((t.datetime_complete for t in trials if t.datetime_complete is not None),
                default=None)
    parts.append('<p class="muted">Feasible: every constraint cost / budget - 1 &le; 0. Trials rejected before '
                 "training broke a budget at the chip's prior spike rates and were never trained (accuracy 0). "
                 + (f"Last trial finished {html.escape(stamp.strftime('%Y-%m-%d %H:%M:%S'))}." if isinstance(
                     stamp, datetime.datetime) else "") + "</p>")
    parts.append("</body></html>")
    front = [trial_row(t) for t in best[:limit]]
    written["front_csv"] = _front_csv(front, folder / "front.csv")
    written["front_tex"] = _front_tex(front, folder / "front.tex")
    written["html"] = folder / "report.html"
    written["html"].write_text("\n".join(parts) + "\n", encoding="utf-8")
    return written
