"""Study configuration files (TOML): dataset, chip, budgets, objectives, search space, training.

Everything is checked when the file is read, before anything runs: an unknown key or a value of
the wrong type or range is a :class:`~hasnas_optuna.ConfigError` that names the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hasnas_optuna._compat import tomllib
from hasnas_optuna._errors import ConfigError, did_you_mean, read_user_file
from hasnas_optuna.cim import METRICS, Budgets, Hardware, load_hardware
from hasnas_optuna.search_space import HardwareSpace, SearchSpace

if TYPE_CHECKING:  # torch-backed: a config is read (and its errors reported) before torch is imported
    from hasnas_optuna.quantization import Precision

__all__ = [
    "OBJECTIVES", "SAMPLERS", "DatasetConfig", "StudyConfig", "TrainingConfig", "load_config",
]

OBJECTIVES = ("accuracy", "memory", "area", "latency", "energy")
"""What a study can optimise: validation accuracy (maximised) and the cost metrics (minimised): the
paper's four, and any registered with :func:`hasnas_optuna.cim.register_metric`."""
SAMPLERS = ("nsga2", "tpe", "random", "gp")
FITNESS_MODES = ("trained", "sahd", "naswot", "params")
"""``trained``: every trial trains. Otherwise ``score_trials`` candidates are scored without training
and the best ``n_trials`` of them are trained (:mod:`hasnas_optuna.fitness`)."""
PRUNERS = ("median", "none")
QUANTIZE: tuple[bool | str, ...] = (True, False, "per_channel", "per_layer")
ADC_AWARE: tuple[bool | str, ...] = (False, "eval", "train")
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((1, 8, 8), 10), "mnist": ((1, 28, 28), 10), "fashion_mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100),
}


@dataclass(frozen=True)
class DatasetConfig:
    """Which data to train on (see :mod:`hasnas_optuna.data`)."""

    name: str = "digits"
    path: str | None = None
    batch_size: int = 64
    val_fraction: float = 0.2
    max_train_samples: int | None = None

    def __post_init__(self) -> None:
        if self.name not in DATASET_SHAPES:
            raise ConfigError(f"dataset.name={self.name!r} is not known{did_you_mean(self.name, DATASET_SHAPES)}; "
                              f"use one of {', '.join(DATASET_SHAPES)}")
        _int("dataset.batch_size", self.batch_size, 1)
        if self.max_train_samples is not None:
            _int("dataset.max_train_samples", self.max_train_samples, 1)
        _real("dataset.val_fraction", self.val_fraction, 0.0, 1.0)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return DATASET_SHAPES[self.name][0]

    @property
    def num_classes(self) -> int:
        return DATASET_SHAPES[self.name][1]


