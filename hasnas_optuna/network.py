"""The torch module of an :class:`~hasnas_optuna.architecture.Architecture`: snntorch LIF neurons.

Execution is multi-step: a tensor carries all timesteps as ``[T, B, ...]``; stateless layers
(conv, batch norm, pooling, linear) run once on the timesteps folded into the batch, and only the
LIF recurrence loops over time. A static direct-encoded input makes the stem run once. A cell
with backward (temporal feedback) edges needs the previous step's values, so it runs step by step.

Every crossbar-mapped layer of :meth:`Architecture.to_network` is one ``nn.Conv2d``/``nn.Linear``
here under the same name (dots become ``__``), and each reads spikes, except the stem under direct
encoding, which reads the analog image. Where spikes come from:

* a cell node with outgoing conv edges has one LIF population; its conv edges read its spikes,
  while ``skip`` and ``avgpool3x3`` edges carry the node's analog value (SNASNet);
* ``reduce`` reads the LIF spikes of Cell A's output; the classifier reads the LIF spikes of the
  2x2-pooled output of Cell B (``fc_out`` those of ``fc_hidden`` when there is one);
* the output is a non-spiking leaky integrator of ``fc_out``; logits are its mean over time.

Each LIF population holds an ``snntorch.Leaky`` (its parameters, its surrogate, the step-by-step
path); in multi-step execution its recurrence over all T steps is one autograd node with the
backward pass written out (:class:`_LIFSteps`), equal to snntorch's within float rounding.
Feature maps are ``channels_last``. Building a network makes glibc keep freed memory in the
process (:func:`hasnas_optuna.keep_freed_memory`): multi-step tensors are T times larger than a
per-step loop's, and would otherwise be page-faulted in anew at every training step.
:func:`release_neurons` removes a network's neurons from snntorch's global registry (snn.md
section 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import snntorch
import torch
from snntorch import spikegen, surrogate
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from hasnas_optuna._malloc import keep_freed_memory
from hasnas_optuna.architecture import EDGES, KERNELS, Architecture, Cell
from hasnas_optuna.quantization import (
    DeployedLayer,
    Precision,
    adc_conv2d,
    adc_linear,
    deployed_layer,
    fake_quantize,
    training_weight,
)

__all__ = ["SpikingNetwork", "build_network", "release_neurons"]

Tensor = torch.Tensor


def _surrogate(name: str, slope: float) -> Callable[..., Tensor]:
    if name == "atan":
        return surrogate.atan(alpha=slope)
    if name == "fast_sigmoid":
        return surrogate.fast_sigmoid(slope=slope)

    def sigmoid(membrane: Tensor) -> Tensor:
        return cast(Tensor, SigmoidSpike.apply(membrane, slope))

    return sigmoid


class SigmoidSpike(torch.autograd.Function):
    """Heaviside spike with the sigmoid surrogate gradient ``k * s(kU) * (1 - s(kU))``, computed stably.

    snntorch's ``surrogate.sigmoid`` evaluates ``k exp(-kU) / (exp(-kU) + 1)^2``, which is
    ``inf / inf = NaN`` in float32 once ``kU < -88`` (a membrane of -14 at slope 6.7): one such
    neuron turns every weight before it into NaN after the first step. Same values elsewhere.

    Example:
        >>> u = torch.tensor([-100.0, 0.0, 0.5], requires_grad=True)
        >>> SigmoidSpike.apply(u, 4.0).sum().backward()
        >>> u.grad
        tensor([0.0000, 1.0000, 0.4200])
    """

    @staticmethod
    def forward(ctx: Any, membrane: Tensor, slope: float) -> Tensor:
        ctx.save_for_backward(membrane)
        ctx.slope = slope
        return (membrane > 0).to(membrane.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        (membrane,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.slope * membrane)
        return grad_output * ctx.slope * s * (1 - s), None


def _save_surrogate(name: str, slope: float, shifted: Tensor, one: Tensor) -> None:
    """Turn ``shifted`` (membrane - threshold), in place, into what :func:`_apply_surrogate` needs.

    Each surrogate's derivative (the same as snntorch's) is ``scale * shifted'`` for atan and
    fast_sigmoid (divided) and sigmoid (multiplied), so that the backward loop needs one fused
    ``addcdiv``/``addcmul`` per step. In-place ops: a step costs two or three passes over memory.
    """
    if name == "atan":  # d/du = (alpha / 2) / (1 + (pi/2 alpha u)^2): keep the denominator
        torch.addcmul(one, shifted, shifted, value=(torch.pi / 2 * slope) ** 2, out=shifted)
    elif name == "fast_sigmoid":  # d/du = 1 / (k |u| + 1)^2: keep the denominator
        shifted.abs_().mul_(slope).add_(1).square_()
    else:  # sigmoid: d/du = k s (1 - s), s = sigmoid(k u): keep s (1 - s)
        s = shifted.mul_(slope).sigmoid_()
        torch.addcmul(s, s, s, value=-1.0, out=s)


def _apply_surrogate(name: str, slope: float, out: Tensor, grad: Tensor, saved: Tensor) -> None:
    """``out += grad * d spike / d membrane`` from what :func:`_save_surrogate` kept."""
    if name == "atan":
        out.addcdiv_(grad, saved, value=slope / 2)
    elif name == "fast_sigmoid":
        out.addcdiv_(grad, saved)
    else:
        out.addcmul_(grad, saved, value=slope)


def _empty_steps(like: Tensor, steps: int) -> Tensor:
    """An uninitialised ``[steps, *like.shape]`` tensor whose every step has ``like``'s memory layout."""
    template = torch.empty_like(like)
    return torch.empty_strided((steps, *template.shape), (template.numel(), *template.stride()),
                               dtype=like.dtype, device=like.device)


