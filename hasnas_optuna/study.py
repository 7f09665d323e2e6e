"""Running a study: storage, sampler, resume, progress lines and the table of best feasible trials."""

from __future__ import annotations

import copy
import gc
import logging
import math
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import optuna
import pytorch_lightning as pl
from optuna.trial import FrozenTrial, TrialState

from hasnas_optuna._errors import ConfigError, HasnasError
from hasnas_optuna.artifacts import ARTIFACT_DIR_ATTR, artifact_dir_for
from hasnas_optuna.cim import METRICS
from hasnas_optuna.config import StudyConfig, check_study_name
from hasnas_optuna.dashboard import annotate_study
from hasnas_optuna.objective import HasnasObjective, default_datamodule
from hasnas_optuna.results import COST_ATTRS, WORKER_ATTR, best_rows, format_best
from hasnas_optuna.sampler import HardwareAwareSampler
from hasnas_optuna.storage import DEFAULT_STORAGE, describe_storage_error, masked, open_storage
from hasnas_optuna.training import TrialFailed

if TYPE_CHECKING:
    from optuna.study._frozen import FrozenStudy

__all__ = [
    "best_rows", "counted_trials", "format_best", "make_sampler", "open_study", "reclaim_stale_trials",
    "requeue_interrupted", "run_search",
]

CONFIG_ATTR = "hasnas/config"