@dataclass(frozen=True)
class TrainingConfig:
    """How each trial trains.

    ``energy_stop_margin``: stop training once the energy estimated from the measured spike rates
    exceeds the energy budget by this fraction (after the first epoch); negative disables it.
    ``compile``: run each trial's network through ``torch.compile``. Every trial is a new network,
    so it compiles anew; on a CPU it does not pay (measured in docs/speed.md), on a GPU measure first.
    ``quantize``: train and evaluate with the trial chip's ``weight_bits`` (batch norm folded,
    symmetric, straight-through; ``true`` is ``"per_channel"`` steps, or ``"per_layer"``); ``false``
    trains in float32 while the chip is still costed at its precision. ``adc_aware``: ``"eval"``
    evaluates the trained network through the chip's simulated ADCs too (the objective is then that
    accuracy; the ideal-ADC one is recorded next to it), ``"train"`` also trains through them,
    ``false`` neither (docs/search.md, "Co-design").
    """

    epochs: int = 3
    lr: float = 2e-2
    weight_decay: float = 0.0
    accelerator: str = "auto"
    pruner: str = "median"
    progress_bar: bool = False
    energy_stop_margin: float = 0.25
    compile: bool = False
    quantize: bool | str = True
    adc_aware: bool | str = False

    def __post_init__(self) -> None:
        if isinstance(self.energy_stop_margin, bool) or not isinstance(self.energy_stop_margin, (int, float)):
            raise ConfigError(f"training.energy_stop_margin={self.energy_stop_margin!r} must be a number")
        _int("training.epochs", self.epochs, 1)
        _real("training.lr", self.lr, 0.0, 10.0)
        _real("training.weight_decay", self.weight_decay, -1e-12, 1.0)
        if self.accelerator not in ("auto", "cpu", "gpu", "cuda", "mps"):
            raise ConfigError(f"training.accelerator={self.accelerator!r} is not allowed; "
                              "use one of auto, cpu, gpu, cuda, mps")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"training.pruner={self.pruner!r} is not allowed; use one of {', '.join(PRUNERS)}")
        for flag in ("progress_bar", "compile"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"training.{flag}={getattr(self, flag)!r} must be true or false")
        if not (isinstance(self.quantize, bool) or (isinstance(self.quantize, str) and self.quantize in QUANTIZE)):
            raise ConfigError(f"training.quantize={self.quantize!r} is not allowed; use one of "
                              "true, false, \"per_channel\", \"per_layer\"")
        if not (self.adc_aware is False or (isinstance(self.adc_aware, str) and self.adc_aware in ADC_AWARE)):
            raise ConfigError(f"training.adc_aware={self.adc_aware!r} is not allowed; use one of "
                              "false, \"eval\", \"train\"")
        if self.adc_aware and self.quantize is False:
            raise ConfigError(f"training.adc_aware={self.adc_aware!r} needs quantised weights; "
                              "set training.quantize = true or adc_aware = false")

    @property
    def granularity(self) -> str:
        """Weight steps of ``quantize``: ``"per_channel"`` (also for ``true``) or ``"per_layer"``."""
        return self.quantize if isinstance(self.quantize, str) else "per_channel"

    def precision(self, hardware: Hardware) -> Precision | None:
        """What a trial on chip ``hardware`` trains with (None: float32); ADC on only for ``"train"``.

        Raises :class:`ConfigError` where the chip cannot be simulated as asked (e.g. ADC
        simulation of a differential weight encoding).
        """
        if self.quantize is False:
            return None
        from hasnas_optuna.quantization import Precision

        precision = Precision.from_hardware(hardware, granularity=self.granularity, adc=self.adc_aware == "train")
        if self.adc_aware:
            precision.replace(adc=True)  # validates the ADC simulation of this chip
        return precision


