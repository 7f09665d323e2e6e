"""Study configs: every shipped file loads; typos and bad values fail before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from hasnas_optuna import ConfigError
from hasnas_optuna.config import StudyConfig, load_config

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[study]\nn_trial = 3\n", r"unknown key 'study.n_trial' \(did you mean 'n_trials'\?\); allowed: "),
        ("[training]\nepoch = 3\n", r"unknown key 'training.epoch'"),
        ("[traning]\nepochs = 3\n",
         r"unknown key 'traning' \(did you mean 'training'\?\); allowed: budgets, dataset, hardware"),
        ("[study]\nn_trials = \"ten\"\n", r"study.n_trials='ten' must be an integer >= 1"),
        ("[study]\nsampler = \"cmaes\"\n", r"study.sampler='cmaes' is not allowed; use one of nsga2, tpe, random, gp"),
        ("[study]\nobjectives = [\"energy\"]\n", r"must start with \"accuracy\""),
        ("[budgets]\narea = 0\n", r"budget area=0 must be a number > 0 \(mm2\)"),
        ("[budgets]\nenergy = -1.5\n", r"budget energy=-1.5 must be a number > 0"),
        ("[budgets]\npower = 1\n", r"unknown key 'budgets.power'"),
        ("[hardware]\npreset = \"neurosim-7nm\"\n", r"unknown hardware preset 'neurosim-7nm'"),
        ("[hardware]\nadc_bits = 9\n", r"adc_bits=9 is not in this technology table"),
        ("[hardware]\nadc = 4\n", r"unknown hardware knob 'adc'"),
        ("[dataset]\nname = \"imagenet\"\n", r"dataset.name='imagenet' is not known; use one of digits"),
        ("[space]\nchannels = [0]\n", r"channels=\(0,\) has 0; each choice must be an integer >= 1"),
        ("[space]\nops = [\"conv5x5\"]\n", r"conv5x5"),
        ("[space.hardware]\nadc_bits = [4, 9]\n", r"hardware space does not fit hardware 'neurosim-22nm'"),
        ("[training]\npruner = \"hyperband\"\n", r"training.pruner='hyperband' is not allowed"),
        ("[training]\nlr = -1\n", r"training.lr=-1 must be a number"),
        ("[study\n", r"malformed TOML"),
    ],
)
def test_bad_configs_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"config file 'nope\.toml' does not exist"):
        load_config("nope.toml")


def test_shipped_studies_load_and_cifar_uses_the_paper_budgets() -> None:
    names = sorted(p.stem for p in STUDIES.glob("*.toml"))
    assert names == ["cifar100_hasnas", "cifar10_hasnas", "digits", "fashion_mnist"]
    for name in ("cifar10_hasnas", "cifar100_hasnas"):
        config = load_config(STUDIES / f"{name}.toml")
        assert list(config.budgets.items()) == [("memory", 4e6), ("area", 100.0), ("latency", 400.0), ("energy", 120.0)]
        assert config.space.input_shape == (3, 32, 32)
    assert load_config(STUDIES / "cifar100_hasnas.toml").space.num_classes == 100


def test_cifar_budgets_all_bind_for_some_networks() -> None:
    import optuna

    from hasnas_optuna.cim import estimate_cost
    from hasnas_optuna.search_space import suggest_architecture

    config = load_config(STUDIES / "cifar10_hasnas.toml")
    hardware = config.hardware()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    broken = dict.fromkeys(("memory", "area", "latency", "energy"), 0)
    for _ in range(300):
        trial = study.ask()
        report = estimate_cost(suggest_architecture(trial, config.space).to_network(), hardware)
        for name, _, _, slack in config.budgets.check(report):
            broken[name] += slack > 0
        study.tell(trial, 0.0)
    assert all(count > 0 for count in broken.values()), broken  # each budget binds somewhere
    assert all(count < 300 for count in broken.values()), broken  # and none rules out everything


def test_from_dict_defaults() -> None:
    config = StudyConfig.from_dict({})
    assert config.directions == ["maximize"] and config.sampler == "nsga2"
    assert list(config.budgets.items()) == []