def make_sampler(config: StudyConfig, *, hardware_aware: bool | None = None,
                 seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The configured sampler (Optuna never stores samplers: every worker builds its own).

    With ``hardware_aware`` (the config's by default) the base sampler is wrapped in
    :class:`~hasnas_optuna.sampler.HardwareAwareSampler`. ``seed`` replaces the config's seed
    (workers sharing a study each take their own).
    """
    seed = config.seed if seed is None else seed
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
    """Create the study or load it to resume; refuse one made for other objectives or another space.

    A storage string is opened with :func:`hasnas_optuna.storage.open_storage` and the config's
    heartbeat, so trials of a killed worker are failed and queued again.
    """
    name = config.name if study_name is None else check_study_name(study_name, "--study-name")
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
              if config.training.pruner == "median" and len(config.objectives) == 1 else optuna.pruners.NopPruner())
    if isinstance(storage, str):
        storage = open_storage(storage, heartbeat_interval=config.heartbeat_interval, max_retry=config.max_retry)
    try:
        existing = {s.study_name: s for s in storage.get_all_studies()}
        if name in existing:  # check before touching it: a refused study stays exactly as it was
            _check_compatible(config, name, existing[name])
        else:
            twins = [other for other in existing if other.casefold() == name.casefold()]
            if twins:  # MariaDB and MySQL compare names without case: they would be one study
                raise ConfigError(f"study {name!r}: study {twins[0]!r} exists and differs only in letter case; "
                                  "some databases treat the two as one, so use that name or another")
        study = optuna.create_study(
            storage=storage, study_name=name, directions=config.directions,  # type: ignore[arg-type]
            sampler=sampler or make_sampler(config),
            pruner=pruner, load_if_exists=True,
        )
    except HasnasError:
        raise
    except ValueError as exc:  # e.g. directions differ from the stored study
        raise ConfigError(f"study {name!r}: {exc}") from None
    except Exception as exc:  # SQLAlchemy errors: server gone, read-only file
        raise ConfigError(describe_storage_error(str(getattr(storage, "url", storage)), exc)) from None
    _check_compatible(config, name, study)  # a concurrent worker may have made it meanwhile
    if study.user_attrs.get(CONFIG_ATTR) is None:
        study.set_user_attr(CONFIG_ATTR, config.search_space_fingerprint())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(config.objectives))
    return study


def _check_compatible(config: StudyConfig, name: str, study: optuna.Study | FrozenStudy) -> None:
    directions = [d.name.lower() for d in study.directions]
    if directions != config.directions:
        raise ConfigError(f"study {name!r} has directions {directions}, the config asks for {config.directions}; "
                          "use a new --study-name (or the config it was made with)")
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is not None and stored != config.search_space_fingerprint():
        raise ConfigError(
            f"study {name!r} in this storage was made with another search space or objectives; "
            "use a new --study-name (or the config it was made with)"
        )


def run_search(
    config: StudyConfig,
    *,
    storage: str | optuna.storages.BaseStorage = DEFAULT_STORAGE,
    study_name: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    datamodule: pl.LightningDataModule | None = None,
    out: TextIO | None = sys.stdout,
    artifact_dir: str | Path | None = None,
    worker_trials: int | None = None,
    sampler_seed: int | None = None,
) -> optuna.Study:
    """Run (or resume) a study until it holds ``n_trials`` counted trials or ``timeout`` passes.

    Several processes may run this on one storage at once (workers, ``hasnas worker``): each stops
    when the study holds ``n_trials`` (the config's by default) counted trials, so a study may end
    with up to one extra trial per worker; ``worker_trials`` makes this process run exactly that
    many instead. Counted trials are the finished ones, except failed trials that were queued
    again (their worker was killed, or Ctrl-C stopped them): those run again, from the same
    parameters. Ctrl-C (or SIGTERM) marks the running trial failed as interrupted, queues it again
    and stops; running again resumes with it. Data are loaded and the study is checked before
    anything is written.

    Trained trials keep their artifacts in ``artifact_dir`` (by default ``<db>-artifacts/``
    beside a SQLite or journal file; none for server storages unless a folder is given), and the
    study is annotated for optuna-dashboard (feasibility columns, note, Pareto plot).

    Example:
        >>> from hasnas_optuna.config import StudyConfig, check_study_name
        >>> config = StudyConfig.from_dict({"budgets": {"memory": 1}, "study": {"n_trials": 2}})
        >>> study = run_search(config, storage="sqlite://", out=None)  # every network breaks memory
        >>> [t.user_attrs["trained"] for t in study.trials]
        [False, False]
    """
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress lines replace Optuna's
    loggers = [logging.getLogger(f"optuna.study.{name}") for name in ("_optimize", "_tell")]
    for logger in loggers:
        logger.addFilter(_drop_failed_trial_warnings)
    try:
        with _Interruption() as interruption:
            return _run(config, storage, study_name, n_trials, timeout, datamodule, out, artifact_dir,
                        worker_trials, sampler_seed, interruption)
    finally:
        for logger in loggers:
            logger.removeFilter(_drop_failed_trial_warnings)
        optuna.logging.set_verbosity(verbosity)


def _drop_failed_trial_warnings(record: logging.LogRecord) -> bool:
    """Optuna logs a failed trial with its traceback; the trial's ``status`` and our line say why."""
    return not (record.levelno == logging.WARNING and re.match(r"Trial \d+ failed", record.getMessage()))


ANNOTATE_EVERY_S = 30.0
"""How often a running search refreshes the dashboard note and Pareto plot (seconds)."""


def _run(config: StudyConfig, storage: str | optuna.storages.BaseStorage, study_name: str | None,
         n_trials: int | None, timeout: float | None, datamodule: pl.LightningDataModule | None,
         out: TextIO | None, artifact_dir: str | Path | None, worker_trials: int | None,
         sampler_seed: int | None, interruption: _Interruption) -> optuna.Study:
    data = datamodule if datamodule is not None else default_datamodule(config)
    prepare = getattr(data, "prepare", None)
    if callable(prepare):
        prepare()  # missing or corrupt data files fail here, before the study is touched
    sampler = make_sampler(config, seed=sampler_seed)
    study = open_study(config, storage=storage, study_name=study_name, sampler=sampler)
    target = n_trials if n_trials is not None else config.n_trials
    done = counted_trials(study)
    limit = timeout or config.timeout
    if out is not None:
        todo = (f"running {worker_trials} in this worker" if worker_trials
                else f"running {max(target - done, 0)} more")
        print(f"study {study.study_name!r}: {done} finished trials, {todo} "
              f"({f'at most {limit:.0f} s' if limit else 'no time limit'})", file=out)
    stale = reclaim_stale_trials(study, config)
    if out is not None and stale:
        print(f"trials {', '.join(map(str, stale))} were left RUNNING by a process that is gone: failed, and "
              "queued again", file=out)
    if worker_trials is None and done >= target:
        annotate_study(study, config=config)
        return study
    try:
        folder: Path | None = artifact_dir_for(storage, artifact_dir, study=study).resolve()
    except ConfigError:
        folder = None  # in-memory SQLite: nothing of the study outlives the process
    if folder is not None and study.user_attrs.get(ARTIFACT_DIR_ATTR) != str(folder):
        study.set_user_attr(ARTIFACT_DIR_ATTR, str(folder))  # readers find it from any working directory
    if out is not None:
        print(f"artifacts (weights, drawings, costs): {folder}" if folder is not None
              else "artifacts: none kept (in-memory storage)", file=out)
    objective = HasnasObjective(config, data, artifact_dir=folder)
    if config.fitness != "trained":
        from hasnas_optuna.screening import train_best_scored

        train_best_scored(config, study, data, worker_trials or target - done, out)
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = []
    if out is not None:
        callbacks.append(_ProgressLine(out, config))

    annotated = [-math.inf]

    def annotate_and_stop(study: optuna.Study, trial: FrozenTrial) -> None:
        # the note and Pareto plot read every trial: refresh them at most every ANNOTATE_EVERY_S
        # (and once more at the end), not after each of many short trials
        if time.perf_counter() - annotated[0] >= ANNOTATE_EVERY_S:
            annotate_study(study, config=config)
            annotated[0] = time.perf_counter()
        if interruption.requested or (worker_trials is None and counted_trials(study) >= target):
            study.stop()

    callbacks.append(annotate_and_stop)
    # Everything alive now (imports, data, storage) outlives the trials: freezing it keeps the
    # collection after each trial from scanning it again (about 0.2-0.6 s per trial otherwise)
    gc.collect()
    gc.freeze()
    if interruption.requested:  # a signal while the data loaded or candidates were screened
        raise KeyboardInterrupt
    started = time.perf_counter()
    try:
        study.optimize(interruption.guard(objective), n_trials=worker_trials, timeout=limit,
                       catch=(TrialFailed,), callbacks=callbacks, gc_after_trial=True)
    except KeyboardInterrupt:
        if interruption.trial_number is not None:  # this process alone queues its own trial again
            requeue_interrupted(study, interruption.trial_number, config, max_retry=config.max_retry)
        raise
    finally:
        gc.unfreeze()
    annotate_study(study, config=config)
    if interruption.requested:
        raise KeyboardInterrupt
    if out is not None:
        print(stop_reason(study, target=target, worker_trials=worker_trials, timeout=limit,
                          elapsed=time.perf_counter() - started), file=out)
    return study


def stop_reason(study: optuna.Study, *, target: int, worker_trials: int | None, timeout: float | None,
                elapsed: float) -> str:
    """Why a search returned, and how to go on.

    Example:
        >>> study = optuna.create_study()
        >>> stop_reason(study, target=50, worker_trials=None, timeout=200, elapsed=201.0)[:58]
        'stopped by the time limit (200 s): 0 of 50 trials finished'
    """
    done = counted_trials(study)
    if worker_trials is None and done >= target:
        return f"done: the study holds {done} finished trials (n_trials = {target})"
    if timeout and elapsed >= timeout:
        return (f"stopped by the time limit ({timeout:.0f} s): {done} of {target} trials finished; run the same "
                "command again to go on (--timeout S allows more time per run)")
    if worker_trials is not None:
        return f"done: this worker ran its {worker_trials} trials; the study holds {done}"
    return f"stopped: {done} of {target} trials finished; run the same command again to go on"


def next_steps(study_name: str, storage: str) -> str:
    """The commands that read a finished study (the storage's password masked).

    Example:
        >>> print(next_steps("digits", "postgresql://u:pw@db/h"))
        next steps:
          hasnas best      --storage postgresql://u:***@db/h --study-name digits               # the table again, --json
          hasnas report    --storage postgresql://u:***@db/h --study-name digits --out report/ # figures and tables
          hasnas export    --storage postgresql://u:***@db/h --study-name digits --out best/   # the best network
          hasnas dashboard --storage postgresql://u:***@db/h --study-name digits               # watch it live
    """
    where = f"--storage {masked(storage)} --study-name {study_name}"
    return "\n".join(["next steps:"] + [f"  hasnas {command:<9} {where} {out:<13} # {what}" for command, out, what in (
        ("best", "", "the table again, --json"), ("report", "--out report/", "figures and tables"),
        ("export", "--out best/", "the best network"), ("dashboard", "", "watch it live"))])


RETRY_HISTORY = "retry_history"
"""System attribute (Optuna's) listing the trials a queued trial retries."""
INTERRUPTED = "interrupted"
"""Start of the ``status`` user attribute of a trial stopped by Ctrl-C or SIGTERM."""


def counted_trials(study: optuna.Study) -> int:
    """Finished trials that count towards ``n_trials``: all but failed ones that were queued again.

    Example:
        >>> study = optuna.create_study()
        >>> study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        >>> counted_trials(study)
        3
    """
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get(RETRY_HISTORY, ())}
    return sum(1 for t in trials if t.state.is_finished() and not (t.state == TrialState.FAIL and (
        t.number in retried or str(t.user_attrs.get("status", "")).startswith(INTERRUPTED))))


def requeue_interrupted(study: optuna.Study, number: int, config: StudyConfig, *, max_retry: int | None) -> bool:
    """Queue trial ``number``, stopped by Ctrl-C or SIGTERM, again with the same parameters.

    Only the interrupted process calls this, for its own trial, so a trial is queued once.
    Trials of killed workers are queued by Optuna's heartbeat instead. A trial interrupted before
    all its parameters were chosen is not queued (its architecture may still be proposed again),
    nor one retried ``max_retry`` times already. Returns whether it was queued.
    """
    trial = study._storage.get_trial(study._storage.get_trial_id_from_study_id_trial_number(
        study._study_id, number))
    history = trial.system_attrs.get(RETRY_HISTORY, [])
    complete = set(config.space.distributions()) <= set(trial.params)
    if not complete or (max_retry is not None and len(history) >= max_retry):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, copy.deepcopy(trial))
    return True


def reclaim_stale_trials(study: optuna.Study, config: StudyConfig, *, now: float | None = None) -> list[int]:
    """Fail RUNNING trials whose process is gone and queue them again; returns their numbers.

    A trial is stale when its ``worker`` attribute names a process on this host that no longer
    runs (killed with SIGKILL, the machine rebooted), or when it has no ``worker`` yet (its
    process died while the trial was being sampled, before its first heartbeat) and started more
    than two heartbeat intervals ago (two minutes without a heartbeat). Trials of live processes
    and of other hosts are left to them and to Optuna's heartbeat.
    """
    import socket
    from datetime import datetime

    host = socket.gethostname()
    grace_s = 2 * (config.heartbeat_interval or 60)
    now_s = now if now is not None else time.time()
    stale = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(WORKER_ATTR)
        if isinstance(owner, str) and ":" in owner:
            owner_host, _, pid = owner.rpartition(":")
            gone = owner_host == host and pid.isdigit() and not _alive(int(pid))
        else:
            started = trial.datetime_start.timestamp() if isinstance(trial.datetime_start, datetime) else now_s
            gone = now_s - started > grace_s
        if not gone:
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "status", f"{INTERRUPTED}: its process "
                                               f"({owner or 'unknown'}) is gone")
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except RuntimeError:  # another process failed or finished it meanwhile
            continue
        requeue_interrupted(study, trial.number, config, max_retry=config.max_retry)
        stale.append(trial.number)
    return stale


