"""The chip: architecture knobs (what a designer chooses) and a technology table (what one action
or one component costs, each number with its source).

Presets are TOML files in ``hasnas_optuna/cim/presets``; a user's own file loads the same way.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hasnas_optuna._compat import tomllib
from hasnas_optuna._errors import ConfigError, did_you_mean, read_user_file

__all__ = ["DEFAULT_PRESET", "Hardware", "Technology", "list_presets", "load_hardware"]

DEFAULT_PRESET = "neurosim-22nm"
WEIGHT_ENCODINGS = ("offset", "differential")
MAPPINGS = ("im2col", "kernel_split")
SCHEDULES = ("sequential", "pipelined", "neuron_serial")
CROSSBAR_SIZES = (16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True, slots=True)
class Technology:
    """Per-action energies (pJ), per-component areas (um^2) and timing (ns) of one technology.

    ``sources`` maps each field name to where its number comes from (see ``docs/cost-model.md``).
    Tables keyed by ADC resolution (``adc_*``) map bits to a value; ``clock_size_factor`` maps a
    crossbar size to its measured clock relative to ``reference_size``. Terms after ``neuron_cycle_ns``
    are optional (0 or empty when a file leaves them out).
    """

    node_nm: int
    cell_area_um2: float
    layout_factor: float
    periphery_um2_per_line: float
    tile_fixed_um2: float
    tile_um2_per_column: float
    neuron_unit_um2: float
    state_bit_um2: float
    input_buffer_bits: int
    adc_area_um2: Mapping[int, float] = field(hash=False)
    adc_conversion_pj: Mapping[int, float] = field(hash=False)
    adc_clock_ns: Mapping[int, float] = field(hash=False)
    reference_size: int
    clock_size_exponent: float
    row_activation_pj: float
    crossbar_cycle_pj: float
    add_pj: float
    neuron_update_pj: float
    state_bit_access_pj: float
    wire_pj_per_bit_mm: float
    buffer_pj_per_bit: float
    group_read_interconnect_pj: float
    group_read_buffer_pj: float
    group_read_neuron_pj: float
    group_read_accumulation_pj: float
    leakage_uw_per_crossbar: float
    neuron_cycle_ns: float
    # NeuroSim-style terms (docs/cost-model.md); 0 (or empty) where a simulator has no such term
    crossbar_fixed_um2: float = 0.0
    chip_fixed_um2: float = 0.0
    row_drive_pj: float = 0.0
    column_read_pj: float = 0.0
    shift_add_pj: float = 0.0
    psum_hop_pj: float = 0.0
    input_hop_pj: float = 0.0
    vector_cycles_per_output: float = 0.0
    vector_cycles_per_row: float = 0.0
    clock_size_factor: Mapping[int, float] = field(default_factory=dict, hash=False)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def adc_bits_allowed(self) -> tuple[int, ...]:
        """ADC resolutions this table has numbers for."""
        return tuple(sorted(set(self.adc_area_um2) & set(self.adc_conversion_pj) & set(self.adc_clock_ns)))


@dataclass(frozen=True, slots=True)
class Hardware:
    """A compute-in-memory chip: crossbar, tile, timing and neuron knobs plus its technology.

    Knobs can be changed with :meth:`replace`, which validates like loading does, so joint
    architecture-hardware search can vary them per trial.

    Example:
        >>> hw = load_hardware("neurosim-22nm")
        >>> hw.crossbar_size, hw.weight_bits, hw.bits_per_cell, hw.adc_bits
        (128, 8, 1, 5)
        >>> hw.replace(bits_per_cell=2).slices_per_weight
        4
    """

    name: str
    technology: Technology
    crossbar_size: int = 128
    weight_bits: int = 8
    bits_per_cell: int = 1
    adc_bits: int = 5
    columns_per_adc: int = 8
    rows_per_read: int = 128
    weight_encoding: str = "offset"
    mapping: str = "im2col"
    analog_kernel_accumulation: bool = False
    tile_shape: tuple[int, int] | None = None
    tile_exclusive: bool = True
    duplication: int | None = None
    schedule: str = "sequential"
    clock_ns: float | None = None
    crossbar_concurrency: int = 0
    neuron_units: int = 0
    layer_start_fraction: float = 1.0
    state_bits: int = 16
    input_bits: int = 8
    reuse_static_input: bool = True
    default_spike_rate: float = 0.15
    skip_silent_row_blocks: bool = False
    pooled_positions: bool = False
    state_memory_layers: int = 0
    convert_empty_columns: bool = False
    description: str = ""
    _cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        _validate_hardware(self)

    def replace(self, **changes: Any) -> Hardware:
        """A copy with some knobs changed (validated; unknown knobs are an error)."""
        known = {f.name for f in dataclasses.fields(self) if f.init}
        for key in changes:
            if key not in known:
                raise ConfigError(
                    f"unknown hardware knob {key!r}{did_you_mean(key, known)}; known knobs: {', '.join(sorted(known))}"
                )
        return dataclasses.replace(self, **changes)

    @property
    def slices_per_weight(self) -> int:
        """Cells (columns) one weight occupies per sign: ceil(weight_bits / bits_per_cell)."""
        return -(-self.weight_bits // self.bits_per_cell)

    @property
    def columns_per_weight(self) -> int:
        """Columns per weight including the sign encoding (x2 for a differential pair)."""
        return self.slices_per_weight * (2 if self.weight_encoding == "differential" else 1)

    @property
    def clock(self) -> float:
        """Clock period in ns: the explicit ``clock_ns`` or the ADC sensing time of the table.

        The sensing time at ``reference_size`` is scaled to the crossbar size by the measured
        ``clock_size_factor`` where the table has the size, else by ``clock_size_exponent``.
        """
        if self.clock_ns is not None:
            return self.clock_ns
        tech = self.technology
        scale = tech.clock_size_factor.get(self.crossbar_size)
        if scale is None:
            scale = (self.crossbar_size / tech.reference_size) ** tech.clock_size_exponent
        return tech.adc_clock_ns[self.adc_bits] * scale

    def to_dict(self) -> dict[str, Any]:
        """The knobs (not the technology table) as plain values, e.g. for trial user attributes."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("technology", "description", "_cache")
        }


