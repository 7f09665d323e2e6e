"""Whole searches on the embedded digits data: real training, real SQLite storage."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hasnas_optuna import ConfigError
from hasnas_optuna.config import StudyConfig, load_config
from hasnas_optuna.objective import HasnasObjective
from hasnas_optuna.search_space import architecture_from_params
from hasnas_optuna.study import best_rows, open_study, run_search

FAST = {
    "space": {"channels": [4], "hidden_features": [0, 16], "timesteps": [2], "encodings": ["direct"]},
    "training": {"epochs": 1, "pruner": "none"},
}


def config(**sections: dict[str, object]) -> StudyConfig:
    data: dict[str, dict[str, object]] = {key: dict(value) for key, value in FAST.items()}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return StudyConfig.from_dict(data)


def test_impossible_budget_trains_nothing(tmp_path: Path) -> None:
    study = run_search(config(budgets={"memory": 1, "energy": 1e-9}, study={"n_trials": 5}),
                       storage=f"sqlite:///{tmp_path / 's.db'}", out=None)
    assert len(study.trials) == 5
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.user_attrs["trained"] is False and "val_accuracy" not in trial.user_attrs
        assert trial.value == 0.0
        assert sorted(trial.constraints) == ["energy", "memory"]  # SQLite returns them sorted
        assert trial.constraints["memory"] == trial.user_attrs["cost/memory_params"] - 1
        assert trial.user_attrs["status"] == "infeasible before training: memory, energy"
    assert best_rows(study) == []


@pytest.mark.slow
def test_small_digits_search_finds_an_accurate_feasible_network(tmp_path: Path) -> None:
    cfg = config(
        space={"channels": [8], "hidden_features": [32, 64], "timesteps": [4]},
        training={"epochs": 4},
        study={"n_trials": 5, "population_size": 4, "seed": 1},
        budgets={"memory": 20000, "area": 10.0, "latency": 1.0, "energy": 1.0},
    )
    study = run_search(cfg, storage=f"sqlite:///{tmp_path / 's.db'}", out=None)
    rows = best_rows(study)
    assert rows, "no feasible trained trial"
    assert rows[0]["val_accuracy"] >= 0.90
    best = study.trials[rows[0]["trial"]]
    # the stored trial decodes back to the architecture it trained, and its energy used measured rates
    arch = architecture_from_params(best.params, cfg.space)
    assert arch.to_dict() == best.user_attrs["architecture"]
    assert best.user_attrs["cost/energy_uj"] != best.user_attrs["prior/energy_uj"]
    assert set(best.user_attrs["spike_rates"]) == {layer.name for layer in arch.to_network().layers}
    assert best.user_attrs["test_accuracy"] > 0.8
    assert sorted(best.constraints) == ["area", "energy", "latency", "memory"]


@pytest.mark.slow
def test_multi_objective_study_returns_costs_and_a_feasible_front(tmp_path: Path) -> None:
    cfg = config(study={"objectives": ["accuracy", "energy", "area"], "n_trials": 4, "population_size": 2},
                 budgets={"area": 100.0})
    study = run_search(cfg, storage=f"sqlite:///{tmp_path / 's.db'}", out=None)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    assert study.metric_names == ["accuracy", "energy", "area"]
    for trial in study.trials:
        assert trial.values[1] == pytest.approx(trial.user_attrs["cost/energy_uj"])
        assert trial.values[2] == pytest.approx(trial.user_attrs["cost/area_mm2"])
    front = {row["trial"] for row in best_rows(study)}
    assert front and front <= {t.number for t in study.best_trials}


def test_pruned_trials_keep_their_constraints() -> None:
    cfg = config(training={"pruner": "median"}, budgets={"area": 100.0})
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    study.optimize(HasnasObjective(cfg), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.constraints) == ["area"] and trial.constraints["area"] < 0
    assert trial.user_attrs["status"] == "pruned on validation accuracy"


@pytest.mark.slow
def test_rerun_resumes_and_other_spaces_are_refused(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    first = run_search(config(study={"n_trials": 2}), storage=storage, out=None)
    again = run_search(config(study={"n_trials": 3}), storage=storage, out=None)
    assert first.study_name == again.study_name and len(again.trials) == 3
    with pytest.raises(ConfigError, match="made with another search space or objectives"):
        open_study(config(space={"channels": [4, 8]}), storage=storage)
    with pytest.raises(ConfigError, match="directions"):
        open_study(config(study={"objectives": ["accuracy", "energy"]}), storage=storage)
    assert len(optuna.load_study(study_name="hasnas", storage=storage).trials) == 3  # untouched


def test_embedded_default_is_studies_digits() -> None:
    root = Path(__file__).resolve().parents[1]
    assert load_config(None) == load_config(root / "studies" / "digits.toml")
    for path in sorted((root / "studies").glob("*.toml")):
        assert load_config(path).name == path.stem


def test_terminal_lines_name_broken_budgets_and_fit_100_columns() -> None:
    import io

    from hasnas_optuna.study import _ProgressLine, format_best

    out = io.StringIO()
    line = _ProgressLine(out, config())
    study = optuna.create_study(directions=["maximize"])
    attrs = {"val_accuracy": 0.9, "trained": True, "cost/memory_params": 1200, "cost/area_mm2": 5.5,
             "cost/latency_ms": 0.02, "cost/energy_uj": 0.06, "summary": "1x8x8 C=8 T=4 direct | " + "A" * 200}
    for number, slack in enumerate(({"energy": 0.2, "area": -0.1}, {"energy": -0.5, "area": -0.1})):
        study.add_trial(optuna.trial.create_trial(value=0.9, user_attrs=attrs,
                                                  system_attrs={f"constraints:{k}": v for k, v in slack.items()}))
        assert study.trials[number].constraints == slack
        line(study, study.trials[number])
    header, infeasible, feasible = out.getvalue().splitlines()
    assert header.split("|")[1].split() == ["memory", "params", "area", "mm2", "latency", "ms", "energy", "uJ"]
    assert infeasible.endswith(" s") and "INFEASIBLE: energy +20%" in infeasible and "area" not in infeasible.split(
        "|")[2]
    assert "| feasible |" in feasible
    rows = [{"trial": 0, "val_accuracy": 0.9, "test_accuracy": None, "memory_params": 1200, "area_mm2": 5.5,
             "latency_ms": 0.02, "energy_uj": 0.06, "summary": attrs["summary"]}]
    table = format_best(study, rows, storage="postgresql://me:secret@db/x")
    assert all(len(text) <= 100 for text in table.splitlines()[1:3]) and "whole" in table
    assert "secret" not in table and "postgresql://me:***@db/x" in table
    assert attrs["summary"] in format_best(study, rows, wide=True)