def _alive(pid: int) -> bool:
    import os

    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class _Interruption:
    """Ctrl-C and SIGTERM: stop the trial that runs (it ends FAILED as interrupted) and the study.

    Inside the objective (training, and the trial's own attribute writes) the signal raises
    ``KeyboardInterrupt`` at once; a database write it cuts is rolled back by its transaction.
    Elsewhere (Optuna's sampling, ``tell`` and callbacks) it is noted and the study stops after the
    current step, so Optuna's own bookkeeping of a trial is never cut. A second signal interrupts
    at once wherever it lands.
    """

    def __init__(self) -> None:
        self.requested = False
        self.in_objective = False
        self.signal = ""
        self.trial_number: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Interruption:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        already = self.requested
        self.requested = True
        self.signal = signal.Signals(signum).name
        if self.in_objective or already:
            raise KeyboardInterrupt(self.signal)

    def guard(self, objective: Callable[[optuna.Trial], Any]) -> Callable[[optuna.Trial], Any]:
        def run(trial: optuna.Trial) -> Any:
            self.in_objective = True
            try:
                if self.requested:
                    raise KeyboardInterrupt("stopped before training")
                if "status" in trial.user_attrs:  # a queued retry carries the failed trial's attributes
                    trial.set_user_attr("status", "running again (a retry)")
                return objective(trial)
            except KeyboardInterrupt as exc:
                self.trial_number = trial.number
                trial.set_user_attr("status", f"{INTERRUPTED} ({self.signal or exc or 'KeyboardInterrupt'})")
                raise
            finally:
                self.in_objective = False

        return run