# ---------------------------------------------------------------------------------------------
# Loading presets and user files

_SECTIONS: dict[str, dict[str, str]] = {
    # TOML section -> {TOML key: Hardware field}
    "crossbar": {
        "size": "crossbar_size", "weight_bits": "weight_bits", "bits_per_cell": "bits_per_cell",
        "adc_bits": "adc_bits", "columns_per_adc": "columns_per_adc",
        "rows_per_read": "rows_per_read", "weight_encoding": "weight_encoding",
        "mapping": "mapping", "analog_kernel_accumulation": "analog_kernel_accumulation",
    },
    "tile": {"shape": "tile_shape", "exclusive": "tile_exclusive", "duplication": "duplication"},
    "timing": {
        "schedule": "schedule", "clock_ns": "clock_ns",
        "crossbar_concurrency": "crossbar_concurrency",
        "neuron_units": "neuron_units",
        "layer_start_fraction": "layer_start_fraction",
    },
    "neuron": {
        "state_bits": "state_bits", "input_bits": "input_bits",
        "reuse_static_input": "reuse_static_input", "default_spike_rate": "default_spike_rate",
        "skip_silent_row_blocks": "skip_silent_row_blocks",
    },
    "compat": {
        "pooled_positions": "pooled_positions", "state_memory_layers": "state_memory_layers",
        "convert_empty_columns": "convert_empty_columns",
    },
}
_TOP_LEVEL = {"name", "description", "technology", "sources", *_SECTIONS}
_ADC_TABLES = ("adc_area_um2", "adc_conversion_pj", "adc_clock_ns")
_SIZE_TABLES = ("clock_size_factor",)


