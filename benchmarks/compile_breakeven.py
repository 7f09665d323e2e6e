"""When does ``[training] compile = true`` pay off? torch.compile's one-off cost against its speed-up.

Run: python benchmarks/compile_breakeven.py [--epochs 4] [--quick]

Each network trains through the search's own ``train_architecture`` twice, eagerly and with
``compile=True``, for ``--epochs`` epochs, with a callback timing every epoch (training and
validation). From the epochs after the first (steady state) and the totals:

* speed-up = eager steady epoch / compiled steady epoch;
* one-off cost = (compiled total - epochs x compiled steady epoch) - (eager total - epochs x eager
  steady epoch): compilation and recompilation (train and eval mode, a smaller last batch), beyond
  eager's own first-epoch cost;
* break-even = one-off cost / (1 - 1 / speed-up): seconds of *eager* training a trial must need
  before compiling it is faster. A trial of a new architecture compiles anew (the search never
  trains the same network twice), so this is per trial.

Networks: the digits network of training_throughput.py on the digits data, and the CIFAR-shaped one
for 2 epochs of 256 synthetic CIFAR-shaped images (a full CIFAR-10 epoch takes far too long on a CPU;
the steady epoch time scales with the number of samples, the one-off cost does not).

Inductor keeps compiled graphs and kernels in an on-disk cache, so a second run of this script
would compile from it in a fraction of the time; the run uses an empty cache of its own, as the
first trial of a search has. Later trials of a search reuse the kernels of earlier networks where
they match, so their one-off cost lies between this and the warm figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pytorch_lightning as pl

from benchmarks.training_throughput import cifar_architecture, digits_architecture
from hasnas_optuna.architecture import Architecture
from hasnas_optuna.data import DigitsDataModule, TensorDataModule
from hasnas_optuna.training import train_architecture


class SyntheticCifar(TensorDataModule):
    """``n`` learnable CIFAR-shaped images (class prototypes plus noise) and a quarter as many for val/test."""

    def __init__(self, n: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n = n

    def load(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(0)
        prototypes = rng.random((10, 3, 32, 32)).astype(np.float32)

        def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
            labels = rng.integers(0, 10, count)
            images = np.clip(prototypes[labels] + 0.3 * rng.standard_normal((count, 3, 32, 32)), 0, 1)
            return images.astype(np.float32), labels.astype(np.int64)

        total = self.n + self.n // 4  # the train/val split takes val_fraction of this
        return draw(total), draw(self.n // 4)


class EpochClock(pl.Callback):
    """Seconds per training epoch (its validation included)."""

    def __init__(self) -> None:
        self.epochs: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append(time.perf_counter() - self._start)


@dataclass
class BreakEven:
    """One network's eager and compiled timings and what follows from them."""

    name: str
    samples: int
    eager_total: float
    eager_epoch: float
    compiled_total: float
    compiled_epoch: float
    epochs: int
    error: str = ""

    @property
    def speedup(self) -> float:
        return self.eager_epoch / self.compiled_epoch

    @property
    def one_off(self) -> float:
        return (self.compiled_total - self.epochs * self.compiled_epoch) - (
            self.eager_total - self.epochs * self.eager_epoch)

    @property
    def break_even_s(self) -> float:
        """Seconds of eager training after which compiling wins (inf when it never does)."""
        return self.one_off / (1 - 1 / self.speedup) if self.speedup > 1 else float("inf")


def _train(arch: Architecture, datamodule: TensorDataModule, epochs: int, compile: bool) -> tuple[float, float]:
    clock = EpochClock()
    start = time.perf_counter()
    train_architecture(arch, datamodule, epochs=epochs, callbacks=[clock], test=False, compile=compile,
                       accelerator="cpu")
    total = time.perf_counter() - start
    return total, statistics.median(clock.epochs[1:] or clock.epochs)


def measure(name: str, arch: Architecture, datamodule: TensorDataModule, epochs: int) -> BreakEven:
    """Eager, then compiled, ``epochs`` epochs each (after an eager warm-up epoch)."""
    train_architecture(arch, datamodule, epochs=1, test=False, accelerator="cpu")  # warm-up
    eager_total, eager_epoch = _train(arch, datamodule, epochs, False)
    compiled_total, compiled_epoch = _train(arch, datamodule, epochs, True)
    samples = len(datamodule.prepare().splits["train"][0])
    return BreakEven(name, samples, eager_total, eager_epoch, compiled_total, compiled_epoch, epochs)


def run(*, epochs: int = 4, quick: bool = False) -> list[BreakEven]:
    """Both networks (``quick``: the digits network only, 2 epochs), one after the other in this process.

    A network whose compilation fails gets a row saying why.
    """
    cases: list[tuple[str, Architecture, Callable[[], TensorDataModule], int]] = [
        ("digits (8x8)", digits_architecture(), DigitsDataModule, 2 if quick else epochs)]
    if not quick:
        cases.append(("CIFAR-shaped (3x32x32)", cifar_architecture(),
                      lambda: SyntheticCifar(256, batch_size=32, val_fraction=0.2), 2))
    results = []
    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="hasnas-inductor-") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # an empty on-disk cache: nothing compiled before counts
        try:
            for name, arch, data, n in cases:
                try:
                    results.append(measure(name, arch, data(), n))
                except Exception as exc:
                    nan = float("nan")
                    results.append(BreakEven(name, 0, nan, nan, nan, nan, n,
                                             error=f"{type(exc).__name__}: {exc}"[:300]))
        finally:
            if previous is None:
                del os.environ["TORCHINDUCTOR_CACHE_DIR"]
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous
    return results


def table(results: list[BreakEven]) -> str:
    """Markdown rows: steady epochs, speed-up, one-off cost, break-even."""
    lines = ["| network (training samples per epoch) | eager epoch s | compiled epoch s | speed-up | "
             "one-off compile cost s | break-even: eager training time per trial |", "|---|---|---|---|---|---|"]
    for r in results:
        if r.error:
            lines.append(f"| {r.name} | failed: {r.error.splitlines()[0]} | | | | |")
            continue
        even = f"{r.break_even_s:.0f} s" if r.break_even_s != float("inf") else "never (no speed-up)"
        lines.append(f"| {r.name} ({r.samples}) | {r.eager_epoch:.2f} | {r.compiled_epoch:.2f} | {r.speedup:.2f}x | "
                     f"{r.one_off:.1f} | **{even}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (default 4; >= 2)")
    parser.add_argument("--quick", action="store_true", help="digits only, 2 epochs (smoke test)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is not steady)")
    print(table(run(epochs=args.epochs, quick=args.quick)))


if __name__ == "__main__":
    main()
