"""GPU trial throughput for a CIFAR-shaped network: fp32 against bf16 autocast, and the per-step loop.

Run on a CUDA machine (a few minutes on an H100/H200):

    python benchmarks/gpu_throughput.py                      # synthetic CIFAR-shaped data
    python benchmarks/gpu_throughput.py --cifar-dir DIR      # real CIFAR-10 (cifar-10-batches-py inside DIR)
    python benchmarks/gpu_throughput.py --dry-run            # tiny CPU run that checks the script itself

It measures, on one fixed CIFAR-shaped network (3x32x32, 10 classes, SNASNet's cell without its
backward edge, ``--channels``/``--timesteps``):

1. training throughput (samples/s: forward, loss, backward, Adam step) of our multi-step network
   in fp32 and under bf16 autocast, each on channels_last (what ``build_network`` builds) and on
   NCHW feature maps, and of the plain snntorch per-step loop in fp32 on NCHW
   (benchmarks/training_throughput.py); all paths run in turn, in alternating order, and each
   ratio is the median over rounds;
2. whether bf16 keeps accuracy: the same initial weights trained for ``--accuracy-steps`` steps in
   fp32 and in bf16 on the same batches, then held-out accuracy of each (bf16 "keeps accuracy" when
   it is within ``--tolerance`` of fp32);
3. what that means for a search: seconds per CIFAR-10 training epoch (50 000 samples) and trials
   per hour at ``--epochs`` epochs per trial, for the precision it recommends.

Results print as Markdown and, with ``--json PATH``, as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from torch.nn import functional as F

from benchmarks._common import Paired, interleave_all, machine
from benchmarks.training_throughput import BASELINE, CELL, NCHW_FUSED, OURS, describe, variants
from hasnas_optuna.architecture import Architecture, Cell
from hasnas_optuna.network import build_network, release_neurons

CIFAR10_TRAIN = 50_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read and check the arguments; errors exit with status 2 and say what is wrong."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny run on the CPU (checks the script; numbers mean nothing)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda, or cpu with --dry-run)")
    parser.add_argument("--batch", type=int, default=64,
                        help="training batch size (default 64, as studies/cifar10_hasnas.toml)")
    parser.add_argument("--channels", type=int, default=64, help="base width C (default 64)")
    parser.add_argument("--timesteps", type=int, default=5, help="timesteps T (default 5, as SNASNet)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per repetition (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions (default 5)")
    parser.add_argument("--accuracy-steps", type=int, default=300,
                        help="training steps of the bf16-vs-fp32 accuracy check (default 300; 0 skips it)")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="bf16 keeps accuracy when within this of fp32 (default 0.02)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per trial for the trials/hour line (default 10)")
    parser.add_argument("--cifar-dir", type=Path, default=None,
                        help="folder holding cifar-10-batches-py (default: synthetic CIFAR-shaped data)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    for name in ("batch", "channels", "timesteps", "steps", "repeats", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.accuracy_steps < 0:
        parser.error(f"--accuracy-steps must be >= 0, got {args.accuracy_steps}")
    if not 0 <= args.tolerance < 1:
        parser.error(f"--tolerance must be in [0, 1), got {args.tolerance}")
    if args.cifar_dir is not None and not (args.cifar_dir / "cifar-10-batches-py").is_dir():
        parser.error(f"--cifar-dir {str(args.cifar_dir)!r} has no cifar-10-batches-py folder")
    if args.dry_run:
        args.device = args.device or "cpu"
        args.batch, args.channels, args.timesteps = min(args.batch, 8), min(args.channels, 4), min(args.timesteps, 2)
        args.steps, args.repeats, args.accuracy_steps = 1, 2, min(args.accuracy_steps, 3)
    else:
        args.device = args.device or "cuda"
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        parser.error(f"--device {args.device!r}: {exc}")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available on this machine; run on a GPU machine, or use --dry-run to check "
                     "the script on the CPU")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        parser.error(f"{torch.cuda.get_device_name(device)} does not support bf16")
    args.device = device
    return args


def architecture(channels: int, timesteps: int) -> Architecture:
    """The CIFAR-shaped network measured here."""
    cell = Cell.from_matrix(CELL)
    return Architecture(input_shape=(3, 32, 32), num_classes=10, cell_a=cell, cell_b=cell, channels=channels,
                        timesteps=timesteps)


def synthetic_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable CIFAR-shaped data: one smooth random prototype per class plus pixel noise, in [0, 1]."""
    gen = torch.Generator().manual_seed(1234)
    prototypes = F.interpolate(torch.rand(10, 3, 8, 8, generator=gen), size=(32, 32), mode="bilinear")
    gen.manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=gen)
    images = (prototypes[labels] + 0.35 * torch.randn(n, 3, 32, 32, generator=gen)).clamp(0, 1)
    return images, labels


def cifar_data(folder: Path) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Real CIFAR-10 train and test tensors, read by the package's own data module."""
    from hasnas_optuna.data import CifarDataModule

    dm = CifarDataModule(folder, classes=10).prepare()
    return dm.splits["train"], dm.splits["test"]


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device``, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (timings must include it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trainer(model: torch.nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
            precision: str, steps: int) -> Callable[[], None]:
    """A closure running ``steps`` training steps and waiting for the device."""
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    def run() -> None:
        for _ in range(steps):
            images, labels = next(batches)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, precision):
                loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
        sync(device)

    return run


