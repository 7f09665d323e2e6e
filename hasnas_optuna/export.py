"""Take a trained network out of a study: architecture JSON, weights, cost report and a NIR graph.

NIR (the Neuromorphic Intermediate Representation, package ``nir``) is what neuromorphic
toolchains read. ``snntorch.export_nir`` traces plain chains of snntorch modules; it cannot follow
our cells (node values are sums of edges, LIF populations are driven with explicit state, backward
edges feed the next timestep), so :func:`to_nir` writes the graph itself:

* every conv with its batch norm folded in (evaluation mode: running statistics) is a
  ``Conv2d`` with bias; ``fc_hidden`` a ``Linear``, ``fc_out`` an ``Affine``;
* a cell node is not a NIR node: NIR sums a node's inputs, so each reader of a cell node gets
  an edge from every contributor of that node (a ``skip`` edge passes its source's contributors
  on; a contributor counted k times goes through a ``Scale`` of k);
* each LIF population is a ``LIF`` node, the read-out a ``LI`` (leaky integrator) node, the 2x2
  and 3x3 average pools ``AvgPool2d`` nodes (``count_include_pad``, as torch), the flatten a
  ``Flatten`` node;
* a backward edge ends in a ``Delay`` of one step (``dt``), so it feeds the next timestep.

Time is discrete, one step per ``dt`` (graph metadata ``dt``, 1e-4 s as snntorch uses), with
snntorch's mapping of ``Leaky``: ``tau = dt / (1 - beta)``, ``r = tau / dt``, ``v_leak = 0``, so
``v[t] = beta * v[t-1] + x[t]``. Our neurons reset by **subtraction**
(``v[t] -= threshold * s[t-1]``), which NIR's ``LIF`` (reset to ``v_reset``) cannot say: every
LIF node carries ``metadata["reset_mechanism"] = "subtract"``, and a backend that resets to zero
will differ slightly. The logits are the mean over the timesteps of the ``Output`` (the read-out
membrane); the graph metadata says so, and holds the encoding and the architecture JSON.

:func:`run_nir` is a small reference simulator of exactly these semantics; the tests check that it
reproduces the torch network's outputs from the graph read back with ``nir.read``.

Example:
    >>> import torch
    >>> from hasnas_optuna.architecture import Architecture, Cell
    >>> from hasnas_optuna.network import build_network, release_neurons
    >>> cell = Cell.from_matrix("0302 0030 3003 0000")
    >>> arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=4)
    >>> net = build_network(arch).eval()
    >>> graph = to_nir(net)
    >>> sorted({type(node).__name__ for node in graph.nodes.values()})
    ['Affine', 'AvgPool2d', 'Conv2d', 'Delay', 'Flatten', 'Input', 'LI', 'LIF', 'Output']
    >>> images = torch.rand(3, 1, 8, 8)
    >>> torch.allclose(run_nir(graph, images, timesteps=4).mean(0), net(images), atol=1e-5)
    True
    >>> release_neurons(net)  # drop its neurons from snntorch's global registry
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial
from torch import nn
from torch.nn import functional as F

from hasnas_optuna._errors import ConfigError
from hasnas_optuna.architecture import EDGES, Architecture
from hasnas_optuna.artifacts import COST_JSON, WEIGHTS, download_trial_artifact, find_artifact
from hasnas_optuna.quantization import DeployedLayer, Precision, fold_batch_norm

if TYPE_CHECKING:
    import nir
    from optuna.artifacts._protocol import ArtifactStore

    from hasnas_optuna.network import SpikingNetwork

__all__ = [
    "DT", "QUANTIZED", "choose_trial", "export_trial", "load_quantized_network", "load_trained_network",
    "quantized_arrays", "run_nir", "save_quantized", "to_nir", "trial_cost_report",
]

_LOG = optuna.logging.get_logger("hasnas_optuna.export")
DT = 1e-4
"""Seconds per timestep in the exported graph (snntorch's NIR convention)."""
QUANTIZED = "quantized.npz"
"""What ``hasnas export`` writes for a quantised network: the integers the chip stores."""


# ---------------------------------------------------------------------------------------------
# torch -> NIR

def _module(net: nn.Module, layer: str) -> nn.Module:
    """The module of a cost-model layer name (``cell_a.e0.conv3x3`` is kept as ``cell_a__e0__conv3x3``)."""
    key = layer.replace(".", "__")
    for path, module in net.named_modules():
        if path == key or path.endswith("." + key):
            return module
    raise KeyError(f"network has no module for layer {layer!r}")


def _fold(conv_bn: nn.Module) -> tuple[np.ndarray, np.ndarray, int]:
    """Conv weight and bias with the following batch norm folded in (:func:`fold_batch_norm`); and the padding."""
    conv, bn = conv_bn[0], conv_bn[1]  # type: ignore[index]
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
    with torch.no_grad():
        weight, bias = fold_batch_norm(conv, bn)
    padding = conv.padding[0] if isinstance(conv.padding, tuple) else 0
    return weight.cpu().numpy(), bias.cpu().numpy(), int(padding)


def _neuron_params(neuron: Any, shape: tuple[int, ...], dt: float) -> dict[str, np.ndarray]:
    beta = float(neuron.beta.clamp(0, 1))
    with np.errstate(divide="ignore"):
        tau = dt / (1.0 - beta) if beta < 1 else math.inf
    return {"tau": np.full(shape, tau), "r": np.full(shape, tau / dt), "v_leak": np.zeros(shape)}


def to_nir(net: SpikingNetwork, *, dt: float = DT) -> nir.NIRGraph:
    """The NIR graph of ``net`` in evaluation mode (see the module docstring for the semantics).

    Arrays keep the weights' dtype (float32 for a network as trained).
    """
    import nir

    arch = net.arch
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    precision = net.precision
    quantized = precision is not None and precision.weight_bits is not None

    def add(name: str, node: Any, sources: Sequence[str]) -> str:
        nodes[name] = node
        for source, count in Counter(sources).items():
            if count == 1:
                edges.append((source, name))
                continue
            scaled = f"{source}.times{count}"
            if scaled not in nodes:
                shape = tuple(int(v) for v in next(iter(_shape_of[source])))
                nodes[scaled] = nir.Scale(scale=np.full(shape, float(count)))
                edges.append((source, scaled))
                _shape_of[scaled] = [shape]
            edges.append((scaled, name))
        return name

    _shape_of: dict[str, list[tuple[int, ...]]] = {}

    deployed = net.deployed_layers() if quantized else {}

    def stored(name: str) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        layer = deployed[name]
        weight = (layer.q * layer.step.reshape(-1, *([1] * (layer.q.dim() - 1)))).cpu().numpy()
        bias = None if layer.bias is None else layer.bias.cpu().numpy()
        return weight, bias, {"weight_bits": precision.weight_bits if precision else None,
                              "step": layer.step.cpu().numpy().tolist()}

    def conv(name: str, module: nn.Module, size: tuple[int, int], sources: Sequence[str]) -> str:
        weight, bias, padding = _fold(module)
        meta: dict[str, Any] = {}
        if quantized:
            weight, stored_bias, meta = stored(name)
            assert stored_bias is not None
            bias = stored_bias
        _shape_of[name] = [(weight.shape[0], *size)]
        return add(name, nir.Conv2d(input_shape=size, weight=weight, stride=1, padding=padding, dilation=1,
                                    groups=1, bias=bias, metadata=meta), sources)

    def lif(name: str, module: nn.Module, shape: tuple[int, ...], sources: Sequence[str]) -> str:
        neuron: Any = module.neuron  # our LIF wraps an snntorch Leaky
        threshold = float(neuron.threshold)
        _shape_of[name] = [shape]
        return add(name, nir.LIF(**_neuron_params(neuron, shape, dt), v_threshold=np.full(shape, threshold),
                                 v_reset=np.zeros(shape), metadata={"reset_mechanism": "subtract"}), sources)

    def pool(name: str, kernel: int, stride: int, padding: int, shape: tuple[int, ...], sources: Sequence[str]) -> str:
        _shape_of[name] = [shape]
        return add(name, nir.AvgPool2d(kernel_size=np.array([kernel, kernel]), stride=np.array([stride, stride]),
                                       padding=np.array([padding, padding]), metadata={"count_include_pad": True}),
                   sources)

    def cell(prefix: str, cell_module: nn.Module, x0: list[str], shape: tuple[int, int, int]) -> list[str]:
        cell_value = getattr(arch, prefix)
        size = shape[1:]
        delayed: dict[int, list[str]] = {}
        for src, dst, op in cell_value.backward:
            delayed.setdefault(dst, []).append(f"{prefix}.b{src}to{dst}.{op}.delay")
        values: dict[int, list[str]] = {0: x0 + delayed.get(0, [])}
        lifs: dict[int, str] = {}

        def spikes(node: int) -> str:
            if node not in lifs:
                populations: Any = cell_module.lifs
                lifs[node] = lif(f"{prefix}.n{node}.lif", populations[str(node)], shape, values[node])
            return lifs[node]

        def edge(op: str, layer: str, src: int) -> list[str]:
            if op == "skip":
                return list(values[src])
            if op == "avgpool3x3":
                return [pool(layer, 3, 1, 1, shape, values[src])]
            return [conv(layer, _module(net, layer), size, [spikes(src)])]

        for node in (1, 2, 3):
            parts = list(delayed.get(node, []))
            for k, ((src, dst), op) in enumerate(zip(EDGES, cell_value.edges, strict=True)):
                if dst == node and op != "zero" and src in values:
                    parts += edge(op, f"{prefix}.e{k}.{op}", src)
            if parts:
                values[node] = parts
        for src, dst, op in cell_value.backward:
            layer = f"{prefix}.b{src}to{dst}.{op}"
            name = f"{layer}.delay"
            _shape_of[name] = [shape]
            add(name, nir.Delay(delay=np.full(shape, dt)), edge(op, layer, src))
        return values[3]

    c, h, w = arch.input_shape
    width = arch.channels
    _shape_of["input"] = [(c, h, w)]
    add("input", nir.Input(input_type={"input": np.array([c, h, w])}), [])
    stem = conv("stem", net.stem, (h, w), ["input"])
    a_out = cell("cell_a", net.cell_a, [stem], (width, h, w))
    reduce_lif = lif("reduce.lif", net.reduce_lif, (width, h, w), a_out)
    reduce = conv("reduce", net.reduce[0], (h, w), [reduce_lif])
    half = (2 * width, h // 2, w // 2)
    x0_b = pool("reduce.pool", 2, 2, 0, half, [reduce])
    b_out = cell("cell_b", net.cell_b, [x0_b], half)
    quarter = (2 * width, h // 4, w // 4)
    head = pool("head.pool", 2, 2, 0, quarter, b_out)
    head_lif = lif("head.lif", net.head_lif, quarter, [head])
    flat = int(np.prod(quarter))
    last = add("flatten", nir.Flatten(input_type={"input": np.array(quarter)}, start_dim=0, end_dim=-1), [head_lif])
    _shape_of["flatten"] = [(flat,)]
    if net.fc_hidden is not None and net.hidden_lif is not None:
        weight = net.fc_hidden.weight.detach().cpu().numpy()
        meta: dict[str, Any] = {}
        if quantized:
            weight, _, meta = stored("fc_hidden")
        _shape_of["fc_hidden"] = [(weight.shape[0],)]
        hidden = add("fc_hidden", nir.Linear(weight=weight, metadata=meta), [last])
        last = lif("fc_hidden.lif", net.hidden_lif, (weight.shape[0],), [hidden])
    fc_out = net.fc_out
    out_weight, out_bias = fc_out.weight.detach().cpu().numpy(), fc_out.bias.detach().cpu().numpy()
    out_meta: dict[str, Any] = {}
    if quantized:
        out_weight, stored_out_bias, out_meta = stored("fc_out")
        assert stored_out_bias is not None
        out_bias = stored_out_bias
    out = add("fc_out", nir.Affine(weight=out_weight, bias=out_bias, metadata=out_meta), [last])
    classes = (arch.num_classes,)
    readout = add("readout", nir.LI(**_neuron_params(net.readout, classes, dt)), [out])
    add("output", nir.Output(output_type={"output": np.array(classes)}), [readout])
    encoding = {
        "direct": "the image, unchanged, at every timestep",
        "rate": "snntorch.spikegen.rate(image, num_steps=timesteps): Bernoulli spikes",
        "latency": "snntorch.spikegen.latency(image, num_steps=timesteps, normalize=True, linear=True)",
    }[arch.encoding]
    metadata = {
        "producer": "hasnas-optuna",
        "architecture": arch.to_json(),
        "timesteps": arch.timesteps,
        "dt": dt,
        "encoding": arch.encoding,
        "input": f"per timestep: {encoding}",
        "readout": "logits = mean over the timesteps of the output (the read-out membrane)",
        "time": "discrete, one step per dt; a node sums its inputs; Delay nodes hold one step",
        "precision": (precision.replace(adc=False).to_dict() if quantized and precision is not None
                      else "float32 weights"),
        "weights": ("each crossbar layer's weight is q * step, q the integers the chip stores "
                    "(quantized.npz of hasnas export), step in the node's metadata" if quantized
                    else "float32, batch norm folded"),
        "neurons": "LIF: v[t] = beta*v[t-1] + x[t] - threshold*s[t-1], s[t] = v[t] > threshold, with "
                   "beta = 1 - dt/tau and r = tau/dt (reset_mechanism 'subtract'); LI: the same without "
                   "spikes or reset",
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


# ---------------------------------------------------------------------------------------------
# A reference simulator

def _order(graph: nir.NIRGraph) -> list[str]:
    """Nodes in evaluation order within a step: edges out of Delay nodes do not count."""
    import nir

    incoming: dict[str, set[str]] = {name: set() for name in graph.nodes}
    for src, dst in graph.edges:
        if not isinstance(graph.nodes[src], nir.Delay):
            incoming[dst].add(src)
    order: list[str] = []
    done: set[str] = set()
    pending = list(graph.nodes)
    while pending:
        ready = [n for n in pending if incoming[n] <= done]
        if not ready:
            raise ConfigError(f"NIR graph has a cycle without a Delay node through {sorted(pending)[:3]}; "
                              "run_nir needs every loop to pass a Delay")
        for name in ready:
            order.append(name)
            done.add(name)
        pending = [n for n in pending if n not in done]
    return order


def run_nir(graph: nir.NIRGraph, inputs: torch.Tensor, *, timesteps: int | None = None) -> torch.Tensor:
    """Simulate ``graph`` step by step (the semantics of :func:`to_nir`); returns ``[T, B, ...]`` outputs.

    ``inputs`` is ``[T, B, ...]`` (one input per step) or ``[B, ...]``, presented at every one of
    ``timesteps`` steps (default: the graph's ``timesteps`` metadata). Supports Input, Output,
    Conv2d, Linear, Affine, AvgPool2d, SumPool2d, Flatten, Scale, Delay (one step), LIF and LI.
    """
    import nir

    dt = float(graph.metadata.get("dt", DT))
    input_shape = tuple(int(v) for v in next(iter(graph.input_type.values())))
    if inputs.dim() == len(input_shape) + 1:  # [B, ...]: the same input at every step
        steps = timesteps if timesteps is not None else int(graph.metadata.get("timesteps", 1))
        per_step = [inputs] * steps
    else:
        per_step = list(inputs)
    dtype, device = inputs.dtype, inputs.device
    order = _order(graph)
    sources: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        sources[dst].append(src)

    def tensor(array: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=dtype, device=device)

    params: dict[str, dict[str, torch.Tensor]] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, (nir.LIF, nir.LI)):
            tau = tensor(node.tau)
            finite = torch.isfinite(tau)
            beta = torch.where(finite, 1 - dt / tau, torch.ones_like(tau))
            gain = torch.where(finite, tensor(node.r) * dt / tau, torch.ones_like(tau))
            params[name] = {"beta": beta, "gain": gain, "v_leak": tensor(node.v_leak)}
            if isinstance(node, nir.LIF):
                params[name]["threshold"] = tensor(node.v_threshold)
                params[name]["v_reset"] = tensor(node.v_reset if node.v_reset is not None else np.zeros(1))

    state: dict[str, torch.Tensor] = {}
    delayed: dict[str, torch.Tensor] = {}
    outputs: list[torch.Tensor] = []
    for x in per_step:
        values: dict[str, torch.Tensor] = {}
        for name, node in graph.nodes.items():  # what the Delay nodes hold from the last step
            if isinstance(node, nir.Delay):
                zeros = torch.zeros((x.shape[0], *np.asarray(node.delay).shape), dtype=dtype, device=device)
                values[name] = delayed.get(name, zeros)
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Delay):
                continue
            if isinstance(node, nir.Input):
                values[name] = x
                continue
            parts = [values[s] for s in sources[name]]
            total = parts[0]
            for part in parts[1:]:
                total = total + part
            values[name] = _apply(name, node, total, params, state, tensor)
        for name, node in graph.nodes.items():
            if isinstance(node, nir.Delay):
                parts = [values[s] for s in sources[name]]
                if parts:
                    delayed[name] = torch.stack(parts).sum(0)
        outputs.append(torch.cat([values[name] for name, node in graph.nodes.items() if isinstance(node, nir.Output)],
                                 dim=-1))
    return torch.stack(outputs)


def _apply(name: str, node: Any, x: torch.Tensor, params: Mapping[str, Mapping[str, torch.Tensor]],
           state: dict[str, torch.Tensor], tensor: Any) -> torch.Tensor:
    import nir

    if isinstance(node, nir.Output):
        return x
    if isinstance(node, nir.Conv2d):
        return F.conv2d(x, tensor(node.weight), tensor(node.bias), stride=_pair(node.stride),
                        padding=_pair(node.padding), dilation=_pair(node.dilation), groups=int(node.groups))
    if isinstance(node, nir.Affine):
        return F.linear(x, tensor(node.weight), tensor(node.bias))
    if isinstance(node, nir.Linear):
        return F.linear(x, tensor(node.weight))
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        kernel, stride, padding = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
        include = bool(node.metadata.get("count_include_pad", True))
        out = F.avg_pool2d(x, kernel, stride, padding, count_include_pad=include)
        return out * (kernel[0] * kernel[1]) if isinstance(node, nir.SumPool2d) else out
    if isinstance(node, nir.Flatten):
        end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
        return x.flatten(node.start_dim + 1, end)
    if isinstance(node, nir.Scale):
        return x * tensor(node.scale)
    if isinstance(node, (nir.LIF, nir.LI)):
        p = params[name]
        v_old = state.get(name, torch.zeros_like(x))
        v = p["beta"] * v_old + (1 - p["beta"]) * p["v_leak"] + p["gain"] * x
        if isinstance(node, nir.LI):
            state[name] = v
            return v
        threshold = p["threshold"]
        if str(node.metadata.get("reset_mechanism", "zero")) == "subtract":
            v = v - threshold * (v_old > threshold).to(v.dtype)  # snntorch Leaky: reset from the last step
            state[name] = v
            return (v > threshold).to(v.dtype)
        spikes = (v > threshold).to(v.dtype)
        state[name] = torch.where(spikes > 0, p["v_reset"].expand_as(v), v)
        return spikes
    raise ConfigError(f"run_nir cannot simulate node {name!r} of type {type(node).__name__}")


def _pair(value: Any) -> tuple[int, int]:
    flat = np.atleast_1d(np.asarray(value)).astype(int).tolist()
    return (flat[0], flat[0]) if len(flat) == 1 else (flat[0], flat[1])


# ---------------------------------------------------------------------------------------------
# From a study

def load_trained_network(architecture: Architecture | Mapping[str, Any] | str | Path,
                         weights: str | Path) -> SpikingNetwork:
    """Rebuild a network and load its weights (``torch.load(weights_only=True)``); evaluation mode.

    ``architecture`` is an :class:`Architecture`, its dict, or the path of its JSON file. Call
    :func:`hasnas_optuna.network.release_neurons` on it when done (snntorch keeps every neuron).

    Example:
        >>> import tempfile
        >>> from hasnas_optuna.architecture import Cell
        >>> from hasnas_optuna.network import build_network, release_neurons
        >>> cell = Cell.from_matrix("0302 0030 3003 0000")
        >>> arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=4)
        >>> trained, images = build_network(arch).eval(), torch.rand(2, 1, 8, 8)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     torch.save(trained.state_dict(), f"{tmp}/weights.pt")
        ...     again = load_trained_network(arch.to_dict(), f"{tmp}/weights.pt")
        >>> torch.equal(again(images), trained(images))
        True
        >>> release_neurons(trained), release_neurons(again)
        (None, None)
    """
    from hasnas_optuna._errors import read_user_file
    from hasnas_optuna.network import build_network

    if isinstance(architecture, (str, Path)):
        arch = Architecture.from_json(read_user_file(architecture, "architecture"))
    elif isinstance(architecture, Architecture):
        arch = architecture
    else:
        arch = Architecture.from_dict(architecture)
    net = build_network(arch)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"weights file {str(weights)!r} does not exist") from None
    except Exception as exc:
        raise ConfigError(f"cannot read weights file {str(weights)!r}: {type(exc).__name__}: {exc}") from None
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"weights {str(weights)!r} do not fit the architecture: "
                          f"{str(exc).splitlines()[0]}") from None
    return net.eval()