class _LIFSteps(torch.autograd.Function):
    """The LIF recurrence over all T steps as one autograd node, forward and backward written out.

    Forward: ``v[0] = x[0]``, ``v[t] = beta v[t-1] + x[t] - threshold s[t-1]``, ``s[t] = v[t] > threshold``.
    The reset is detached (as in snntorch), so the gradient flows back through ``beta`` only:
    ``dL/dx[t] = dL/dv[t] = dL/ds[t] surrogate'(v[t] - threshold) + beta dL/dv[t+1]``. Per step it keeps
    one tensor (the surrogate's derivative in a compact form) instead of autograd's graph of about
    ten element-wise ops, and makes seven passes over memory (five forward, two backward) where
    that graph makes about sixteen.
    """

    @staticmethod
    def forward(ctx: Any, currents: Tensor, beta: float, threshold: float, surrogate: str,
                slope: float) -> Tensor:
        steps = currents.shape[0]
        spikes = _empty_steps(currents[0], steps)
        saved = _empty_steps(currents[0], steps) if ctx.needs_input_grad[0] else None
        one = currents.new_ones(())
        mem = currents[0]  # from rest, and the threshold is > 0: no reset at the first step
        for t in range(steps):
            if t == 1:
                mem = torch.add(currents[1], mem, alpha=beta).sub_(spikes[0], alpha=threshold)
            elif t > 1:
                torch.add(currents[t], mem, alpha=beta, out=mem).sub_(spikes[t - 1], alpha=threshold)
            torch.gt(mem, threshold, out=spikes[t])
            if saved is not None:
                _save_surrogate(surrogate, slope, torch.sub(mem, threshold, out=saved[t]), one)
        if saved is not None:
            ctx.save_for_backward(saved)
            ctx.beta, ctx.surrogate, ctx.slope = beta, surrogate, slope
        return spikes

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_spikes: Tensor) -> tuple[Tensor, None, None, None, None]:
        (saved,) = ctx.saved_tensors
        steps = saved.shape[0]
        grad = _empty_steps(saved[0], steps)
        grad[-1].zero_()
        for t in range(steps - 1, -1, -1):
            if t < steps - 1:
                torch.mul(grad[t + 1], ctx.beta, out=grad[t])
            _apply_surrogate(ctx.surrogate, ctx.slope, grad[t], grad_spikes[t], saved[t])
        return grad, None, None, None, None