def list_presets() -> list[str]:
    """Names of the presets shipped with the package.

    Example:
        >>> "neurosim-22nm" in list_presets() and "spikesim-65nm" in list_presets()
        True
    """
    folder = resources.files("hasnas_optuna.cim") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_hardware(preset_or_path: str | Path = DEFAULT_PRESET, **overrides: Any) -> Hardware:
    """Load a shipped preset by name, or a user's TOML file by path, and apply knob overrides.

    Example:
        >>> load_hardware("neurosim-32nm").technology.node_nm
        32
        >>> load_hardware("neurosim-22nm", adc_bits=4).adc_bits
        4
    """
    text, origin = _read_preset(preset_or_path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: malformed TOML: {exc}") from None
    hardware = _hardware_from_dict(data, origin)
    return hardware.replace(**overrides) if overrides else hardware


def _read_preset(preset_or_path: str | Path) -> tuple[str, str]:
    text_name = str(preset_or_path)
    path = Path(text_name)
    if text_name.endswith(".toml") or path.exists() or "/" in text_name:
        return read_user_file(path, "hardware"), text_name
    presets = list_presets()
    if text_name not in presets:
        raise ConfigError(
            f"unknown hardware preset {text_name!r}{did_you_mean(text_name, presets)}; use one of {', '.join(presets)} "
            "or the path of a .toml file"
        )
    folder = resources.files("hasnas_optuna.cim") / "presets"
    return (folder / f"{text_name}.toml").read_text(encoding="utf-8"), text_name


def _hardware_from_dict(data: Mapping[str, Any], origin: str) -> Hardware:
    unknown = sorted(set(data) - _TOP_LEVEL)
    if unknown:
        raise ConfigError(
            f"{origin}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], _TOP_LEVEL)}; allowed top-level keys: "
            f"{', '.join(sorted(_TOP_LEVEL))}"
        )
    knobs: dict[str, Any] = {}
    for section, keys in _SECTIONS.items():
        values = data.get(section, {})
        if not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        for key, value in values.items():
            if key not in keys:
                raise ConfigError(
                    f"{origin}: unknown key '{section}.{key}'{did_you_mean(key, keys)}; allowed: "
                    f"{', '.join(sorted(keys))}"
                )
            knobs[keys[key]] = _convert_knob(keys[key], value, f"{section}.{key}", origin)
    if "technology" not in data:
        raise ConfigError(f"{origin}: the [technology] table is missing")
    technology = _technology_from_dict(data["technology"], data.get("sources", {}), origin)
    name = data.get("name", Path(origin).stem)
    try:
        return Hardware(name=name, technology=technology, description=data.get("description", ""), **knobs)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def _convert_knob(field_name: str, value: Any, key: str, origin: str) -> Any:
    if field_name == "tile_shape":
        if value == "auto":
            return None
        if isinstance(value, list) and len(value) == 2:
            return (value[0], value[1])
        raise ConfigError(f"{origin}: {key}={value!r} must be \"auto\" or [rows, cols] of ADC groups")
    if field_name == "duplication":
        if value == "fill":
            return None
        return value
    return value


def _technology_from_dict(raw: Any, sources: Any, origin: str) -> Technology:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{origin}: [technology] must be a table")
    fields = {f.name: f for f in dataclasses.fields(Technology) if f.name != "sources"}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{origin}: unknown key 'technology.{unknown[0]}'{did_you_mean(unknown[0], fields)}; allowed: "
            f"{', '.join(sorted(fields))}"
        )
    optional = {name for name, f in fields.items() if f.default is not dataclasses.MISSING
                or f.default_factory is not dataclasses.MISSING}
    missing = sorted(set(fields) - set(raw) - optional)
    if missing:
        raise ConfigError(f"{origin}: technology.{missing[0]} is missing")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"technology.{name}"
        if name in _ADC_TABLES:
            values[name] = _table(value, key, origin, "ADC bits", allow_empty=False)
        elif name in _SIZE_TABLES:
            values[name] = _table(value, key, origin, "crossbar sizes", allow_empty=True)
        elif name in ("node_nm", "input_buffer_bits", "reference_size"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{origin}: {key}={value!r} must be an integer >= 0")
            values[name] = value
        else:
            values[name] = _number(value, key, origin, positive=name in ("cell_area_um2", "layout_factor"))
    if values["node_nm"] < 1 or values["reference_size"] < 1:
        raise ConfigError(f"{origin}: technology.node_nm and reference_size must be >= 1")
    if not isinstance(sources, Mapping):
        raise ConfigError(f"{origin}: [sources] must be a table of technology field -> source text")
    unknown_sources = sorted(set(sources) - set(fields))
    if unknown_sources:
        raise ConfigError(f"{origin}: sources.{unknown_sources[0]} names no technology field")
    for name, text in sources.items():
        if not isinstance(text, str):
            raise ConfigError(f"{origin}: sources.{name} must be a text naming where the number comes from")
    return Technology(**values, sources=dict(sources))


def _table(value: Any, key: str, origin: str, keys: str, *, allow_empty: bool) -> dict[int, float]:
    """A TOML table of integer keys (ADC bits, crossbar sizes) -> positive numbers."""
    if not isinstance(value, Mapping) or not (value or allow_empty):
        raise ConfigError(f"{origin}: {key} must be a table of {keys} -> number")
    table: dict[int, float] = {}
    for item, number in value.items():
        if not str(item).isdigit():
            raise ConfigError(f"{origin}: {key} has key {item!r}; keys are {keys} (integers)")
        table[int(item)] = _number(number, f"{key}.{item}", origin, positive=True)
    return table


def _number(value: Any, key: str, origin: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{origin}: {key}={value!r} must be a finite number")
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{origin}: {key}={value!r} is out of range; it must be {'>' if positive else '>='} 0")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Validation

def _int_in(hw: Hardware, name: str, low: int, high: int) -> None:
    value = getattr(hw, name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name}={value!r} is out of range; it must be an integer in [{low}, {high}]")


def _choice(hw: Hardware, name: str, allowed: tuple[Any, ...]) -> None:
    value = getattr(hw, name)
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; use one of {', '.join(map(str, allowed))}")


def _flag(hw: Hardware, name: str) -> None:
    if not isinstance(getattr(hw, name), bool):
        raise ConfigError(f"{name}={getattr(hw, name)!r} must be true or false")


def _real_in(hw: Hardware, name: str, low: float, high: float, *, open_low: bool = False) -> None:
    value = getattr(hw, name)
    ok = (
        not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        and (value > low if open_low else value >= low) and value <= high
    )
    if not ok:
        bracket = "(" if open_low else "["
        raise ConfigError(f"{name}={value!r} is out of range; it must be in {bracket}{low}, {high}]")


def _validate_hardware(hw: Hardware) -> None:
    if not isinstance(hw.technology, Technology):
        raise ConfigError("technology must be a Technology table")
    _choice(hw, "crossbar_size", CROSSBAR_SIZES)
    _int_in(hw, "weight_bits", 1, 16)
    _int_in(hw, "bits_per_cell", 1, 8)
    allowed_adc = hw.technology.adc_bits_allowed()
    if hw.adc_bits not in allowed_adc:
        raise ConfigError(
            f"adc_bits={hw.adc_bits!r} is not in this technology table; use one of "
            f"{', '.join(map(str, allowed_adc))}"
        )
    _int_in(hw, "columns_per_adc", 1, hw.crossbar_size)
    if hw.crossbar_size % hw.columns_per_adc:
        raise ConfigError(
            f"columns_per_adc={hw.columns_per_adc} must divide crossbar_size={hw.crossbar_size}"
        )
    _int_in(hw, "rows_per_read", 1, hw.crossbar_size)
    _choice(hw, "weight_encoding", WEIGHT_ENCODINGS)
    _choice(hw, "mapping", MAPPINGS)
    _flag(hw, "analog_kernel_accumulation")
    if hw.analog_kernel_accumulation and hw.mapping != "kernel_split":
        raise ConfigError("analog_kernel_accumulation=true needs mapping=\"kernel_split\"")
    if hw.tile_shape is None:
        if hw.mapping != "im2col" or not hw.tile_exclusive:
            raise ConfigError(
                "tile shape \"auto\" (the NeuroSim floorplan) needs mapping=\"im2col\" and exclusive tiles"
            )
    else:
        shape = hw.tile_shape
        if not (
            isinstance(shape, tuple) and len(shape) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 64 for v in shape)
        ):
            raise ConfigError(f"tile_shape={shape!r} must be \"auto\" or [rows, cols] with each in [1, 64]")
    _flag(hw, "tile_exclusive")
    if hw.duplication is not None:
        _int_in(hw, "duplication", 1, 1024)
    _choice(hw, "schedule", SCHEDULES)
    if hw.clock_ns is not None:
        _real_in(hw, "clock_ns", 0.0, 1e6, open_low=True)
    _int_in(hw, "crossbar_concurrency", 0, 10**9)
    _int_in(hw, "neuron_units", 0, 10**9)
    _real_in(hw, "layer_start_fraction", 0.0, 1.0, open_low=True)
    _int_in(hw, "state_bits", 1, 64)
    _int_in(hw, "input_bits", 1, 16)
    _flag(hw, "reuse_static_input")
    _real_in(hw, "default_spike_rate", 0.0, 1.0)
    _flag(hw, "skip_silent_row_blocks")
    _flag(hw, "pooled_positions")
    _int_in(hw, "state_memory_layers", 0, 10**6)
    _flag(hw, "convert_empty_columns")