@dataclass(frozen=True)
class StudyConfig:
    """A whole study: what :func:`hasnas_optuna.study.run_search` runs.

    Example:
        >>> config = StudyConfig.from_dict({"budgets": {"energy": 1.0}, "study": {"n_trials": 4}})
        >>> config.directions, config.budgets.energy, config.space.input_shape
        (['maximize'], 1.0, (1, 8, 8))
    """

    name: str = "hasnas"
    objectives: tuple[str, ...] = ("accuracy",)
    sampler: str = "nsga2"
    hardware_aware: bool = True
    skip_infeasible: bool = True
    population_size: int = 10
    seed: int = 0
    n_trials: int = 20
    timeout: float | None = None
    fitness: str = "trained"
    score_trials: int = 200
    score_batch: int = 128
    heartbeat_interval: int = 60
    max_retry: int = 3
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    hardware_preset: str = "neurosim-22nm"
    hardware_overrides: Mapping[str, Any] = field(default_factory=dict)
    budgets: Budgets = field(default_factory=Budgets)
    space: SearchSpace = field(default_factory=SearchSpace)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def __post_init__(self) -> None:
        check_study_name(self.name, "study.name")
        objectives = tuple(self.objectives) if isinstance(self.objectives, (list, tuple)) else (self.objectives,)
        if not objectives or objectives[0] != "accuracy" or len(set(objectives)) != len(objectives):
            raise ConfigError(f"study.objectives={list(objectives)!r} must start with \"accuracy\" and not repeat")
        for name in objectives:
            if name != "accuracy" and name not in METRICS:
                raise ConfigError(f"study.objectives has {name!r}; use names from accuracy, {', '.join(METRICS)}")
        object.__setattr__(self, "objectives", objectives)
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"study.sampler={self.sampler!r} is not allowed; use one of {', '.join(SAMPLERS)}")
        _int("study.population_size", self.population_size, 2)
        for flag in ("hardware_aware", "skip_infeasible"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"study.{flag}={getattr(self, flag)!r} must be true or false")
        if self.fitness not in FITNESS_MODES:
            raise ConfigError(f"study.fitness={self.fitness!r} is not allowed; use one of {', '.join(FITNESS_MODES)}")
        _int("study.score_trials", self.score_trials, 1)
        _int("study.score_batch", self.score_batch, 2)
        _int("study.seed", self.seed, 0, 2**32 - 1)  # NumPy's generators take 32-bit seeds
        _int("study.n_trials", self.n_trials, 1)
        _int("study.heartbeat_interval", self.heartbeat_interval, 0, 86_400)
        _int("study.max_retry", self.max_retry, 0)
        if self.timeout is not None:
            _real("study.timeout", self.timeout, 0.0, math.inf)
        if self.space.input_shape != self.dataset.input_shape or self.space.num_classes != self.dataset.num_classes:
            raise ConfigError("space input_shape/num_classes do not match the dataset "
                              f"{self.dataset.name!r} ({self.dataset.input_shape}, {self.dataset.num_classes})")
        hardware = self.hardware()  # fails early on an unknown preset or a bad knob
        if self.space.hardware is not None:
            self.space.hardware.check(hardware)
        if self.training.quantize is not False:
            bits = self.space.hardware.weight_bits if self.space.hardware is not None else (hardware.weight_bits,)
            try:
                for value in bits:
                    self.training.precision(hardware.replace(weight_bits=value))
            except ConfigError as exc:
                raise ConfigError(f"training: {exc}") from None

    @property
    def directions(self) -> list[str]:
        return ["maximize" if name == "accuracy" else "minimize" for name in self.objectives]

    def hardware(self) -> Hardware:
        """The base chip: the preset with the configured knob overrides."""
        try:
            return load_hardware(self.hardware_preset, **self.hardware_overrides)
        except ConfigError as exc:
            raise ConfigError(f"hardware: {exc}") from None

    def search_space_fingerprint(self) -> dict[str, Any]:
        """What must not change when a stored study is resumed (same parameters, same meaning)."""
        return {
            "objectives": list(self.objectives),
            "dataset": self.dataset.name,
            "parameters": {name: repr(dist) for name, dist in self.space.distributions().items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str = "config") -> StudyConfig:
        """Read the TOML layout (sections study, dataset, hardware, budgets, space, training)."""
        _keys(data, {"study", "dataset", "hardware", "budgets", "space", "training"}, origin, "")
        study = _section(data, "study", origin)
        _keys(study, {"name", "objectives", "sampler", "hardware_aware", "skip_infeasible", "population_size",
                      "seed", "n_trials", "timeout", "fitness", "score_trials", "score_batch", "heartbeat_interval",
                      "max_retry"}, origin, "study")
        dataset = DatasetConfig(**_typed(_section(data, "dataset", origin), DatasetConfig, origin, "dataset"))
        hw = dict(_section(data, "hardware", origin))
        preset = hw.pop("preset", "neurosim-22nm")
        budgets = _section(data, "budgets", origin)
        _keys(budgets, set(METRICS), origin, "budgets")
        space_raw = dict(_section(data, "space", origin))
        _keys(space_raw, {f.name for f in fields(SearchSpace)} - {"input_shape", "num_classes"}, origin, "space")
        hw_space = space_raw.pop("hardware", None)
        if hw_space is not None:
            if not isinstance(hw_space, Mapping):
                raise ConfigError(f"{origin}: [space.hardware] must be a table")
            _keys(hw_space, {f.name for f in fields(HardwareSpace)}, origin, "space.hardware")
            space_raw["hardware"] = HardwareSpace(**hw_space)
        training = _section(data, "training", origin)
        _keys(training, {f.name for f in fields(TrainingConfig)}, origin, "training")
        try:
            return cls(
                **study,
                dataset=dataset,
                hardware_preset=preset,
                hardware_overrides=hw,
                budgets=Budgets(**budgets),
                space=SearchSpace(input_shape=dataset.input_shape, num_classes=dataset.num_classes, **space_raw),
                training=TrainingConfig(**training),
            )
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from None
        except TypeError as exc:
            raise ConfigError(f"{origin}: {exc}") from None


def load_config(path: str | Path | None) -> StudyConfig:
    """Read a study TOML file; ``None`` gives the embedded digits study (``studies/digits.toml``)."""
    if path is None:
        return StudyConfig.from_dict(tomllib.loads(_bundled("digits")), origin="digits (built in)")
    text = read_user_file(path, "config")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    return StudyConfig.from_dict(data, origin=str(path))


def _bundled(name: str) -> str:
    from importlib import resources

    return (resources.files("hasnas_optuna") / "studies" / f"{name}.toml").read_text(encoding="utf-8")


def _section(data: Mapping[str, Any], name: str, origin: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{origin}: [{name}] must be a table")
    return dict(value)


def _keys(data: Mapping[str, Any], allowed: set[str], origin: str, section: str) -> None:
    for key in data:
        if key not in allowed:
            where = f"{section}.{key}" if section else key
            raise ConfigError(f"{origin}: unknown key {where!r}{did_you_mean(key, allowed)}; allowed: "
                              f"{', '.join(sorted(allowed))}")


def _typed(data: dict[str, Any], cls: type, origin: str, section: str) -> dict[str, Any]:
    _keys(data, {f.name for f in fields(cls)}, origin, section)
    return data


def _int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        raise ConfigError(f"{name}={value!r} must be an integer >= {low}" + (f" and <= {high}" if high else ""))


STUDY_NAME_LENGTH = 200
"""Longest study name: it also names folders (``NAME-artifacts``, training logs)."""


def check_study_name(name: Any, where: str = "study name") -> str:
    """``name`` if it can name a study and the folders made after it; a one-line error otherwise.

    Refused: empty names, names with surrounding spaces (MariaDB compares ``'a'`` and ``'a '`` as
    equal), path separators or ``..`` (``NAME-artifacts`` and the training logs must stay where they
    belong), control characters, and ``://`` (a storage URL given as a name).

    Example:
        >>> check_study_name("cifar10 run 2")
        'cifar10 run 2'
        >>> check_study_name("../../x")
        Traceback (most recent call last):
        ...
        hasnas_optuna._errors.ConfigError: study name '../../x' must not contain '/', '\\' or '..' ...
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}={name!r} must be a non-empty string")
    if name != name.strip():
        raise ConfigError(f"{where}={name!r} has spaces at its ends; some databases ignore them, so two "
                          "studies could become one")
    if "://" in name:
        raise ConfigError(f"{where}={name!r} looks like a storage URL; give the storage with --storage URL")
    if "/" in name or "\\" in name or ".." in name:
        raise ConfigError(f"{where} {name!r} must not contain '/', '\\' or '..' (it names folders: NAME-artifacts)")
    if any(ord(c) < 32 or ord(c) == 127 for c in name) or len(name) > STUDY_NAME_LENGTH:
        raise ConfigError(f"{where}={name!r} must be printable and at most {STUDY_NAME_LENGTH} characters")
    return name


def _real(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
        raise ConfigError(f"{name}={value!r} must be a number in ({low}, {high})")
