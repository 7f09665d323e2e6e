"""Precision of the chip in the trained network: BN folding, weight fake-quantisation, ADC partial sums.

One definition of a trial's precision: :class:`Precision` is read from the trial's chip
(:class:`~hasnas_optuna.cim.Hardware`: ``weight_bits``, ``bits_per_cell``, ``adc_bits``,
``rows_per_read``, ``crossbar_size``, ``input_bits``), the same object the cost model costs.

What the deployed network stores, per crossbar layer (:func:`deployed_layer`):

* a conv's weight with its batch norm folded in (running statistics, :func:`fold_batch_norm`)
  and one bias per output channel; ``fc_hidden`` its weight (no bias); ``fc_out`` its weight and
  bias;
* each weight as a signed integer ``q`` in ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` (``b = weight_bits``,
  symmetric, no zero point) and one float step per output channel (``per_channel``, the default)
  or per layer: ``weight = q * step`` (:func:`quantize_symmetric`);
* the biases (and the steps) in float32 in the digital periphery.

On the crossbar (``weight_encoding = "offset"``, as the cost model assumes), a weight is stored as
the unsigned ``u = q + 2^(b-1)`` in ``[1, 2^b - 1]``, split into ``ceil(b / bits_per_cell)``
slices of ``bits_per_cell`` bits on adjacent columns. A read applies one bit plane of the input
(a spike vector) to ``rows_per_read`` rows of a crossbar; each column's partial sum lies in
``[0, rows_per_read * (2^bits_per_cell - 1)]`` and a linear ``adc_bits`` ADC converts it over
exactly that range: level spacing ``range / (2^adc_bits - 1)``, rounding half up; when the range
has at most ``2^adc_bits`` integer values the conversion is exact. The digital periphery shifts
and adds slices, row groups and input bit planes, subtracts the offset ``2^(b-1) * sum(inputs)``
(counted digitally, exactly), multiplies by the step and adds the bias (:func:`adc_linear`).
Rows are the im2col rows in the cost model's order (C_in, kh, kw), cut into crossbars of
``crossbar_size`` rows, each read ``rows_per_read`` rows at a time: the ``im2col`` mapping of the
presets. Chips with ``mapping = "kernel_split"`` or ``analog_kernel_accumulation`` group rows
differently; their ADCs are simulated as if they used ``im2col``.

The stem under direct encoding reads the analog image: under ADC simulation it is quantised to
``input_bits`` bits (``round(x * (2^input_bits - 1))``) and applied bit-serially, one bit plane per
read, as the cost model counts it. Without ADC simulation the stem computes with the float image.

Not simulated: device variation, read noise, stuck cells, IR drop, ADC offset/gain errors, and
membrane state precision (``state_bits``): membranes are float32.

Example:
    >>> w = torch.tensor([[0.5, -0.25, 0.1], [1.0, 0.0, -0.6]])
    >>> q, step = quantize_symmetric(w, 3)
    >>> q
    tensor([[ 3., -2.,  1.],
            [ 3.,  0., -2.]])
    >>> step
    tensor([0.1667, 0.3333])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import torch
from torch import nn
from torch.nn import functional as F

from hasnas_optuna._errors import ConfigError

if TYPE_CHECKING:
    from hasnas_optuna.cim import Hardware

__all__ = [
    "GRANULARITIES", "DeployedLayer", "Precision", "adc_conv2d", "adc_convert", "adc_linear", "deployed_layer",
    "distinct_levels", "fake_quantize", "fold_batch_norm", "quantize_symmetric", "training_weight",
]

Tensor = torch.Tensor
GRANULARITIES = ("per_channel", "per_layer")
"""Where one weight step is shared: one per output channel (column group) or one per layer."""
_CHUNK_ELEMENTS = 1 << 24
"""Partial sums held at once by :func:`adc_linear` (float32: 64 MiB)."""


@dataclass(frozen=True)
class Precision:
    """What a trained network simulates of its chip's precision.

    Args:
        weight_bits: Weight precision; ``None`` trains and evaluates in float32.
        granularity: ``"per_channel"`` or ``"per_layer"`` weight steps.
        adc: Simulate the ADC on partial sums (slow: the layer runs as im2col row groups).
        adc_bits: ADC resolution.
        bits_per_cell: Bits per RRAM cell (weight slices are this wide).
        rows_per_read: Rows read (activated) at once; one partial sum per column per read.
        crossbar_size: Rows (and columns) of a crossbar; row groups never span two crossbars.
        input_bits: Bit planes of the analog input of the stem under direct encoding.
        weight_encoding: The chip's sign encoding; the ADC simulation supports ``"offset"`` only
            (weight quantisation does not depend on it).

    Example:
        >>> from hasnas_optuna.cim import load_hardware
        >>> p = Precision.from_hardware(load_hardware().replace(weight_bits=4), adc=True)
        >>> p.weight_bits, p.slices, p.adc_range, p.adc_step
        (4, 4, 128, 4.129032258064516)
    """

    weight_bits: int | None = 8
    granularity: str = "per_channel"
    adc: bool = False
    adc_bits: int = 5
    bits_per_cell: int = 1
    rows_per_read: int = 128
    crossbar_size: int = 128
    input_bits: int = 8
    weight_encoding: str = "offset"

    def __post_init__(self) -> None:
        if self.weight_bits is not None and (isinstance(self.weight_bits, bool)
                                             or not isinstance(self.weight_bits, int) or self.weight_bits < 2):
            raise ConfigError(f"weight_bits={self.weight_bits!r} cannot be quantised symmetrically; "
                              "use an integer >= 2 (or train in float: quantize = false)")
        if self.granularity not in GRANULARITIES:
            raise ConfigError(f"granularity={self.granularity!r} is not allowed; use one of {', '.join(GRANULARITIES)}")
        if self.adc and self.weight_bits is None:
            raise ConfigError("ADC simulation needs quantised weights (weight_bits is None)")
        if self.adc and self.weight_encoding != "offset":
            raise ConfigError(f"weight_encoding={self.weight_encoding!r}: the ADC simulation supports only 'offset'; "
                              "use adc_aware = false")
        for name in ("adc_bits", "bits_per_cell", "rows_per_read", "crossbar_size", "input_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be an integer >= 1")
        if self.rows_per_read > self.crossbar_size:
            raise ConfigError(f"rows_per_read={self.rows_per_read} exceeds crossbar_size={self.crossbar_size}")

    @classmethod
    def from_hardware(cls, hw: Hardware, *, quantize: bool = True, granularity: str = "per_channel",
                      adc: bool = False) -> Precision:
        """The precision of chip ``hw`` (``quantize=False``: float weights, no ADC)."""
        return cls(weight_bits=hw.weight_bits if quantize else None, granularity=granularity,
                   adc=adc and quantize, adc_bits=hw.adc_bits, bits_per_cell=hw.bits_per_cell,
                   rows_per_read=hw.rows_per_read, crossbar_size=hw.crossbar_size, input_bits=hw.input_bits,
                   weight_encoding=hw.weight_encoding)

    @property
    def levels(self) -> int:
        """Largest ``|q|``: ``2^(weight_bits-1) - 1``."""
        assert self.weight_bits is not None
        return (1 << (self.weight_bits - 1)) - 1

    @property
    def slices(self) -> int:
        """Cells per weight: ``ceil(weight_bits / bits_per_cell)``."""
        assert self.weight_bits is not None
        return -(-self.weight_bits // self.bits_per_cell)

    @property
    def adc_range(self) -> int:
        """Largest partial sum of one read: ``rows_per_read * (2^bits_per_cell - 1)``."""
        return self.rows_per_read * ((1 << self.bits_per_cell) - 1)

    @property
    def adc_step(self) -> float:
        """ADC level spacing in partial-sum units (1.0: lossless)."""
        return max(1.0, self.adc_range / ((1 << self.adc_bits) - 1))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (trial user attributes, export metadata); :meth:`from_dict` reads them back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Precision:
        """The precision of :meth:`to_dict`."""
        return cls(**data)

    def replace(self, **changes: Any) -> Precision:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------
# Weights

def fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Conv weight and per-channel bias with ``bn`` folded in (running statistics), as deployed.

    Differentiable in the conv and batch-norm parameters.

    Example:
        >>> conv, bn = nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2).eval()
        >>> weight, bias = fold_batch_norm(conv, bn)
        >>> x = torch.rand(1, 1, 3, 3)
        >>> torch.allclose(F.conv2d(x, weight, bias), bn(conv(x)), atol=1e-6)
        True
    """
    assert bn.running_var is not None and bn.running_mean is not None
    scale = (bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)) / torch.sqrt(
        bn.running_var + bn.eps)
    shift = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    bias = shift - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return conv.weight * scale.reshape(-1, *([1] * (conv.weight.dim() - 1))), bias


