"""Grouped writes of a running trial (hasnas_optuna/_trial_writes.py): same rows as Optuna's own calls, fewer commits.

On each SQL dialect it writes differently (a SQLite file, PostgreSQL, MariaDB: the servers every
development and CI machine runs) and on a journal file; commits are counted on the storage's
SQLAlchemy engine. Each test uses a study of its own and deletes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial
from sqlalchemy import event

from hasnas_optuna._trial_writes import set_constraints, set_user_attrs, write_relative_params
from hasnas_optuna.storage import open_storage

DISTRIBUTIONS: dict[str, BaseDistribution] = {
    "x": IntDistribution(0, 9), "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "op": CategoricalDistribution(["skip", "conv3x3"]), "one": CategoricalDistribution(["only"]),
}
CHOSEN = {"x": 7, "lr": 0.01, "op": "conv3x3"}


class JointSampler(BaseSampler):
    """Chooses x, lr and op together (relative sampling), as NSGA-II or our sampler do; counts its calls."""

    def __init__(self) -> None:
        self.relative_calls = 0

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {name: DISTRIBUTIONS[name] for name in CHOSEN}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        self.relative_calls += 1
        return dict(CHOSEN)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        raise AssertionError(f"{param_name} should have come from the joint sample")


def suggest_all(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "x": trial.suggest_int("x", 0, 9), "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "op": trial.suggest_categorical("op", ["skip", "conv3x3"]), "one": trial.suggest_categorical("one", ["only"]),
    }


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db_study(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[optuna.Study, list[int]]]:
    """A study on a SQLite file or a database server, and a list that counts the commits of its engine."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = {"sqlite": f"sqlite:///{tmp_path}/s.db", "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
           "mariadb": "mysql://root@127.0.0.1:3306/test"}[request.param]
    storage = open_storage(url)
    name = f"writes-{uuid.uuid4().hex[:12]}"
    study = optuna.create_study(storage=storage, sampler=JointSampler(), study_name=name)
    commits: list[int] = []

    def count(connection: Any) -> None:
        commits.append(1)

    engine = storage.engine  # type: ignore[attr-defined]
    event.listen(engine, "commit", count)
    yield study, commits
    event.remove(engine, "commit", count)
    optuna.delete_study(study_name=name, storage=storage)


def test_user_attrs_are_one_commit_and_the_rows_optuna_writes(db_study: tuple[optuna.Study, list[int]]) -> None:
    study, commits = db_study
    attrs = {"cost/energy_uj": 1.5, "history": [{"epoch": 1, "loss": 0.3}], "status": "trained", "trained": True}
    grouped, one_by_one = study.ask(), study.ask()
    commits.clear()
    set_user_attrs(grouped, attrs)
    assert len(commits) == 1
    commits.clear()
    for key, value in attrs.items():
        one_by_one.set_user_attr(key, value)
    assert len(commits) == len(attrs)
    stored = study.get_trials(deepcopy=False)
    assert stored[0].user_attrs == stored[1].user_attrs == attrs
    assert grouped.user_attrs == attrs  # the running trial sees them too, as after set_user_attr


def test_user_attrs_of_a_finished_trial_are_refused_and_nothing_is_written(
        db_study: tuple[optuna.Study, list[int]]) -> None:
    study, _ = db_study
    trial = study.ask()
    study.tell(trial, 1.0)
    with pytest.raises(RuntimeError, match="has already finished and can not be updated"):
        set_user_attrs(trial, {"a": 1, "b": 2})
    assert study.trials[0].user_attrs == {}


def test_a_value_that_is_not_json_leaves_no_row_behind(db_study: tuple[optuna.Study, list[int]]) -> None:
    study, _ = db_study
    trial = study.ask()
    with pytest.raises(TypeError, match="not JSON serializable"):
        set_user_attrs(trial, {"fine": 1, "bad": object()})
    assert study.trials[0].user_attrs == {}  # one transaction: rolled back whole


def test_constraints_are_one_read_and_one_commit(db_study: tuple[optuna.Study, list[int]]) -> None:
    study, commits = db_study
    grouped, one_by_one = study.ask(), study.ask()
    commits.clear()
    set_constraints(grouped, {"memory": -0.5, "energy": 0.25})
    assert len(commits) == 2  # Optuna's set_constraint: a read and a write for each
    commits.clear()
    one_by_one.set_constraint("memory", -0.5)
    one_by_one.set_constraint("energy", 0.25)
    assert len(commits) == 4
    first, second = study.get_trials(deepcopy=False)
    assert first.constraints == second.constraints == {"memory": -0.5, "energy": 0.25}
    assert first.system_attrs == second.system_attrs
    with pytest.warns(UserWarning, match="constraint `key='energy'` is already set"):
        set_constraints(grouped, {"energy": 9.0, "area": -1.0})  # energy is kept, as Optuna does
    assert study.trials[0].constraints == {"memory": -0.5, "energy": 0.25, "area": -1.0}
    with pytest.raises(ValueError, match="NaN is not allowed"):
        set_constraints(grouped, {"latency": float("nan")})
    with pytest.raises(TypeError, match="supposed to be a float"):
        set_constraints(grouped, {"latency": "high"})  # type: ignore[dict-item]


