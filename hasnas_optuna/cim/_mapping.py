"""Counting: how a layer maps onto crossbars and how often each component acts.

Pure arithmetic on the network and the hardware knobs, no technology numbers. Every function is
elementwise, so the same code counts one layer (Python numbers) or many networks at once (NumPy
arrays of shape ``[networks, layers]``); the few operations that differ come in through ``ops``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from hasnas_optuna._errors import ConfigError
from hasnas_optuna.cim._hardware import Hardware

__all__ = ["ARRAY", "SCALAR", "LayerCounts", "MaskedArrayOps", "count_layer", "floorplan_tile_cells"]

ANALOG_BIT_DENSITY = 0.5
"""Fraction of ones in a bit plane of a multi-bit analog input (uniform pixel values)."""


class _ScalarOps:
    maximum = staticmethod(max)
    minimum = staticmethod(min)

    @staticmethod
    def ceil_div(a: Any, b: Any) -> Any:
        return -(-a // b)

    @staticmethod
    def floor_div(a: Any, b: Any) -> Any:
        return a // b

    @staticmethod
    def where(cond: Any, a: Any, b: Any) -> Any:
        return a if cond else b

    @staticmethod
    def total(values: Any) -> Any:
        return sum(values)

    @staticmethod
    def largest(values: Any) -> Any:
        return max(values)

    @staticmethod
    def last(values: Any, last_index: Any) -> Any:
        return values[-1]

    @staticmethod
    def sqrt(value: Any) -> Any:
        return value ** 0.5


class _ArrayOps:
    """Float arrays: whole numbers stay exact (below 2^53) and divisions vectorise."""

    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    where = staticmethod(np.where)
    sqrt = staticmethod(np.sqrt)

    @staticmethod
    def ceil_div(a: Any, b: Any) -> Any:
        quotient = np.divide(a, b)
        return np.ceil(quotient, out=quotient) if isinstance(quotient, np.ndarray) else np.ceil(quotient)

    @staticmethod
    def floor_div(a: Any, b: Any) -> Any:
        quotient = np.divide(a, b)
        return np.floor(quotient, out=quotient) if isinstance(quotient, np.ndarray) else np.floor(quotient)

    @staticmethod
    def total(values: Any) -> Any:
        return values.sum(axis=-1)

    @staticmethod
    def largest(values: Any) -> Any:
        return values.max(axis=-1)

    @staticmethod
    def last(values: Any, last_index: Any) -> Any:
        return np.take_along_axis(values, last_index[:, None], axis=-1)[:, 0]


class MaskedArrayOps(_ArrayOps):
    """Array operations whose reductions over layers skip padding (``mask`` is 1 for real layers)."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask

    def total(self, values: Any) -> Any:  # type: ignore[override]
        return np.einsum("ij,ij->i", np.broadcast_to(values, self.mask.shape), self.mask)

    def largest(self, values: Any) -> Any:  # type: ignore[override]
        return (values * self.mask).max(axis=-1)


SCALAR = _ScalarOps()
ARRAY = _ArrayOps()


class LayerCounts(NamedTuple):
    """Per-layer counts for one pass of the layer (one timestep, or once for a static layer).

    Geometry: ``rows`` and ``cols`` are the weight matrix in cells, ``crossbars`` and
    ``adc_groups`` the crossbars and ADC-sharing groups it needs (before tiling and duplication).
    Actions: ``group_reads`` (one read of one ADC group for one input vector and bit plane),
    ``conversions`` (ADC conversions), ``crossbar_cycles`` (one crossbar for one mux step),
    ``row_activations`` (active row x column pairs), ``row_drives`` (active row x crossbar it
    drives), ``adds`` (partial-sum additions), ``bits_in`` (im2col input traffic),
    ``neuron_updates``, ``bits_out`` (output spikes after pooling).
    """

    rows: Any
    cols: Any
    row_blocks: Any
    col_blocks: Any
    crossbars: Any
    adc_groups: Any
    crossbars_per_group: Any
    vectors: Any
    group_reads: Any
    conversions: Any
    crossbar_cycles: Any
    row_activations: Any
    row_drives: Any
    adds: Any
    bits_in: Any
    neuron_updates: Any
    bits_out: Any


