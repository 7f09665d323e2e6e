"""Training-free hardware-aware search with the OptunaHub package ``samplers/hasnas``.

Maximise the SAHD score of the untrained spiking network and minimise its energy on a 22 nm RRAM
chip, within 20,000 weights and 0.05 uJ per inference. ``python example.py`` loads the published
package; ``python example.py --local`` loads this folder.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from types import ModuleType

import optuna
import torch
from sklearn.datasets import load_digits

import optunahub


def run(hasnas: ModuleType, n_trials: int = 30, seed: int = 0) -> optuna.Study:
    """Run the search with the loaded package and return the study."""
    space = hasnas.SearchSpace(input_shape=(1, 8, 8), num_classes=10, channels=(4, 8), timesteps=(2, 4))
    chip = hasnas.load_hardware("neurosim-22nm")
    budgets = hasnas.Budgets(memory=20_000, energy=0.05)
    images = torch.tensor(load_digits().images[:32] / 16.0, dtype=torch.float32).unsqueeze(1)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch = hasnas.suggest_architecture(trial, space)
        report = hasnas.estimate_cost(arch.to_network(), chip)
        for name, _, _, slack in budgets.check(report):
            trial.set_constraint(name, slack)  # <= 0 meets the budget
        trial.set_user_attr("summary", arch.summary())
        return hasnas.score_architecture(arch, images, seed=seed), report.energy_uj

    sampler = hasnas.HardwareAwareSampler(space, hardware=chip, budgets=budgets, seed=seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["sahd", "energy_uj"])
    study.optimize(objective, n_trials=n_trials)
    return study


if __name__ == "__main__":
    if "--local" in sys.argv:
        module = optunahub.load_local_module("samplers/hasnas", registry_root=str(Path(__file__).resolve().parents[2]))
    else:
        module = optunahub.load_module(package="samplers/hasnas")
    result = run(module)
    for trial in result.best_trials:
        sahd, energy = trial.values
        print(f"trial {trial.number}: SAHD {sahd:.2f}, {energy:.4f} uJ, {trial.user_attrs['summary']}")
