"""Training one architecture: a LightningModule, a Trainer per trial, and the callbacks around it.

One trial is one :class:`SNNClassifier` + one data module + one ``Trainer`` + callbacks
(STYLE.md, Lightning section). Validation accuracy is the objective; the test split is evaluated
for the report; the last validation epoch records each crossbar layer's input spike rate.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import snntorch
import torch
from torch.nn import functional as F

from hasnas_optuna._errors import HasnasError
from hasnas_optuna.architecture import Architecture
from hasnas_optuna.network import SpikingNetwork, build_network, release_neurons
from hasnas_optuna.quantization import Precision

__all__ = ["EnergyWatch", "SNNClassifier", "TrainingResult", "TrialFailed", "train_architecture"]


class TrialFailed(HasnasError):
    """Training could not finish (NaN loss, diverging state, out of memory); the reason says why."""


class SNNClassifier(pl.LightningModule):
    """Cross-entropy on the mean output membrane, Adam with a cosine schedule.

    Args:
        architecture: What to build.
        lr: Adam learning rate (SNNs on small data like large ones: snn.md section 3.3).
        weight_decay: Adam weight decay.
        epochs: Length of the cosine schedule.
        precision: The chip's precision to train and evaluate with (:mod:`hasnas_optuna.quantization`);
            None trains in float32.
    """

    def __init__(self, architecture: Architecture, *, lr: float = 2e-2, weight_decay: float = 0.0,
                 epochs: int = 10, precision: Precision | None = None) -> None:
        super().__init__()
        self.architecture = architecture
        self.network: SpikingNetwork = build_network(architecture).set_precision(precision)
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.layer_names = [layer.name for layer in architecture.to_network().layers]
        self.spike_rates: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self._compiled_batch: int | None = None
        self._neurons: list[snntorch.SpikingNeuron] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self._compiled_batch is None:
            return self.network(images)
        if not self.training or len(images) != self._compiled_batch:
            # eager: evaluation (another graph, and spike-rate recording breaks graphs) and a smaller
            # last batch would each cost a recompilation worth more than they save
            return self.network.forward(images)
        for neuron in self._neurons:  # snntorch keeps the last membrane on the module; a fixed one
            neuron.mem = images.new_zeros(1)  # here keeps torch.compile's guards from recompiling
        return self.network(images)

    def compile_network(self, batch_size: int) -> None:
        """Train through ``torch.compile`` (in place), for batches of ``batch_size`` only.

        One compilation per network: evaluation and other batch sizes run eagerly. Compiled code of
        earlier networks is dropped first: it is dead, and every network would otherwise count
        towards torch's recompilation limit and turn on dynamic shapes for the next one.
        """
        import torch._dynamo

        torch._dynamo.reset()
        self.network.compile(dynamic=False)
        self._compiled_batch = batch_size
        self._neurons = [m for m in self.network.modules() if isinstance(m, snntorch.SpikingNeuron)]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = F.cross_entropy(self(images), labels)
        if not torch.isfinite(loss):
            raise TrialFailed(f"training loss became {float(loss)} at epoch {self.current_epoch}")
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], prefix: str) -> None:
        images, labels = batch
        logits = self(images)
        self.log(f"{prefix}_loss", F.cross_entropy(logits, labels), on_epoch=True, batch_size=len(labels))
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        self.log(f"{prefix}_acc", accuracy, on_epoch=True, prog_bar=prefix == "val", batch_size=len(labels))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self.network.start_recording()

    def on_validation_epoch_end(self) -> None:
        rates = self.network.stop_recording()
        if self.trainer.state.fn != "fit":
            return  # an extra evaluation after training (trainer.validate): keep what training measured
        self.spike_rates = rates
        if not self.trainer.sanity_checking:
            metrics = self.trainer.callback_metrics
            self.history.append({
                "epoch": float(self.current_epoch),
                **{k: float(metrics[k]) for k in ("val_loss", "val_acc") if k in metrics},
            })

    def on_train_epoch_end(self) -> None:
        # Spiking layers turn non-finite inputs into silence, so a diverged network can keep a finite
        # loss: check the weights themselves once per epoch.
        broken = [name for name, p in self.named_parameters() if not bool(torch.isfinite(p).all())]
        if broken:
            raise TrialFailed(f"training diverged at epoch {self.current_epoch}: non-finite weights in "
                              f"{', '.join(broken[:3])}{' ...' if len(broken) > 3 else ''}")
        # runs after this epoch's validation: complete its history row with the epoch's training loss
        loss = self.trainer.callback_metrics.get("train_loss")
        if loss is not None and self.history and self.history[-1]["epoch"] == float(self.current_epoch):
            self.history[-1]["train_loss"] = float(loss)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(self.epochs, 1))
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def measured_rates(self) -> list[float | None]:
        """Input spike rate per cost-model layer, in layer order, from the last validation epoch."""
        return [self.spike_rates.get(name) for name in self.layer_names]


class EnergyWatch(pl.Callback):
    """Stop training once the energy at the measured spike rates clearly breaks the budget.

    After each validation epoch (from ``min_epochs`` on) the network is costed with the spike rates
    that epoch measured; above ``budget * (1 + margin)`` the trainer stops after this epoch and
    ``stopped_energy`` holds the estimate. It needs no Optuna pruner, so it works in
    multi-objective studies too; the objective then completes the trial with that energy.
    """

    def __init__(self, estimate: Callable[[list[float | None]], float], budget: float, *, margin: float = 0.25,
                 min_epochs: int = 1) -> None:
        self.estimate = estimate
        self.budget = budget
        self.margin = margin
        self.min_epochs = min_epochs
        self.stopped_energy: float | None = None
        self.last_energy: float | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not isinstance(pl_module, SNNClassifier):
            return
        self.last_energy = self.estimate(pl_module.measured_rates())
        if trainer.current_epoch + 1 >= self.min_epochs and self.last_energy > self.budget * (1 + self.margin):
            self.stopped_energy = self.last_energy
            trainer.should_stop = True


@dataclass
class TrainingResult:
    """What one training run produced."""

    val_accuracy: float
    test_accuracy: float | None
    spike_rates: list[float | None]
    epochs: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    ideal_val_accuracy: float | None = None
    ideal_test_accuracy: float | None = None
    """With ADC simulation (``adc``): the same trained network's accuracies with an ideal ADC
    (``val_accuracy`` and ``test_accuracy`` are then those through the simulated ADC)."""


def train_architecture(
    architecture: Architecture,
    datamodule: pl.LightningDataModule,
    *,
    epochs: int = 3,
    lr: float = 2e-2,
    weight_decay: float = 0.0,
    accelerator: str = "auto",
    callbacks: list[pl.Callback] | None = None,
    progress_bar: bool = False,
    test: bool = True,
    seed: int = 0,
    logger: Any = False,
    on_module: Callable[[SNNClassifier], None] | None = None,
    compile: bool = False,
    precision: Precision | None = None,
    adc: str | bool = False,
) -> TrainingResult:
    """Train ``architecture`` on ``datamodule`` with one fresh Trainer; raise :class:`TrialFailed`.

    ``precision`` trains with the chip's weight precision (fake-quantised, straight-through) and
    evaluates with its stored integers; None trains in float32. ``adc``: ``"eval"`` evaluates the
    trained network through the simulated ADCs as well, ``"train"`` also trains through them
    (slow); both report the ideal-ADC accuracies in ``ideal_val_accuracy``/``ideal_test_accuracy``
    and the ADC ones in ``val_accuracy``/``test_accuracy``.

    ``compile`` trains the network through ``torch.compile`` (in place: parameter names and the
    state dict stay the same; evaluation stays eager). It compiles anew for every architecture; on
    a CPU that no longer pays (docs/speed.md has the measured break-even), on a GPU measure first.

    Example:
        >>> from hasnas_optuna.architecture import Architecture, Cell
        >>> from hasnas_optuna.data import DigitsDataModule
        >>> cell = Cell.from_matrix("0302 0030 3003 0000")
        >>> arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=8)
        >>> result = train_architecture(arch, DigitsDataModule(), epochs=1, test=False)
        >>> 0.0 <= result.val_accuracy <= 1.0 and len(result.spike_rates) == len(arch.to_network().layers)
        True
    """
    import time

    if adc not in (False, "eval", "train"):
        raise ValueError(f"adc={adc!r} is not allowed; use one of False, 'eval', 'train'")
    if adc and (precision is None or precision.weight_bits is None):
        raise ValueError("ADC simulation needs a precision with weight_bits")
    ideal = adc_on = None
    if adc and precision is not None:
        ideal, adc_on = precision.replace(adc=False), precision.replace(adc=True)
    pl.seed_everything(seed, workers=False, verbose=False)
    module = SNNClassifier(architecture, lr=lr, weight_decay=weight_decay, epochs=epochs,
                           precision=adc_on if adc == "train" else (ideal or precision))
    if compile:
        module.compile_network(int(getattr(datamodule, "batch_size", 0)) or _first_batch_size(datamodule))
    if on_module is not None:
        on_module(module)
    start = time.perf_counter()
    sigint = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    try:
        with _quiet_lightning():
            trainer = pl.Trainer(
                max_epochs=epochs, accelerator=accelerator, devices=1, logger=logger,
                callbacks=callbacks or [], enable_checkpointing=False, enable_progress_bar=progress_bar,
                enable_model_summary=False, num_sanity_val_steps=0, deterministic=False,
            )
            trainer.fit(module, datamodule=datamodule)
            logged = trainer.callback_metrics.get("val_acc")
            val: float | None = float(logged) if logged is not None else None
            rates = module.measured_rates()
            history = list(module.history)
            test_acc = ideal_val = ideal_test = None
            if test:
                results = trainer.test(module, datamodule=datamodule, verbose=False)
                test_acc = float(results[0]["test_acc"]) if results else None
            if ideal is not None and adc_on is not None:
                measured = {"val": val, "test": test_acc}
                other = ideal if adc == "train" else adc_on
                module.network.set_precision(other)
                other_val = _accuracy(trainer.validate(module, datamodule=datamodule, verbose=False), "val_acc")
                other_test = (_accuracy(trainer.test(module, datamodule=datamodule, verbose=False), "test_acc")
                              if test else None)
                module.network.set_precision(adc_on)
                if adc == "train":
                    ideal_val, ideal_test = other_val, other_test
                else:
                    ideal_val, ideal_test = measured["val"], measured["test"]
                    val, test_acc = other_val, other_test
    except SystemExit as exc:
        # Lightning answers Ctrl-C (and SIGTERM) inside fit with sys.exit(1), which Optuna does not
        # catch: the trial would stay RUNNING. Hand it back as the interruption it is.
        raise KeyboardInterrupt("training interrupted") from exc
    except torch.cuda.OutOfMemoryError as exc:
        raise TrialFailed(f"out of memory: {str(exc).splitlines()[0]}") from None
    except RuntimeError as exc:
        if any(sign in str(exc).lower() for sign in ("out of memory", "can't allocate memory")):  # CUDA, CPU
            raise TrialFailed(f"out of memory: {str(exc).splitlines()[0]}") from None
        raise
    finally:
        release_neurons(module)
        if sigint is not None:  # Lightning ignores SIGINT after an interrupt; restore the caller's handler
            signal.signal(signal.SIGINT, sigint)
    if val is None or not math.isfinite(val):
        raise TrialFailed("no validation accuracy was logged (empty validation split?)")
    return TrainingResult(
        val_accuracy=val, test_accuracy=test_acc, spike_rates=rates, epochs=trainer.current_epoch,
        seconds=time.perf_counter() - start, history=history, ideal_val_accuracy=ideal_val,
        ideal_test_accuracy=ideal_test,
    )


def _accuracy(results: list[Any], key: str) -> float | None:
    return float(results[0][key]) if results and key in results[0] else None


def _first_batch_size(datamodule: pl.LightningDataModule) -> int:
    datamodule.setup("fit")
    return len(next(iter(datamodule.train_dataloader()))[0])


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-Trainer banners ("GPU available", tips) while a trial trains."""
    names = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
            warnings.filterwarnings("ignore", message=".*treespec.*")
            warnings.filterwarnings("ignore", message=".*log_every_n_steps.*")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