def count_layer(
    hw: Hardware,
    ops: Any,
    kernel: Any,
    in_channels: Any,
    out_channels: Any,
    positions: Any,
    neurons: Any,
    pool_area: Any,
    input_bits: Any,
    bit_density: Any,
) -> LayerCounts:
    """Count one layer's mapping and actions per pass.

    ``positions`` are the input vectors (output pixels) the crossbars evaluate, ``input_bits``
    the bit planes each vector is applied in (1 for spikes), ``bit_density`` the fraction of
    active rows (the input spike rate, or 0.5 for analog bit planes). A read converts the
    columns that hold weights (NeuroSim), or every column of the crossbar with
    ``convert_empty_columns`` (SpikeSim's ELA script).
    """
    ceil_div = ops.ceil_div
    size = hw.crossbar_size
    kk = kernel * kernel
    rows = kk * in_channels
    if hw.mapping == "kernel_split":
        rows_per_group, kernel_groups = in_channels, kk
    else:
        rows_per_group, kernel_groups = rows, 1
    group_row_blocks = ceil_div(rows_per_group, size)
    row_blocks = kernel_groups * group_row_blocks
    cols = hw.columns_per_weight * out_channels
    col_blocks = ceil_div(cols, size)
    crossbars = row_blocks * col_blocks
    if hw.analog_kernel_accumulation:
        adc_groups = group_row_blocks * col_blocks
        per_group = kernel_groups
    else:
        adc_groups = crossbars
        per_group = 1
    rows_avg = rows_per_group / group_row_blocks
    cols_avg = cols / col_blocks
    vectors = positions * input_bits
    row_passes = -(-size // hw.rows_per_read)
    reads = vectors * row_passes * adc_groups
    if hw.skip_silent_row_blocks:
        # a read of rows_per_read rows is skipped when none of them carries a spike
        rows_read = ops.minimum(rows_avg, hw.rows_per_read) * per_group
        reads = reads * (1.0 - (1.0 - bit_density) ** rows_read)
    active_rows = vectors * bit_density * rows
    return LayerCounts(
        rows,
        cols,
        row_blocks,
        col_blocks,
        crossbars,
        adc_groups,
        per_group,
        vectors,
        reads,
        reads * (size if hw.convert_empty_columns else cols_avg),  # conversions
        reads * per_group * hw.columns_per_adc,  # crossbar cycles
        active_rows * cols,  # row activations: active row x column
        active_rows * col_blocks,  # row drives: active row x crossbar it spans
        vectors * out_channels * ops.floor_div(adc_groups, col_blocks) * row_passes,  # adds
        vectors * rows,  # bits in
        neurons,
        neurons / pool_area,  # bits out
    )


def floorplan_tile_cells(hw: Hardware, rows: list[int], cols: list[int]) -> int:
    """Tile side in cells chosen as NeuroSim V1.4's floorplanner does (conventional mapping).

    Candidates run from the smallest power of two that holds the widest layer (at least 4
    crossbars) down by halves while above 4 crossbars; the first candidate with the highest
    fraction of tile cells holding weights wins.
    """
    size = hw.crossbar_size
    widest = max(cols)
    tile = max(1 << (widest - 1).bit_length(), 4 * size)
    if tile // 2 <= 4 * size:  # the only candidate
        return tile
    best_util = 0.0
    best = tile
    weights = sum(r * c for r, c in zip(rows, cols, strict=True))
    candidate = tile
    while candidate == tile or candidate > 4 * size:
        tiles = sum(-(-r // candidate) * -(-c // candidate) for r, c in zip(rows, cols, strict=True))
        util = weights / (tiles * candidate * candidate)
        if util > best_util:
            best_util, best = util, candidate
        candidate //= 2
    return best


def floorplan_tile_cells_batch(hw: Hardware, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """:func:`floorplan_tile_cells` for ``[networks, layers]`` arrays (padding has 0 columns)."""
    size = hw.crossbar_size
    widest = cols.max(axis=1)
    start = np.maximum(1 << np.ceil(np.log2(np.maximum(widest, 1))).astype(np.int64), 4 * size)
    weights = (rows * cols).sum(axis=1)
    best_util = np.zeros(len(rows))
    best = start.copy()
    candidate = start.max()
    if candidate > 1 << 40:
        raise ConfigError("a layer is too wide for the NeuroSim floorplan (more than 2^40 columns)")
    valid = cols > 0
    while candidate >= 4 * size:
        active = (candidate <= start) & ((candidate == start) | (candidate > 4 * size))
        tiles = np.where(valid, np.ceil(rows / candidate) * np.ceil(cols / candidate), 0).sum(axis=1)
        util = weights / (np.maximum(tiles, 1) * float(candidate) ** 2)
        better = active & (util > best_util)
        best_util = np.where(better, util, best_util)
        best = np.where(better, candidate, best)
        candidate //= 2
    return best
