"""Write several parameters or attributes of a running trial in one storage transaction.

Optuna writes every suggested parameter, every ``Trial.set_user_attr`` and every
``Trial.set_constraint`` in a transaction of its own (``set_constraint`` reads the trial back
first); a trained trial of ours writes about twenty parameters and forty attributes, a few
milliseconds each on SQLite and a round trip each to a database server, which was most of a
digits trial's overhead (benchmarks/trial_overhead.py). On an ``RDBStorage`` these helpers write a
group in one transaction: Optuna's checks once (the trial is running; a parameter's distribution
matches the study's), then the rows Optuna would write, in one multi-row statement where Optuna
itself upserts (SQLite, PostgreSQL, MySQL) and through its per-row writer elsewhere. On other
storages (journal files, Redis, in-memory), for trials that are not an ``optuna.Trial``, or if
Optuna's internals ever change shape, they fall back to one public call per item.
"""

from __future__ import annotations

import json
import math
import mimetypes
import sqlite3
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.dialects.mysql
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
from optuna.artifacts import ArtifactMeta, upload_artifact
from optuna.artifacts._protocol import ArtifactStore
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study._constrained_optimization import _CONSTRAINTS_KEY
from sqlalchemy.exc import IntegrityError

__all__ = [
    "set_constraints", "set_user_attrs", "upload_artifacts", "write_relative_params", "write_system_attrs",
    "write_user_attrs",
]

_ARTIFACTS_ATTR_PREFIX = "artifacts:"
"""Where Optuna's artifact API keeps a trial's artifact records (``optuna.artifacts._upload``)."""

try:  # Optuna's tables, session handling and per-row writer (optuna.storages._rdb)
    from optuna.storages._rdb import models as _models
    from optuna.storages._rdb.storage import _create_scoped_session
except ImportError:  # pragma: no cover - a future Optuna: the public calls below still work
    _models = None  # type: ignore[assignment]


def set_user_attrs(trial: optuna.trial.BaseTrial, attrs: Mapping[str, Any]) -> None:
    """``trial.set_user_attr(key, value)`` for every item, in one transaction where the storage allows.

    Example:
        >>> study = optuna.create_study(storage="sqlite://")
        >>> trial = study.ask()
        >>> set_user_attrs(trial, {"a": 1, "b": [2, 3]})
        >>> study.trials[0].user_attrs
        {'a': 1, 'b': [2, 3]}
    """
    if not isinstance(trial, optuna.Trial):
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    write_user_attrs(trial.storage, trial._trial_id, attrs)
    trial._cached_frozen_trial.user_attrs.update(attrs)  # as Trial.set_user_attr does


def write_user_attrs(storage: BaseStorage, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """``storage.set_trial_user_attr(trial_id, key, value)`` for every item, in one transaction where possible."""
    if attrs and not _write_rows(storage, trial_id, "TrialUserAttributeModel", attrs):
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)


def write_system_attrs(storage: BaseStorage, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """``storage.set_trial_system_attr(trial_id, key, value)`` for every item, in one transaction where possible."""
    if attrs and not _write_rows(storage, trial_id, "TrialSystemAttributeModel", attrs):
        for key, value in attrs.items():
            storage.set_trial_system_attr(trial_id, key, value)


def set_constraints(trial: optuna.Trial, constraints: Mapping[str, float]) -> None:
    """``trial.set_constraint(name, value)`` for every item: one read and one transaction where possible.

    As ``set_constraint``: values must be numbers and not NaN, and a constraint already set keeps
    its value (Optuna warns).

    Example:
        >>> study = optuna.create_study(storage="sqlite://")
        >>> trial = study.ask()
        >>> set_constraints(trial, {"memory": -0.5, "energy": 0.25})
        >>> study.trials[0].constraints == {"memory": -0.5, "energy": 0.25}
        True
    """
    if _rdb_storage(trial.storage) is None:
        for key, value in constraints.items():
            trial.set_constraint(key, value)
        return
    values: dict[str, float] = {}
    for key, value in constraints.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"The `value` argument is of type '{type(value)}' but supposed to be a float.") from None
        if math.isnan(number):
            raise ValueError(f"Attempted to set a constraint for {key!r}, but NaN is not allowed.")
        values[f"{_CONSTRAINTS_KEY}:{key}"] = number
    already = trial.storage.get_trial_system_attrs(trial._trial_id)
    for name in [name for name in values if name in already]:
        key = name.split(":", 1)[1]
        warnings.warn(f"The constraint value is ignored because this constraint `{key=}` is already set.",
                      UserWarning, stacklevel=2)
        del values[name]
    if not values:
        return
    if not _write_rows(trial.storage, trial._trial_id, "TrialSystemAttributeModel", values):
        for name, number in values.items():
            trial.set_constraint(name.split(":", 1)[1], number)
        return
    trial._cached_frozen_trial.system_attrs.update(values)


