"""Running a study: storage, sampler, resume, progress lines and the table of best feasible trials."""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import optuna
import pytorch_lightning as pl
from optuna.trial import FrozenTrial, TrialState

from hasnas_optuna._errors import ConfigError, HasnasError
from hasnas_optuna.artifacts import artifact_dir_for
from hasnas_optuna.cim import estimate_cost
from hasnas_optuna.config import StudyConfig
from hasnas_optuna.dashboard import annotate_study
from hasnas_optuna.objective import HasnasObjective, set_budget_constraints
from hasnas_optuna.sampler import KEY_ATTR, HardwareAwareSampler
from hasnas_optuna.training import TrialFailed

__all__ = ["best_rows", "format_best", "make_sampler", "open_study", "run_search"]

CONFIG_ATTR = "hasnas/config"


def make_sampler(config: StudyConfig, *, hardware_aware: bool | None = None) -> optuna.samplers.BaseSampler:
    """The configured sampler (Optuna never stores samplers: every worker builds its own).

    With ``hardware_aware`` (the config's by default) the base sampler is wrapped in
    :class:`~hasnas_optuna.sampler.HardwareAwareSampler`.
    """
    seed = config.seed
    base: optuna.samplers.BaseSampler
    if config.sampler == "nsga2":
        base = optuna.samplers.NSGAIISampler(population_size=config.population_size, seed=seed)
    elif config.sampler == "tpe":
        base = optuna.samplers.TPESampler(seed=seed)
    elif config.sampler == "gp":
        base = optuna.samplers.GPSampler(seed=seed)
    else:
        base = optuna.samplers.RandomSampler(seed=seed)
    if not (config.hardware_aware if hardware_aware is None else hardware_aware):
        return base
    return HardwareAwareSampler(
        config.space, hardware=config.hardware(), budgets=config.budgets, base=base, seed=seed
    )