def _steps(weight: Tensor, bits: int, granularity: str) -> Tensor:
    """Step per output channel: the largest ``|weight|`` (of the channel or layer) over ``2^(bits-1) - 1``.

    An all-zero channel gets a tiny step (its integers are 0 whatever the step).
    """
    levels = (1 << (bits - 1)) - 1
    magnitude = weight.detach().abs()
    if granularity == "per_channel":
        peak = magnitude.amax(dim=tuple(range(1, weight.dim())))
    else:
        peak = magnitude.amax().reshape(1).expand(weight.shape[0])
    return peak.clamp_min(1e-30).div_(levels)


def quantize_symmetric(weight: Tensor, bits: int, granularity: str = "per_channel") -> tuple[Tensor, Tensor]:
    """Integers ``q`` (as float) and steps (one per output channel) with ``weight ~ q * step``.

    Symmetric, no zero point: ``|q| <= 2^(bits-1) - 1``, the largest ``|weight|`` (of the channel,
    or of the layer) maps to the largest level; rounding is half away from zero.
    """
    step = _steps(weight, bits, granularity)
    shape = (-1, *([1] * (weight.dim() - 1)))
    levels = (1 << (bits - 1)) - 1
    scaled = weight.detach() / step.reshape(shape)
    q = scaled.abs().add_(0.5).floor_().mul_(scaled.sign_()).clamp_(-levels, levels)
    return q, step