def test_jointly_sampled_params_are_one_commit_and_suggest_reads_them(
        db_study: tuple[optuna.Study, list[int]]) -> None:
    study, commits = db_study
    trial = study.ask()
    commits.clear()
    write_relative_params(trial, DISTRIBUTIONS)
    assert len(commits) == 1
    assert suggest_all(trial) == {**CHOSEN, "one": "only"}
    assert len(commits) == 2  # only the single-choice parameter was left to its suggest call
    reference = study.ask()
    assert suggest_all(reference) == suggest_all(trial)
    first, second = study.get_trials(deepcopy=False)
    assert first.params == second.params and first.distributions == second.distributions


def test_an_enqueued_trial_keeps_its_params_and_never_runs_the_sampler(
        db_study: tuple[optuna.Study, list[int]]) -> None:
    study, _ = db_study
    study.enqueue_trial({"x": 2, "lr": 0.001, "op": "skip", "one": "only"})
    trial = study.ask()
    write_relative_params(trial, DISTRIBUTIONS)
    assert suggest_all(trial) == {"x": 2, "lr": 0.001, "op": "skip", "one": "only"}
    assert study.sampler.relative_calls == 0  # type: ignore[attr-defined]


def test_journal_storage_gets_the_same_values_one_call_each(tmp_path: Path) -> None:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    study = optuna.create_study(storage=storage, sampler=JointSampler())
    trial = study.ask()
    write_relative_params(trial, DISTRIBUTIONS)  # nothing to group there: the suggest calls write
    assert suggest_all(trial) == {**CHOSEN, "one": "only"}
    set_user_attrs(trial, {"a": 1, "b": [2]})
    set_constraints(trial, {"memory": 0.5})
    stored = study.trials[0]
    assert stored.user_attrs == {"a": 1, "b": [2]} and stored.constraints == {"memory": 0.5}
    assert stored.params == {**CHOSEN, "one": "only"}


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_artifacts_are_what_upload_artifact_makes(kind: str, tmp_path: Path) -> None:
    from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta, upload_artifact

    from hasnas_optuna._trial_writes import upload_artifacts

    storage: Any = (f"sqlite:///{tmp_path}/s.db" if kind == "sqlite" else optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log"))))
    study = optuna.create_study(storage=storage)
    store = FileSystemArtifactStore(str(tmp_path / "store"))
    (tmp_path / "store").mkdir()
    files = []
    for name, body in (("a.json", "{}"), ("curve.svg", "<svg/>"), ("weights.pt", "binary")):
        (tmp_path / name).write_text(body)
        files.append((tmp_path / name, "application/octet-stream" if name.endswith(".pt") else "text/plain"))
    ours, optunas = study.ask(), study.ask()
    ids = upload_artifacts(ours, store, files)
    for path, mimetype in files:
        upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=optunas, mimetype=mimetype)

    def described(trial: optuna.Trial) -> list[tuple[str, str, str | None]]:
        metas = get_all_artifact_meta(trial, storage=study._storage)
        return sorted((m.filename, m.mimetype, m.encoding) for m in metas)

    assert described(ours) == described(optunas) and len(described(ours)) == 3
    for path, _ in files:
        download_artifact(artifact_store=store, artifact_id=ids[path.name], file_path=str(tmp_path / "back"))
        assert (tmp_path / "back").read_text() == path.read_text()
        (tmp_path / "back").unlink()


class CategoricalX(JointSampler):
    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {"x": CategoricalDistribution([1, 2])}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {"x": 1}


def test_a_parameter_of_another_kind_is_refused_as_optuna_refuses_it(db_study: tuple[optuna.Study, list[int]]
                                                                     ) -> None:
    study, _ = db_study
    first = study.ask()
    first.suggest_int("x", 0, 9)  # the study's x is an integer range
    study.tell(first, 1.0)
    study.sampler = CategoricalX()
    ours, optunas = study.ask(), study.ask()
    with pytest.raises(ValueError) as expected:
        optunas.suggest_categorical("x", [1, 2])
    with pytest.raises(ValueError) as raised:
        write_relative_params(ours, {"x": CategoricalDistribution([1, 2])})
    assert str(raised.value) == str(expected.value) and "x" not in ours.params
    assert "x" not in study.trials[1].params  # nothing was written