def write_relative_params(trial: optuna.trial.BaseTrial, distributions: Mapping[str, BaseDistribution]) -> None:
    """Write the parameters the sampler chose together (relative sampling) in one transaction.

    Call it before suggesting ``distributions``: each ``trial.suggest_*`` then reads its value
    back instead of writing it. Parameters already set, fixed (enqueued) or with one choice are
    left to the suggest calls, as are those the sampler leaves to independent sampling; the
    sampler runs when Optuna would run it, at the first parameter it has to choose.

    Example:
        >>> from optuna.distributions import IntDistribution
        >>> study = optuna.create_study(storage="sqlite://", sampler=optuna.samplers.NSGAIISampler(seed=0))
        >>> trial = study.ask()
        >>> write_relative_params(trial, {"x": IntDistribution(0, 9)})  # NSGA-II's first generation: none
        >>> trial.suggest_int("x", 0, 9) in range(10)
        True
    """
    if not isinstance(trial, optuna.Trial):
        return
    rdb = _rdb_storage(trial.storage)
    frozen = trial._cached_frozen_trial
    pending = {name: dist for name, dist in distributions.items()
               if name not in frozen.distributions and name not in trial._fixed_params and not dist.single()}
    if rdb is None or not pending:
        return
    values = {name: trial.relative_params[name] for name, dist in pending.items()
              if trial._is_relative_param(name, dist)}
    if not values:
        return
    try:
        with _create_scoped_session(rdb.scoped_session) as session:
            _insert_params(rdb, session, trial._trial_id,
                           {name: (value, pending[name]) for name, value in values.items()})
    except IntegrityError:  # rolled back: the suggest calls write them one by one, as Optuna does
        return
    for name, value in values.items():  # as Trial._suggest records a parameter it wrote
        frozen.distributions[name] = pending[name]
        frozen.params[name] = value


def upload_artifacts(trial: optuna.Trial, artifact_store: ArtifactStore, files: Sequence[tuple[Path, str]]
                     ) -> dict[str, str]:
    """``optuna.artifacts.upload_artifact`` for every ``(path, mimetype)``; returns ``{file name: artifact id}``.

    Each file goes into ``artifact_store`` first; then their records (the trial system attributes
    Optuna's artifact API reads) are written in one transaction where the storage allows, so a
    failed copy never leaves a record of a missing file.

    Example:
        >>> import tempfile
        >>> from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
        >>> study = optuna.create_study(storage="sqlite://")
        >>> trial = study.ask()
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "a.json"
        ...     _ = path.write_text("{}")
        ...     ids = upload_artifacts(trial, FileSystemArtifactStore(tmp), [(path, "application/json")])
        ...     [(m.filename, m.mimetype) for m in get_all_artifact_meta(trial)]
        [('a.json', 'application/json')]
    """
    if _rdb_storage(trial.storage) is None:
        return {path.name: upload_artifact(artifact_store=artifact_store, file_path=str(path), study_or_trial=trial,
                                           mimetype=mimetype) for path, mimetype in files}
    ids: dict[str, str] = {}
    rows: dict[str, str] = {}
    for path, mimetype in files:
        artifact_id = str(uuid.uuid4())
        meta = ArtifactMeta(artifact_id=artifact_id, filename=path.name, mimetype=mimetype,
                            encoding=mimetypes.guess_type(path.name)[1])
        with open(path, "rb") as fh:
            artifact_store.write(artifact_id, fh)
        ids[path.name] = artifact_id
        rows[_ARTIFACTS_ATTR_PREFIX + artifact_id] = json.dumps(asdict(meta))
    write_system_attrs(trial.storage, trial._trial_id, rows)
    return ids


