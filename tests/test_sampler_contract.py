"""HardwareAwareSampler against Optuna's own sampler battery, inside PartialFixedSampler, and as a wrapper.

Users drop samplers into existing Optuna code: Optuna publishes the scenarios every sampler must
meet (``optuna.testing.pytest_samplers``); ours runs them with a real base sampler underneath.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import pytest
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, PartialFixedSampler, RandomSampler, TPESampler
from optuna.study import Study
from optuna.testing.pytest_samplers import (
    BasicSamplerTestCase,
    MultiObjectiveSamplerTestCase,
    RelativeSamplerTestCase,
)
from optuna.trial import FrozenTrial, TrialState

from hasnas_optuna import ConfigError, SearchSpace, suggest_architecture
from hasnas_optuna.cim import Budgets, Layer, Network, estimate_cost, load_hardware, register_metric, unregister_metric
from hasnas_optuna.config import StudyConfig
from hasnas_optuna.objective import set_budget_constraints
from hasnas_optuna.results import COST_ATTRS, UNITS
from hasnas_optuna.sampler import KEY_ATTR, HardwareAwareSampler

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = SearchSpace(channels=(4, 8, 16), hidden_features=(0, 32, 64), timesteps=(2, 4, 6))
CHIP = load_hardware()
BUDGETS = Budgets(memory=16000, area=5.3, latency=0.025, energy=0.045)


def ours(base: BaseSampler | None = None, space: SearchSpace = SPACE) -> HardwareAwareSampler:
    return HardwareAwareSampler(space, hardware=CHIP, budgets=BUDGETS, base=base or RandomSampler(seed=0), seed=0)


class TestOptunaBasicBattery(BasicSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return ours


class TestOptunaRelativeBattery(RelativeSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return lambda: ours(TPESampler(seed=0, n_startup_trials=0, multivariate=True))


class TestOptunaMultiObjectiveBattery(MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], BaseSampler]:
        return ours


def test_inside_partial_fixed_sampler_with_our_space() -> None:
    fixed = {"arch/channels": 8, "snn/encoding": "rate"}
    study = optuna.create_study(sampler=PartialFixedSampler(fixed, ours()))

    def objective(trial: optuna.Trial) -> float:
        arch = suggest_architecture(trial, SPACE)
        trial.suggest_float("lr", 1e-3, 1e-1, log=True)  # a parameter outside the space: the base's
        return float(estimate_cost(arch.to_network(), CHIP).energy_uj)

    study.optimize(objective, n_trials=8)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert {t.params["arch/channels"] for t in study.trials} == {8}
    assert {t.params["snn/encoding"] for t in study.trials} == {"rate"}
    assert len({t.user_attrs[KEY_ATTR] for t in study.trials}) == 8  # still one new architecture each
    assert all(1e-3 <= t.params["lr"] <= 1e-1 for t in study.trials)


def test_foreign_parameters_go_to_the_base_sampler() -> None:
    sampler = ours(TPESampler(seed=0, n_startup_trials=2, multivariate=True))
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.5) ** 2 + t.suggest_int("n", 1, 5), n_trials=12)
    relative = sampler.infer_relative_search_space(study, study.trials[-1])
    assert {"x", "n"} <= set(relative) and set(SPACE.distributions()) <= set(relative)
    probe = study.ask()
    drawn = sampler.sample_relative(study, study._storage.get_trial(probe._trial_id),
                                    {"x": relative["x"], "n": relative["n"]})
    assert set(drawn) == {"x", "n"} and -1 <= drawn["x"] <= 1 and drawn["n"] in range(1, 6)


class _Recorder(RandomSampler):
    """A real Optuna sampler that also records the hooks it receives."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.calls: list[str] = []

    def reseed_rng(self) -> None:
        self.calls.append("reseed_rng")
        super().reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.calls.append(f"before_trial {trial.number}")
        super().before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self.calls.append(f"after_trial {trial.number} {state.name}")
        super().after_trial(study, trial, state, values)

    def sample_independent(self, study: Study, trial: FrozenTrial, name: str, dist: BaseDistribution) -> Any:
        self.calls.append(f"sample_independent {name}")
        return super().sample_independent(study, trial, name, dist)


def test_hooks_are_forwarded_to_the_base() -> None:
    base = _Recorder()
    sampler = ours(base)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: suggest_architecture(t, SPACE).to_network().params, n_trials=2)
    sampler.reseed_rng()
    hooks = [c for c in base.calls if not c.startswith("sample_independent")]
    assert hooks == ["before_trial 0", "after_trial 0 COMPLETE", "before_trial 1", "after_trial 1 COMPLETE",
                     "reseed_rng"]


