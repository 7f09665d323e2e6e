"""Accounting: counts x technology numbers -> area, energy and latency of each layer and the chip.

Elementwise like :mod:`._mapping`, so :func:`estimate_cost` (one network, with a per-layer
breakdown) and :func:`estimate_costs` (many networks as arrays) share every formula.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from hasnas_optuna._errors import ConfigError
from hasnas_optuna.cim._hardware import Hardware
from hasnas_optuna.cim._mapping import (
    ANALOG_BIT_DENSITY,
    SCALAR,
    LayerCounts,
    count_layer,
    floorplan_tile_cells,
    floorplan_tile_cells_batch,
)
from hasnas_optuna.cim._network import Network
from hasnas_optuna.cim._report import AREA_PARTS, ENERGY_PARTS, CostReport, LayerCost

__all__ = [
    "LayerInputs", "allocate", "allocation_context", "chip_totals", "derive_inputs", "energy_parts",
    "estimate_cost", "fixed_energy", "layer_costs",
]

UM2_PER_MM2 = 1e6
_CACHE_LIMIT = 65536
PJ_PER_UJ = 1e6
NS_PER_MS = 1e6


class LayerInputs(NamedTuple):
    """What accounting needs of a layer besides the hardware (elementwise values)."""

    kernel: Any
    in_channels: Any
    out_channels: Any
    positions: Any
    neurons: Any
    pool_area: Any
    input_neurons: Any
    input_bits: Any
    bit_density: Any
    spike_rate: Any
    passes: Any
    state_counted: Any


def derive_inputs(
    hw: Hardware,
    ops: Any,
    kernel: Any,
    in_channels: Any,
    out_channels: Any,
    input_h: Any,
    input_w: Any,
    stride: Any,
    padding: Any,
    pool: Any,
    spike_rate: Any,
    first_static: Any,
    state_counted: Any,
    timesteps: Any,
) -> LayerInputs:
    """Elementwise: a layer's geometry and rates -> what counting and accounting read.

    ``first_static`` marks the first layer of a direct-encoded network: it sees ``input_bits``
    bit planes of the analog image (half the bits set) and, with ``reuse_static_input``, runs once.
    (Arguments are positional in the hot path: keyword binding costs more than the arithmetic.
    Divisions go through ``ops``: NumPy's ``//`` on float arrays is several times slower.)
    """
    floor_div = ops.floor_div
    out_h = floor_div(input_h + 2 * padding - kernel, stride) + 1
    out_w = floor_div(input_w + 2 * padding - kernel, stride) + 1
    if hw.pooled_positions:
        positions, pool_area = floor_div(out_h, pool) * floor_div(out_w, pool), 1
    else:
        positions, pool_area = out_h * out_w, pool * pool
    where = ops.where
    return LayerInputs(
        kernel, in_channels, out_channels, positions, out_channels * positions, pool_area,
        in_channels * input_h * input_w,
        where(first_static, hw.input_bits, 1),
        where(first_static, ANALOG_BIT_DENSITY, spike_rate),
        spike_rate,
        where(first_static, 1, timesteps) if hw.reuse_static_input else timesteps,
        state_counted,
    )


def counts_of(hw: Hardware, ops: Any, x: LayerInputs) -> LayerCounts:
    """:func:`count_layer` for one :class:`LayerInputs`."""
    return count_layer(hw, ops, x.kernel, x.in_channels, x.out_channels, x.positions, x.neurons, x.pool_area,
                       x.input_bits, x.bit_density)


class Allocation(NamedTuple):
    """Crossbars, ADC groups and tiles physically allocated to a layer, and its duplication."""

    crossbars: Any
    adc_groups: Any
    tiles: Any
    duplication: Any
    tile_columns: Any


def allocate(hw: Hardware, ops: Any, c: LayerCounts, tile_cells: Any, shared_tiles: Any) -> Allocation:
    """Place one layer on tiles.

    ``tile_cells`` is the NeuroSim floorplan's tile side (for ``tile_shape="auto"``);
    ``shared_tiles`` is (tiles of the chip / ADC groups of all layers) for shared tiles.
    """
    ceil_div, floor_div = ops.ceil_div, ops.floor_div
    dup_fixed = hw.duplication
    dup: Any = 1 if dup_fixed is None else dup_fixed
    if hw.tile_shape is None:
        per_side = floor_div(tile_cells, hw.crossbar_size)
        tiles = ceil_div(c.rows, tile_cells) * ceil_div(dup * c.cols, tile_cells)
        groups = tiles * per_side * per_side
        columns = tile_cells
        if dup_fixed is None:
            size = hw.crossbar_size
            dup = floorplan_copies(ops, c.rows, tile_cells, size) * floorplan_copies(ops, c.cols, tile_cells, size)
    else:
        tile_rows, tile_cols = hw.tile_shape
        columns = tile_cols * hw.crossbar_size
        if hw.tile_exclusive:
            group_rows = floor_div(c.adc_groups, c.col_blocks)
            tiles = ceil_div(group_rows, tile_rows) * ceil_div(dup * c.col_blocks, tile_cols)
            groups = tiles * tile_rows * tile_cols
            if dup_fixed is None:  # fill the allocated tiles
                dup = ops.maximum(floor_div(groups, c.adc_groups), 1)
        else:
            groups = dup * c.adc_groups * shared_tiles * tile_rows * tile_cols
            tiles = dup * c.adc_groups * shared_tiles
    return Allocation(groups * c.crossbars_per_group, groups, tiles, dup, columns)


def floorplan_copies(ops: Any, extent: Any, tile_cells: Any, crossbar_size: int) -> Any:
    """Copies of a layer along one dimension (rows or columns), as NeuroSim V1.4 duplicates.

    A layer that fits a tile in this dimension is copied across the tile's two PEs (side
    ``tile/2``), and its part of a PE across the PE's crossbars, each rounded down; the layer's
    speed-up is the product over both dimensions.

    Example:
        >>> from hasnas_optuna.cim._mapping import SCALAR
        >>> floorplan_copies(SCALAR, 256, 1024, 128), floorplan_copies(SCALAR, 80, 1024, 128)
        (4, 8)
    """
    ceil_div, floor_div = ops.ceil_div, ops.floor_div
    pe = floor_div(tile_cells, 2)
    pe_copies = ops.where(extent > tile_cells, 1, floor_div(tile_cells, ceil_div(extent, pe) * pe))
    part = ops.minimum(extent, pe)
    return pe_copies * floor_div(pe, ceil_div(part, crossbar_size) * crossbar_size)


class LayerCosts(NamedTuple):
    """Per-layer results that do not need chip totals (um^2, pJ, ns, uW)."""

    area_arrays: Any
    area_adcs: Any
    area_periphery: Any
    area_tiles: Any
    area_neurons: Any
    energy_arrays: Any
    energy_adcs: Any
    energy_accumulation: Any
    energy_neurons: Any
    energy_fixed_movement: Any
    bits_moved: Any
    crossbar_time: Any
    neuron_time: Any
    leakage_uw: Any
    state_bits: Any
    area_total: Any
    layer_time: Any


class _Constants(NamedTuple):
    """Technology numbers combined with the knobs once per chip (the layer loop reads these)."""

    read_ns: float
    vector_output_ns: float
    vector_row_ns: float
    crossbar_area: float
    adc_area_per_group: float
    periphery_per_crossbar: float
    tile_fixed: float
    tile_per_column: float
    lif_unit_area: float
    state_bit_area: float
    input_buffer_area: float
    neuron_step_ns: float
    row_activation: float
    crossbar_cycle: float
    row_drive: float
    column_read: float
    adc_conversion: float
    read_accumulation: float
    add: float
    shift_add: float
    neuron_update: float
    read_neuron: float
    read_movement: float
    psum_hop: float
    input_hop: float
    leakage_per_crossbar: float
    hops_per_tile_cell: float


def constants_of(hw: Hardware) -> _Constants:
    """:class:`_Constants` of a chip, memoised with the chip's other cached values."""
    found = hw._cache.get("constants")
    if found is None:
        t = hw.technology
        size = hw.crossbar_size
        clock = hw.clock
        found = hw._cache["constants"] = _Constants(
            -(-size // hw.rows_per_read) * hw.columns_per_adc * clock,
            t.vector_cycles_per_output * clock / hw.columns_per_weight,
            t.vector_cycles_per_row * t.reference_size / size * clock,
            size * size * t.cell_area_um2,
            (size // hw.columns_per_adc) * t.adc_area_um2[hw.adc_bits],
            size * t.periphery_um2_per_line + t.crossbar_fixed_um2,
            t.tile_fixed_um2, t.tile_um2_per_column, t.neuron_unit_um2, t.state_bit_um2,
            t.input_buffer_bits * t.state_bit_um2,
            t.neuron_cycle_ns, t.row_activation_pj, t.crossbar_cycle_pj, t.row_drive_pj, t.column_read_pj,
            t.adc_conversion_pj[hw.adc_bits], t.group_read_accumulation_pj, t.add_pj * hw.weight_bits / 8,
            t.shift_add_pj, t.neuron_update_pj + 2 * hw.state_bits * t.state_bit_access_pj,
            t.group_read_neuron_pj, t.group_read_interconnect_pj + t.group_read_buffer_pj,
            t.psum_hop_pj, t.input_hop_pj, t.leakage_uw_per_crossbar * size / t.reference_size,
            1 / (2 * size),
        )
    return found


def layer_costs(
    hw: Hardware, ops: Any, x: LayerInputs, c: LayerCounts, a: Allocation, timesteps: Any
) -> LayerCosts:
    """Area, energy (without the chip-size-dependent wire term) and time of one layer.

    Constants are grouped once per chip (:func:`constants_of`), so a layer costs few operations.
    """
    k = constants_of(hw)
    lif_units = hw.neuron_units if hw.neuron_units > 0 else x.out_channels
    state_bits = x.neurons * hw.state_bits * x.state_counted
    passes = x.passes
    # every copy of every ADC group can work at once, unless crossbar_concurrency caps it
    copies = c.adc_groups * a.duplication
    concurrency = hw.crossbar_concurrency
    parallel = copies if concurrency == 0 else ops.minimum(copies, concurrency)
    # buffer time per input vector: partial sums of the output channels of one column tile out,
    # the input rows of one row tile in (NeuroSim; docs/cost-model.md)
    side = a.tile_columns
    minimum, ceil_div = ops.minimum, ops.ceil_div
    crossbar_time = passes * (
        ceil_div(x.positions * c.adc_groups, parallel) * x.input_bits * k.read_ns
        + x.positions * minimum(c.cols, side) * k.vector_output_ns + c.vectors * minimum(c.rows, side) * k.vector_row_ns
    )
    neuron_time = timesteps * ceil_div(x.neurons, lif_units) * k.neuron_step_ns
    area_arrays = a.crossbars * k.crossbar_area
    area_adcs = a.adc_groups * k.adc_area_per_group
    area_periphery = a.crossbars * k.periphery_per_crossbar
    area_tiles = a.tiles * (k.tile_fixed + k.tile_per_column * side)
    area_neurons = lif_units * k.lif_unit_area + state_bits * k.state_bit_area + x.input_neurons * k.input_buffer_area
    # crossbar hops across a PE (half a tile side): partial sums out, input bits in
    hops = side * k.hops_per_tile_cell
    reads = c.group_reads
    conversions = c.conversions
    layer_time = ops.maximum(crossbar_time, neuron_time) if hw.schedule == "neuron_serial" else (
        crossbar_time + neuron_time)
    return LayerCosts(
        area_arrays,
        area_adcs,
        area_periphery,
        area_tiles,
        area_neurons,
        passes * (c.row_activations * k.row_activation + c.crossbar_cycles * k.crossbar_cycle
                  + c.row_drives * k.row_drive + conversions * k.column_read),  # arrays
        passes * conversions * k.adc_conversion,  # ADCs
        passes * (reads * k.read_accumulation + c.adds * k.add + conversions * k.shift_add),  # accumulation
        timesteps * c.neuron_updates * k.neuron_update + passes * reads * k.read_neuron,  # neurons
        passes * (reads * k.read_movement + hops * (  # buffers and interconnect, but the wires' share
            x.positions * x.out_channels * ceil_div(c.rows, side) * k.psum_hop
            + c.bits_in * c.col_blocks * k.input_hop)),
        passes * c.bits_in + timesteps * c.bits_out,
        crossbar_time,
        neuron_time,
        a.crossbars * k.leakage_per_crossbar,
        state_bits,
        area_arrays + area_adcs + area_periphery + area_tiles + area_neurons,
        layer_time,
    )


class ChipTotals(NamedTuple):
    """Chip-level totals in report units, plus what per-layer shares need."""

    area_mm2: Any
    latency_ms: Any
    energy_per_bit_pj: Any


class _Columns(NamedTuple):
    """The two per-layer columns :func:`chip_totals` reads (area already summed)."""

    area_total: list[float]
    layer_time: list[float]


def chip_totals(
    hw: Hardware, ops: Any, costs: LayerCosts | _Columns, timesteps: Any, last_index: Any = None
) -> ChipTotals:
    """Chip area (with layout factor), latency under the schedule, and the wire cost per bit.

    ``costs`` holds one sequence (or array row) per field, one entry per layer.
    """
    tech = hw.technology
    area_mm2 = (tech.layout_factor * ops.total(costs.area_total) + tech.chip_fixed_um2) / UM2_PER_MM2
    total = ops.total(costs.layer_time)
    if hw.schedule == "sequential":
        latency_ns = total
    elif hw.schedule == "pipelined":
        latency_ns = (total + (timesteps - 1) * ops.largest(costs.layer_time)) / timesteps
    else:
        frac = hw.layer_start_fraction
        latency_ns = frac * total + (1 - frac) * ops.last(costs.layer_time, last_index)
    per_bit = tech.wire_pj_per_bit_mm * ops.sqrt(area_mm2) + tech.buffer_pj_per_bit
    return ChipTotals(area_mm2, latency_ns / NS_PER_MS, per_bit)


def energy_parts(cost: LayerCosts, chip: ChipTotals) -> tuple[Any, ...]:
    """Elementwise: one layer's energy per component (pJ), in :data:`ENERGY_PARTS` order."""
    latency_ns = chip.latency_ms * NS_PER_MS
    return (
        cost.energy_arrays,
        cost.energy_adcs,
        cost.energy_accumulation,
        cost.energy_neurons,
        cost.energy_fixed_movement + cost.bits_moved * chip.energy_per_bit_pj,
        cost.leakage_uw * latency_ns * 1e-3,  # uW x ns = fJ -> pJ
    )


def fixed_energy(cost: LayerCosts) -> Any:
    """Elementwise: a layer's energy (pJ) but the wires' share (it needs the chip area) and leakage."""
    return (cost.energy_arrays + cost.energy_adcs + cost.energy_accumulation + cost.energy_neurons
            + cost.energy_fixed_movement)


def area_parts(cost: LayerCosts) -> tuple[Any, ...]:
    """Elementwise: one layer's area per component (um^2, before the layout factor)."""
    return (cost.area_arrays, cost.area_adcs, cost.area_periphery, cost.area_tiles, cost.area_neurons)


def allocation_context(hw: Hardware, ops: Any, rows: Any, cols: Any, adc_groups: Any) -> tuple[Any, Any]:
    """Network-level inputs of :func:`allocate`: the floorplan tile side and the shared-tile ratio.

    ``rows``, ``cols`` and ``adc_groups`` are per-layer sequences (scalar path) or
    ``[networks, layers]`` arrays with 0 for padding (batch path).
    """
    if hw.tile_shape is None:
        if ops is SCALAR:
            return floorplan_tile_cells(hw, rows, cols), 0.0
        return floorplan_tile_cells_batch(hw, rows, cols)[:, None], 0.0
    if hw.tile_exclusive:
        return 0, 0.0
    tile_rows, tile_cols = hw.tile_shape
    groups = ops.total(adc_groups) * (hw.duplication or 1)
    shared = ops.ceil_div(groups, tile_rows * tile_cols) / groups
    return 0, shared if ops is SCALAR else shared[:, None]


class _Placed(NamedTuple):
    """A layer's costs once placed on the chip, with the sums :func:`estimate_cost` adds up."""

    allocation: Allocation
    costs: LayerCosts
    area: float
    fixed_energy: float  # pJ, everything but the wires' share and leakage
    bits_moved: float
    leakage_uw: float
    layer_time: float


class _LayerEntry(NamedTuple):
    """The memo of one layer shape at one rate: its inputs and counts, and its placements by context."""

    inputs: LayerInputs
    counts: LayerCounts
    placed: dict[tuple[Any, Any], _Placed]


_PLACEMENTS_LIMIT = 256


def estimate_cost(
    network: Network,
    hardware: Hardware,
    *,
    timesteps: int | None = None,
    spike_rates: Sequence[float | None] | Mapping[int, float] | None = None,
) -> CostReport:
    """Cost one network on one chip: memory, area, latency and energy with a per-layer breakdown.

    ``timesteps`` defaults to the network's own; ``spike_rates`` (one input spike rate per layer,
    e.g. measured on a trained network, as a list or a ``{layer index: rate}`` mapping) override
    the layers' own rates, which override the preset's default; ``None`` entries fall through.

    Example:
        >>> from hasnas_optuna.cim import Network, load_hardware
        >>> net = Network.from_dict({"timesteps": 4, "layers": [
        ...     {"type": "conv", "in_channels": 1, "out_channels": 16, "kernel_size": 3,
        ...      "input_size": [8, 8], "padding": 1, "pool_after": 2},
        ...     {"type": "linear", "in_features": 256, "out_features": 10}]})
        >>> report = estimate_cost(net, load_hardware("neurosim-22nm"))
        >>> report.memory_params
        2704
        >>> round(report.area_mm2, 2), report.energy_uj > 0, len(report.layers)
        (1.84, True, 2)
    """
    steps = timesteps if timesteps is not None else network.timesteps
    if steps is None:
        raise ConfigError("timesteps is not given and the network does not state its own")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"timesteps={steps!r} must be an integer >= 1")
    if isinstance(spike_rates, Mapping):
        rates: list[float | None] | None = [spike_rates.get(i) for i in range(len(network.layers))]
    else:
        rates = list(spike_rates) if spike_rates is not None else None
    layers = network.layers
    if rates is not None and len(rates) != len(layers):
        raise ConfigError(f"spike_rates has {len(rates)} values but the network has {len(layers)} layers")
    cache = hardware._cache
    if len(cache) > _CACHE_LIMIT:
        cache.clear()
    static = network.encoding == "direct"
    limit = hardware.state_memory_layers
    default_rate = hardware.default_spike_rate
    entries: list[_LayerEntry] = []
    for index, layer in enumerate(layers):
        rate = rates[index] if rates is not None else None
        if rate is None:
            rate = layer.spike_rate
        if rate is None:
            rate = default_rate
        elif isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ConfigError(f"spike rate of layer {index} is {rate!r}; it must be in [0, 1]")
        first_static = index == 0 and static
        counted = 1 if limit == 0 or index < limit else 0
        key = (layer._shape, rate, first_static, counted, steps)
        entry = cache.get(key)
        if entry is None:
            x = derive_inputs(
                hardware, SCALAR, kernel=layer.kernel_size, in_channels=layer.in_channels,
                out_channels=layer.out_channels, input_h=layer.input_size[0],
                input_w=layer.input_size[1], stride=layer.stride, padding=layer.padding,
                pool=layer.pool_after, spike_rate=rate, first_static=first_static,
                state_counted=counted, timesteps=steps,
            )
            entry = cache[key] = _LayerEntry(x, counts_of(hardware, SCALAR, x), {})
        entries.append(entry)
    counts = [e.counts for e in entries]
    tile_cells, shared = allocation_context(
        hardware, SCALAR, [c.rows for c in counts], [c.cols for c in counts], [c.adc_groups for c in counts],
    )
    context = (tile_cells, shared)
    placed: list[_Placed] = []
    area = dynamic = bits = leak_uw = 0.0
    times: list[float] = []
    for entry in entries:
        p = entry.placed.get(context)
        if p is None:
            if len(entry.placed) > _PLACEMENTS_LIMIT:
                entry.placed.clear()
            a = allocate(hardware, SCALAR, entry.counts, tile_cells, shared)
            cost = layer_costs(hardware, SCALAR, entry.inputs, entry.counts, a, steps)
            p = entry.placed[context] = _Placed(a, cost, cost.area_total, fixed_energy(cost), cost.bits_moved,
                                                cost.leakage_uw, cost.layer_time)
        placed.append(p)
        area += p.area
        dynamic += p.fixed_energy
        bits += p.bits_moved
        leak_uw += p.leakage_uw
        times.append(p.layer_time)
    chip = chip_totals(hardware, SCALAR, _Columns([area], times), steps)
    latency_ns = chip.latency_ms * NS_PER_MS
    return CostReport(
        network=network.name, hardware=hardware.name, timesteps=steps,
        memory_params=network.memory_params, weight_bits=hardware.weight_bits,
        area_mm2=chip.area_mm2, latency_ms=chip.latency_ms,
        energy_dynamic_uj=(dynamic + bits * chip.energy_per_bit_pj) / PJ_PER_UJ,
        energy_leakage_uj=leak_uw * latency_ns * 1e-3 / PJ_PER_UJ,
        layer_builder=lambda: _layer_costs(network, hardware, entries, placed, chip),
    )


def _layer_costs(
    network: Network, hw: Hardware, entries: list[_LayerEntry], placed: list[_Placed], chip: ChipTotals,
) -> tuple[LayerCost, ...]:
    layout = hw.technology.layout_factor
    chip_fixed_per_tile = hw.technology.chip_fixed_um2 / sum(p.allocation.tiles for p in placed)
    layers = []
    for index, (layer, entry, place) in enumerate(zip(network.layers, entries, placed, strict=True)):
        x, c, a, cost = entry.inputs, entry.counts, place.allocation, place.costs
        parts = energy_parts(cost, chip)
        areas = list(area_parts(cost))
        areas[3] += a.tiles * chip_fixed_per_tile / layout  # the chip's own buffers and bus, by tiles
        layers.append(LayerCost(
            index=index, name=layer.name or f"layer{index}", type=layer.type,
            params=layer.params, spike_rate=x.spike_rate, passes=x.passes,
            crossbars=c.crossbars, crossbars_allocated=a.crossbars, tiles=a.tiles,
            duplication=a.duplication, conversions=c.conversions * x.passes,
            cells=layer.params * hw.columns_per_weight,
            neuron_state_bits=cost.state_bits,
            area_mm2={
                part: layout * value / UM2_PER_MM2
                for part, value in zip(AREA_PARTS, areas, strict=True)
            },
            energy_uj={part: value / PJ_PER_UJ for part, value in zip(ENERGY_PARTS, parts, strict=True)},
            latency_ms=cost.layer_time / NS_PER_MS,
        ))
    return tuple(layers)
