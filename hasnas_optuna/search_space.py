"""The search space and its define-by-run sampling with a fixed-length genome.

Every trial suggests the same parameters with the same distributions, whatever values earlier
parameters took (optuna.md 4, "Define-by-run pitfalls"), so NSGA-II, GP and multivariate TPE see
the whole genome. :meth:`SearchSpace.distributions` lists it, in suggestion order:

- ``arch/cell_a/e0`` .. ``arch/cell_a/e5``: op of each forward edge, in ``Cell.edges`` order
  (``e3``, the 0->3 edge, cannot be ``zero`` when ``direct_edge``);
- ``arch/cell_a/e0_dir`` .. ``e5_dir``: ``forward`` or ``backward`` for each node pair, only when
  ``backward_edges`` (no ``e3_dir`` when ``direct_edge``: that edge stays forward);
- ``arch/cell_b/...``: the same for Cell B (absent when ``share_cells``);
- ``arch/channels``, ``arch/hidden_features``;
- ``snn/timesteps``, ``snn/encoding``, ``snn/beta``, ``snn/threshold``, ``snn/surrogate``,
  ``snn/surrogate_slope`` (log scale);
- ``hw/crossbar_size``, ``hw/weight_bits``, ``hw/bits_per_cell``, ``hw/adc_bits``: only when
  ``hardware`` is given; suggested by :func:`suggest_hardware`, not by :func:`suggest_architecture`.

Decoding a genome into a cell (SNASNet-Bw sampling, paper.md 9.1): pair k holds the op of
``e{k}``, forward, or, when ``e{k}_dir`` is ``backward``, the same op as a backward edge from
the later node to the earlier one (``zero`` then means no edge). The raw cell is then repaired,
never resampled: :meth:`Cell.repaired` sets the edges of dead nodes to ``zero`` (SNASNet's own
rule; those edges carry no input-derived signal to the output), and a cell with no input-output path becomes
the single edge 0->3 with the first non-zero op of ``ops`` (``skip`` by default); that can only
happen when ``direct_edge`` is off. The trial's params stay the raw genome;
:func:`suggest_architecture` records the repairs in the trial's user attributes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from hasnas_optuna._errors import ConfigError
from hasnas_optuna._trial_writes import set_user_attrs, write_relative_params
from hasnas_optuna.architecture import (
    EDGES,
    NONZERO_OPS,
    OPS,
    SURROGATES,
    Architecture,
    Cell,
    check_input_shape,
)
from hasnas_optuna.cim import ENCODINGS, Hardware, Network

if TYPE_CHECKING:
    from optuna.trial import BaseTrial

__all__ = [
    "HardwareSpace", "SearchSpace", "architecture_from_params", "chip_with_knobs", "hardware_from_params",
    "suggest_architecture", "suggest_hardware",
]

DIRECTIONS = ("forward", "backward")
HARDWARE_KNOBS = ("crossbar_size", "weight_bits", "bits_per_cell", "adc_bits")
"""Searchable chip knobs; each is a :class:`~hasnas_optuna.cim.Hardware` field of the same name."""
CHEAP_OPS = ("zero", "skip", "avgpool3x3", "conv1x1", "conv3x3")
"""Edge ops from cheapest to costliest on a crossbar (no weights first)."""
USER_ATTR_KEY = "arch/key"
USER_ATTR_REPAIRS = "arch/repairs"


def chip_with_knobs(base: Hardware, knobs: Mapping[str, Any]) -> Hardware:
    """``base`` with searched chip knobs set, ``rows_per_read`` kept consistent with the crossbar.

    The one way a trial's chip is built from its ``hw/*`` values (search, export, report).

    Example:
        >>> from hasnas_optuna.cim import load_hardware
        >>> chip_with_knobs(load_hardware(), {"crossbar_size": 256}).rows_per_read
        256
    """
    changes = dict(knobs)
    size = changes.get("crossbar_size", base.crossbar_size)
    if "rows_per_read" not in changes:
        full = base.rows_per_read == base.crossbar_size
        changes["rows_per_read"] = size if full else min(base.rows_per_read, size)
    return base.replace(**changes)


@dataclass(frozen=True, slots=True)
class HardwareSpace:
    """Choices for the chip knobs searched jointly with the architecture (cim.md 8).

    Field names are :class:`~hasnas_optuna.cim.Hardware` fields, so the sampled knobs apply
    with ``hardware.replace(**knobs)``. One rule keeps them consistent: ``rows_per_read`` cannot
    exceed the crossbar, so a chip that reads all rows at once (``rows_per_read ==
    crossbar_size``) keeps doing so at every size, and otherwise it is capped at the size.

    Args:
        crossbar_size: Crossbar side lengths.
        weight_bits: Weight precisions.
        bits_per_cell: Bits stored per RRAM cell.
        adc_bits: ADC resolutions (each must be in the technology table of the base chip).

    Example:
        >>> from hasnas_optuna.cim import load_hardware
        >>> space = HardwareSpace(adc_bits=(4, 5))
        >>> chip = space.apply(load_hardware(), {"crossbar_size": 64, "adc_bits": 4})
        >>> chip.crossbar_size, chip.rows_per_read, chip.adc_bits
        (64, 64, 4)
    """

    crossbar_size: tuple[int, ...] = (64, 128, 256)
    weight_bits: tuple[int, ...] = (4, 6, 8)
    bits_per_cell: tuple[int, ...] = (1, 2, 4)
    adc_bits: tuple[int, ...] = (3, 4, 5, 6)

    def __post_init__(self) -> None:
        for name in HARDWARE_KNOBS:
            object.__setattr__(self, name, _int_choices(f"hardware.{name}", getattr(self, name), 1))

    def distributions(self) -> dict[str, BaseDistribution]:
        """The ``hw/<knob>`` parameters and their distributions."""
        return {f"hw/{name}": CategoricalDistribution(getattr(self, name)) for name in HARDWARE_KNOBS}

    def apply(self, base: Hardware, knobs: Mapping[str, Any]) -> Hardware:
        """``base`` with the given knobs set (and ``rows_per_read`` kept consistent)."""
        return chip_with_knobs(base, knobs)

    def check(self, base: Hardware) -> None:
        """Raise :class:`ConfigError` unless every combination of choices is a valid ``base`` chip."""
        for values in itertools.product(*(getattr(self, name) for name in HARDWARE_KNOBS)):
            knobs = dict(zip(HARDWARE_KNOBS, values, strict=True))
            try:
                self.apply(base, knobs)
            except ConfigError as exc:
                raise ConfigError(
                    f"hardware space does not fit hardware {base.name!r}: {exc} "
                    f"(with {', '.join(f'{k}={v}' for k, v in knobs.items())})"
                ) from None


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """What the search may choose, with defaults sized for CPU runs on 8x8 digits.

    Choices are tuples (one element fixes a value but keeps the parameter in the genome);
    ranges are ``(low, high)`` with ``low <= high``. Lists are accepted and stored as tuples.

    Args:
        input_shape: ``(channels, height, width)`` of the data; height, width >= 4.
        num_classes: Output classes.
        ops: Allowed edge ops (a subset of :data:`~hasnas_optuna.architecture.OPS`, stored in
            that order); HASNAS likely drops ``avgpool3x3`` (paper.md 2).
        direct_edge: Require a non-zero 0->3 edge in each cell, as SNASNet does (paper.md 9.2).
        backward_edges: Allow SNASNet-Bw backward (temporal feedback) edges.
        share_cells: Use one cell for A and B, as SNASNet does (HASNAS searches them apart).
        channels: Base width C choices.
        hidden_features: Hidden classifier width choices (0 = no hidden layer).
        timesteps: Timestep choices.
        encodings: Input encoding choices.
        beta: LIF decay range.
        threshold: Firing threshold range.
        surrogates: Surrogate gradient choices.
        surrogate_slope: Surrogate sharpness range, sampled on a log scale.
        hardware: Chip knobs to search jointly, or None to keep the chip fixed.

    Example:
        >>> space = SearchSpace(ops=("zero", "skip", "conv3x3"), backward_edges=True)
        >>> names = list(space.distributions())
        >>> len(names), names[:2], names[6]
        (30, ['arch/cell_a/e0', 'arch/cell_a/e1'], 'arch/cell_a/e0_dir')
        >>> SearchSpace(channels=(0, 8))
        Traceback (most recent call last):
        ...
        hasnas_optuna._errors.ConfigError: channels=(0, 8) has 0; each choice must be an integer >= 1
    """

    input_shape: tuple[int, int, int] = (1, 8, 8)
    num_classes: int = 10
    ops: tuple[str, ...] = OPS
    direct_edge: bool = True
    backward_edges: bool = False
    share_cells: bool = False
    channels: tuple[int, ...] = (8, 16, 32)
    hidden_features: tuple[int, ...] = (0, 64, 128)
    timesteps: tuple[int, ...] = (2, 4, 6, 8)
    encodings: tuple[str, ...] = ENCODINGS
    beta: tuple[float, float] = (0.5, 0.99)
    threshold: tuple[float, float] = (0.5, 1.5)
    surrogates: tuple[str, ...] = SURROGATES
    surrogate_slope: tuple[float, float] = (1.0, 25.0)
    hardware: HardwareSpace | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", check_input_shape(self.input_shape))
        classes = self.num_classes
        if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
            raise ConfigError(f"num_classes={self.num_classes!r} is out of range; it must be an integer >= 2")
        ops = _str_choices("ops", self.ops, OPS)
        if not set(ops) & set(NONZERO_OPS):
            raise ConfigError(f"ops={ops!r} has no non-zero op; add one of {', '.join(NONZERO_OPS)}")
        object.__setattr__(self, "ops", tuple(op for op in OPS if op in ops))
        for name in ("direct_edge", "backward_edges", "share_cells"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}={getattr(self, name)!r} must be True or False")
        object.__setattr__(self, "channels", _int_choices("channels", self.channels, 1))
        object.__setattr__(self, "hidden_features", _int_choices("hidden_features", self.hidden_features, 0))
        object.__setattr__(self, "timesteps", _int_choices("timesteps", self.timesteps, 1))
        object.__setattr__(self, "encodings", _str_choices("encodings", self.encodings, ENCODINGS))
        object.__setattr__(self, "surrogates", _str_choices("surrogates", self.surrogates, SURROGATES))
        object.__setattr__(self, "beta", _range("beta", self.beta, 0.0, 1.0, open_low=False))
        for name in ("threshold", "surrogate_slope"):
            object.__setattr__(self, name, _range(name, getattr(self, name), 0.0, math.inf, open_low=True))
        if self.hardware is not None and not isinstance(self.hardware, HardwareSpace):
            raise ConfigError(f"hardware must be a HardwareSpace or None, got {type(self.hardware).__name__}")

    @property
    def cells(self) -> tuple[str, ...]:
        """Cell names that carry their own genes: ``("cell_a", "cell_b")`` or ``("cell_a",)``."""
        return ("cell_a",) if self.share_cells else ("cell_a", "cell_b")

    def fallback_op(self) -> str:
        """The op of the 0->3 edge given to a cell without any input-output path."""
        return next(op for op in NONZERO_OPS if op in self.ops)

    def distributions(self) -> dict[str, BaseDistribution]:
        """Every parameter of the genome and its distribution, in suggestion order.

        The same for every trial, so it can also serve as a sampler's static search space.
        """
        out: dict[str, BaseDistribution] = {}
        nonzero = tuple(op for op in self.ops if op != "zero")
        direct = EDGES.index((0, 3))
        for cell in self.cells:
            for k in range(len(EDGES)):
                choices = nonzero if self.direct_edge and k == direct else self.ops
                out[f"arch/{cell}/e{k}"] = CategoricalDistribution(choices)
            if self.backward_edges:
                for k in range(len(EDGES)):
                    if not (self.direct_edge and k == direct):
                        out[f"arch/{cell}/e{k}_dir"] = CategoricalDistribution(DIRECTIONS)
        out["arch/channels"] = CategoricalDistribution(self.channels)
        out["arch/hidden_features"] = CategoricalDistribution(self.hidden_features)
        out["snn/timesteps"] = CategoricalDistribution(self.timesteps)
        out["snn/encoding"] = CategoricalDistribution(self.encodings)
        out["snn/beta"] = FloatDistribution(*self.beta)
        out["snn/threshold"] = FloatDistribution(*self.threshold)
        out["snn/surrogate"] = CategoricalDistribution(self.surrogates)
        out["snn/surrogate_slope"] = FloatDistribution(*self.surrogate_slope, log=True)
        if self.hardware is not None:
            out.update(self.hardware.distributions())
        return out

    # -- what HardwareAwareSampler asks of a search space (sampler.CandidateSpace) ---------------

    def network(self, params: Mapping[str, Any]) -> Network:
        """The costable layer list of a complete parameter set."""
        return architecture_from_params(params, self).to_network()

    def chip(self, params: Mapping[str, Any], base: Hardware) -> Hardware:
        """The chip of a parameter set: ``base`` with its ``hw/*`` knobs, if the space searches any."""
        return hardware_from_params(params, self, base)

    def check_chip(self, base: Hardware) -> None:
        """Raise :class:`ConfigError` unless every searched chip is valid on ``base``."""
        if self.hardware is not None:
            self.hardware.check(base)

    def key(self, params: Mapping[str, Any]) -> str:
        """Identity of a parameter set: the decoded architecture's key, plus the chip knobs.

        Example:
            >>> import optuna
            >>> from hasnas_optuna.cim import load_hardware
            >>> space = SearchSpace(hardware=HardwareSpace())
            >>> trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
            >>> _ = suggest_architecture(trial, space), suggest_hardware(trial, space, load_hardware())
            >>> space.key(trial.params).split("|")[1].startswith("hw/adc_bits=")
            True
        """
        key = architecture_from_params(params, self).key()
        if self.hardware is not None:
            key += "|" + ",".join(f"{k}={v}" for k, v in sorted(params.items()) if k.startswith("hw/"))
        return key

    def cheapest(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The cheapest variant of ``params`` (the sampler's repair, see :mod:`hasnas_optuna.sampler`).

        Widths, depth and timesteps go to their smallest choice; weight and ADC bits to their
        fewest, bits per cell to their most; each cell edge to the cheapest non-zero op no costlier
        than its own (:data:`CHEAP_OPS` order).
        """
        fixed = dict(params)
        for name, dist in self.distributions().items():
            if not isinstance(dist, CategoricalDistribution):
                continue
            choices = list(dist.choices)
            short = name.split("/")[-1]
            if short in ("channels", "hidden_features", "timesteps", "weight_bits", "adc_bits"):
                fixed[name] = min(choices, key=_as_number)
            elif short == "bits_per_cell":
                fixed[name] = max(choices, key=_as_number)
            elif name.startswith("arch/") and short.startswith("e") and "_dir" not in name:
                current = CHEAP_OPS.index(fixed[name]) if fixed[name] in CHEAP_OPS else len(CHEAP_OPS)
                cheaper = [op for op in choices if CHEAP_OPS.index(op) <= current and op != "zero"]
                fixed[name] = cheaper[0] if cheaper else fixed[name]
        return fixed


# ---------------------------------------------------------------------------------------------
# Sampling and decoding

def suggest_architecture(trial: BaseTrial, space: SearchSpace, *, record: bool = True) -> Architecture:
    """Suggest every ``arch/*`` and ``snn/*`` parameter and decode them into an architecture.

    Invalid cells are repaired, not resampled (see the module docstring). With ``record``, the
    trial's user attributes get ``arch/key`` (:meth:`Architecture.key`) and ``arch/repairs``
    (one line per repaired cell, empty when none). Hardware knobs are left to
    :func:`suggest_hardware`.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        >>> trial = study.ask()
        >>> arch = suggest_architecture(trial, SearchSpace())
        >>> arch.cell_a.is_valid(), architecture_from_params(trial.params, SearchSpace()) == arch
        (True, True)
        >>> trial.user_attrs["arch/key"] == arch.key()
        True
    """
    distributions = {name: dist for name, dist in space.distributions().items() if not name.startswith("hw/")}
    write_relative_params(trial, distributions)  # one transaction for what the sampler chose together
    values = {name: _suggest(trial, name, dist) for name, dist in distributions.items()}
    arch, repairs = _decode(values, space)
    if record:
        set_user_attrs(trial, {USER_ATTR_KEY: arch.key(), USER_ATTR_REPAIRS: repairs})
    return arch


def suggest_hardware(trial: BaseTrial, space: SearchSpace, base_hardware: Hardware) -> Hardware:
    """Suggest the ``hw/*`` knobs and return ``base_hardware`` with them applied.

    Returns ``base_hardware`` unchanged (and suggests nothing) when ``space.hardware`` is None.
    Raises :class:`ConfigError` before suggesting anything if some combination of the choices is
    not a valid chip for ``base_hardware`` (e.g. an ADC resolution missing from its table).

    Example:
        >>> import optuna
        >>> from hasnas_optuna.cim import load_hardware
        >>> study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        >>> trial = study.ask()
        >>> chip = suggest_hardware(trial, SearchSpace(hardware=HardwareSpace()), load_hardware())
        >>> chip.adc_bits == trial.params["hw/adc_bits"]
        True
    """
    if space.hardware is None:
        return base_hardware
    space.hardware.check(base_hardware)
    knobs = {
        name[3:]: _suggest(trial, name, dist) for name, dist in space.hardware.distributions().items()
    }
    return space.hardware.apply(base_hardware, knobs)


def architecture_from_params(params: Mapping[str, Any], space: SearchSpace) -> Architecture:
    """Rebuild the architecture a trial sampled from its params (e.g. ``FrozenTrial.params``).

    Params outside the genome (other hyper-parameters, ``hw/*``) are ignored; a missing genome
    parameter or a value outside its distribution raises :class:`ConfigError`.
    """
    values = _read(params, {k: d for k, d in space.distributions().items() if not k.startswith("hw/")})
    return _decode(values, space)[0]


def hardware_from_params(params: Mapping[str, Any], space: SearchSpace, base_hardware: Hardware) -> Hardware:
    """Rebuild the chip a trial sampled from its params; ``base_hardware`` when none is searched."""
    if space.hardware is None:
        return base_hardware
    values = _read(params, space.hardware.distributions())
    return space.hardware.apply(base_hardware, {name[3:]: value for name, value in values.items()})


def _as_number(value: Any) -> float:
    return float(value)


def _suggest(trial: BaseTrial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log)
    raise TypeError(f"unexpected distribution {dist!r} for {name}")  # pragma: no cover


def _read(params: Mapping[str, Any], dists: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    values = {}
    for name, dist in dists.items():
        if name not in params:
            raise ConfigError(f"parameter {name!r} is missing; the search space needs {', '.join(dists)}")
        value = params[name]
        if isinstance(dist, CategoricalDistribution):
            if value not in dist.choices:
                raise ConfigError(
                    f"parameter {name}={value!r} is not allowed; "
                    f"use one of {', '.join(map(str, dist.choices))}"
                )
            value = dist.choices[dist.choices.index(value)]
        elif isinstance(dist, FloatDistribution) and not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and dist.low <= value <= dist.high
        ):
            raise ConfigError(
                f"parameter {name}={value!r} is out of range; it must be in [{dist.low}, {dist.high}]"
            )
        values[name] = value
    return values


def _decode(values: Mapping[str, Any], space: SearchSpace) -> tuple[Architecture, list[str]]:
    """Genome values -> architecture, and a description of each cell repair."""
    cells: dict[str, Cell] = {}
    repairs: list[str] = []
    for name in space.cells:
        raw = _raw_cell(values, name)
        cell = raw.repaired(fallback_op=space.fallback_op())
        if cell != raw:
            repairs.append(f"{name}: [{raw.summary()}] -> [{cell.summary()}]")
        cells[name] = cell
    get: Callable[[str], Any] = values.__getitem__
    arch = Architecture(
        input_shape=space.input_shape, num_classes=space.num_classes,
        cell_a=cells["cell_a"], cell_b=cells.get("cell_b", cells["cell_a"]),
        channels=get("arch/channels"), hidden_features=get("arch/hidden_features"),
        timesteps=get("snn/timesteps"), encoding=get("snn/encoding"), beta=get("snn/beta"),
        threshold=get("snn/threshold"), surrogate=get("snn/surrogate"),
        surrogate_slope=get("snn/surrogate_slope"),
    )
    return arch, repairs


def _raw_cell(values: Mapping[str, Any], name: str) -> Cell:
    edges: list[str] = []
    backward: list[tuple[int, int, str]] = []
    for k, (src, dst) in enumerate(EDGES):
        op = values[f"arch/{name}/e{k}"]
        if values.get(f"arch/{name}/e{k}_dir", "forward") == "backward":
            edges.append("zero")
            if op != "zero":
                backward.append((dst, src, op))
        else:
            edges.append(op)
    return Cell(tuple(edges), tuple(backward))


# ---------------------------------------------------------------------------------------------
# Validation helpers

def _as_tuple(name: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"{name}={value!r} must be a list of choices")
    if not value:
        raise ConfigError(f"{name} is empty; give at least one choice")
    out = tuple(value)
    if len(set(out)) != len(out):
        raise ConfigError(f"{name}={out!r} has duplicate choices")
    return out


def _int_choices(name: str, value: Any, low: int) -> tuple[int, ...]:
    out = _as_tuple(name, value)
    for v in out:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"{name}={out!r} has {v!r}; each choice must be an integer >= {low}")
    return out


def _str_choices(name: str, value: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    out = _as_tuple(name, value)
    for v in out:
        if v not in allowed:
            raise ConfigError(
                f"{name}={out!r} has {v!r}, which is not allowed; use a subset of {', '.join(allowed)}"
            )
    return out


def _range(name: str, value: Any, low: float, high: float, *, open_low: bool) -> tuple[float, float]:
    bound = f"> {low}" if open_low else f">= {low}"
    upper = "" if math.isinf(high) else f" and <= {high}"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(f"{name}={value!r} must be a (low, high) range")
    for v in value:
        ok = (
            not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
            and (v > low if open_low else v >= low) and v <= high
        )
        if not ok:
            raise ConfigError(
                f"{name}={tuple(value)!r} has {v!r}; both ends must be finite numbers {bound}{upper}"
            )
    lo, hi = float(value[0]), float(value[1])
    if lo > hi:
        raise ConfigError(f"{name}={tuple(value)!r} has low > high; give (low, high) with low <= high")
    return (lo, hi)