def cycle(images: torch.Tensor, labels: torch.Tensor, batch: int, device: torch.device
          ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless mini-batches already on ``device``."""
    images, labels = images.to(device), labels.to(device)
    while True:
        for start in range(0, len(images) - batch + 1, batch):
            yield images[start:start + batch], labels[start:start + batch]


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
             precision: str) -> float:
    """Held-out accuracy (evaluated under the same precision it was trained in)."""
    model.eval()
    correct = 0
    with torch.no_grad(), autocast(device, precision):
        for start in range(0, len(images), 256):
            x, y = images[start:start + 256].to(device), labels[start:start + 256].to(device)
            correct += int((model(x).argmax(1) == y).sum())
    model.train()
    return correct / len(images)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements of the module docstring; returns them as plain values."""
    device: torch.device = args.device
    torch.manual_seed(0)
    arch = architecture(args.channels, args.timesteps)
    if args.cifar_dir is not None:
        (train_x, train_y), (test_x, test_y) = cifar_data(args.cifar_dir)
        data = "CIFAR-10"
    else:
        n_train = max(args.batch * 8, 2048 if not args.dry_run else 64)
        (train_x, train_y), (test_x, test_y) = synthetic_data(n_train, 1), synthetic_data(
            1024 if not args.dry_run else 32, 2)
        data = "synthetic CIFAR-shaped (class prototypes + noise)"
    built = variants(arch, (BASELINE, NCHW_FUSED, OURS))  # the same weights in each
    ours = built[OURS].to(device)
    initial = copy.deepcopy(ours.state_dict())
    nchw = built[NCHW_FUSED].to(device)
    models = {"per-step fp32": built[BASELINE].to(device), "ours fp32": ours, "ours bf16": copy.deepcopy(ours),
              "ours fp32 NCHW": nchw, "ours bf16 NCHW": copy.deepcopy(nchw)}

    # 1. throughput, all paths in turn (alternating order), same batches
    runs = {name: trainer(model, cycle(train_x, train_y, args.batch, device), device,
                          "bf16" if "bf16" in name else "fp32", args.steps) for name, model in models.items()}
    for fn in runs.values():  # warm-up: cuDNN autotuning, allocator
        fn()
    seconds = interleave_all(runs, repeats=args.repeats)
    samples = args.batch * args.steps
    sps = {name: samples / statistics.median(times) for name, times in seconds.items()}

    def ratio(baseline: str, candidate: str) -> float:
        return Paired(seconds[baseline], seconds[candidate]).ratio

    # 2. does bf16 keep accuracy? same start, same batches
    acc: dict[str, float | None] = {"fp32": None, "bf16": None}
    if args.accuracy_steps:
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            model = build_network(arch).to(device)
            model.load_state_dict(initial)
            trainer(model, cycle(train_x, train_y, args.batch, device), device, precision, args.accuracy_steps)()
            acc[precision] = accuracy(model, test_x, test_y, device, precision)
            release_neurons(model)
    fp32_acc, bf16_acc = acc["fp32"], acc["bf16"]
    keeps = fp32_acc is not None and bf16_acc is not None and bf16_acc >= fp32_acc - args.tolerance
    allowed = [name for name in sps if name.startswith("ours") and (keeps or "bf16" not in name)]
    best = max(allowed, key=lambda name: sps[name])  # the fastest path of ours that keeps accuracy
    epoch_s = CIFAR10_TRAIN / sps[best]
    for net in models.values():
        release_neurons(net)
    return {
        "machine": machine(), "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU)",
        "dry_run": args.dry_run, "data": data, "network": describe(arch), "batch": args.batch,
        "samples_per_s": sps, "speedup_vs_per_step": ratio("per-step fp32", "ours fp32"),
        "speedup_bf16": ratio("ours fp32", "ours bf16"),
        "speedup_channels_last": {"fp32": ratio("ours fp32 NCHW", "ours fp32"),
                                  "bf16": ratio("ours bf16 NCHW", "ours bf16")},
        "accuracy_steps": args.accuracy_steps, "accuracy": acc, "bf16_keeps_accuracy": keeps,
        "recommended": best, "cifar10_epoch_s": epoch_s, "epochs_per_trial": args.epochs,
        "trials_per_hour": 3600 / (epoch_s * args.epochs),
    }


def markdown(result: dict[str, Any]) -> str:
    """The result as a short Markdown report."""
    sps = result["samples_per_s"]
    acc = result["accuracy"]
    lines = [
        f"GPU throughput ({result['gpu']}; device {result['device']}{'; DRY RUN' if result['dry_run'] else ''})",
        f"network: {result['network']}, batch {result['batch']}; data: {result['data']}",
        "",
        "| path | training samples/s |", "|---|---|",
        *(f"| {name} | {value:,.0f} |" for name, value in sps.items()),
        "",
        f"ours fp32 / per-step fp32: **{result['speedup_vs_per_step']:.2f}x**; "
        f"ours bf16 / ours fp32: **{result['speedup_bf16']:.2f}x**; channels_last / NCHW: "
        f"{result['speedup_channels_last']['fp32']:.2f}x (fp32), {result['speedup_channels_last']['bf16']:.2f}x (bf16) "
        "(medians over rounds that run every path in turn)",
    ]
    if acc["fp32"] is not None:
        lines.append(f"held-out accuracy after {result['accuracy_steps']} steps: fp32 {acc['fp32']:.3f}, "
                     f"bf16 {acc['bf16']:.3f} -> bf16 {'keeps' if result['bf16_keeps_accuracy'] else 'loses'} "
                     "accuracy")
    lines.append(f"recommended: {result['recommended']}; a CIFAR-10 training epoch takes "
                 f"{result['cifar10_epoch_s']:.1f} s, i.e. {result['trials_per_hour']:.1f} trials/hour at "
                 f"{result['epochs_per_trial']} epochs per trial (training only)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    result = run(args)
    result["wall_s"] = time.perf_counter() - start
    print(markdown(result))
    print(f"(took {result['wall_s']:.1f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
