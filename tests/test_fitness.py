"""Training-free fitness, the energy watch during training, and the training-free search mode."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import optuna
import pytest
import torch

from hasnas_optuna import ConfigError
from hasnas_optuna.architecture import Architecture, Cell
from hasnas_optuna.config import StudyConfig
from hasnas_optuna.fitness import _kernel, score_architecture
from hasnas_optuna.screening import load_scored, screen
from hasnas_optuna.study import run_search

CELL = Cell.from_matrix("0302 0030 0003 0000")


def arch(**kwargs: object) -> Architecture:
    return Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=CELL, cell_b=CELL, channels=8,
                        **kwargs)  # type: ignore[arg-type]


def test_kernels_by_hand() -> None:
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    # Hamming distances: d(0,1) = 2, d(0,2) = d(1,2) = 1
    naswot = _kernel(codes, sparsity_aware=False)
    assert naswot.tolist() == [[2, 0, 1], [0, 2, 1], [1, 1, 2]]
    sahd = _kernel(codes, sparsity_aware=True)
    # rates 0.5, 0.5, 1: expected distance 2 * (0.5 * 0.5 + 0.5 * 0.5) = 1 for (0, 1), 2 * 0.5 = 1 for (0, 2)
    assert sahd[0, 1].item() == pytest.approx(2 - 0.5 * 2 / 1.001)
    assert sahd[0, 2].item() == pytest.approx(2 - 0.5 * 1 / 1.001)
    assert sahd[2, 2].item() == 2


def test_scores_are_deterministic_and_guarded() -> None:
    images = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a = arch()
    assert score_architecture(a, images, seed=3) == score_architecture(a, images, seed=3)
    assert math.isfinite(score_architecture(a, images, fitness="naswot"))
    assert score_architecture(a, images, fitness="params") == a.to_network().params
    silent = arch(threshold=1e6)  # no neuron ever fires: no information, worst score
    assert score_architecture(silent, images) == -math.inf
    with pytest.raises(ConfigError, match="fitness='synflow' is not known"):
        score_architecture(a, images, fitness="synflow")
    with pytest.raises(ConfigError, match="needs shape"):
        score_architecture(a, images[:1])


FAST = {"space": {"channels": [4, 8], "hidden_features": [0, 16], "timesteps": [2], "encodings": ["direct"]},
        "training": {"epochs": 1, "pruner": "none"}}


def test_energy_watch_stops_and_completes_the_trial_in_multi_objective_studies() -> None:
    from hasnas_optuna.cim import Budgets, estimate_cost
    from hasnas_optuna.objective import HasnasObjective
    from hasnas_optuna.search_space import suggest_architecture

    # the chip's prior spike rate is 0, so before training the network looks cheap; the rates
    # measured in the first epoch push its energy above the budget and training stops there
    config = StudyConfig.from_dict({
        **FAST, "training": {"epochs": 3, "pruner": "none", "energy_stop_margin": 0.0},
        "study": {"objectives": ["accuracy", "energy"], "hardware_aware": False},
        "hardware": {"default_spike_rate": 0.0},
    })
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    suggest_architecture(probe, config.space)
    params = {**probe.params, "snn/threshold": 0.5}  # a low threshold: the network surely spikes
    probe_study = optuna.create_study()
    probe_study.enqueue_trial(params)
    arch = suggest_architecture(probe_study.ask(), config.space)
    prior = estimate_cost(arch.to_network(), config.hardware()).energy_uj
    config = dataclasses.replace(config, budgets=Budgets(energy=prior))  # feasible before training, just
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial(params)
    study.optimize(HasnasObjective(config), n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.user_attrs["status"].startswith("stopped at epoch 1: energy"), trial.user_attrs["status"]
    assert trial.constraints["energy"] > 0
    assert len(trial.user_attrs["history"]) == 1  # one epoch of three
    assert trial.values[1] == pytest.approx(trial.user_attrs["cost/energy_uj"])
    assert trial.values[1] > prior


def test_training_free_mode_scores_many_and_trains_the_best(tmp_path: Path) -> None:
    config = StudyConfig.from_dict({
        **FAST, "study": {"fitness": "sahd", "score_trials": 12, "score_batch": 32, "n_trials": 2,
                          "population_size": 4},
        "budgets": {"memory": 3000},
    })
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = run_search(config, storage=storage, out=None)
    scored = load_scored(storage, "hasnas")
    assert len(scored) == 12 and len({c.key for c in scored}) == 12
    assert all(c.costs["memory_params"] <= 3000 for c in scored)  # only feasible candidates are scored
    assert [c.score for c in scored] == sorted((c.score for c in scored), reverse=True)
    # candidates are records of the scores study, never trials: nothing to mix up with trained ones
    assert optuna.load_study(study_name="hasnas:scores", storage=storage).trials == []
    best = [c for c in scored if math.isfinite(c.score)]
    assert len(study.trials) == 2 and all(t.user_attrs["trained"] for t in study.trials)
    assert [t.user_attrs["sampler/key"] for t in study.trials] == [c.key for c in best[:2]]
    assert [t.user_attrs["sampler/outcome"] for t in study.trials] == ["ranked", "ranked"]
    assert [t.user_attrs["screen/score"] for t in study.trials] == [c.score for c in best[:2]]
    # a rerun neither rescores nor retrains; asking for one more trains the next best
    again = run_search(config, storage=storage, out=None)
    assert len(again.trials) == 2 and load_scored(storage, "hasnas") == scored
    more = run_search(dataclasses.replace(config, n_trials=3), storage=storage, out=None)
    assert [t.user_attrs["sampler/key"] for t in more.trials] == [c.key for c in best[:3]]


def test_screening_resumes_without_rescoring_and_refuses_another_fitness() -> None:
    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    config = StudyConfig.from_dict({**FAST, "study": {"fitness": "sahd", "score_trials": 5, "score_batch": 16},
                                    "budgets": {"memory": 3000}})
    storage = optuna.storages.InMemoryStorage()
    first = screen(config, storage=storage, study_name="s", images=images)
    assert first.new == 5 and first.seconds["score"] > 0
    bigger = screen(dataclasses.replace(config, score_trials=8), storage=storage, study_name="s", images=images)
    assert bigger.new == 3 and len(bigger.ranked) == 8
    kept = {c.key: c.score for c in bigger.ranked}
    assert all(kept[c.key] == c.score for c in first.ranked)  # the first five were not scored again
    with pytest.raises(ConfigError, match="scored with fitness='sahd', the config asks for 'naswot'"):
        screen(dataclasses.replace(config, fitness="naswot"), storage=storage, study_name="s", images=images)
    with pytest.raises(ConfigError, match="'nothing' has no screened candidates"):
        load_scored(storage, "nothing")