def fake_quantize(weight: Tensor, bits: int, granularity: str = "per_channel") -> Tensor:
    """``q * step`` in the forward pass, identity in the backward pass (straight-through estimator).

    Example:
        >>> w = torch.tensor([[0.3, -1.0, 0.05]], requires_grad=True)
        >>> y = fake_quantize(w, 2)
        >>> y.detach(), y.sum().backward(), w.grad
        (tensor([[ 0., -1.,  0.]]), None, tensor([[1., 1., 1.]]))
    """
    return cast(Tensor, _FakeQuantize.apply(weight, bits, granularity))


class _FakeQuantize(torch.autograd.Function):
    """``q * step`` forward, the incoming gradient unchanged backward: one autograd node per weight."""

    @staticmethod
    def forward(ctx: Any, weight: Tensor, bits: int, granularity: str) -> Tensor:
        q, step = quantize_symmetric(weight, bits, granularity)
        return q.mul_(step.reshape(-1, *([1] * (weight.dim() - 1))))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return grad, None, None


def training_weight(weight: Tensor, precision: Precision, bn: nn.BatchNorm2d | None = None
                    ) -> tuple[Tensor, Tensor]:
    """``(q, multiplier)`` of a weight in training: ``q * multiplier`` is the fake-quantised weight.

    ``q`` holds the integers the chip would store for the weight folded with ``bn``'s running
    statistics, with the straight-through gradient of ``weight``; ``multiplier`` (``[out]``, no
    gradient) maps them back to the unfolded weight, so ``conv(x, q * multiplier)`` feeds the batch
    norm. Per channel, the folded and unfolded weights share their grid (up to the sign of the
    batch-norm scale), so batch norm's statistics do not move it; per layer they do.

    Example:
        >>> w = torch.tensor([[0.3, -1.0, 0.05]], requires_grad=True)
        >>> q, m = training_weight(w, Precision(weight_bits=2))
        >>> q.detach(), m
        (tensor([[ 0., -1.,  0.]]), tensor([1.]))
    """
    assert precision.weight_bits is not None
    bits, shape = precision.weight_bits, (-1, *([1] * (weight.dim() - 1)))
    if bn is None:
        folded, unfold = weight, torch.ones(weight.shape[0], dtype=weight.dtype, device=weight.device)
    else:
        assert bn.running_var is not None
        with torch.no_grad():
            scale = (bn.weight if bn.weight is not None else 1.0) / torch.sqrt(bn.running_var + bn.eps)
            if precision.granularity == "per_channel":
                scale = torch.where(scale < 0, -1.0, 1.0)
            else:
                scale = torch.where(scale.abs() < 1e-12, torch.full_like(scale, 1e-12), scale)
        folded, unfold = weight * scale.reshape(shape), 1.0 / scale
    q, step = quantize_symmetric(folded, bits, precision.granularity)
    scaled = folded / step.reshape(shape)
    return scaled + (q - scaled).detach(), (step * unfold).detach()


