"""The Optuna objective of a HASNAS study: sample, cost, maybe train, constrain.

Per trial:

1. suggest an architecture (and chip knobs, when the space searches them);
2. cost it with the CIM model at the chip's prior spike rates; every cost becomes a user
   attribute ``prior/<name>``, and the trial's costs ``cost/<name>`` are these for a trial that
   ends untrained and those at the measured spike rates for a trained one;
3. if those costs already break a budget, the network is **not trained** (early pruning; set
   ``skip_infeasible = false`` to train it anyway, as plain Optuna would). The
   trial still ends COMPLETE, with its real constraint values and the worst accuracy (0.0):
   Optuna's constrained samplers only learn from COMPLETE trials (NSGA-II ignores PRUNED ones
   entirely, optuna.md sections 3 and 4), and Deb's constrained domination ranks such a trial by
   how far it breaks the budgets, so the sampler learns where the boundary is;
4. otherwise it is trained; energy is re-estimated from the spike rates measured in the last
   validation epoch and the final constraints use that. While it trains, :class:`EnergyWatch`
   re-costs energy after every validation epoch and stops a network that clearly breaks the energy
   budget (also in multi-objective studies, where Optuna cannot prune); that trial completes with
   the accuracy reached and the measured energy, so the sampler learns from it;
5. each budget becomes ``trial.set_constraint(name, cost / budget - 1)``, set once (Optuna 5's
   constraints are write-once) on every trial, with the same names in the same order
   (memory, area, latency, energy).

Attributes are written in a few storage transactions, not one each (``hasnas_optuna._trial_writes``).
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytorch_lightning as pl

from hasnas_optuna._trial_writes import set_constraints, set_user_attrs
from hasnas_optuna.architecture import Architecture
from hasnas_optuna.artifacts import open_artifact_store, save_trial_artifacts, trial_logger
from hasnas_optuna.cim import Budgets, CostReport, Hardware, estimate_cost
from hasnas_optuna.config import StudyConfig
from hasnas_optuna.dashboard import annotate_trial
from hasnas_optuna.data import make_datamodule
from hasnas_optuna.results import COST_PREFIX, PRIOR_PREFIX, WORKER_ATTR, cost_attrs, worker_id
from hasnas_optuna.search_space import suggest_architecture, suggest_hardware
from hasnas_optuna.training import EnergyWatch, SNNClassifier, TrialFailed, train_architecture

__all__ = ["HasnasObjective", "PruneOnValidation", "default_datamodule", "set_budget_constraints"]
"""Budget/objective name -> :class:`CostReport` attribute."""


def set_budget_constraints(trial: optuna.Trial, budgets: Budgets, report: CostReport) -> dict[str, float]:
    """Set ``cost / budget - 1`` for every set budget (<= 0 is feasible) and return them.

    Example:
        >>> from hasnas_optuna.cim import Layer, Network, load_hardware
        >>> study = optuna.create_study()
        >>> trial = study.ask()
        >>> report = estimate_cost(Network([Layer.linear(64, 10)]), load_hardware(), timesteps=2)
        >>> set_budget_constraints(trial, Budgets(memory=1280), report)
        {'memory': -0.5}
    """
    slack = {name: value for name, _, _, value in budgets.check(report)}
    set_constraints(trial, slack)
    return slack


def default_datamodule(config: StudyConfig) -> pl.LightningDataModule:
    """The data module of the config's ``[dataset]`` (not loaded yet)."""
    ds = config.dataset
    return make_datamodule(ds.name, path=ds.path, batch_size=ds.batch_size, val_fraction=ds.val_fraction,
                           seed=config.seed, max_train_samples=ds.max_train_samples)


class PruneOnValidation(pl.Callback):
    """Report validation accuracy to Optuna each epoch and stop the trial when the pruner says so.

    Single-objective studies only: Optuna's pruners cannot judge several objectives.
    """

    def __init__(self, trial: optuna.Trial, monitor: str = "val_acc") -> None:
        self.trial = trial
        self.monitor = monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self.monitor not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(trainer.callback_metrics[self.monitor]), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"{self.monitor} below the pruner's threshold at epoch {epoch}")