# ---------------------------------------------------------------------------------------------
# What the chip stores

def quantized_arrays(net: SpikingNetwork) -> dict[str, np.ndarray]:
    """The integers, steps and biases the chip stores, per crossbar layer, as named arrays.

    Per layer ``<name>.q`` (int8 up to 8 bits, else int16; ``[out, in, k, k]`` or ``[out, in]``,
    ``weight = q * step``), ``<name>.step`` (float32, ``[out]``) and ``<name>.bias`` (float32,
    ``[out]``; absent for ``fc_hidden``); ``precision`` holds :meth:`Precision.to_dict` as JSON and
    ``stored_numbers`` the count of stored weights and biases (what the cost model's
    ``memory_params`` counts: the steps, one per output channel, are not in it).

    Example:
        >>> from hasnas_optuna.architecture import Cell
        >>> from hasnas_optuna.network import build_network, release_neurons
        >>> cell = Cell.from_matrix("0302 0030 0003 0000")
        >>> arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=4)
        >>> net = build_network(arch).set_precision(Precision(weight_bits=3)).eval()
        >>> arrays = quantized_arrays(net)
        >>> arrays["stem.q"].dtype, int(abs(arrays["stem.q"]).max()) <= 3, arrays["stem.bias"].shape
        (dtype('int8'), True, (4,))
        >>> release_neurons(net)
    """
    precision = net.precision
    if precision is None or precision.weight_bits is None:
        raise ConfigError("the network is not quantised (no weight_bits): there are no integers to export")
    dtype = np.int8 if precision.weight_bits <= 8 else np.int16
    arrays: dict[str, np.ndarray] = {}
    stored = 0
    for name, layer in net.deployed_layers().items():
        arrays[f"{name}.q"] = layer.q.cpu().numpy().astype(dtype)
        arrays[f"{name}.step"] = layer.step.cpu().numpy().astype(np.float32)
        stored += layer.q.numel()
        if layer.bias is not None:
            arrays[f"{name}.bias"] = layer.bias.cpu().numpy().astype(np.float32)
            stored += layer.bias.numel()
    arrays["precision"] = np.array(json.dumps(precision.replace(adc=False).to_dict()))
    arrays["stored_numbers"] = np.array(stored, dtype=np.int64)
    return arrays


