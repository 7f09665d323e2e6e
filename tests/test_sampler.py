"""HardwareAwareSampler against the scenarios every Optuna sampler meets (STYLE.md, scikit-learn).

The objective here is the cost model alone (no training), so each scenario runs in a second.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest

from hasnas_optuna import ConfigError, SearchSpace, suggest_architecture, suggest_hardware
from hasnas_optuna.cim import Budgets, estimate_cost, load_hardware
from hasnas_optuna.objective import set_budget_constraints
from hasnas_optuna.sampler import KEY_ATTR, HardwareAwareSampler
from hasnas_optuna.search_space import HardwareSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = SearchSpace(channels=(4, 8, 16), hidden_features=(0, 32, 64), timesteps=(2, 4, 6))
CHIP = load_hardware()
BUDGETS = Budgets(memory=16000, area=5.3, latency=0.025, energy=0.045)  # rules out about half of SPACE

BASES = {
    "nsga2": lambda: optuna.samplers.NSGAIISampler(population_size=6, seed=0),
    "tpe": lambda: optuna.samplers.TPESampler(seed=0, n_startup_trials=5),
    "random": lambda: optuna.samplers.RandomSampler(seed=0),
    "gp": lambda: optuna.samplers.GPSampler(seed=0, n_startup_trials=4),
}


def sampler(base: str = "nsga2", space: SearchSpace = SPACE, **kwargs: Any) -> HardwareAwareSampler:
    return HardwareAwareSampler(space, hardware=CHIP, budgets=BUDGETS, base=BASES[base](), seed=0, **kwargs)


def objective(trial: optuna.Trial, space: SearchSpace = SPACE) -> float:
    arch = suggest_architecture(trial, space)
    chip = suggest_hardware(trial, space, CHIP) if space.hardware is not None else CHIP
    report = estimate_cost(arch.to_network(), chip)
    set_budget_constraints(trial, BUDGETS, report)
    return float(report.energy_uj) + 0.1 * trial.suggest_float("lr", 1e-3, 1e-1, log=True)


def two_objectives(trial: optuna.Trial) -> tuple[float, float]:
    arch = suggest_architecture(trial, SPACE)
    report = estimate_cost(arch.to_network(), CHIP)
    set_budget_constraints(trial, BUDGETS, report)
    return float(report.energy_uj), -float(report.memory_params)


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    return all(v <= 0 for v in trial.constraints.values())


def assert_clean(study: optuna.Study) -> None:
    """Every trial fits the budgets and no architecture repeats."""
    trials = [t for t in study.trials if t.state != optuna.trial.TrialState.FAIL]
    assert all(feasible(t) for t in trials if t.state == optuna.trial.TrialState.COMPLETE)
    keys = [t.user_attrs[KEY_ATTR] for t in trials]
    assert len(keys) == len(set(keys)), Counter(keys).most_common(2)


@pytest.mark.slow
@pytest.mark.parametrize("base", sorted(BASES))
def test_single_objective_every_base(base: str) -> None:
    study = optuna.create_study(sampler=sampler(base))
    study.optimize(objective, n_trials=20 if base == "gp" else 30)
    assert_clean(study)
    # the extra parameter outside the architecture space is left to the base sampler
    assert all(1e-3 <= t.params["lr"] <= 1e-1 for t in study.trials)
    assert Counter(t.user_attrs["sampler/outcome"] for t in study.trials)["base"] >= len(study.trials) - 2


@pytest.mark.slow
@pytest.mark.parametrize("base", ["nsga2", "tpe"])
def test_multi_objective(base: str) -> None:
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler(base))
    study.optimize(two_objectives, n_trials=30)
    assert_clean(study)
    assert study.best_trials and all(feasible(t) for t in study.best_trials)


def test_nsga2_keeps_its_own_generations_under_composition() -> None:
    study = optuna.create_study(sampler=sampler("nsga2"))
    study.optimize(objective, n_trials=20)
    generations = Counter(t.system_attrs.get("NSGAIISampler:generation") for t in study.trials)
    assert None not in generations and len(generations) >= 3  # population 6: generations 0, 1, 2, ...


def test_failed_and_pruned_trials() -> None:
    calls = {"n": 0}

    def flaky(trial: optuna.Trial) -> float:
        value = objective(trial)
        calls["n"] += 1
        if calls["n"] % 5 == 0:
            raise RuntimeError("boom")
        if calls["n"] % 7 == 0:
            raise optuna.TrialPruned()
        return value

    study = optuna.create_study(sampler=sampler("nsga2"))
    study.optimize(flaky, n_trials=30, catch=(RuntimeError,))
    states = Counter(t.state for t in study.trials)
    assert states[optuna.trial.TrialState.FAIL] == 6 and states[optuna.trial.TrialState.PRUNED] >= 3
    assert_clean(study)


def test_failed_architectures_may_be_retried() -> None:
    study = optuna.create_study(sampler=sampler("random"))
    study.optimize(objective, n_trials=3)
    failed = study.ask()
    suggest_architecture(failed, SPACE)
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    broken = study.ask()  # a network that fails on its own (diverged, out of memory) is not proposed again
    suggest_architecture(broken, SPACE)
    broken.set_user_attr("status", "failed: training diverged at epoch 0")
    study.tell(broken, state=optuna.trial.TrialState.FAIL)
    seen = sampler("random")._seen_keys(study, study.ask())  # type: ignore[arg-type]
    assert study.trials[3].user_attrs[KEY_ATTR] not in seen
    assert {t.user_attrs[KEY_ATTR] for t in study.trials[:3]} <= seen
    assert study.trials[4].user_attrs[KEY_ATTR] in seen


def test_parallel_threads() -> None:
    study = optuna.create_study(sampler=sampler("nsga2"))
    study.optimize(objective, n_trials=40, n_jobs=2)
    assert len(study.trials) == 40
    assert_clean(study)


@pytest.mark.slow
def test_rdb_storage_resume_and_two_workers(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = optuna.create_study(study_name="s", storage=storage, sampler=sampler("nsga2"))
    first.optimize(objective, n_trials=15)
    # a second process-like worker and a resumed run, each with its own sampler instance
    workers = [optuna.load_study(study_name="s", storage=storage, sampler=sampler("nsga2")) for _ in range(2)]
    optimize_at_once(workers, n_trials=10)
    study = optuna.load_study(study_name="s", storage=storage)
    assert len(study.trials) == 35
    assert_clean(study)


def optimize_at_once(workers: list[optuna.Study], *, n_trials: int) -> None:
    """Each worker's study optimises ``n_trials`` in its own thread, all at the same time."""
    threads = [threading.Thread(target=w.optimize, args=(objective,), kwargs={"n_trials": n_trials}) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_enqueued_trials_are_respected() -> None:
    study = optuna.create_study(sampler=sampler("nsga2"))
    study.optimize(objective, n_trials=3)
    params = dict(study.trials[0].params)
    study.enqueue_trial(params)
    study.optimize(objective, n_trials=1)
    assert study.trials[-1].params == params  # the user's explicit choice wins over deduplication


def test_joint_hardware_search() -> None:
    space = SearchSpace(channels=(4, 8), hidden_features=(0, 32), timesteps=(2, 4),
                        hardware=HardwareSpace(crossbar_size=(64, 128), adc_bits=(4, 5), bits_per_cell=(1, 2),
                                               weight_bits=(4, 8)))
    study = optuna.create_study(sampler=sampler("nsga2", space=space))
    study.optimize(lambda t: objective(t, space), n_trials=20)
    assert_clean(study)
    assert len({(t.params["hw/adc_bits"], t.params["hw/crossbar_size"]) for t in study.trials}) > 1


def test_impossible_budgets_are_reported_not_hidden() -> None:
    strict = HardwareAwareSampler(SPACE, hardware=CHIP, budgets=Budgets(memory=1), seed=0, max_tries=4,
                                  fallback_tries=4)
    study = optuna.create_study(sampler=strict)
    study.optimize(lambda t: suggest_architecture(t, SPACE).to_network().params, n_trials=2)
    assert [t.user_attrs["sampler/outcome"] for t in study.trials] == ["unresolved", "unresolved"]
    assert [t.user_attrs["sampler/rejected"] for t in study.trials] == [8, 8]


def test_repair_moves_every_knob_to_its_cheapest_choice() -> None:
    s = sampler("random")
    params = s._random()
    params.update({"arch/channels": 16, "arch/hidden_features": 64, "snn/timesteps": 6,
                   "arch/cell_a/e0": "conv3x3"})
    fixed = s.repair(params)
    assert (fixed["arch/channels"], fixed["arch/hidden_features"], fixed["snn/timesteps"]) == (4, 0, 2)
    assert fixed["arch/cell_a/e0"] == "skip"
    assert s.evaluate(fixed)[1]  # the cheapest variant fits these budgets


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="max_tries=0 must be an integer >= 1"):
        HardwareAwareSampler(SPACE, hardware=CHIP, budgets=BUDGETS, max_tries=0)
    with pytest.raises(ConfigError, match="base must be an Optuna sampler, got str"):
        HardwareAwareSampler(SPACE, hardware=CHIP, budgets=BUDGETS, base="nsga2")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="hardware space does not fit hardware 'spikesim-65nm'"):
        HardwareAwareSampler(SearchSpace(hardware=HardwareSpace()), hardware=load_hardware("spikesim-65nm"),
                             budgets=BUDGETS)