@pytest.mark.parametrize("base", ["tpe", "gp", "nsga2"])
def test_single_valued_ranges_are_never_asked_of_the_base(base: str) -> None:
    # Optuna's Trial answers a one-value range itself; TPE asked about one answers NaN
    space = SearchSpace(channels=(4,), hidden_features=(0,), timesteps=(2,), encodings=("rate",), beta=(0.9, 0.9),
                        threshold=(1.0, 1.0), surrogates=("atan",), surrogate_slope=(2.0, 2.0))
    make = {"tpe": lambda: TPESampler(seed=0, n_startup_trials=2),
            "gp": lambda: optuna.samplers.GPSampler(seed=0, n_startup_trials=2),
            "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=0, population_size=4)}[base]
    sampler = HardwareAwareSampler(space, hardware=CHIP, budgets=Budgets(), base=make(), seed=0, deduplicate=False)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: suggest_architecture(t, space).to_network().params, n_trials=6)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    for t in study.trials:
        assert (t.params["snn/beta"], t.params["snn/threshold"], t.params["snn/surrogate_slope"]) == (0.9, 1.0, 2.0)
        assert t.params["arch/channels"] == 4


# ---------------------------------------------------------------------------------------------
# Open seams: a user's own search space and cost model, and a fifth budget as data


class MLPSpace:
    """A user's own search space: a plain MLP on 64 inputs (CandidateSpace's five methods)."""

    def distributions(self) -> dict[str, BaseDistribution]:
        return {"width": optuna.distributions.CategoricalDistribution((16, 64, 256)),
                "depth": optuna.distributions.CategoricalDistribution((1, 2, 3))}

    def network(self, params: Any) -> Network:
        widths = [64] + [params["width"]] * params["depth"] + [10]
        return Network([Layer.linear(a, b, bias=True) for a, b in itertools.pairwise(widths)], timesteps=4)

    def chip(self, params: Any, base: Any) -> Any:
        return base

    def key(self, params: Any) -> str:
        return f"mlp-{params['width']}x{params['depth']}"

    def cheapest(self, params: Any) -> dict[str, Any]:
        return {"width": 16, "depth": 1}


@dataclass
class _Costs:
    memory_params: int
    area_mm2: float
    latency_ms: float
    energy_uj: float


def weights_only(network: Network, chip: Any) -> _Costs:
    """A user's own (toy) cost model: everything from the weight count."""
    n = network.memory_params
    return _Costs(n, n * 1e-4, 1e-3, n * 1e-6)


def test_a_users_own_space_and_cost_model_under_the_sampler() -> None:
    space = MLPSpace()
    sampler = HardwareAwareSampler(space, hardware=CHIP, budgets=Budgets(memory=20_000), cost=weights_only, seed=0,
                                   base=RandomSampler(seed=0))
    study = optuna.create_study(sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        width = trial.suggest_categorical("width", (16, 64, 256))
        depth = trial.suggest_categorical("depth", (1, 2, 3))
        return float(weights_only(space.network({"width": width, "depth": depth}), CHIP).memory_params)

    study.optimize(objective, n_trials=7)
    fitting = {(w, d) for w in (16, 64, 256) for d in (1, 2, 3)
               if weights_only(space.network({"width": w, "depth": d}), CHIP).memory_params <= 20_000}
    assert len(fitting) == 7  # 64-256-10 has 19 210 numbers; 64-256-256-10 and up do not fit: each once
    assert {(t.params["width"], t.params["depth"]) for t in study.trials} == fitting
    with pytest.raises(ConfigError, match="provide distributions, network, chip, key, cheapest"):
        HardwareAwareSampler(object(), hardware=CHIP, budgets=Budgets())  # type: ignore[arg-type]


def test_a_fifth_budget_is_data() -> None:
    power = register_metric("power", lambda r: r.energy_uj / r.latency_ms, unit="mW",
                            description="average power of one inference")
    try:
        report = estimate_cost(Network([Layer.linear(64, 10, bias=True)], timesteps=4), CHIP)
        assert report.costs()["power"] == pytest.approx(report.energy_uj / report.latency_ms)
        free = HardwareAwareSampler(SPACE, hardware=CHIP, budgets=Budgets(), seed=1)
        drawn = sorted(estimate_cost(SPACE.network(c.params), CHIP).costs()["power"] for c in free.draw(40, seed=1))
        limit = drawn[len(drawn) // 2]  # half the space breaks it
        budgets = Budgets(memory=16000, power=limit)
        assert [name for name, *_ in budgets.check(report)] == ["memory", "power"]
        sampler = HardwareAwareSampler(SPACE, hardware=CHIP, budgets=budgets, base=RandomSampler(seed=0), seed=0)
        study = optuna.create_study(sampler=sampler)

        def objective(trial: optuna.Trial) -> float:
            r = estimate_cost(suggest_architecture(trial, SPACE).to_network(), CHIP)
            set_budget_constraints(trial, budgets, r)
            trial.set_user_attr(COST_ATTRS["power"], r.costs()["power"])
            return r.energy_uj

        study.optimize(objective, n_trials=10)
        powers = [t.user_attrs["cost/power"] for t in study.trials]
        assert all(p <= limit for p in powers) and drawn[-1] > limit
        assert all(t.constraints["power"] == pytest.approx(t.user_attrs["cost/power"] / limit - 1)
                   for t in study.trials)
        config = StudyConfig.from_dict({"study": {"objectives": ["accuracy", "power"]}, "budgets": {"power": 5}})
        assert config.budgets.power == 5.0 and UNITS["power"] == "mW" and power.key == "power"
    finally:
        unregister_metric("power")
    with pytest.raises(ConfigError, match="'power' is not a cost metric; use one of memory, area, latency, energy"):
        Budgets(power=5)
