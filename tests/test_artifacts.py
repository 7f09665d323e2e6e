"""Per-trial artifacts in a real SQLite study with real training (and the study the other tests share).

:func:`build_study` runs the wiring the objective is meant to have: after the constraints are set,
``annotate_trial``; for a trained trial, ``save_trial_artifacts`` with the trained weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from hasnas_optuna import ConfigError
from hasnas_optuna.architecture import Architecture
from hasnas_optuna.artifacts import (
    ARCHITECTURE_JSON,
    ARCHITECTURE_SVG,
    COST_CSV,
    COST_JSON,
    CURVE_SVG,
    WEIGHTS,
    artifact_dir_for,
    download_trial_artifact,
    find_artifact,
    open_artifact_store,
    save_trial_artifacts,
    trial_artifact_names,
    trial_logger,
)
from hasnas_optuna.cim import CostReport, estimate_cost
from hasnas_optuna.config import StudyConfig
from hasnas_optuna.dashboard import annotate_study, annotate_trial
from hasnas_optuna.objective import HasnasObjective, set_budget_constraints
from hasnas_optuna.study import open_study
from hasnas_optuna.training import SNNClassifier, train_architecture

STUDY = {
    "space": {"channels": [4], "hidden_features": [0, 16], "timesteps": [2], "encodings": ["direct"]},
    "training": {"epochs": 1, "pruner": "none"},
    "dataset": {"max_train_samples": 256},
    "study": {"name": "tiny", "objectives": ["accuracy", "energy"], "sampler": "random", "hardware_aware": False,
              "seed": 3, "n_trials": 6},
    "budgets": {"memory": 2000, "energy": 0.019},
}


def _record(trial: optuna.Trial, report: CostReport, prefix: str) -> None:
    for key in ("memory_params", "area_mm2", "latency_ms", "energy_uj", "energy_dynamic_uj", "energy_leakage_uj"):
        trial.set_user_attr(f"{prefix}/{key}", getattr(report, key))


def probe() -> torch.Tensor:
    """A fixed batch of four 8x8 images."""
    return torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def objective_with_artifacts(config: StudyConfig, store: Any, folder: Path) -> Any:
    """The HASNAS objective's steps (sample, cost, maybe train, constrain) plus the artifact wiring."""
    base = HasnasObjective(config)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch, chip = base.sample(trial)
        network = arch.to_network()
        prior = estimate_cost(network, chip)
        _record(trial, prior, "prior")
        _record(trial, prior, "cost")
        trial.set_user_attr("architecture", arch.to_dict())
        trial.set_user_attr("summary", arch.summary())
        if any(slack > 0 for *_, slack in config.budgets.check(prior)):
            set_budget_constraints(trial, config.budgets, prior)
            annotate_trial(trial)
            trial.set_user_attr("trained", False)
            trial.set_user_attr("status", "infeasible before training")
            return 0.0, prior.energy_uj
        modules: list[SNNClassifier] = []
        result = train_architecture(arch, base.datamodule, epochs=config.training.epochs, seed=trial.number,
                                    on_module=modules.append,
                                    logger=trial_logger(folder, trial.study.study_name, trial.number))
        measured = estimate_cost(network, chip, spike_rates=result.spike_rates)
        _record(trial, measured, "cost")
        trial.set_user_attr("trained", True)
        trial.set_user_attr("val_accuracy", result.val_accuracy)
        trial.set_user_attr("test_accuracy", result.test_accuracy)
        trial.set_user_attr("spike_rates", {layer.name: rate for layer, rate in
                                            zip(network.layers, result.spike_rates, strict=True)})
        trial.set_user_attr("history", result.history)
        set_budget_constraints(trial, config.budgets, measured)
        annotate_trial(trial)
        trial.set_user_attr("status", "trained")
        save_trial_artifacts(trial, artifact_store=store, architecture=arch, report=measured,
                             history=result.history, state_dict=modules[0].network.state_dict())
        with torch.no_grad():  # what the trained network answers, for the export tests
            trial.set_user_attr("probe_logits", modules[0].network.eval()(probe()).tolist())
        return result.val_accuracy, measured.energy_uj

    return objective


