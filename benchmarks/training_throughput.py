"""Training throughput: our multi-step SpikingNetwork against the plain snntorch per-step loop.

Run: python benchmarks/training_throughput.py [--quick] [--threads 1 2] [--glibc-malloc] [--json PATH]

The baseline is the loop snntorch's tutorials teach: ``for t in range(T)`` run every layer on that
timestep's input, driving each ``snntorch.Leaky`` with its explicit membrane, on the default
(NCHW) memory format. It reuses the same layers as our network (same weights, same neurons), so
the only difference is how they are executed. Between the two, the benchmark times each step of
what our network does differently, with the same weights, so the table shows where the speed
comes from:

* multi-step, NCHW, autograd LIF: each stateless layer once on all T timesteps folded into the
  batch, the direct-encoded stem once, the LIF recurrence as plain autograd ops (this project's
  network before the fused LIF);
* multi-step, NCHW, fused LIF: the recurrence over all T steps as one autograd node with its
  backward written out (``hasnas_optuna.network._LIFSteps``);
* ours: the same on ``channels_last`` feature maps (what ``build_network`` builds).

In eval mode all compute the same logits (tests/test_speed.py, tests/test_network.py); in training
mode batch norm sees per-timestep batches in the baseline and all timesteps at once in ours, which
changes its statistics, not the work done.

A training step is forward, cross-entropy on the mean output membrane, backward and an Adam step,
on one fixed batch. All variants run in turn, in alternating order (A B C D, D C B A, ...); a
variant's speed-up is the median over rounds of (baseline seconds / its seconds). The process
keeps freed memory, as building one of our networks makes it (hasnas_optuna/_malloc.py);
``--glibc-malloc`` measures with glibc's default allocator instead (it must be chosen before any
network is built, so it is a flag for a fresh process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Paired, interleave_all, machine
from hasnas_optuna._malloc import keep_freed_memory
from hasnas_optuna.architecture import KERNELS, Architecture, Cell
from hasnas_optuna.network import LIF, SpikingNetwork, build_network, release_neurons
from hasnas_optuna.quantization import Precision

Tensor = torch.Tensor

CELL = "0302 0030 0003 0000"
"""SNASNet's released CIFAR cell without its backward edge: 0->1 conv3x3, 1->2 conv3x3, 2->3 conv3x3,
0->3 conv1x1 (forward-only, so our network runs it multi-step)."""

BASELINE = "per-step snntorch loop"
NCHW_FUSED = "multi-step, NCHW, fused LIF"
OURS = "ours: multi-step, channels_last, fused LIF"
VARIANTS = (BASELINE, "multi-step, NCHW, autograd LIF", NCHW_FUSED, OURS)
QAT = "ours, 8-bit weights (QAT)"
"""Ours as a study trains it by default: weights fake-quantised at the chip's 8 bits (--variants qat)."""


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


def variants(arch: Architecture, names: tuple[str, ...] = VARIANTS, seed: int = 0) -> dict[str, nn.Module]:
    """The modules of ``names`` (see the module docstring), all with the same weights."""
    torch.manual_seed(seed)
    ours = build_network(arch)
    state = ours.state_dict()

    def nchw(fused: bool) -> SpikingNetwork:
        net = build_network(arch, memory_format=torch.contiguous_format)
        net.load_state_dict(state)
        if not fused:
            for module in net.modules():
                if isinstance(module, LIF):
                    module.forward = module.unfused  # type: ignore[method-assign]
        return net

    makers = {
        BASELINE: lambda: PerStepLoop(nchw(True)),
        "multi-step, NCHW, autograd LIF": lambda: nchw(False),
        NCHW_FUSED: lambda: nchw(True),
        OURS: lambda: ours,
        QAT: lambda: quantised(),
    }

    def quantised() -> SpikingNetwork:
        net = build_network(arch)
        net.load_state_dict(state)
        return net.set_precision(Precision(weight_bits=8))

    return {name: makers[name]() for name in names}


@dataclass
class Throughput:
    """One network at one thread count: seconds per round of each variant."""

    name: str
    summary: str
    batch: int
    threads: int
    samples: int  # per round
    seconds: dict[str, list[float]]

    def samples_per_s(self, variant: str) -> float:
        """Samples/s of the median round."""
        return self.samples / statistics.median(self.seconds[variant])

    def versus_baseline(self, variant: str, reference: str = BASELINE) -> Paired:
        """Per-round reference (the baseline) / variant times."""
        return Paired(self.seconds[reference], self.seconds[variant])


def _trainer(model: nn.Module, images: Tensor, labels: Tensor, steps: int) -> object:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run() -> None:
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()

    return run