class LIF(nn.Module):
    """A population of leaky integrate-and-fire neurons (snntorch ``Leaky``, subtractive reset)."""

    def __init__(self, beta: float, threshold: float, surrogate: str, slope: float) -> None:
        super().__init__()
        self.neuron = snntorch.Leaky(beta=beta, threshold=threshold, spike_grad=_surrogate(surrogate, slope),
                                     init_hidden=False)
        self.beta, self.threshold = min(max(beta, 0.0), 1.0), threshold
        self.surrogate, self.slope = surrogate, slope

    def forward(self, x: Tensor) -> Tensor:
        """``[T, B, ...]`` input currents -> ``[T, B, ...]`` spikes, starting from rest.

        Eagerly, the whole recurrence is one autograd node (:class:`_LIFSteps`); under
        ``torch.compile`` it is written out as plain ops, which Inductor fuses itself. With hooks on
        the neuron (e.g. training-free scoring), every step goes through the snntorch neuron.
        """
        neuron = self.neuron
        if neuron._forward_hooks or neuron._forward_pre_hooks:
            mem = torch.zeros_like(x[0])
            out = []
            for step in x:
                spk, mem = neuron(step, mem)
                out.append(spk)
            return torch.stack(out)
        if torch.compiler.is_compiling():
            return self.unfused(x)
        return cast(Tensor, _LIFSteps.apply(x, self.beta, self.threshold, self.surrogate, self.slope))

    def unfused(self, x: Tensor) -> Tensor:
        """:meth:`forward` as plain differentiable ops: snntorch's recurrence, reset from the last spike."""
        fire, threshold = self.neuron.spike_grad, self.threshold
        mem = x[0]  # from rest, and the threshold is > 0: no reset at the first step
        spikes = [fire(mem - threshold)]
        for step in x[1:]:
            mem = self.beta * mem + step - spikes[-1].detach() * threshold
            spikes.append(fire(mem - threshold))
        return torch.stack(spikes)

    def step(self, x: Tensor, mem: Tensor) -> tuple[Tensor, Tensor]:
        """One timestep with explicit state: ``(spikes, new membrane)``."""
        spk, mem = self.neuron(x, mem)
        return spk, mem


def _fold(module: nn.Module, x: Tensor) -> Tensor:
    """Apply a stateless module to ``[T, B, ...]`` with the timesteps folded into the batch."""
    steps, batch = x.shape[:2]
    y = module(x.reshape(steps * batch, *x.shape[2:]))
    return y.reshape(steps, batch, *y.shape[1:])


class _Quantized:
    """What a crossbar layer knows of its chip's precision (:mod:`hasnas_optuna.quantization`).

    ``precision`` None (or with ``weight_bits`` None) is the float network. ``deployed`` holds the
    stored integers, steps and biases of a network loaded from them (evaluation uses them as they
    are); otherwise evaluation folds and quantises the current weights at every call.
    ``analog_input``: the layer reads the analog image (the stem under direct encoding).
    """

    precision: Precision | None = None
    deployed: DeployedLayer | None = None
    analog_input: bool = False

    def _deployed(self) -> DeployedLayer:
        assert self.precision is not None
        return self.deployed if self.deployed is not None else deployed_layer(cast(nn.Module, self), self.precision)


def _channel(values: Tensor, dims: int) -> Tensor:
    return values.reshape(1, -1, *([1] * (dims - 2)))


