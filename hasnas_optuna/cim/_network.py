"""What the cost model reads: a network as a flat list of crossbar-mapped layers.

Each conv or linear layer is costed on its own, so a branching cell network is described exactly
like a chain: one entry per weight-carrying layer, with its input size. Pooling after a layer is a
property of that layer (``pool_after``), and so is its measured input spike rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from hasnas_optuna._errors import ConfigError, did_you_mean, parse_json, read_user_file

__all__ = ["ENCODINGS", "Layer", "Network", "load_network"]

LAYER_TYPES = ("conv", "linear")
ENCODINGS = ("direct", "rate", "latency")
"""Input spike encodings. ``direct`` feeds the analog image to the first layer at every step."""


@dataclass(frozen=True, slots=True)
class Layer:
    """One weight-carrying layer as the crossbars see it.

    Example:
        >>> conv = Layer.conv(3, 64, kernel_size=3, input_size=(32, 32), padding=1, pool_after=2)
        >>> conv.output_size, conv.pooled_size, conv.params
        ((32, 32), (16, 16), 1728)
        >>> Layer.linear(16384, 10).params
        163840
    """

    type: str
    in_channels: int
    out_channels: int
    kernel_size: int = 1
    input_size: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: int = 0
    pool_after: int = 1
    spike_rate: float | None = None
    name: str = ""
    bias: bool = False
    _hash: int = field(default=0, init=False, repr=False, compare=False)
    _shape: tuple[Any, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate_layer(self, self.name or "layer")
        shape = (self.type, self.in_channels, self.out_channels, self.kernel_size, self.input_size,
                 self.stride, self.padding, self.pool_after)
        object.__setattr__(self, "_shape", shape)  # what the cost model's counts depend on
        object.__setattr__(self, "_hash", hash((*shape, self.spike_rate, self.name, self.bias)))

    def __hash__(self) -> int:  # cached: layers are cache keys of the cost model
        return self._hash

    @classmethod
    def conv(
        cls,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int,
        input_size: tuple[int, int],
        stride: int = 1,
        padding: int = 0,
        pool_after: int = 1,
        spike_rate: float | None = None,
        name: str = "",
        bias: bool = False,
    ) -> Layer:
        """A 2-D convolution (square kernel) on a ``(height, width)`` input."""
        return cls(
            "conv", in_channels, out_channels, kernel_size, tuple(input_size),  # type: ignore[arg-type]
            stride, padding, pool_after, spike_rate, name, bias,
        )

    @classmethod
    def linear(
        cls, in_features: int, out_features: int, *, spike_rate: float | None = None, name: str = "",
        bias: bool = False,
    ) -> Layer:
        """A fully connected layer."""
        return cls("linear", in_features, out_features, spike_rate=spike_rate, name=name, bias=bias)

    @property
    def output_size(self) -> tuple[int, int]:
        """Output height and width before pooling."""
        k, s, p = self.kernel_size, self.stride, self.padding
        h, w = self.input_size
        return ((h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)

    @property
    def pooled_size(self) -> tuple[int, int]:
        """Output height and width after ``pool_after`` x ``pool_after`` pooling."""
        h, w = self.output_size
        return (h // self.pool_after, w // self.pool_after)

    @property
    def params(self) -> int:
        """Crossbar-mapped weights."""
        return self.kernel_size * self.kernel_size * self.in_channels * self.out_channels

    @property
    def stored_values(self) -> int:
        """Numbers the deployed layer stores: its weights, plus one bias per output channel if
        ``bias`` (a conv with batch norm folded into it, or a linear layer with a bias)."""
        return self.params + (self.out_channels if self.bias else 0)

    @property
    def neurons(self) -> int:
        """Spiking neurons at this layer's output (before pooling)."""
        h, w = self.output_size
        return self.out_channels * h * w

    def to_dict(self) -> dict[str, Any]:
        """The layer in the NETWORK.json layer-list format."""
        if self.type == "linear":
            out: dict[str, Any] = {
                "type": "linear", "in_features": self.in_channels, "out_features": self.out_channels
            }
        else:
            out = {
                "type": "conv", "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": self.kernel_size, "input_size": list(self.input_size),
                "stride": self.stride, "padding": self.padding,
            }
            if self.pool_after != 1:
                out["pool_after"] = self.pool_after
        if self.bias:
            out["bias"] = True
        if self.spike_rate is not None:
            out["spike_rate"] = self.spike_rate
        if self.name:
            out["name"] = self.name
        return out