class _ProgressLine:
    """One line per finished trial under a header: accuracy, costs, budgets (the broken ones named), time."""

    def __init__(self, out: TextIO, config: StudyConfig) -> None:
        self.out = out
        self.config = config
        self.start = time.perf_counter()
        self.metrics = [METRICS[name] for name in METRICS]
        costs = " ".join(f"{f'{m.name} {m.ascii_unit}':>{_WIDTH}}" for m in self.metrics)
        print(f"{'trial':>9} {'val acc':<11} | {costs} | budgets | elapsed", file=out, flush=True)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        attrs = trial.user_attrs
        acc = attrs.get("val_accuracy")
        what = (f"acc {acc:.3f}" if acc is not None else
                "not trained" if attrs.get("trained") is False else trial.state.name.lower())
        if trial.state == TrialState.FAIL:
            print(f"trial {trial.number:>3} {what:<11} | {attrs.get('status', 'failed')}", file=self.out, flush=True)
            return
        costs = " ".join(_cost_cell(attrs.get(COST_ATTRS[m.name])) for m in self.metrics)
        broken = [f"{name} {slack:+.0%}" for name, slack in trial.constraints.items() if slack > 0]
        verdict = "INFEASIBLE: " + ", ".join(broken) if broken else "feasible"
        line = f"trial {trial.number:>3} {what:<11} | {costs} | {verdict} | {time.perf_counter() - self.start:.1f} s"
        print(line, file=self.out, flush=True)


_WIDTH = 11
"""Characters of one cost column in the per-trial lines."""


def _cost_cell(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return f"{'-':>{_WIDTH}}"
    return f"{value:>{_WIDTH},}" if isinstance(value, int) else f"{value:>{_WIDTH}.4g}"
