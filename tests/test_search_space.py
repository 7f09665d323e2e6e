"""The search space: fixed-length genome, repair, reconstruction and hardware knobs, on real studies."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import FixedTrial, TrialState

from hasnas_optuna import (
    Architecture,
    Cell,
    ConfigError,
    HardwareSpace,
    SearchSpace,
    architecture_from_params,
    hardware_from_params,
    suggest_architecture,
    suggest_hardware,
)
from hasnas_optuna.cim import Hardware, estimate_cost, load_hardware

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACES = {
    "default": SearchSpace(),
    # every switch on: backward edges, no required 0->3 edge (so the no-path fallback is reachable),
    # a reduced op set and joint hardware knobs
    "full": SearchSpace(
        ops=("zero", "skip", "conv1x1", "conv3x3"), direct_edge=False, backward_edges=True,
        hardware=HardwareSpace(),
    ),
}
SAMPLERS = {
    "random": lambda: optuna.samplers.RandomSampler(seed=3),
    "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=3, population_size=20),
}


def genome(space: SearchSpace, cell: list[str] | None = None, **overrides: Any) -> dict[str, Any]:
    """A params dict for ``space``: the first choice or the low end of every gene, then overrides."""
    params: dict[str, Any] = {}
    for name, dist in space.distributions().items():
        if isinstance(dist, CategoricalDistribution):
            params[name] = dist.choices[0]
        else:
            assert isinstance(dist, FloatDistribution)
            params[name] = dist.low
    for k, op in enumerate(cell or []):
        params[f"arch/cell_a/e{k}"] = op
    params.update({name.replace("__", "/"): value for name, value in overrides.items()})
    return params


def run_study(space: SearchSpace, sampler: optuna.samplers.BaseSampler, n_trials: int = 200
              ) -> tuple[optuna.Study, dict[int, tuple[Architecture, Hardware]]]:
    base = load_hardware()
    sampled: dict[int, tuple[Architecture, Hardware]] = {}

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch = suggest_architecture(trial, space)
        chip = suggest_hardware(trial, space, base)
        assert arch.cell_a.is_valid() and arch.cell_b.is_valid()
        assert Architecture.from_json(arch.to_json()) == arch
        report = estimate_cost(arch.to_network(), chip)
        if chip is not base:
            estimate_cost(arch.to_network(), base)
        sampled[trial.number] = (arch, chip)
        return float(report.memory_params), report.energy_uj

    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(objective, n_trials=n_trials)
    return study, sampled


@pytest.fixture(scope="module", params=[(s, p) for s in SPACES for p in SAMPLERS], ids=lambda v: "-".join(v))
def study_run(request: pytest.FixtureRequest) -> tuple[SearchSpace, optuna.Study, dict]:
    space_name, sampler_name = request.param
    space = SPACES[space_name]
    study, sampled = run_study(space, SAMPLERS[sampler_name]())
    return space, study, sampled


def test_every_trial_completes_with_the_same_genome(study_run: tuple) -> None:
    space, study, sampled = study_run
    trials = study.get_trials()
    assert len(trials) == 200 and all(t.state == TrialState.COMPLETE for t in trials)
    expected = space.distributions()
    for t in trials:
        assert list(t.params) == list(expected)  # same names, same order
        assert t.distributions == expected
    # What NSGA-II and GP see as their relative search space: the whole genome.
    assert IntersectionSearchSpace().calculate(study) == dict(sorted(expected.items()))
    keys = {arch.key() for arch, _ in sampled.values()}
    assert len(keys) > 100  # the search really explores


def test_params_rebuild_the_sampled_architecture_and_chip(study_run: tuple) -> None:
    space, study, sampled = study_run
    base = load_hardware()
    for t in study.get_trials():
        arch, chip = sampled[t.number]
        rebuilt = architecture_from_params(t.params, space)
        assert rebuilt == arch and rebuilt.key() == t.user_attrs["arch/key"]
        assert hardware_from_params(t.params, space, base).to_dict() == chip.to_dict()


def test_genes_reach_the_architecture(study_run: tuple) -> None:
    space, study, sampled = study_run
    archs = [arch for arch, _ in sampled.values()]
    assert {a.channels for a in archs} == set(space.channels)
    assert {a.encoding for a in archs} == set(space.encodings)
    assert all(space.beta[0] <= a.beta <= space.beta[1] for a in archs)
    cells = [c for a in archs for c in (a.cell_a, a.cell_b)]
    if space.direct_edge:  # SNASNet rule 4: never a zero 0->3 edge
        assert all(c.edges[3] != "zero" for c in cells)
    if space.backward_edges:
        assert any(c.backward for c in cells)
    else:
        assert not any(c.backward for c in cells)
    assert all(op in space.ops for c in cells for op in c.edges)
    repaired = [t for t in study.get_trials() if t.user_attrs["arch/repairs"]]
    assert repaired  # raw genomes with dead nodes occur, and are repaired rather than resampled
    if space.hardware is not None:
        chips = {chip.crossbar_size for _, chip in sampled.values()}
        assert chips == set(space.hardware.crossbar_size)


def test_enqueued_params_reproduce_an_architecture() -> None:
    space = SPACES["full"]
    study, sampled = run_study(space, optuna.samplers.RandomSampler(seed=11), n_trials=3)
    params = study.trials[2].params
    again = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=99))
    again.enqueue_trial(params)
    trial = again.ask()
    assert suggest_architecture(trial, space) == sampled[2][0]


def test_repairs_are_recorded_and_the_raw_genome_kept() -> None:
    space = SearchSpace(share_cells=True)
    params = genome(space, ["conv3x3", "zero", "zero", "skip", "zero", "zero"])  # node 1 feeds nothing
    trial = FixedTrial(params)
    arch = suggest_architecture(trial, space)
    assert arch.cell_a.edges == ("zero", "zero", "zero", "skip", "zero", "zero")
    assert arch.cell_b == arch.cell_a  # shared cells: no cell_b genes
    assert not any(name.startswith("arch/cell_b") for name in params)
    assert trial.params == params
    assert trial.user_attrs["arch/repairs"] == [
        "cell_a: [0->1 conv3x3, 0->3 skip; node 1 dead] -> [0->3 skip]"
    ]
    assert trial.user_attrs["arch/key"] == arch.key()
    assert architecture_from_params(params, space) == arch


def test_cell_without_any_path_falls_back_to_the_first_allowed_op() -> None:
    space = SearchSpace(ops=("zero", "conv1x1", "conv3x3"), direct_edge=False, share_cells=True)
    params = genome(space, ["zero"] * 6)
    assert architecture_from_params(params, space).cell_a.summary() == "0->3 conv1x1"
    params = genome(space, ["conv3x3", "conv3x3", "zero", "zero", "zero", "zero"])
    assert architecture_from_params(params, space).cell_a.summary() == "0->3 conv1x1"


def test_backward_genes_decode_as_snasnet_bw() -> None:
    space = SearchSpace(backward_edges=True, share_cells=True)
    # pair (0, 2) goes backward with conv3x3, which is the backward edge 2->0
    params = genome(space, ["conv3x3", "conv3x3", "conv3x3", "conv1x1", "zero", "conv3x3"],
                    arch__cell_a__e1_dir="backward")
    assert params["arch/cell_a/e0_dir"] == "forward"
    arch = architecture_from_params(params, space)
    assert arch.cell_a == Cell.from_matrix("0302 0030 3003 0000")  # SNASNet's CIFAR100 cell
    assert "arch/cell_a/e3_dir" not in space.distributions()  # the direct edge stays forward
    params["arch/cell_a/e1"] = "zero"  # a backward 'zero' is no edge at all
    assert architecture_from_params(params, space).cell_a.backward == ()


def test_from_params_names_missing_and_bad_params() -> None:
    space = SearchSpace()
    trial = FixedTrial({})
    with pytest.raises(ValueError):  # FixedTrial itself refuses unknown names
        suggest_architecture(trial, space)
    study, sampled = run_study(space, optuna.samplers.RandomSampler(seed=5), n_trials=1)
    params = dict(study.trials[0].params)
    assert architecture_from_params({**params, "train/lr": 0.01}, space) == sampled[0][0]  # extras ignored
    with pytest.raises(ConfigError, match="parameter 'snn/beta' is missing"):
        architecture_from_params({k: v for k, v in params.items() if k != "snn/beta"}, space)
    with pytest.raises(ConfigError, match="parameter arch/channels=12 is not allowed; use one of 8, 16, 32"):
        architecture_from_params({**params, "arch/channels": 12}, space)
    with pytest.raises(ConfigError, match=r"snn/threshold=9.0 is out of range; it must be in \[0.5, 1.5\]"):
        architecture_from_params({**params, "snn/threshold": 9.0}, space)
    with pytest.raises(ConfigError, match="parameter arch/cell_a/e3='zero' is not allowed; use one of skip"):
        architecture_from_params({**params, "arch/cell_a/e3": "zero"}, space)


# ---------------------------------------------------------------------------------------------
# Hardware knobs


def test_hardware_knobs_give_chips_that_load_and_cost() -> None:
    base = load_hardware()
    space = SearchSpace(hardware=HardwareSpace())
    cell = Cell.from_matrix("0302 0030 3003 0000")
    net = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell).to_network()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        chip = suggest_hardware(trial, space, base)
        knobs = ("crossbar_size", "weight_bits", "bits_per_cell", "adc_bits")
        assert {k: getattr(chip, k) for k in knobs} == {k[3:]: v for k, v in trial.params.items()}
        assert chip.rows_per_read == chip.crossbar_size  # the preset reads every row at once
        assert chip.technology == base.technology
        assert estimate_cost(net, chip).memory_params == net.memory_params
        seen.add(chip.crossbar_size)
        study.tell(trial, 0.0)
    assert seen == {64, 128, 256}


def test_hardware_space_apply_rules() -> None:
    base = load_hardware(rows_per_read=32)
    space = HardwareSpace()
    assert space.apply(base, {"crossbar_size": 256}).rows_per_read == 32  # partial reads stay partial
    assert space.apply(load_hardware(), {"crossbar_size": 64}).rows_per_read == 64  # capped at the size
    assert space.apply(base, {"crossbar_size": 64, "rows_per_read": 16}).rows_per_read == 16


def test_hardware_space_must_fit_the_base_chip() -> None:
    spikesim = load_hardware("spikesim-65nm")  # its ADC table has 4 bits only
    space = SearchSpace(hardware=HardwareSpace())
    trial = optuna.create_study().ask()
    with pytest.raises(ConfigError, match="hardware space does not fit hardware 'spikesim-65nm': adc_bits=3"):
        suggest_hardware(trial, space, spikesim)
    assert trial.params == {}  # nothing was suggested
    fitted = SearchSpace(hardware=HardwareSpace(adc_bits=(4,)))
    assert suggest_hardware(trial, fitted, spikesim).adc_bits == 4


def test_no_hardware_space_keeps_the_chip() -> None:
    base = load_hardware()
    trial = optuna.create_study().ask()
    assert suggest_hardware(trial, SearchSpace(), base) is base
    assert trial.params == {}
    assert hardware_from_params({}, SearchSpace(), base) is base


# ---------------------------------------------------------------------------------------------
# Validation of the space itself


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"ops": ("zero",)}, "ops=('zero',) has no non-zero op; add one of skip, conv1x1"),
    ({"ops": ("skip", "conv5x5")}, "ops=('skip', 'conv5x5') has 'conv5x5', which is not allowed"),
    ({"ops": "conv3x3"}, "ops='conv3x3' must be a list of choices"),
    ({"channels": ()}, "channels is empty; give at least one choice"),
    ({"channels": (8, 8)}, "channels=(8, 8) has duplicate choices"),
    ({"channels": (0, 8)}, "channels=(0, 8) has 0; each choice must be an integer >= 1"),
    ({"timesteps": ("4",)}, "timesteps=('4',) has '4'; each choice must be an integer >= 1"),
    ({"hidden_features": (-1,)}, "hidden_features=(-1,) has -1; each choice must be an integer >= 0"),
    ({"encodings": ("spikes",)}, "encodings=('spikes',) has 'spikes', which is not allowed; use a subset of "
                                 "direct, rate, latency"),
    ({"surrogates": ("relu",)}, "surrogates=('relu',) has 'relu', which is not allowed; use a subset of at"),
    ({"beta": (0.5, 1.5)}, "beta=(0.5, 1.5) has 1.5; both ends must be finite numbers >= 0.0 and <= 1.0"),
    ({"beta": (0.9, 0.5)}, "beta=(0.9, 0.5) has low > high"),
    ({"beta": 0.9}, "beta=0.9 must be a (low, high) range"),
    ({"threshold": (0, 1)}, "threshold=(0, 1) has 0; both ends must be finite numbers > 0.0"),
    ({"surrogate_slope": (0.0, 2.0)}, "surrogate_slope=(0.0, 2.0) has 0.0; both ends must be finite"),
    ({"input_shape": (1, 3, 8)}, "input_shape=(1, 3, 8) is out of range"),
    ({"num_classes": 1}, "num_classes=1 is out of range; it must be an integer >= 2"),
    ({"backward_edges": "yes"}, "backward_edges='yes' must be True or False"),
    ({"direct_edge": 1}, "direct_edge=1 must be True or False"),
    ({"hardware": "big"}, "hardware must be a HardwareSpace or None, got str"),
])
def test_bad_search_space_values_name_the_field(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        SearchSpace(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"crossbar_size": (0, 64)}, "hardware.crossbar_size=(0, 64) has 0; each choice must be an integer >= 1"),
    ({"adc_bits": ()}, "hardware.adc_bits is empty"),
    ({"weight_bits": (8, 8)}, "hardware.weight_bits=(8, 8) has duplicate choices"),
])
def test_bad_hardware_space_values_name_the_field(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        HardwareSpace(**kwargs)
    assert fragment in str(info.value)


def test_spaces_are_values() -> None:
    listed = SearchSpace(ops=["conv3x3", "zero"], channels=[8, 16], beta=[0.6, 0.9])  # type: ignore[arg-type]
    tupled = SearchSpace(ops=("zero", "conv3x3"), channels=(8, 16), beta=(0.6, 0.9))
    assert listed == tupled and hash(listed) == hash(tupled)
    assert listed.ops == ("zero", "conv3x3")  # stored in OPS order
    assert hash(SearchSpace(hardware=HardwareSpace())) == hash(SearchSpace(hardware=HardwareSpace()))