def _rdb_storage(storage: Any) -> optuna.storages.RDBStorage | None:
    """The ``RDBStorage`` behind ``storage`` (Optuna wraps it in a cache), if rows can be written."""
    backend = getattr(storage, "_backend", storage)
    if (_models is None or not isinstance(backend, optuna.storages.RDBStorage)
            or not hasattr(backend, "_set_trial_attr_without_commit")
            or not hasattr(backend, "check_trial_is_updatable")):
        return None
    return backend


def _write_rows(storage: BaseStorage, trial_id: int, model_name: str, rows: Mapping[str, Any]) -> bool:
    """Write ``rows`` in one transaction; ``False`` (nothing written) where that is not possible.

    The checks are Optuna's (the trial exists and is still running); the rows go in as one
    multi-row upsert where Optuna itself upserts (SQLite >= 3.24, PostgreSQL, MySQL), else one by one.
    """
    rdb = _rdb_storage(storage)
    model = getattr(_models, model_name, None)
    if rdb is None or model is None:
        return False
    try:
        with _create_scoped_session(rdb.scoped_session) as session:
            _running_trial(rdb, session, trial_id)
            values = [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                      for key, value in rows.items()]
            statement = _upsert(rdb.engine.name, model, values)
            if statement is not None:
                session.execute(statement)
            else:
                for key, value in rows.items():
                    rdb._set_trial_attr_without_commit(session, model, trial_id, key, value)
    except IntegrityError:  # rolled back; one call per row skips a row another process wrote, as Optuna does
        return False
    return True


def _running_trial(rdb: optuna.storages.RDBStorage, session: Any, trial_id: int) -> Any:
    """The trial's row; raises as Optuna does when it is missing or finished."""
    trial = _models.TrialModel.find_or_raise_by_id(trial_id, session)
    rdb.check_trial_is_updatable(trial_id, trial.state)  # type: ignore[arg-type]  # a TrialState column
    return trial


def _upsert(dialect: str, model: Any, values: list[dict[str, Any]]) -> Any:
    """``INSERT ... ON CONFLICT (trial_id, key) DO UPDATE`` of ``values`` in ``dialect``; ``None`` if it has none."""
    if dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        statement: Any = sqlalchemy.dialects.sqlite.insert(model).values(values)
        return statement.on_conflict_do_update(index_elements=[model.trial_id, model.key],
                                               set_={"value_json": statement.excluded.value_json})
    if dialect == "postgresql":
        statement = sqlalchemy.dialects.postgresql.insert(model).values(values)
        return statement.on_conflict_do_update(index_elements=[model.trial_id, model.key],
                                               set_={"value_json": statement.excluded.value_json})
    if dialect == "mysql":
        statement = sqlalchemy.dialects.mysql.insert(model).values(values)
        return statement.on_duplicate_key_update(value_json=statement.inserted.value_json)
    return None


def _insert_params(rdb: optuna.storages.RDBStorage, session: Any, trial_id: int,
                   params: Mapping[str, tuple[Any, BaseDistribution]]) -> None:
    """Insert a running trial's parameters with Optuna's checks: the trial is running, and each
    distribution is compatible with the one the study already has under that name."""
    param, trials = _models.TrialParamModel, _models.TrialModel
    study_id = _running_trial(rdb, session, trial_id).study_id
    first = (sqlalchemy.select(param.param_name, sqlalchemy.func.min(param.param_id).label("param_id"))
             .join(trials, param.trial_id == trials.trial_id)
             .where(trials.study_id == study_id, param.param_name.in_(list(params)))
             .group_by(param.param_name).subquery())
    stored_rows = sqlalchemy.select(param.param_name, param.distribution_json).join(
        first, param.param_id == first.c.param_id)
    for name, stored in session.execute(stored_rows):
        optuna.distributions.check_distribution_compatibility(
            optuna.distributions.json_to_distribution(stored), params[name][1])
    session.execute(sqlalchemy.insert(param), [
        {"trial_id": trial_id, "param_name": name, "param_value": dist.to_internal_repr(value),
         "distribution_json": optuna.distributions.distribution_to_json(dist)}
        for name, (value, dist) in params.items()])