class HasnasObjective:
    """Callable objective for ``study.optimize``: one HASNAS trial (see the module docstring).

    Args:
        config: The study configuration.
        datamodule: Data to train on; by default the config's dataset. Any LightningDataModule
            whose batches are ``(images in [0, 1], labels)`` works.
        artifact_dir: Where each trained trial's artifacts (drawing, per-layer costs, training
            curve, weights) and Lightning logs go; ``None`` keeps none.
    """

    def __init__(self, config: StudyConfig, datamodule: pl.LightningDataModule | None = None, *,
                 artifact_dir: Path | None = None) -> None:
        self.config = config
        self.artifact_dir = artifact_dir
        self.artifact_store = open_artifact_store(artifact_dir) if artifact_dir is not None else None
        self.hardware = config.hardware()
        self.datamodule = datamodule if datamodule is not None else default_datamodule(config)

    def sample(self, trial: optuna.Trial) -> tuple[Architecture, Hardware]:
        """Suggest this trial's architecture and chip."""
        space = self.config.space
        arch = suggest_architecture(trial, space)
        chip = suggest_hardware(trial, space, self.hardware) if space.hardware is not None else self.hardware
        return arch, chip

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        config = self.config
        arch, chip = self.sample(trial)
        network = arch.to_network()
        prior = estimate_cost(network, chip)
        set_user_attrs(trial, {**cost_attrs(PRIOR_PREFIX, prior), "architecture": json.loads(arch.to_json()),
                               "summary": arch.summary(), WORKER_ATTR: worker_id()})
        slack = {name: value for name, _, _, value in config.budgets.check(prior)}
        if config.skip_infeasible and any(value > 0 for value in slack.values()):
            set_constraints(trial, slack)  # what set_budget_constraints(trial, budgets, prior) would set
            broken = ", ".join(name for name, value in slack.items() if value > 0)
            annotate_trial(trial, constraints=slack, extra={
                **cost_attrs(COST_PREFIX, prior), "trained": False, "status": f"infeasible before training: {broken}"})
            return self._values(0.0, prior)
        callbacks: list[pl.Callback] = []
        training = config.training
        watch = None
        if config.budgets.energy is not None and training.energy_stop_margin >= 0:
            def energy(rates: list[float | None]) -> float:
                return estimate_cost(network, chip, spike_rates=rates).energy_uj

            watch = EnergyWatch(energy, config.budgets.energy, margin=training.energy_stop_margin)
            callbacks.append(watch)
        if len(config.objectives) == 1 and training.pruner != "none":
            callbacks.append(PruneOnValidation(trial))
        modules: list[SNNClassifier] = []
        precision = training.precision(chip)  # the trial's chip: the same knobs the cost model reads
        logger = (trial_logger(self.artifact_dir, trial.study.study_name, trial.number)
                  if self.artifact_dir is not None else False)
        try:
            result = train_architecture(
                arch, self.datamodule, epochs=training.epochs, lr=training.lr,
                weight_decay=training.weight_decay, accelerator=training.accelerator, callbacks=callbacks,
                progress_bar=training.progress_bar, seed=config.seed + trial.number, logger=logger,
                on_module=modules.append, compile=training.compile, precision=precision,
                adc=training.adc_aware if isinstance(training.adc_aware, str) else False,
            )
        except optuna.TrialPruned:
            pruned = set_budget_constraints(trial, config.budgets, prior)
            annotate_trial(trial, constraints=pruned, extra={
                **cost_attrs(COST_PREFIX, prior), "trained": True, "status": "pruned on validation accuracy"})
            raise
        except TrialFailed as exc:
            set_user_attrs(trial, {**cost_attrs(COST_PREFIX, prior), "trained": True, "status": f"failed: {exc}"})
            raise
        measured = estimate_cost(network, chip, spike_rates=result.spike_rates)
        set_user_attrs(trial, {
            **cost_attrs(COST_PREFIX, measured), "trained": True, "val_accuracy": result.val_accuracy,
            "test_accuracy": result.test_accuracy,
            "spike_rates": {layer.name: rate for layer, rate in zip(network.layers, result.spike_rates, strict=True)},
            "train_seconds": result.seconds, "history": result.history,
            "precision": None if precision is None else precision.replace(adc=False).to_dict(),
            **({} if result.ideal_val_accuracy is None else {
                "ideal_adc_val_accuracy": result.ideal_val_accuracy,
                "ideal_adc_test_accuracy": result.ideal_test_accuracy}),
        })
        final = set_budget_constraints(trial, config.budgets, measured)
        if watch is not None and watch.stopped_energy is not None:
            status = (f"stopped at epoch {result.epochs}: energy {watch.stopped_energy:.4g} uJ at measured "
                      f"spike rates breaks the {config.budgets.energy:.4g} uJ budget")
        elif all(v <= 0 for v in final.values()):
            status = "trained"
        else:
            status = "trained; infeasible at measured spike rates"
        annotate_trial(trial, constraints=final, extra={"status": status})
        if self.artifact_store is not None:
            save_trial_artifacts(trial, artifact_store=self.artifact_store, architecture=arch, report=measured,
                                 history=result.history, state_dict=modules[0].network.state_dict())
        return self._values(result.val_accuracy, measured)

    def _values(self, accuracy: float, report: CostReport) -> float | tuple[float, ...]:
        costs = report.costs()
        values = [accuracy if name == "accuracy" else costs[name] for name in self.config.objectives]
        return values[0] if len(values) == 1 else tuple(values)

