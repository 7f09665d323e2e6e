"""Training throughput: our multi-step SpikingNetwork against the plain snntorch per-step loop.

Run: python benchmarks/training_throughput.py [--quick]

The baseline is the loop snntorch's tutorials teach: ``for t in range(T)`` run every layer on that
timestep's input, driving each ``snntorch.Leaky`` with its explicit membrane. It reuses the same
layers as our network (same weights, same neurons), so the only difference is the execution order:
ours runs each stateless layer once on all T timesteps folded into the batch, loops only the LIF
recurrence over time, and runs the direct-encoded stem once. In eval mode both compute the same
logits (tests/test_speed.py); in training mode batch norm sees per-timestep batches in the
baseline and all timesteps at once in ours, which changes its statistics, not the work done.

A training step is forward, cross-entropy on the mean output membrane, backward and an Adam step,
on one fixed batch. Baseline and ours alternate (A B B A ...); the ratio is the median over
repetitions of (baseline seconds / our seconds).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Paired, interleave, machine
from hasnas_optuna.architecture import KERNELS, Architecture, Cell
from hasnas_optuna.network import LIF, SpikingNetwork, build_network, release_neurons

Tensor = torch.Tensor

CELL = "0302 0030 0003 0000"
"""SNASNet's released CIFAR cell without its backward edge: 0->1 conv3x3, 1->2 conv3x3, 2->3 conv3x3,
0->3 conv1x1 (forward-only, so our network runs it multi-step)."""


def digits_architecture() -> Architecture:
    """A mid-sized network of the digits study's space (8x8, C=8, hidden 32, T=4)."""
    cell = Cell.from_matrix(CELL)
    return Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=8,
                        hidden_features=32, timesteps=4)


def cifar_architecture() -> Architecture:
    """A CIFAR-shaped network (3x32x32, 10 classes, C=16, T=5 as in SNASNet)."""
    cell = Cell.from_matrix(CELL)
    return Architecture(input_shape=(3, 32, 32), num_classes=10, cell_a=cell, cell_b=cell, channels=16,
                        timesteps=5)


class PerStepLoop(nn.Module):
    """The plain snntorch loop over timesteps, on the layers of a :class:`SpikingNetwork`.

    Every layer runs once per timestep on that step's ``[B, ...]`` tensor; each ``snntorch.Leaky``
    gets its membrane explicitly and starts from zero. Forward-only cells only.
    """

    def __init__(self, net: SpikingNetwork) -> None:
        super().__init__()
        if net.arch.cell_a.backward or net.arch.cell_b.backward:
            raise ValueError("the per-step baseline covers forward-only cells")
        self.net = net

    def forward(self, images: Tensor) -> Tensor:
        net = self.net
        steps = net.arch.timesteps
        encoded = net.encode(images)  # [1, B, ...] for direct encoding: the same image at every step
        mems: dict[int, Tensor] = {}

        def fire(lif: LIF, current: Tensor) -> Tensor:
            spk, mems[id(lif)] = lif.neuron(current, mems.get(id(lif), torch.zeros_like(current)))
            return spk

        out_mem: Tensor | None = None
        total: Tensor | None = None
        for t in range(steps):
            x = encoded[t if encoded.shape[0] > 1 else 0]
            a = self._cell(net.cell_a, net.stem(x), fire)
            b = self._cell(net.cell_b, net.reduce(fire(net.reduce_lif, a)), fire)
            spikes = fire(net.head_lif, net.head_pool(b)).flatten(1)
            if net.fc_hidden is not None and net.hidden_lif is not None:
                spikes = fire(net.hidden_lif, net.fc_hidden(spikes))
            current = net.fc_out(spikes)
            _, out_mem = net.readout(current, torch.zeros_like(current) if out_mem is None else out_mem)
            total = out_mem if total is None else total + out_mem
        assert total is not None
        return total / steps

    @staticmethod
    def _cell(cell: nn.Module, x: Tensor, fire: object) -> Tensor:
        values: dict[int, Tensor] = {0: x}
        spikes: dict[int, Tensor] = {}
        for node in (1, 2, 3):
            total: Tensor | None = None
            for src, dst, op, key in cell.forward_edges:  # type: ignore[union-attr]
                if dst != node or src not in values:
                    continue
                if op == "skip":
                    out = values[src]
                elif op == "avgpool3x3":
                    out = cell.pool(values[src])  # type: ignore[operator]
                else:
                    assert op in KERNELS
                    if src not in spikes:
                        spikes[src] = fire(cell.lifs[str(src)], values[src])  # type: ignore[operator,index]
                    out = cell.ops[key.replace(".", "__")](spikes[src])  # type: ignore[index,operator]
                total = out if total is None else total + out
            if total is not None:
                values[node] = total
        return values[3]