class _ConvBN(_Quantized, nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d; with a :class:`Precision`, weights quantised after folding the BN."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        p = self.precision
        if p is None or p.weight_bits is None:
            return cast(Tensor, nn.Sequential.forward(self, x))
        conv, bn = cast(nn.Conv2d, self[0]), cast(nn.BatchNorm2d, self[1])
        padding = cast(tuple[int, int], conv.padding)[0]
        if self.training and not p.adc and p.granularity == "per_channel":
            # per channel, folding scales a channel by one number: the raw weight's grid is the folded one's
            weight = fake_quantize(conv.weight, p.weight_bits, p.granularity)
            return cast(Tensor, bn(F.conv2d(x, weight, padding=padding)))
        if self.training:  # batch statistics; the integers are those of the running statistics
            q, multiplier = training_weight(conv.weight, p, bn)
            if p.adc:
                z = adc_conv2d(x, q, p, padding=padding, analog=self.analog_input, straight_through=True)
                return cast(Tensor, bn(z * _channel(multiplier, 4)))
            return cast(Tensor, bn(F.conv2d(x, q * multiplier.reshape(-1, 1, 1, 1), padding=padding)))
        deployed = self._deployed()
        if p.adc:
            z = adc_conv2d(x, deployed.q, p, padding=padding, analog=self.analog_input)
        else:
            z = F.conv2d(x, deployed.q, padding=padding)
        assert deployed.bias is not None
        return torch.addcmul(_channel(deployed.bias, 4), z, _channel(deployed.step, 4))


class _Linear(_Quantized, nn.Linear):
    """``nn.Linear`` (same parameters and state dict); with a :class:`Precision`, quantised weights."""

    def forward(self, x: Tensor) -> Tensor:
        p = self.precision
        if p is None or p.weight_bits is None:
            return F.linear(x, self.weight, self.bias)
        bias: Tensor | None
        if self.training and not p.adc:
            return F.linear(x, fake_quantize(self.weight, p.weight_bits, p.granularity), self.bias)
        if self.training:
            q, step = training_weight(self.weight, p)
            bias = self.bias
        else:
            q, step, bias = self._deployed()
        linear = adc_linear(x.unsqueeze(-1), q, p, straight_through=self.training).squeeze(-1) if p.adc else None
        z = (F.linear(x, q) if linear is None else linear) * step
        return z if bias is None else z + bias


class _CellModule(nn.Module):
    """One SNASNet-style cell: node values are sums of edge outputs (see the module docstring)."""

    def __init__(self, cell: Cell, channels: int, make_lif: Callable[[], LIF], prefix: str) -> None:
        super().__init__()
        self.cell = cell
        self.prefix = prefix
        self.ops = nn.ModuleDict()
        self.forward_edges: list[tuple[int, int, str, str]] = []  # (src, dst, op, layer key)
        for k, ((src, dst), op) in enumerate(zip(EDGES, cell.edges, strict=True)):
            if op != "zero":
                key = f"{prefix}.e{k}.{op}"
                self.forward_edges.append((src, dst, op, key))
                if op in KERNELS:
                    self.ops[_key(key)] = _ConvBN(channels, channels, KERNELS[op])
        self.backward_edges: list[tuple[int, int, str, str]] = []
        for src, dst, op in cell.backward:
            key = f"{prefix}.b{src}to{dst}.{op}"
            self.backward_edges.append((src, dst, op, key))
            if op in KERNELS:
                self.ops[_key(key)] = _ConvBN(channels, channels, KERNELS[op])
        spiking = {src for src, _, op, _ in self.forward_edges + self.backward_edges if op in KERNELS}
        self.lifs = nn.ModuleDict({str(node): make_lif() for node in sorted(spiking)})
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)

    def _edge(self, op: str, key: str, value: Tensor, spikes: Tensor | None, net: SpikingNetwork,
              folded: bool) -> Tensor:
        if op == "skip":
            return value
        if op == "avgpool3x3":
            return _fold(self.pool, value) if folded else self.pool(value)
        assert spikes is not None
        net.record(key, spikes)
        module = self.ops[_key(key)]
        return _fold(module, spikes) if folded else module(spikes)

    def forward(self, x: Tensor, net: SpikingNetwork) -> Tensor:
        if self.backward_edges:
            return self._per_step(x, net)
        values: dict[int, Tensor] = {0: x}
        spikes: dict[int, Tensor] = {}
        for node in (1, 2, 3):
            for src in range(node):
                if str(src) in self.lifs and src not in spikes and src in values:
                    spikes[src] = self.lifs[str(src)](values[src])
            total: Tensor | None = None
            for src, dst, op, key in self.forward_edges:
                if dst == node and src in values:
                    out = self._edge(op, key, values[src], spikes.get(src), net, folded=True)
                    total = out if total is None else total + out
            if total is not None:
                values[node] = total
        return values[3]

    def _per_step(self, x: Tensor, net: SpikingNetwork) -> Tensor:
        # feedback into a node starts at zero, so a node fed only by a backward edge exists at step 0
        feedback: dict[int, Tensor] = {dst: torch.zeros_like(x[0]) for _, dst, _, _ in self.backward_edges}
        mems: dict[int, Tensor] = {}
        outputs = []
        for step in x:
            values: dict[int, Tensor] = {0: step + feedback[0] if 0 in feedback else step}
            spikes: dict[int, Tensor] = {}

            def spikes_of(node: int, values: dict[int, Tensor] = values, spikes: dict[int, Tensor] = spikes
                          ) -> Tensor | None:
                if str(node) not in self.lifs:
                    return None
                if node not in spikes:
                    value = values[node]
                    lif = cast(LIF, self.lifs[str(node)])
                    spk, mems[node] = lif.step(value, mems.get(node, torch.zeros_like(value)))
                    spikes[node] = spk
                return spikes[node]

            for node in (1, 2, 3):
                total: Tensor | None = feedback.get(node)
                for src, dst, op, key in self.forward_edges:
                    if dst == node and src in values:
                        out = self._edge(op, key, values[src], spikes_of(src), net, folded=False)
                        total = out if total is None else total + out
                if total is not None:
                    values[node] = total
            feedback = {}
            for src, dst, op, key in self.backward_edges:
                out = self._edge(op, key, values[src], spikes_of(src), net, folded=False)
                feedback[dst] = out if dst not in feedback else feedback[dst] + out
            outputs.append(values[3])
        return torch.stack(outputs)