def measure(name: str, arch: Architecture, *, batch: int, steps: int, repeats: int, threads: int,
            names: tuple[str, ...] = VARIANTS, seed: int = 0) -> Throughput:
    """``repeats`` rounds of ``steps`` training steps of every variant, on ``threads`` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        models = variants(arch, names, seed)
        images = torch.rand(batch, *arch.input_shape)
        labels = torch.randint(0, arch.num_classes, (batch,))
        runs = {variant: _trainer(model, images, labels, steps) for variant, model in models.items()}
        for fn in runs.values():  # warm-up: allocator, oneDNN kernels
            fn()  # type: ignore[operator]
        seconds = interleave_all(runs, repeats=repeats)  # type: ignore[arg-type]
        for model in models.values():
            release_neurons(model)
    finally:
        torch.set_num_threads(before)
    return Throughput(name, describe(arch), batch, threads, batch * steps, seconds)


def describe(arch: Architecture) -> str:
    """A short, table-safe description of a network."""
    c, h, w = arch.input_shape
    hidden = f", hidden {arch.hidden_features}" if arch.hidden_features else ""
    return (f"{c}x{h}x{w}, C={arch.channels}{hidden}, T={arch.timesteps}, cells {arch.cell_a.to_matrix()}, "
            f"{arch.to_network().params:,} weights")


def run(quick: bool = False, threads: tuple[int, ...] | None = None,
        names: tuple[str, ...] = VARIANTS) -> list[Throughput]:
    """Both networks at each thread count (default: 1 and every core torch uses); ``quick`` is a smoke test."""
    keep_freed_memory()  # as building a network does; a no-op under HASNAS_KEEP_FREED_MEMORY=0
    counts = threads or tuple(sorted({1, torch.get_num_threads()}))
    reps = 3 if quick else 7
    results = []
    for n in counts:
        results.append(measure("digits (8x8)", digits_architecture(), batch=64, steps=2 if quick else 10,
                               repeats=reps, threads=n, names=names))
        results.append(measure("CIFAR-shaped (3x32x32)", cifar_architecture(), batch=32, steps=1 if quick else 2,
                               repeats=reps, threads=n, names=names))
    return results


def run_with_glibc_malloc(quick: bool = False) -> list[Throughput]:
    """Baseline and ours in a fresh process with glibc's default allocator (``HASNAS_KEEP_FREED_MEMORY=0``)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "glibc.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--glibc-malloc", "--json", str(out),
                   "--variants", "baseline-and-ours", *(["--quick"] if quick else [])]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONHASHSEED": "0"})
        return [Throughput(**row) for row in json.loads(out.read_text(encoding="utf-8"))]


def table(results: list[Throughput]) -> str:
    """Markdown: samples/s of every variant (median round) and its median speed-up over the baseline."""
    names = [v for v in (*VARIANTS, QAT) if v in results[0].seconds]
    lines = ["| network | batch | threads | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for r in results:
        cells = []
        for v in names:
            sps = f"{r.samples_per_s(v):,.0f}/s"
            if v == BASELINE:
                cells.append(sps)
                continue
            paired = r.versus_baseline(v)
            low, high = paired.spread
            ratio = f"**{paired.ratio:.2f}x**" if v == OURS else f"{paired.ratio:.2f}x"
            cells.append(f"{sps}, {ratio} ({low:.2f}-{high:.2f})")
            if v == QAT:
                versus = r.versus_baseline(QAT, OURS)
                cells[-1] += f"; **{versus.ratio:.3f}x of float** ({versus.spread[0]:.3f}-{versus.spread[1]:.3f})"
        lines.append(f"| {r.name}: {r.summary} | {r.batch} | {r.threads} | " + " | ".join(cells) + " |")
    rounds = len(next(iter(results[0].seconds.values())))
    lines.append("")
    lines.append(f"Each cell: training samples/s of the median round; speed-up over the per-step loop, median "
                 f"(min-max) of {rounds} rounds.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps only (smoke test)")
    parser.add_argument("--threads", type=int, nargs="+", help="torch thread counts (default: 1 and all)")
    parser.add_argument("--glibc-malloc", action="store_true",
                        help="glibc's default allocator instead of keeping freed memory")
    parser.add_argument("--variants", choices=["all", "baseline-and-ours", "qat"], default="all",
                        help="qat: the baseline, ours and ours with 8-bit quantisation-aware training")
    parser.add_argument("--json", type=Path, help="also write the raw timings here")
    args = parser.parse_args(argv)
    if args.glibc_malloc:
        os.environ["HASNAS_KEEP_FREED_MEMORY"] = "0"
    names = {"all": VARIANTS, "baseline-and-ours": (BASELINE, OURS), "qat": (BASELINE, OURS, QAT)}[args.variants]
    results = run(args.quick, tuple(args.threads) if args.threads else None, names)
    print(machine())
    print(f"allocator: {'glibc default' if args.glibc_malloc else 'freed memory kept (as hasnas trains)'}")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results]), encoding="utf-8")


if __name__ == "__main__":
    main()