@dataclass
class Throughput:
    """One network's result: samples/s of each path and their interleaved ratio."""

    name: str
    summary: str
    batch: int
    baseline_sps: float
    ours_sps: float
    paired: Paired


def _trainer(model: nn.Module, images: Tensor, labels: Tensor, steps: int) -> object:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run() -> None:
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()

    return run


def measure(name: str, arch: Architecture, *, batch: int, steps: int, repeats: int, seed: int = 0) -> Throughput:
    """Interleave ``repeats`` timed runs of ``steps`` training steps of the baseline and of ours."""
    torch.manual_seed(seed)
    ours = build_network(arch)
    baseline = PerStepLoop(copy.deepcopy(ours))
    images = torch.rand(batch, *arch.input_shape)
    labels = torch.randint(0, arch.num_classes, (batch,))
    run_base = _trainer(baseline, images, labels, steps)
    run_ours = _trainer(ours, images, labels, steps)
    run_base()  # warm-up: allocator, kernels
    run_ours()
    paired = interleave(run_base, run_ours, repeats=repeats)  # type: ignore[arg-type]
    release_neurons(ours)
    release_neurons(baseline)
    sps = batch * steps
    return Throughput(name, describe(arch), batch, sps / statistics.median(paired.baseline),
                      sps / statistics.median(paired.candidate), paired)


def describe(arch: Architecture) -> str:
    """A short, table-safe description of a network."""
    c, h, w = arch.input_shape
    hidden = f", hidden {arch.hidden_features}" if arch.hidden_features else ""
    return (f"{c}x{h}x{w}, C={arch.channels}{hidden}, T={arch.timesteps}, cells {arch.cell_a.to_matrix()}, "
            f"{arch.to_network().params:,} weights")


def run(quick: bool = False) -> list[Throughput]:
    """Both networks; ``quick`` shortens every run to a smoke test."""
    reps = 3 if quick else 7
    return [
        measure("digits (8x8)", digits_architecture(), batch=64, steps=2 if quick else 10, repeats=reps),
        measure("CIFAR-shaped (3x32x32)", cifar_architecture(), batch=32, steps=1 if quick else 2, repeats=reps),
    ]


def table(results: list[Throughput]) -> str:
    """Markdown rows: samples/s (median repetition) and the median ratio with its range."""
    lines = ["| network | batch | per-step snntorch loop, samples/s | ours (multi-step), samples/s | "
             "speed-up, median (min-max) |", "|---|---|---|---|---|"]
    for r in results:
        low, high = r.paired.spread
        lines.append(f"| {r.name}: {r.summary} | {r.batch} | {r.baseline_sps:,.0f} | {r.ours_sps:,.0f} | "
                     f"**{r.paired.ratio:.2f}x** ({low:.2f}-{high:.2f}, {len(r.paired.ratios)} pairs) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps only (smoke test)")
    args = parser.parse_args(argv)
    print(machine())
    print(table(run(args.quick)))


if __name__ == "__main__":
    main()
