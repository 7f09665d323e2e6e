"""The OptunaHub package ``optunahub/samplers/hasnas``: registry layout, loading, and its example's study."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import optuna
import pytest

import optunahub

REGISTRY = Path(__file__).resolve().parents[1] / "optunahub"
PACKAGE = REGISTRY / "samplers" / "hasnas"


def test_package_has_the_registry_layout() -> None:
    assert {"__init__.py", "README.md", "LICENSE", "example.py", "requirements.txt"} <= {
        p.name for p in PACKAGE.iterdir()}
    assert not (REGISTRY / "__init__.py").exists()  # never shadows the optunahub library
    assert (PACKAGE / "LICENSE").read_text().startswith("MIT License")
    readme = (PACKAGE / "README.md").read_text()
    front = re.match(r"---\n(.*?)\n---\n", readme, flags=re.S)
    assert front is not None
    fields = dict(line.split(": ", 1) for line in front.group(1).splitlines())
    assert set(fields) == {"author", "title", "description", "tags", "optuna_versions", "license"}
    assert "sampler" in [tag.strip() for tag in fields["tags"].strip("[]").split(",")]
    assert fields["license"] == "MIT License" and optuna.__version__ in fields["optuna_versions"]
    for section in ("## Abstract", "## Class or Function Names", "## Installation", "## Example"):
        assert section in readme


def test_load_local_module_exports_the_sampler_and_search_space() -> None:
    hasnas = optunahub.load_local_module("samplers/hasnas", registry_root=str(REGISTRY))
    from hasnas_optuna import SearchSpace, suggest_architecture
    from hasnas_optuna.sampler import HardwareAwareSampler

    assert hasnas.SearchSpace is SearchSpace and hasnas.suggest_architecture is suggest_architecture
    assert hasnas.HardwareAwareSampler is HardwareAwareSampler
    assert set(hasnas.__all__) <= set(dir(hasnas))
    assert issubclass(hasnas.HardwareAwareSampler, optuna.samplers.BaseSampler)


def test_example_runs_a_short_constrained_study() -> None:
    hasnas = optunahub.load_local_module("samplers/hasnas", registry_root=str(REGISTRY))
    spec = importlib.util.spec_from_file_location("hasnas_hub_example", PACKAGE / "example.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    study = example.run(hasnas, n_trials=10)
    assert len(study.trials) == 10 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for trial in study.trials:  # the sampler only hands out networks within the budgets
        assert sorted(trial.constraints) == ["energy", "memory"]
        assert all(value <= 0 for value in trial.constraints.values())
        assert trial.user_attrs["sampler/outcome"] in ("base", "fallback", "repaired")
    assert study.best_trials and any(math.isfinite(t.values[0]) for t in study.trials)
    keys = [t.user_attrs["sampler/key"] for t in study.trials]
    assert len(set(keys)) == len(keys)  # no architecture twice


@pytest.mark.parametrize("name", ["Budgets", "estimate_cost", "load_hardware", "score_architecture", "Cell"])
def test_cost_model_and_fitness_are_exported(name: str) -> None:
    hasnas = optunahub.load_local_module("samplers/hasnas", registry_root=str(REGISTRY))
    assert name in hasnas.__all__ and getattr(hasnas, name) is not None