def test_draw_gives_distinct_feasible_candidates_reproducibly() -> None:
    s = sampler("random")
    picks = s.draw(20, seed=3)
    assert len(picks) == 20 and len({c.key for c in picks}) == 20
    assert all(s.evaluate(c.params) == (c.key, True) for c in picks)
    assert all(c.report is not None and c.report.memory_params <= 16000 for c in picks)
    assert [c.key for c in s.draw(20, seed=3)] == [c.key for c in picks]
    others = s.draw(10, seed=3, exclude={c.key for c in picks[:5]})
    assert not {c.key for c in others} & {c.key for c in picks[:5]}
    strict = HardwareAwareSampler(SPACE, hardware=CHIP, budgets=Budgets(memory=1), seed=0)
    assert strict.draw(3, max_tries=50) == []  # nothing fits: fewer (here none), never an infeasible one
    with pytest.raises(ConfigError, match="count=-1 must be an integer >= 0"):
        s.draw(-1)


def test_preferred_candidates_go_first_once_each_across_workers(tmp_path: Path) -> None:
    ranked = sampler("random").draw(12, seed=5)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(study_name="s", storage=storage)
    workers = []
    for _ in range(2):
        own = sampler("nsga2")
        own.prefer([dataclasses.replace(c, attrs={"screen/rank": i}) for i, c in enumerate(ranked)])
        workers.append(optuna.load_study(study_name="s", storage=storage, sampler=own))
    optimize_at_once(workers, n_trials=8)
    study = optuna.load_study(study_name="s", storage=storage)
    assert_clean(study)
    outcomes = Counter(t.user_attrs["sampler/outcome"] for t in study.trials)
    assert outcomes["ranked"] == 12 and len(study.trials) == 16  # every candidate once, then the base sampler
    got = {t.user_attrs[KEY_ATTR]: t.user_attrs["screen/rank"] for t in study.trials if "screen/rank" in t.user_attrs}
    assert got == {c.key: i for i, c in enumerate(ranked)}
    with pytest.raises(ConfigError, match="prefer\\(\\) needs deduplicate=True"):
        sampler("random", deduplicate=False).prefer(ranked)