def save_quantized(net: SpikingNetwork, path: str | Path) -> Path:
    """Write :func:`quantized_arrays` to ``path`` (``numpy.savez``); returns the path."""
    path = Path(path)
    with path.open("wb") as handle:
        np.savez(handle, **quantized_arrays(net))  # type: ignore[arg-type]
    return path


def load_quantized_network(architecture: Architecture | Mapping[str, Any] | str | Path, weights: str | Path,
                           quantized: str | Path) -> SpikingNetwork:
    """A network that evaluates with the stored integers of ``quantized`` (:func:`save_quantized`).

    ``weights`` (the trained state dict) supplies what the integers do not: the neurons. In
    evaluation mode every crossbar layer computes ``conv(x, q) * step + bias`` from the file, so
    its outputs are those of the trained network evaluated at its precision, bit for bit.
    """
    net = load_trained_network(architecture, weights)
    try:
        with np.load(Path(quantized), allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise ConfigError(f"quantized weights file {str(quantized)!r} does not exist") from None
    except Exception as exc:
        raise ConfigError(f"cannot read quantized weights {str(quantized)!r}: {type(exc).__name__}: {exc}") from None
    net.set_precision(Precision.from_dict(json.loads(str(arrays["precision"]))))
    for name, module in net.crossbar_layers().items():
        if f"{name}.q" not in arrays:
            raise ConfigError(f"quantized weights {str(quantized)!r} have no layer {name!r}")
        bias = arrays.get(f"{name}.bias")
        module.deployed = DeployedLayer(
            torch.from_numpy(arrays[f"{name}.q"].astype(np.float32)),
            torch.from_numpy(arrays[f"{name}.step"]),
            None if bias is None else torch.from_numpy(bias),
        )
    return net.eval()


def choose_trial(study: optuna.Study, number: int | None = None) -> FrozenTrial:
    """Trial ``number``, or the best feasible trained one; :class:`ConfigError` when there is none.

    Example:
        >>> study = optuna.create_study()
        >>> choose_trial(study, 3)
        Traceback (most recent call last):
        ...
        hasnas_optuna._errors.ConfigError: trial 3 is out of range: the study has no trials
    """
    from hasnas_optuna.results import best_feasible_trials

    trials = study.get_trials(deepcopy=False)
    if number is not None:
        if not 0 <= number < len(trials):
            span = f"trials 0..{len(trials) - 1}" if trials else "no trials"
            raise ConfigError(f"trial {number} is out of range: the study has {span}")
        return trials[number]
    best = best_feasible_trials(study)
    if not best:
        raise ConfigError(f"study {study.study_name!r} has no feasible trained trial yet; choose one with --trial N")
    return best[0]


def trial_cost_report(study: optuna.Study, trial: FrozenTrial, *, artifact_store: ArtifactStore | None = None
                      ) -> dict[str, Any]:
    """The trial's cost report as ``CostReport.to_dict()``: its ``cost_report.json`` artifact if
    ``artifact_store`` holds one, else recomputed on the study's chip (``hasnas/hardware``, with the
    trial's ``hw/*`` knobs) at the trial's measured spike rates; a recomputed one says so in ``source``.

    Example:
        >>> from optuna.trial import create_trial
        >>> arch = {"input_shape": [1, 8, 8], "num_classes": 10, "cell_a": "0302 0030 3003 0000",
        ...         "cell_b": "0302 0030 3003 0000", "channels": 4}
        >>> study = optuna.create_study()
        >>> study.add_trial(create_trial(value=0.9, user_attrs={"architecture": arch}))
        >>> report = trial_cost_report(study, study.trials[0])
        >>> report["layers"][0]["name"], report["source"].startswith("recomputed on neurosim-22nm")
        ('stem', True)
    """
    import tempfile

    from hasnas_optuna.cim import estimate_cost, load_hardware
    from hasnas_optuna.dashboard import HARDWARE_ATTR
    from hasnas_optuna.search_space import chip_with_knobs

    if artifact_store is not None and find_artifact(study, trial, COST_JSON) is not None:
        with tempfile.TemporaryDirectory(prefix="hasnas-cost-") as tmp:
            path = download_trial_artifact(study, trial, COST_JSON, artifact_store=artifact_store,
                                           dest=Path(tmp) / COST_JSON)
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return data
    arch = Architecture.from_dict(trial.user_attrs["architecture"])
    stored = study.user_attrs.get(HARDWARE_ATTR) or {}
    chip = load_hardware(stored.get("preset", "neurosim-22nm"), **(stored.get("overrides") or {}))
    knobs = {key[3:]: value for key, value in trial.params.items() if key.startswith("hw/")}
    if knobs:
        chip = chip_with_knobs(chip, knobs)  # as the search built it (rows_per_read follows the crossbar)
    network = arch.to_network()
    rates = trial.user_attrs.get("spike_rates") or {}
    report = estimate_cost(network, chip, spike_rates=[rates.get(layer.name) for layer in network.layers])
    out = report.to_dict()
    out["source"] = (f"recomputed on {chip.name}"
                     + (" at the trial's measured spike rates" if rates else " at the chip's prior spike rates")
                     + ("" if stored else " (the study records no chip: the default preset is assumed)"))
    return out


def export_trial(study: optuna.Study, out: str | Path, *, artifact_store: ArtifactStore,
                 trial_number: int | None = None, nir_graph: bool = True) -> dict[str, Path]:
    """Write a trained trial's network to ``out``; returns ``{what: path}``.

    Files: ``architecture.json``, ``weights.pt`` (from the trial's artifacts), ``cost_report.json``
    (the trial's artifact, else recomputed), ``network.nir`` (:func:`to_nir`, HDF5 via
    ``nir.write``; skipped with a warning when ``nir`` is not installed), ``trial.json``
    (number, objective values, accuracies, costs, constraints, precision) and, for a network
    trained at its chip's precision (user attribute ``precision``), ``quantized.npz``
    (:func:`save_quantized`: the integers, steps and biases the chip stores; the NIR graph then
    holds ``q * step``). The precision must agree with the trial's ``hw/*`` knobs.

    Example:
        >>> import tempfile
        >>> from hasnas_optuna.artifacts import open_artifact_store, save_trial_artifacts
        >>> from hasnas_optuna.network import build_network, release_neurons
        >>> arch = Architecture.from_dict({"input_shape": [1, 8, 8], "num_classes": 10, "channels": 4,
        ...                                "cell_a": "0302 0030 3003 0000", "cell_b": "0302 0030 3003 0000"})
        >>> net = build_network(arch)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     store = open_artifact_store(f"{tmp}/artifacts")
        ...     study = optuna.create_study(direction="maximize")
        ...     trial = study.ask()
        ...     trial.set_user_attr("trained", True)
        ...     trial.set_user_attr("architecture", arch.to_dict())
        ...     _ = save_trial_artifacts(trial, artifact_store=store, architecture=arch, state_dict=net.state_dict())
        ...     _ = study.tell(trial, 0.5)
        ...     sorted(export_trial(study, f"{tmp}/out", artifact_store=store, trial_number=0))
        ['architecture', 'cost_report', 'nir', 'trial', 'weights']
        >>> release_neurons(net)
    """
    from hasnas_optuna.network import release_neurons

    trial = choose_trial(study, trial_number)
    attrs = trial.user_attrs
    if not attrs.get("trained"):
        why = attrs.get("status") or trial.state.name.lower()
        raise ConfigError(f"trial {trial.number} was never trained ({why}); it has no weights to export")
    if "architecture" not in attrs:
        raise ConfigError(f"trial {trial.number} has no 'architecture' user attribute; is this a hasnas study?")
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".hasnas-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to output folder {str(folder)!r}: {exc.strerror or exc}") from None
    arch = Architecture.from_dict(attrs["architecture"])
    written: dict[str, Path] = {}
    weights = download_trial_artifact(study, trial, WEIGHTS, artifact_store=artifact_store, dest=folder / WEIGHTS)
    written["weights"] = weights
    written["architecture"] = folder / "architecture.json"
    written["architecture"].write_text(arch.to_json(indent=2) + "\n", encoding="utf-8")
    written["cost_report"] = folder / COST_JSON
    report = trial_cost_report(study, trial, artifact_store=artifact_store)
    written["cost_report"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    summary = {
        "study": study.study_name, "trial": trial.number, "state": trial.state.name,
        "values": trial.values, "metric_names": study.metric_names,
        "val_accuracy": attrs.get("val_accuracy"), "test_accuracy": attrs.get("test_accuracy"),
        "costs": {key: value for key, value in attrs.items() if key.startswith("cost/")},
        "constraints": trial.constraints, "summary": attrs.get("summary"),
        "precision": attrs.get("precision"),
        "ideal_adc_val_accuracy": attrs.get("ideal_adc_val_accuracy"),
        "ideal_adc_test_accuracy": attrs.get("ideal_adc_test_accuracy"),
    }
    written["trial"] = folder / "trial.json"
    written["trial"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    net = load_trained_network(arch, weights)
    precision = attrs.get("precision")
    if isinstance(precision, Mapping) and precision.get("weight_bits"):
        for knob in ("weight_bits", "bits_per_cell", "adc_bits", "crossbar_size"):
            if f"hw/{knob}" in trial.params and trial.params[f"hw/{knob}"] != precision.get(knob):
                raise ConfigError(f"trial {trial.number}: trained with {knob}={precision.get(knob)} but its chip "
                                  f"has hw/{knob}={trial.params[f'hw/{knob}']}")
        net.set_precision(Precision.from_dict(precision))
        written["quantized"] = save_quantized(net, folder / QUANTIZED)
    try:
        if nir_graph:
            try:
                import nir
            except ImportError:
                _LOG.warning("the NIR graph needs the 'nir' package: pip install 'hasnas-optuna[nir]'")
            else:
                written["nir"] = folder / "network.nir"
                nir.write(str(written["nir"]), to_nir(net))
    finally:
        release_neurons(net)
    return written