@dataclass(frozen=True, slots=True)
class Network:
    """A network to cost: its layers, its input encoding and its default number of timesteps.

    With ``encoding="direct"`` the first layer receives the static analog image, which hardware
    with ``reuse_static_input`` computes once and reuses at every timestep.

    Example:
        >>> net = Network.from_dict({"name": "tiny", "timesteps": 4, "layers": [
        ...     {"type": "conv", "in_channels": 1, "out_channels": 8, "kernel_size": 3,
        ...      "input_size": [8, 8], "padding": 1, "pool_after": 2},
        ...     {"type": "linear", "in_features": 128, "out_features": 10}]})
        >>> net.params, len(net.layers), net.timesteps
        (1352, 2, 4)
    """

    layers: tuple[Layer, ...]
    name: str = "network"
    timesteps: int | None = None
    encoding: str = "direct"
    _params: int = field(default=0, init=False, repr=False, compare=False)
    _stored: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ConfigError("network has no layers: give at least one conv or linear layer")
        if self.encoding not in ENCODINGS:
            raise ConfigError(
                f"encoding={self.encoding!r} is not allowed; use one of {', '.join(ENCODINGS)}"
            )
        if self.timesteps is not None:
            _check_int("timesteps", self.timesteps, 1)
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "_params", sum(layer.params for layer in self.layers))
        object.__setattr__(self, "_stored", sum(layer.stored_values for layer in self.layers))

    @property
    def params(self) -> int:
        """Total crossbar-mapped weights."""
        return self._params

    @property
    def memory_params(self) -> int:
        """Numbers the deployed network stores: weights plus per-channel biases (``Layer.bias``)."""
        return self._stored

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Network:
        """Parse the NETWORK.json layer-list format (see ``docs/cost-model.md``)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a network must be a JSON object, got {type(data).__name__}")
        allowed = {"name", "timesteps", "encoding", "layers"}
        _reject_unknown(data, allowed, "network")
        raw_layers = data.get("layers")
        if not isinstance(raw_layers, Sequence) or isinstance(raw_layers, (str, bytes)):
            raise ConfigError("network field 'layers' is missing or not a list of layer objects")
        layers = tuple(_layer_from_dict(raw, f"layers[{i}]") for i, raw in enumerate(raw_layers))
        timesteps = data.get("timesteps")
        if timesteps is not None:
            _check_int("timesteps", timesteps, 1)
        name = data.get("name", "network")
        if not isinstance(name, str):
            raise ConfigError(f"network field 'name' must be a string, got {name!r}")
        return cls(layers, name=name, timesteps=timesteps, encoding=data.get("encoding", "direct"))

    def to_dict(self) -> dict[str, Any]:
        """The network in the NETWORK.json layer-list format; ``from_dict`` reads it back."""
        out: dict[str, Any] = {"name": self.name}
        if self.timesteps is not None:
            out["timesteps"] = self.timesteps
        out["encoding"] = self.encoding
        out["layers"] = [layer.to_dict() for layer in self.layers]
        return out


@overload
def load_network(path: str | Path) -> Network: ...


@overload
def load_network(path: str | Path, *, allow_unknown: bool) -> Network | Any: ...


def load_network(path: str | Path, *, allow_unknown: bool = False) -> Network | Any:
    """Read a NETWORK.json file (the layer-list format), with errors that name the bad field.

    With ``allow_unknown``, a JSON document without ``layers`` is returned as parsed data.

    Example:
        >>> import json, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "net.json")
        >>> with open(path, "w") as f:
        ...     json.dump({"layers": [{"type": "linear", "in_features": 64, "out_features": 10}]}, f)
        >>> load_network(path).params
        640
    """
    data = parse_json(read_user_file(path, "network"), str(path))
    if allow_unknown and not (isinstance(data, Mapping) and "layers" in data):
        return data  # another JSON document (e.g. an architecture) for the caller to interpret
    return Network.from_dict(data)  # type: ignore[arg-type]  # from_dict checks the type itself


_CONV_KEYS = {
    "type", "in_channels", "out_channels", "kernel_size", "input_size", "stride", "padding",
    "pool_after", "spike_rate", "name", "bias",
}
_LINEAR_KEYS = {"type", "in_features", "out_features", "spike_rate", "name", "bias"}


def _layer_from_dict(raw: Any, where: str) -> Layer:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a JSON object, got {raw!r}")
    kind = raw.get("type")
    if kind not in LAYER_TYPES:
        raise ConfigError(
            f"{where}.type={kind!r} is not a known layer type; use one of {', '.join(LAYER_TYPES)}"
        )
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name must be a string, got {name!r}")
    rate = raw.get("spike_rate")
    bias = raw.get("bias", False)
    if not isinstance(bias, bool):
        raise ConfigError(f"{where}.bias={bias!r} must be true or false")
    if kind == "linear":
        _reject_unknown(raw, _LINEAR_KEYS, where)
        for key in ("in_features", "out_features"):
            if key not in raw:
                raise ConfigError(f"{where}.{key} is missing (a linear layer needs it)")
        fields = {"in_channels": raw["in_features"], "out_channels": raw["out_features"]}
        _check_fields(fields, where, names={"in_channels": "in_features", "out_channels": "out_features"})
        return Layer("linear", raw["in_features"], raw["out_features"], spike_rate=rate, name=name or where,
                     bias=bias)
    _reject_unknown(raw, _CONV_KEYS, where)
    for key in ("in_channels", "out_channels", "kernel_size", "input_size"):
        if key not in raw:
            raise ConfigError(f"{where}.{key} is missing (a conv layer needs it)")
    size = raw["input_size"]
    if isinstance(size, int) and not isinstance(size, bool):
        size = [size, size]
    if not (isinstance(size, Sequence) and len(size) == 2):
        raise ConfigError(f"{where}.input_size={size!r} must be [height, width] or one integer")
    return Layer(
        "conv", raw["in_channels"], raw["out_channels"], raw["kernel_size"],
        (size[0], size[1]), raw.get("stride", 1), raw.get("padding", 0),
        raw.get("pool_after", 1), rate, name or where, bias,
    )


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{where} has unknown field {unknown[0]!r}{did_you_mean(unknown[0], allowed)}; allowed fields: "
            f"{', '.join(sorted(allowed))}"
        )


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} must be an integer >= {low}")
    if value < low:
        raise ConfigError(f"{name}={value!r} is out of range; it must be >= {low}")


def _check_fields(values: Mapping[str, Any], where: str, names: Mapping[str, str] | None = None) -> None:
    for key, value in values.items():
        _check_int(f"{where}.{(names or {}).get(key, key)}", value, 1)


def _validate_layer(layer: Layer, where: str) -> None:
    if layer.type not in LAYER_TYPES:
        raise ConfigError(
            f"{where}.type={layer.type!r} is not a known layer type; use one of {', '.join(LAYER_TYPES)}"
        )
    if layer.type == "linear":
        _check_fields(
            {"in_channels": layer.in_channels, "out_channels": layer.out_channels}, where,
            names={"in_channels": "in_features", "out_channels": "out_features"},
        )
        if layer.kernel_size != 1 or layer.input_size != (1, 1) or layer.pool_after != 1:
            raise ConfigError(f"{where}: a linear layer has no kernel, spatial input or pooling")
    else:
        _check_fields(
            {"in_channels": layer.in_channels, "out_channels": layer.out_channels,
             "kernel_size": layer.kernel_size, "stride": layer.stride,
             "pool_after": layer.pool_after}, where,
        )
        for i, side in enumerate(layer.input_size):
            _check_int(f"{where}.input_size[{i}]", side, 1)
        _check_int(f"{where}.padding", layer.padding, 0)
        h, w = layer.input_size
        padded = min(h, w) + 2 * layer.padding
        if layer.kernel_size > padded:
            raise ConfigError(
                f"{where}.kernel_size={layer.kernel_size} is larger than its padded input "
                f"({h}x{w} + 2*{layer.padding} padding); use kernel_size <= {padded}"
            )
        oh, ow = layer.output_size
        if min(oh, ow) < layer.pool_after:
            raise ConfigError(
                f"{where}.pool_after={layer.pool_after} is larger than the layer output "
                f"{oh}x{ow}; use pool_after <= {min(oh, ow)}"
            )
    rate = layer.spike_rate
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0
        or math.isnan(rate)
    ):
        raise ConfigError(f"{where}.spike_rate={rate!r} is out of range; it must be in [0, 1]")
