"""Costing many networks at once: the same formulas on ``[networks, layers]`` NumPy arrays.

A search scores thousands of candidates per second, so the batch path takes layer arrays
directly (:class:`NetworkBatch`), without building :class:`Network` objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from hasnas_optuna._errors import ConfigError
from hasnas_optuna.cim._accounting import (
    NS_PER_MS,
    PJ_PER_UJ,
    allocate,
    allocation_context,
    chip_totals,
    counts_of,
    derive_inputs,
    fixed_energy,
    layer_costs,
)
from hasnas_optuna.cim._hardware import Hardware
from hasnas_optuna.cim._mapping import ARRAY, MaskedArrayOps
from hasnas_optuna.cim._network import Network

__all__ = ["BatchCosts", "NetworkBatch", "estimate_costs"]

_CHUNK_CELLS = 10_240
"""Network-layer cells costed per NumPy pass: its ``[networks, layers]`` float arrays (80 KiB) stay in
the CPU cache and below glibc's 128 KiB mmap threshold. At 1024 networks of 20 layers (160 KiB)
every temporary array was a fresh ``mmap`` that page-faulted in: 2-3x slower (benchmarks/README.md)."""
_FIELDS = ("kernel", "in_channels", "out_channels", "input_h", "input_w", "stride", "padding", "pool")


@dataclass(frozen=True)
class NetworkBatch:
    """Layer arrays of shape ``[networks, layers]``; ``mask`` marks real layers (padding is 0).

    ``spike_rate`` holds NaN where the hardware's default rate applies. All networks share one
    ``encoding``; ``timesteps`` may differ per network.

    Example:
        >>> from hasnas_optuna.cim import Layer, Network
        >>> nets = [Network([Layer.linear(64, n)]) for n in (10, 20)]
        >>> batch = NetworkBatch.from_networks(nets)
        >>> batch.mask.shape, batch.out_channels[:, 0].tolist()
        ((2, 1), [10.0, 20.0])
    """

    kernel: np.ndarray
    in_channels: np.ndarray
    out_channels: np.ndarray
    input_h: np.ndarray
    input_w: np.ndarray
    stride: np.ndarray
    padding: np.ndarray
    pool: np.ndarray
    spike_rate: np.ndarray
    mask: np.ndarray
    encoding: str = "direct"
    bias: np.ndarray | None = None
    """1 where a layer stores a bias per output channel (``Layer.bias``); none when omitted."""

    def __post_init__(self) -> None:
        if self.bias is None:
            object.__setattr__(self, "bias", np.zeros(np.shape(self.mask)))
        for name in (*_FIELDS, "spike_rate", "mask", "bias"):  # float arithmetic: exact below 2^53, and fast
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=float))
        shape = self.mask.shape
        if len(shape) != 2:
            raise ConfigError(f"mask must have shape [networks, layers], got {shape}")
        for name in (*_FIELDS, "spike_rate", "bias"):
            if getattr(self, name).shape != shape:
                raise ConfigError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")
        real = self.mask.astype(bool)
        if not real[:, 0].all():
            raise ConfigError("every network needs at least one layer (mask[:, 0] must be 1)")
        for name in ("kernel", "in_channels", "out_channels", "input_h", "input_w", "stride", "pool"):
            if (getattr(self, name)[real] < 1).any():
                raise ConfigError(f"{name} must be >= 1 for every real layer")
        rates = self.spike_rate[real]
        if ((rates < 0) | (rates > 1)).any():
            raise ConfigError("spike_rate must be in [0, 1] (or NaN for the default)")

    def select(self, rows: slice | np.ndarray) -> NetworkBatch:
        """The networks at ``rows`` (a slice or an index array) as a new batch (checked already)."""
        part = object.__new__(NetworkBatch)
        for name in (*_FIELDS, "spike_rate", "mask", "bias"):
            object.__setattr__(part, name, getattr(self, name)[rows])
        object.__setattr__(part, "encoding", self.encoding)
        return part

    @property
    def size(self) -> int:
        """Number of networks."""
        return int(self.mask.shape[0])

    @classmethod
    def from_networks(cls, networks: Sequence[Network]) -> NetworkBatch:
        """Pack :class:`Network` objects (all with the same encoding) into arrays."""
        if not networks:
            raise ConfigError("no networks to cost")
        encodings = {net.encoding for net in networks}
        if len(encodings) != 1:
            raise ConfigError(f"a batch needs one encoding, got {sorted(encodings)}")
        width = max(len(net.layers) for net in networks)
        data = {name: np.ones((len(networks), width)) for name in _FIELDS}
        data["padding"][:] = 0
        rate = np.full((len(networks), width), np.nan)
        mask = np.zeros((len(networks), width))
        bias = np.zeros((len(networks), width))
        for i, net in enumerate(networks):
            for j, layer in enumerate(net.layers):
                values = (layer.kernel_size, layer.in_channels, layer.out_channels, *layer.input_size,
                          layer.stride, layer.padding, layer.pool_after)
                for name, value in zip(_FIELDS, values, strict=True):
                    data[name][i, j] = value
                if layer.spike_rate is not None:
                    rate[i, j] = layer.spike_rate
                mask[i, j] = 1
                bias[i, j] = layer.bias
        return cls(**data, spike_rate=rate, mask=mask, encoding=encodings.pop(), bias=bias)


class BatchCosts(NamedTuple):
    """Totals per network, each an array of shape ``[networks]``."""

    memory_params: np.ndarray
    memory_bits: np.ndarray
    area_mm2: np.ndarray
    latency_ms: np.ndarray
    energy_uj: np.ndarray
    energy_dynamic_uj: np.ndarray
    energy_leakage_uj: np.ndarray


def estimate_costs(
    batch: NetworkBatch | Sequence[Network], hardware: Hardware, *, timesteps: Any
) -> BatchCosts:
    """Cost many networks on one chip at once; same numbers as :func:`estimate_cost`.

    ``timesteps`` is one integer or one per network.

    Example:
        >>> from hasnas_optuna.cim import Layer, Network, estimate_cost, load_hardware
        >>> hw = load_hardware()
        >>> nets = [Network([Layer.conv(1, c, kernel_size=3, input_size=(8, 8), padding=1)])
        ...         for c in (8, 16)]
        >>> costs = estimate_costs(nets, hw, timesteps=4)
        >>> costs.memory_params.tolist()
        [72, 144]
        >>> bool(abs(costs.energy_uj[1] - estimate_cost(nets[1], hw, timesteps=4).energy_uj) < 1e-12)
        True
    """
    if not isinstance(batch, NetworkBatch):
        batch = NetworkBatch.from_networks(batch)
    steps = np.asarray(timesteps)
    if steps.ndim == 0:
        steps = np.full(batch.size, steps)
    if steps.shape != (batch.size,) or not np.issubdtype(steps.dtype, np.integer) or (steps < 1).any():
        raise ConfigError(f"timesteps must be an integer >= 1 or one integer per network ({batch.size})")
    chunk = max(1, _CHUNK_CELLS // batch.mask.shape[1])
    if batch.size <= chunk:
        return _estimate_chunk(batch, hardware, steps.astype(float))
    parts = [
        _estimate_chunk(batch.select(slice(start, start + chunk)), hardware, steps[start:start + chunk].astype(float))
        for start in range(0, batch.size, chunk)
    ]
    return BatchCosts(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def _estimate_chunk(batch: NetworkBatch, hw: Hardware, steps: np.ndarray) -> BatchCosts:
    mask = batch.mask
    steps_col = steps[:, None]
    rate = np.where(np.isnan(batch.spike_rate), hw.default_spike_rate, batch.spike_rate)
    index = np.arange(mask.shape[1])[None, :]
    first_static = (index == 0) & (batch.encoding == "direct")
    limit = hw.state_memory_layers
    state_counted = np.ones(index.shape) if limit == 0 else (index < limit).astype(float)
    x = derive_inputs(
        hw, ARRAY, kernel=batch.kernel, in_channels=batch.in_channels,
        out_channels=batch.out_channels, input_h=batch.input_h, input_w=batch.input_w,
        stride=batch.stride, padding=batch.padding, pool=batch.pool, spike_rate=rate,
        first_static=first_static, state_counted=state_counted, timesteps=steps_col,
    )
    c = counts_of(hw, ARRAY, x)
    tile_cells, shared = allocation_context(hw, ARRAY, c.rows * mask, c.cols * mask, c.adc_groups * mask)
    a = allocate(hw, ARRAY, c, tile_cells, shared)
    cost = layer_costs(hw, ARRAY, x, c, a, steps_col)
    masked = MaskedArrayOps(mask)
    last = (mask.sum(axis=1) - 1).astype(np.int64)
    chip = chip_totals(hw, masked, cost, steps, last)
    # as estimate_cost adds them up: the wires' share and leakage per network, not per layer
    fixed = masked.total(fixed_energy(cost))
    dynamic = (fixed + masked.total(cost.bits_moved) * chip.energy_per_bit_pj) / PJ_PER_UJ
    leakage = masked.total(cost.leakage_uw) * (chip.latency_ms * NS_PER_MS) * 1e-3 / PJ_PER_UJ
    stored = np.rint(masked.total(batch.out_channels * (batch.kernel * batch.kernel * batch.in_channels + batch.bias)))
    stored = stored.astype(np.int64)
    return BatchCosts(
        memory_params=stored,
        memory_bits=stored * hw.weight_bits,
        area_mm2=np.asarray(chip.area_mm2, dtype=float),
        latency_ms=np.asarray(chip.latency_ms, dtype=float),
        energy_uj=dynamic + leakage,
        energy_dynamic_uj=dynamic,
        energy_leakage_uj=leakage,
    )