def build_study(folder: Path, cache: Path) -> tuple[str, optuna.Study, Path]:
    """A 6-trial two-objective study in ``folder/tiny.db`` with artifacts in ``folder/tiny-artifacts``.

    Built once per test session in ``cache`` (a few seconds) and copied into each caller's folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    source = cache / "hasnas-tiny-study"
    if not (source / "done").exists():
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        storage = f"sqlite:///{source / 'tiny.db'}"
        config = StudyConfig.from_dict(STUDY)
        store = open_artifact_store(artifact_dir_for(storage))
        # run in memory, then copy to SQLite: one commit per trial instead of one per attribute
        memory = optuna.storages.InMemoryStorage()
        study = open_study(config, storage=memory)
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study.optimize(objective_with_artifacts(config, store, artifact_dir_for(storage)),
                           n_trials=config.n_trials)
        finally:
            optuna.logging.set_verbosity(verbosity)
        annotate_study(study, config=config)
        optuna.copy_study(from_study_name="tiny", from_storage=memory, to_storage=storage)
        (source / "done").write_text("")
    shutil.copy(source / "tiny.db", folder / "tiny.db")
    shutil.copytree(source / "tiny-artifacts", folder / "tiny-artifacts", dirs_exist_ok=True)
    storage = f"sqlite:///{folder / 'tiny.db'}"
    return storage, optuna.load_study(study_name="tiny", storage=storage), folder / "tiny-artifacts"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, optuna.Study, Path]:
    return build_study(tmp_path_factory.mktemp("artifacts"), tmp_path_factory.getbasetemp())


def test_the_study_has_trained_feasible_and_rejected_trials(tiny: tuple[str, optuna.Study, Path]) -> None:
    _, study, _ = tiny
    trained = [t for t in study.trials if t.user_attrs["trained"]]
    rejected = [t for t in study.trials if not t.user_attrs["trained"]]
    assert trained and rejected
    for trial in study.trials:
        assert trial.user_attrs["feasible"] == int(all(v <= 0 for v in trial.constraints.values()))
        assert trial.user_attrs["slack/memory"] == pytest.approx(trial.constraints["memory"])
        assert trial.user_attrs["slack/max"] == max(trial.constraints.values())
        assert "constraints" not in trial.system_attrs  # the legacy list is never written


def test_trained_trials_carry_every_artifact(tiny: tuple[str, optuna.Study, Path]) -> None:
    _, study, folder = tiny
    store = open_artifact_store(folder, create=False)
    for trial in study.trials:
        names = trial_artifact_names(study, trial)
        if not trial.user_attrs["trained"]:
            assert names == []
            continue
        assert names == sorted([ARCHITECTURE_JSON, ARCHITECTURE_SVG, COST_CSV, COST_JSON, CURVE_SVG, WEIGHTS])
        assert find_artifact(study, trial, CURVE_SVG).mimetype == "image/svg+xml"
        arch_json = download_trial_artifact(study, trial, ARCHITECTURE_JSON, artifact_store=store,
                                            dest=folder.parent / "a.json")
        arch = Architecture.from_json(arch_json.read_text())
        assert arch.to_dict() == trial.user_attrs["architecture"]
        cost = json.loads(download_trial_artifact(study, trial, COST_JSON, artifact_store=store,
                                                  dest=folder.parent / "c.json").read_text())
        assert cost["energy_uj"] == pytest.approx(trial.user_attrs["cost/energy_uj"])
        assert [layer["name"] for layer in cost["layers"]] == [layer.name for layer in arch.to_network().layers]
        rows = download_trial_artifact(study, trial, COST_CSV, artifact_store=store,
                                       dest=folder.parent / "c.csv").read_text().splitlines()
        assert rows[0].startswith("index,name,type,params") and len(rows) == len(cost["layers"]) + 1
        svg = download_trial_artifact(study, trial, ARCHITECTURE_SVG, artifact_store=store,
                                      dest=folder.parent / "a.svg").read_text()
        assert svg.startswith("<svg") and f"trial {trial.number}:" in svg
        curve = download_trial_artifact(study, trial, CURVE_SVG, artifact_store=store, dest=folder.parent / "c.svg")
        assert curve.read_text().startswith("<svg") and "val_acc" in curve.read_text()
        weights = download_trial_artifact(study, trial, WEIGHTS, artifact_store=store, dest=folder.parent / "w.pt")
        state = torch.load(weights, weights_only=True)
        assert "stem.0.weight" in state and all(t.device.type == "cpu" for t in state.values())


def test_trained_trials_keep_lightning_logs_in_the_artifact_folder(tiny: tuple[str, optuna.Study, Path]) -> None:
    _, study, folder = tiny
    for trial in study.trials:
        metrics = folder / "lightning_logs" / "tiny" / f"trial-{trial.number}" / "metrics.csv"
        assert metrics.is_file() == trial.user_attrs["trained"]
        if metrics.is_file():
            assert "val_acc" in metrics.read_text().splitlines()[0]


def test_missing_artifacts_and_folders_are_one_line_errors(tiny: tuple[str, optuna.Study, Path],
                                                           tmp_path: Path) -> None:
    _, study, folder = tiny
    rejected = next(t for t in study.trials if not t.user_attrs["trained"])
    store = open_artifact_store(folder, create=False)
    with pytest.raises(ConfigError, match=rf"^trial {rejected.number} has no artifact 'weights.pt' \(it has none\)$"):
        download_trial_artifact(study, rejected, WEIGHTS, artifact_store=store, dest=tmp_path / "w.pt")
    trained = next(t for t in study.trials if t.user_attrs["trained"])
    empty = open_artifact_store(tmp_path / "empty")
    with pytest.raises(ConfigError, match="listed but missing from the artifact folder"):
        download_trial_artifact(study, trained, WEIGHTS, artifact_store=empty, dest=tmp_path / "w.pt")
    with pytest.raises(ConfigError, match="does not exist"):
        open_artifact_store(tmp_path / "nowhere", create=False)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create artifact folder"):
        open_artifact_store(blocker / "sub")


@pytest.mark.parametrize(("storage", "expected"), [
    ("sqlite:///hasnas.db", "hasnas-artifacts"),
    ("sqlite:///runs/x.sqlite3", "runs/x-artifacts"),
    ("sqlite:////abs/s.db?timeout=3", "/abs/s-artifacts"),
])
def test_artifact_folder_sits_beside_the_sqlite_file(storage: str, expected: str) -> None:
    assert artifact_dir_for(storage).as_posix() == expected


@pytest.mark.parametrize("storage", ["sqlite://", "sqlite:///:memory:", "postgresql://u@h/db"])
def test_storages_without_a_file_need_an_explicit_folder(storage: str) -> None:
    with pytest.raises(ConfigError, match="--artifact-dir"):
        artifact_dir_for(storage)
    assert artifact_dir_for(storage, "x").as_posix() == "x"


def test_finished_trials_refuse_artifacts(tmp_path: Path) -> None:
    """Why the objective must upload: Optuna refuses to change a finished trial."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    study.optimize(lambda t: 0.0, n_trials=1)
    arch = Architecture.from_dict({"input_shape": [1, 8, 8], "num_classes": 10, "cell_a": "0302 0030 3003 0000",
                                   "cell_b": "0302 0030 3003 0000", "channels": 4})
    frozen = study.trials[0]
    live = optuna.Trial(study, frozen._trial_id)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        save_trial_artifacts(live, artifact_store=open_artifact_store(tmp_path / "a"), architecture=arch)