class DeployedLayer(NamedTuple):
    """What the chip stores for one crossbar layer: ``weight = q * step``, plus a float bias.

    ``q`` holds integers (as float32, exact) shaped like the torch weight (``[out, in, k, k]`` or
    ``[out, in]``), ``step`` is ``[out]``, ``bias`` ``[out]`` or None (``fc_hidden``).
    """

    q: Tensor
    step: Tensor
    bias: Tensor | None


def deployed_layer(module: nn.Module, precision: Precision) -> DeployedLayer:
    """Fold, then quantise, a conv+BN pair (``nn.Sequential``) or a ``nn.Linear``, as the chip stores it.

    Example:
        >>> layer = nn.Linear(3, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[0.5, -0.25, 0.1], [1.0, 0.0, -0.6]]))
        >>> deployed_layer(layer, Precision(weight_bits=3)).q
        tensor([[ 3., -2.,  1.],
                [ 3.,  0., -2.]])
    """
    assert precision.weight_bits is not None
    with torch.no_grad():
        weight: Tensor
        bias: Tensor | None
        if isinstance(module, nn.Linear):
            weight, bias = module.weight, module.bias
        else:
            conv, bn = module[0], module[1]  # type: ignore[index]
            assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
            weight, bias = fold_batch_norm(conv, bn)
        q, step = quantize_symmetric(weight, precision.weight_bits, precision.granularity)
        return DeployedLayer(q.contiguous(), step, None if bias is None else bias.detach().clone())


# ---------------------------------------------------------------------------------------------
# The ADC

def adc_convert(partial_sums: Tensor, precision: Precision, *, straight_through: bool = False,
                inplace: bool = False) -> Tensor:
    """What a linear ``adc_bits`` ADC reads for partial sums in ``[0, adc_range]`` (same units).

    Levels are ``k * adc_step`` for ``k = 0 .. 2^adc_bits - 1``; values round to the nearest level,
    half up; with ``straight_through`` the gradient passes unchanged; ``inplace`` overwrites
    ``partial_sums`` (evaluation only).

    Example:
        >>> p = Precision(weight_bits=4, adc_bits=2, rows_per_read=6)  # range 0..6, levels 0, 2, 4, 6
        >>> adc_convert(torch.tensor([0.0, 1.0, 2.0, 2.9, 3.0, 5.0, 6.0]), p)
        tensor([0., 2., 2., 2., 4., 6., 6.])
    """
    step = precision.adc_step
    if step == 1.0:
        return partial_sums
    levels = (1 << precision.adc_bits) - 1
    if inplace:
        return partial_sums.div_(step).add_(0.5).floor_().clamp_(0, levels).mul_(step)  # in place: evaluation
    converted = torch.floor(partial_sums / step + 0.5).clamp(0, levels) * step
    if straight_through:
        return partial_sums + (converted - partial_sums).detach()
    return converted


def _row_groups(rows: int, precision: Precision) -> list[tuple[int, int]]:
    """``(first row, rows)`` of each read: crossbars of ``crossbar_size`` rows, each read
    ``rows_per_read`` rows at a time; reads that would hold no weight row are left out (their
    partial sums are 0, which every ADC reads as 0)."""
    size, per_read = precision.crossbar_size, precision.rows_per_read
    groups = []
    for crossbar in range(0, rows, size):
        end = min(crossbar + size, rows)
        for start in range(crossbar, end, per_read):
            groups.append((start, min(per_read, end - start, crossbar + size - start)))
    return groups


def _gather_groups(matrix: Tensor, groups: list[tuple[int, int]], per_read: int) -> Tensor:
    """``[rows, ...]`` -> ``[groups, per_read, ...]``, zero rows where a read is not full."""
    out = matrix.new_zeros((len(groups), per_read, *matrix.shape[1:]))
    for g, (start, count) in enumerate(groups):
        out[g, :count] = matrix[start:start + count]
    return out


def _slice_matrix(q: Tensor, precision: Precision, groups: list[tuple[int, int]]) -> Tensor:
    """``[groups, rows_per_read, out * slices]``: offset-encoded weight slices, zero on padding rows."""
    assert precision.weight_bits is not None
    out = q.shape[0]
    matrix = q.reshape(out, -1).t() + float(1 << (precision.weight_bits - 1))  # [rows, out], in [1, 2^b - 1]
    base = 1 << precision.bits_per_cell
    slices = torch.stack([torch.remainder(torch.floor(matrix / float(base ** s)), base)
                          for s in range(precision.slices)], dim=-1)  # [rows, out, slices]
    return _gather_groups(slices.reshape(matrix.shape[0], -1), groups, precision.rows_per_read)