def open_study(config: StudyConfig, *, storage: str | optuna.storages.BaseStorage, study_name: str | None = None,
               sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create the study or load it to resume; refuse one made for other objectives or another space."""
    name = study_name or config.name
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
              if config.training.pruner == "median" and len(config.objectives) == 1 else optuna.pruners.NopPruner())
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, directions=config.directions,  # type: ignore[arg-type]
            sampler=sampler or make_sampler(config),
            pruner=pruner, load_if_exists=True,
        )
    except ValueError as exc:  # e.g. directions differ from the stored study
        raise ConfigError(f"study {name!r}: {exc}") from None
    except ImportError as exc:
        raise ConfigError(f"storage {storage!r} needs a database driver that is not installed: {exc}") from None
    except Exception as exc:  # SQLAlchemy errors: unreachable server, read-only file, bad URL
        raise ConfigError(f"cannot open storage {storage!r}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0]}") from None
    if [d.name.lower() for d in study.directions] != config.directions:
        raise ConfigError(f"study {name!r} has directions {[d.name.lower() for d in study.directions]}, "
                          f"the config asks for {config.directions}")
    fingerprint = config.search_space_fingerprint()
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None:
        study.set_user_attr(CONFIG_ATTR, fingerprint)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(config.objectives))
    elif stored != fingerprint:
        raise ConfigError(
            f"study {name!r} in this storage was made with another search space or objectives; "
            "use a new --study-name (or the config it was made with)"
        )
    return study


def run_search(
    config: StudyConfig,
    *,
    storage: str | optuna.storages.BaseStorage = "sqlite:///hasnas.db",
    study_name: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    datamodule: pl.LightningDataModule | None = None,
    out: TextIO | None = sys.stdout,
    artifact_dir: str | Path | None = None,
) -> optuna.Study:
    """Run (or resume) a study until it holds ``n_trials`` finished trials or ``timeout`` passes.

    Trained trials keep their artifacts in ``artifact_dir`` (by default ``<db>-artifacts/``
    beside a SQLite file; none for storages without a file unless a folder is given), and the
    study is annotated for optuna-dashboard (feasibility columns, note, Pareto plot).

    Example:
        >>> from hasnas_optuna.config import StudyConfig
        >>> config = StudyConfig.from_dict({"budgets": {"memory": 1}, "study": {"n_trials": 2}})
        >>> study = run_search(config, storage="sqlite://", out=None)  # every network breaks memory
        >>> [t.user_attrs["trained"] for t in study.trials]
        [False, False]
    """
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress lines replace Optuna's
    try:
        return _run(config, storage, study_name, n_trials, timeout, datamodule, out, artifact_dir)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _run(config: StudyConfig, storage: str | optuna.storages.BaseStorage, study_name: str | None,
         n_trials: int | None, timeout: float | None, datamodule: pl.LightningDataModule | None,
         out: TextIO | None, artifact_dir: str | Path | None) -> optuna.Study:
    study = open_study(config, storage=storage, study_name=study_name)
    target = n_trials if n_trials is not None else config.n_trials
    done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    remaining = max(target - done, 0)
    limit = timeout or config.timeout
    if out is not None:
        print(f"study {study.study_name!r}: {done} finished trials, running {remaining} more "
              f"({f'at most {limit:.0f} s' if limit else 'no time limit'})", file=out)
    if remaining == 0:
        annotate_study(study, config=config)
        return study
    try:
        folder: Path | None = artifact_dir_for(storage, artifact_dir)
    except ConfigError:
        folder = None  # in-memory or server storage without a folder: no artifacts
    objective = HasnasObjective(config, datamodule, artifact_dir=folder)
    if config.fitness != "trained":
        _enqueue_best_scored(config, study, objective, remaining, out)
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = []
    if out is not None:
        callbacks.append(_ProgressLine(out, config))
    def annotate(study: optuna.Study, trial: FrozenTrial) -> None:
        annotate_study(study, config=config)

    callbacks.append(annotate)
    study.optimize(objective, n_trials=remaining, timeout=timeout or config.timeout,
                   catch=(TrialFailed,), callbacks=callbacks, gc_after_trial=True)
    return study


def _enqueue_best_scored(config: StudyConfig, study: optuna.Study, objective: HasnasObjective, count: int,
                         out: TextIO | None) -> None:
    """Training-free mode: score candidates without training, enqueue the best ``count`` to train.

    Scoring trials live in their own study, ``<name>:scores`` (same storage, maximising the
    fitness), so they are never mixed up with trained trials; each carries its costs and
    constraints. Candidates come from the hardware-aware sampler, so they fit the budgets.
    """
    from hasnas_optuna.fitness import score_architecture

    scores = optuna.create_study(
        storage=study._storage, study_name=f"{study.study_name}:scores", direction="maximize",
        sampler=make_sampler(config, hardware_aware=True), load_if_exists=True,
    )
    scores.set_user_attr("hasnas/fitness", config.fitness)
    datamodule = objective.datamodule
    if hasattr(datamodule, "sample_batch"):
        images = datamodule.sample_batch(config.score_batch)
    else:
        datamodule.setup("fit")
        images = next(iter(datamodule.train_dataloader()))[0][: config.score_batch]

    def score(trial: optuna.Trial) -> float:
        arch, chip = objective.sample(trial)
        report = estimate_cost(arch.to_network(), chip)
        set_budget_constraints(trial, config.budgets, report)
        trial.set_user_attr("phase", "score")
        for key, value in (("memory_params", report.memory_params), ("area_mm2", report.area_mm2),
                           ("latency_ms", report.latency_ms), ("energy_uj", report.energy_uj)):
            trial.set_user_attr(f"cost/{key}", value)
        value = score_architecture(arch, images, fitness=config.fitness, seed=config.seed)
        return value if math.isfinite(value) else UNUSABLE_SCORE

    todo = config.score_trials - sum(t.state.is_finished() for t in scores.get_trials(deepcopy=False))
    start = time.perf_counter()
    if todo > 0:
        scores.optimize(score, n_trials=todo)
    if out is not None:
        print(f"scored {config.score_trials} candidates by {config.fitness} in "
              f"{time.perf_counter() - start:.1f} s (study {scores.study_name!r})", file=out)
    trained = {t.user_attrs.get(KEY_ATTR) for t in study.get_trials(deepcopy=False)}
    ranked = sorted(
        (t for t in scores.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
         if t.value is not None and t.value > UNUSABLE_SCORE and all(v <= 0 for v in t.constraints.values())),
        key=lambda t: -float(t.value),  # type: ignore[arg-type]
    )
    queued = 0
    for t in ranked:
        if queued == count:
            break
        if t.user_attrs.get(KEY_ATTR) in trained:
            continue
        study.enqueue_trial(t.params, user_attrs={"fitness": t.value, "score_trial": t.number,
                                                  KEY_ATTR: t.user_attrs.get(KEY_ATTR)})
        queued += 1


UNUSABLE_SCORE = -1e12
"""Fitness of a candidate whose score is undefined (no informative spikes)."""


class _ProgressLine:
    """One line per finished trial: accuracy, costs, feasibility, time."""

    def __init__(self, out: TextIO, config: StudyConfig) -> None:
        self.out = out
        self.config = config
        self.start = time.perf_counter()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        attrs = trial.user_attrs
        feasible = all(v <= 0 for v in trial.constraints.values())
        acc = attrs.get("val_accuracy")
        what = (f"acc {acc:.3f}" if acc is not None else
                "not trained" if attrs.get("trained") is False else trial.state.name.lower())
        line = (
            f"trial {trial.number:>3} {what:<11} | "
            f"{attrs.get('cost/memory_params', 0):>9,} params {attrs.get('cost/area_mm2', 0):8.3f} mm2 "
            f"{attrs.get('cost/latency_ms', 0):9.4f} ms {attrs.get('cost/energy_uj', 0):9.4f} uJ | "
            f"{'feasible' if feasible else 'INFEASIBLE'} | {time.perf_counter() - self.start:6.1f} s"
        )
        print(line, file=self.out, flush=True)


# ---------------------------------------------------------------------------------------------
# Best feasible trials

def best_rows(study: optuna.Study, limit: int = 10) -> list[dict[str, Any]]:
    """The best feasible trained trials: by accuracy, or the Pareto front for several objectives."""
    trials = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("trained") and all(v <= 0 for v in t.constraints.values())
    ]
    if len(study.directions) > 1:
        front = {t.number for t in study.best_trials}
        trials = [t for t in trials if t.number in front]
    trials.sort(key=lambda t: (-(t.values[0] if t.values else 0.0), t.number))
    rows = []
    for t in trials[:limit]:
        attrs = t.user_attrs
        rows.append({
            "trial": t.number, "val_accuracy": attrs.get("val_accuracy"), "test_accuracy": attrs.get("test_accuracy"),
            "memory_params": attrs.get("cost/memory_params"), "area_mm2": attrs.get("cost/area_mm2"),
            "latency_ms": attrs.get("cost/latency_ms"), "energy_uj": attrs.get("cost/energy_uj"),
            "summary": attrs.get("summary", ""), "architecture": attrs.get("architecture"),
            "params": t.params,
        })
    return rows


def format_best(study: optuna.Study, rows: Sequence[dict[str, Any]], *, storage: str | None = None) -> str:
    """The table ``hasnas search`` ends with and ``hasnas best`` prints."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    trained = sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("trained"))
    lines = [
        f"study {study.study_name!r}: {len(states)} trials ({states.count(TrialState.COMPLETE)} complete, "
        f"{states.count(TrialState.PRUNED)} pruned, {states.count(TrialState.FAIL)} failed), "
        f"{trained} trained, {len(states) - trained} never trained",
    ]
    if not rows:
        lines.append("no feasible trained trial yet")
    else:
        lines.append(f"{'trial':>5} {'val acc':>7} {'test acc':>8} {'params':>9} {'area mm2':>9} "
                     f"{'latency ms':>10} {'energy uJ':>9}  architecture")
        for r in rows:
            test = f"{r['test_accuracy']:.3f}" if r["test_accuracy"] is not None else "-"
            lines.append(
                f"{r['trial']:>5} {r['val_accuracy']:>7.3f} {test:>8} {r['memory_params']:>9,} {r['area_mm2']:>9.3f} "
                f"{r['latency_ms']:>10.4f} {r['energy_uj']:>9.4f}  {r['summary']}"
            )
    if storage is not None:
        lines.append(f"watch it: hasnas dashboard --storage {storage} --study-name {study.study_name}")
    return "\n".join(lines)


def rows_json(rows: Sequence[dict[str, Any]]) -> str:
    """:func:`best_rows` as JSON text."""
    return json.dumps(list(rows), indent=2)


def load_study(storage: str, study_name: str) -> optuna.Study:
    """Load a stored study for reading, with one-line errors for unknown names or storages."""
    try:
        return optuna.load_study(storage=storage, study_name=study_name)
    except KeyError:
        try:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage=storage)]
        except Exception:
            names = []
        raise ConfigError(f"no study {study_name!r} in {storage}; studies there: {', '.join(names) or 'none'}"
                          ) from None
    except HasnasError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot open storage {storage!r}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0]}") from None