def _key(name: str) -> str:
    return name.replace(".", "__")


class SpikingNetwork(nn.Module):
    """The spiking network of an architecture; ``forward`` maps images to class logits.

    Example:
        >>> from hasnas_optuna.architecture import Architecture, Cell
        >>> cell = Cell.from_matrix("0302 0030 3003 0000")
        >>> arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=8)
        >>> net = build_network(arch)
        >>> net(torch.rand(5, 1, 8, 8)).shape
        torch.Size([5, 10])
        >>> net.crossbar_weights() == arch.to_network().params
        True
    """

    def __init__(self, arch: Architecture, *, memory_format: torch.memory_format = torch.channels_last) -> None:
        super().__init__()
        if memory_format not in (torch.channels_last, torch.contiguous_format):
            raise ValueError(f"memory_format={memory_format} must be torch.channels_last or torch.contiguous_format")
        self.arch = arch
        self.memory_format = memory_format
        keep_freed_memory()  # once per process; HASNAS_KEEP_FREED_MEMORY=0 leaves the allocator alone

        def make_lif() -> LIF:
            return LIF(arch.beta, arch.threshold, arch.surrogate, arch.surrogate_slope)

        c, h, w = arch.input_shape
        width = arch.channels
        self.stem = _ConvBN(c, width, 3)
        self.stem.analog_input = arch.encoding == "direct"
        self.cell_a = _CellModule(arch.cell_a, width, make_lif, "cell_a")
        self.reduce_lif = make_lif()
        self.reduce = nn.Sequential(_ConvBN(width, 2 * width, 3), nn.AvgPool2d(2))
        self.cell_b = _CellModule(arch.cell_b, 2 * width, make_lif, "cell_b")
        self.head_pool = nn.AvgPool2d(2)
        self.head_lif = make_lif()
        flat = 2 * width * (h // 4) * (w // 4)
        self.fc_hidden: nn.Linear | None = None
        self.hidden_lif: LIF | None = None
        if arch.hidden_features:
            self.fc_hidden = _Linear(flat, arch.hidden_features, bias=False)
            self.hidden_lif = make_lif()
            flat = arch.hidden_features
        self.fc_out = _Linear(flat, arch.num_classes)
        self.readout = snntorch.Leaky(beta=arch.beta, reset_mechanism="none", init_hidden=False)
        self._rates: dict[str, list[float]] | None = None
        self.precision: Precision | None = None
        self.to(memory_format=memory_format)  # type: ignore[call-overload]  # missing from the stubs

    # -- precision --------------------------------------------------------------------------------

    def set_precision(self, precision: Precision | None) -> SpikingNetwork:
        """Simulate ``precision`` in every crossbar layer from now on (None: float32); returns self.

        See :mod:`hasnas_optuna.quantization` for what is simulated. In training mode the weights
        are fake-quantised (straight-through); in evaluation mode each layer computes with the
        integers the chip stores, folded and quantised from the current weights.
        """
        self.precision = precision
        for module in self.crossbar_layers().values():
            module.precision = precision
        return self

    def crossbar_layers(self) -> dict[str, _Quantized]:
        """The crossbar-mapped layers by cost-model layer name (``stem``, ``cell_a.e0.conv3x3``, ...)."""
        out: dict[str, _Quantized] = {"stem": self.stem}
        for cell in (self.cell_a, self.cell_b):
            for _, _, op, key in cell.forward_edges + cell.backward_edges:
                if op in KERNELS:
                    out[key] = cast(_Quantized, cell.ops[_key(key)])
            if cell is self.cell_a:
                out["reduce"] = cast(_Quantized, self.reduce[0])
        if self.fc_hidden is not None:
            out["fc_hidden"] = cast(_Quantized, self.fc_hidden)
        out["fc_out"] = cast(_Quantized, self.fc_out)
        return out

    def deployed_layers(self) -> dict[str, DeployedLayer]:
        """What the chip stores per crossbar layer (needs a precision with ``weight_bits``)."""
        if self.precision is None or self.precision.weight_bits is None:
            raise ValueError("the network has no weight precision: call set_precision first")
        return {name: module._deployed() for name, module in self.crossbar_layers().items()}

    # -- spike-rate recording ---------------------------------------------------------------------

    def start_recording(self) -> None:
        """Accumulate each crossbar layer's mean input spike rate over the following forwards."""
        self._rates = {}

    def stop_recording(self) -> dict[str, float]:
        """Mean input spike rate per layer name since :meth:`start_recording`."""
        rates = self._rates or {}
        self._rates = None
        return {name: total / count for name, (total, count) in rates.items()}

    def record(self, name: str, spikes: Tensor) -> None:
        if self._rates is not None:
            total, count = self._rates.get(name, [0.0, 0.0])
            self._rates[name] = [total + float(spikes.detach().float().mean()) * spikes.numel(),
                                 count + spikes.numel()]

    # -- forward ----------------------------------------------------------------------------------

    def encode(self, images: Tensor) -> Tensor:
        """``[B, c, H, W]`` in [0, 1] -> ``[T, B, c, H, W]`` stem input (``[1, ...]`` if static)."""
        steps = self.arch.timesteps
        if self.arch.encoding == "direct":
            return images.unsqueeze(0)
        if self.arch.encoding == "rate":
            return spikegen.rate(images.clamp(0, 1), num_steps=steps)
        return spikegen.latency(images.clamp(0, 1), num_steps=steps, normalize=True, linear=True)

    def forward(self, images: Tensor) -> Tensor:
        steps = self.arch.timesteps
        encoded = self.encode(images.contiguous(memory_format=self.memory_format))
        self.record("stem", encoded)
        stem = _fold(self.stem, encoded)
        if stem.shape[0] != steps:  # static input: computed once, presented at every step
            stem = stem.expand(steps, *stem.shape[1:])
        a = self.cell_a(stem, self)
        spikes = self.reduce_lif(a)
        self.record("reduce", spikes)
        b = self.cell_b(_fold(self.reduce, spikes), self)
        spikes = self.head_lif(_fold(self.head_pool, b)).flatten(2)
        if self.fc_hidden is not None and self.hidden_lif is not None:
            self.record("fc_hidden", spikes)
            spikes = self.hidden_lif(_fold(self.fc_hidden, spikes))
        self.record("fc_out", spikes)
        current = _fold(self.fc_out, spikes)
        beta = self.readout.beta.clamp(0, 1)  # the readout never fires or resets: a leaky integrator
        mem = total = current[0]
        for step in current[1:]:
            mem = beta * mem + step
            total = total + mem
        return total / steps

    def crossbar_weights(self) -> int:
        """Weights of the conv and linear layers (what the cost model maps onto crossbars)."""
        return sum(m.weight.numel() for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def build_network(arch: Architecture, *, memory_format: torch.memory_format = torch.channels_last) -> SpikingNetwork:
    """Build the torch module of ``arch`` (CPU, float32; move it with ``.to(device)``).

    Feature maps are ``channels_last`` (NHWC) by default: oneDNN's convolutions and batch norm on
    a CPU run on it, and reorder ``contiguous_format`` (NCHW) inputs and outputs at every call
    (docs/speed.md); cuDNN's tensor-core kernels prefer it too (``benchmarks/gpu_throughput.py``
    compares both on a GPU). The logits are the same either way, within float rounding. On Linux
    the first network built makes glibc keep freed memory (module docstring).
    """
    return SpikingNetwork(arch, memory_format=memory_format)


def release_neurons(net: nn.Module) -> None:
    """Drop ``net``'s neurons from snntorch's class-level registry (it otherwise only grows)."""
    ours = {id(m) for m in net.modules() if isinstance(m, snntorch.SpikingNeuron)}
    registry: list[Any] = snntorch.SpikingNeuron.instances
    registry[:] = [n for n in registry if id(n) not in ours]