def adc_linear(columns: Tensor, q: Tensor, precision: Precision, *, analog: bool = False,
               straight_through: bool = False) -> Tensor:
    """``columns @ q^T`` as the crossbar computes it, in integer units (before step and bias).

    ``columns`` is ``[N, rows, L]`` (im2col columns; ``L = 1`` for a linear layer) holding spikes
    (0/1) or, with ``analog``, values in [0, 1] applied as ``input_bits`` bit planes (the result
    is then divided by ``2^input_bits - 1``). ``q`` is the layer's integer weight ``[out, ...]``
    with ``rows`` entries per output. Returns ``[N, out, L]``. With ``straight_through`` the
    gradient is that of the exact product ``columns @ q^T`` (the ADC's error passes as a constant).

    Example:
        >>> q = torch.tensor([[3.0, -1.0, 2.0, 0.0]])  # 3-bit weights: stored u = q + 4 = 7, 3, 6, 4
        >>> x = torch.tensor([[[1.0], [1.0], [1.0], [0.0]]])
        >>> p = Precision(weight_bits=3, adc_bits=1, rows_per_read=2, crossbar_size=4)
        >>> adc_linear(x, q, Precision(weight_bits=3, adc_bits=2, rows_per_read=2, crossbar_size=4)).flatten()
        tensor([4.])
        >>> adc_linear(x, q, p).flatten()  # a 1-bit ADC over 0..2 reads the partial sum 1 as 2
        tensor([14.])
    """
    assert precision.weight_bits is not None
    if straight_through:
        exact = torch.einsum("nrl,or->nol", columns, q.reshape(q.shape[0], -1))
        with torch.no_grad():
            converted = adc_linear(columns.detach(), q.detach(), precision, analog=analog)
        return exact + (converted - exact).detach()
    n, rows, length = columns.shape
    out = q.shape[0]
    groups = _row_groups(rows, precision)
    matrix = _slice_matrix(q, precision, groups)  # [G, R, out*S]
    shifts = torch.tensor([float((1 << precision.bits_per_cell) ** s) for s in range(precision.slices)],
                          dtype=columns.dtype, device=columns.device)
    offset = float(1 << (precision.weight_bits - 1))
    if analog:
        top = (1 << precision.input_bits) - 1
        codes = torch.floor(columns.clamp(0, 1) * top + 0.5)
        planes = [(torch.remainder(torch.floor(codes / float(1 << j)), 2), float(1 << j))
                  for j in range(precision.input_bits)]
    else:
        planes = [(columns, 1.0)]
    chunk = max(1, _CHUNK_ELEMENTS // max(1, len(groups) * out * precision.slices * length))
    results = []
    for start in range(0, n, chunk):
        total: Tensor | None = None
        for plane, weight in planes:
            x = plane[start:start + chunk]
            xg = _gather_groups(x.transpose(0, 1), groups, precision.rows_per_read)  # [G, R, n, L]
            sums = torch.einsum("grnl,grm->nmgl", xg, matrix)  # [n, out*S, G, L]
            sums = adc_convert(sums, precision, inplace=not torch.is_grad_enabled())
            sums = sums.sum(dim=2).reshape(x.shape[0], out, precision.slices, length)
            acc = torch.einsum("nosl,s->nol", sums, shifts) - offset * x.sum(dim=1, keepdim=True)
            total = acc * weight if total is None else total + acc * weight
        assert total is not None
        results.append(total)
    result = torch.cat(results)
    if analog:
        result = result / float((1 << precision.input_bits) - 1)
    return result


def adc_conv2d(x: Tensor, q: Tensor, precision: Precision, *, padding: int, analog: bool = False,
               straight_through: bool = False) -> Tensor:
    """:func:`adc_linear` of a stride-1 conv: ``[N, C, H, W]`` -> ``[N, out, H', W']`` integer units."""
    n, _, h, w = x.shape
    k = q.shape[-1]
    columns = F.unfold(x, k, padding=padding)  # rows in (C_in, kh, kw) order, as the cost model
    out = adc_linear(columns, q, precision, analog=analog, straight_through=straight_through)
    side_h, side_w = h + 2 * padding - k + 1, w + 2 * padding - k + 1
    return out.reshape(n, q.shape[0], side_h, side_w)


def distinct_levels(q: Tensor) -> int:
    """Distinct integer values in a layer (at most ``2^weight_bits - 1`` for symmetric ``q``)."""
    return int(torch.unique(q).numel())

