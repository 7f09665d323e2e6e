"""Run every speed benchmark and write benchmarks/RESULTS.md.

Run: python -m benchmarks [--quick] [--only NAME ...] [--out PATH]
(or python benchmarks/run_all.py). About 10 minutes on 2 CPU cores; --quick is a smoke test of a
minute or two whose numbers mean little.

Every comparison is a ratio measured in this one run, baseline and candidate interleaved where
both are timed; the machine is described at the top of the file.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine

HERE = Path(__file__).resolve().parent
Summary = list[tuple[str, str, str, str]]  # (what, measured, target, met?)


def _throughput(quick: bool, summary: Summary) -> str:
    from benchmarks import training_throughput as tt

    results = tt.run(quick)
    glibc = tt.run_with_glibc_malloc(quick)
    for r in results:
        ratio = r.versus_baseline(tt.OURS).ratio
        summary.append((f"training throughput, {r.name}, {r.threads} thread{'s' * (r.threads > 1)}: ours / per-step "
                        "snntorch loop", f"{ratio:.2f}x", ">= 1.5x", _met(ratio >= 1.5)))
    for r in glibc:
        ratio = r.versus_baseline(tt.OURS).ratio
        summary.append((f"the same, {r.name}, {r.threads} thread{'s' * (r.threads > 1)}, with "
                        "HASNAS_KEEP_FREED_MEMORY=0 (glibc's default allocator)", f"{ratio:.2f}x", "-", "-"))
    return (tt.table(results) + "\n\nThe columns between the baseline and ours add one change each (see "
            "`benchmarks/training_throughput.py`); all variants have the same weights and alternate in every round. "
            "This process keeps freed memory, as any process that builds one of our networks does "
            "(`hasnas_optuna/_malloc.py`). The same comparison in a fresh process that opted out "
            "(`HASNAS_KEEP_FREED_MEMORY=0`: glibc's default allocator, which page-faults large tensors in anew "
            "at every step):\n\n"
            + tt.table(glibc) + "\n\n`python benchmarks/training_throughput.py [--glibc-malloc]`.")


def _cost_model(quick: bool, summary: Summary) -> str:
    import random

    from benchmarks import cost_model_speed as cms

    rng = random.Random(0)
    single_nets = [cms.random_network(rng) for _ in range(200 if quick else 2000)]
    batch_nets = [cms.random_network(rng) for _ in range(2000 if quick else 20000)]
    warm = cms.single(single_nets, "neurosim-22nm", cold=False)
    cold = cms.single(single_nets, "neurosim-22nm", cold=True)
    rate = cms.batch(batch_nets, "neurosim-22nm")
    chunks = cms.chunking_in_fresh_process(len(batch_nets))
    (default_cells, default_rate), (double_cells, double_rate) = sorted(chunks.items())
    summary.append(("cost model, one 20-layer network (warm memo, median)", f"{warm:.1f} us",
                    "<= 50 us", _met(warm <= 50)))
    summary.append(("cost model, batched", f"{rate:,.0f} networks/s", ">= 200,000 networks/s", _met(rate >= 200_000)))
    return "\n".join([
        "| neurosim-22nm, 20-layer CIFAR networks | measured | target | speed / target speed (>= 1 meets it) |",
        "|---|---|---|---|",
        f"| one network, warm per-layer memo (median of {len(single_nets)}) | {warm:.1f} us | 50 us | "
        f"{50 / warm:.2f}x |",
        f"| one network, cold (memo cleared before each) | {cold:.1f} us | 50 us | {50 / cold:.2f}x |",
        f"| batched `estimate_costs` ({len(batch_nets):,} networks, best of 5) | {rate:,.0f} networks/s | "
        f"200,000 networks/s | {rate / 200_000:.2f}x |",
        "",
        f"Batch chunk size, side by side (median of 5 alternating runs): {default_cells:,} network-layer cells "
        f"per NumPy pass (the package's; 80 KiB arrays) {default_rate:,.0f} networks/s, {double_cells:,} cells "
        f"(160 KiB arrays, above glibc's 128 KiB mmap threshold) {double_rate:,.0f} networks/s: "
        f"**{default_rate / double_rate:.2f}x**.",
        "",
        "`python benchmarks/cost_model_speed.py` (both presets).",
    ])


def _search(quick: bool, summary: Summary) -> str:
    from benchmarks import search_overhead as so

    trials = 8 if quick else 40
    paired = so.sampler_overhead(trials=trials, repeats=2 if quick else 4)
    scoring = so.scoring_vs_training(candidates=5 if quick else 50, trained=1 if quick else 2,
                                     epochs=2 if quick else 10)
    ms = sorted(paired.candidate)[len(paired.candidate) // 2] / trials * 1e3
    summary.append(("sampler: hardware-aware NSGA-II per trial", f"{ms:.1f} ms", "-", "-"))
    summary.append((f"training-free: candidates scored per candidate trained ({scoring.epochs} epochs, digits)",
                    f"{scoring.ratio:.0f}x", "papers: 3.7x-117x whole-search speed-ups", "-"))
    return ("### Sampler overhead per trial\n\n" + so.sampler_table(paired, trials)
            + "\n\n### Training-free scoring against training\n\n" + so.scoring_table(scoring)
            + "\n\n`python benchmarks/search_overhead.py`.")


def _trial_overhead(quick: bool, summary: Summary) -> str:
    from benchmarks import trial_overhead as to

    result = to.measure(trials=1 if quick else 3, epochs=2 if quick else 10)
    rollback = to.measure(trials=1 if quick else 3, epochs=2 if quick else 10, rollback_journal=True)
    summary.append((f"per-trial overhead of a {result.epochs}-epoch digits trial (SQLite in WAL mode, the default)",
                    f"{result.fraction:.1%}", "<= 5 %", _met(result.fraction <= 0.05)))
    summary.append(("the same with SQLite's rollback journal (syncs the disk at every commit; before this release)",
                    f"{rollback.fraction:.1%}", "<= 5 %", _met(rollback.fraction <= 0.05)))
    summary.append(("importing the search (torch, Lightning, Optuna, ours), once per process",
                    f"{result.import_s:.2f} s", "once per process", "yes (one process runs every trial)"))
    return (f"{result.trials} trials of {result.epochs} epochs each, after a one-trial warm-up, through `run_search` "
            "on a SQLite file with artifacts (the digits study as `hasnas search` runs it; the storage puts the "
            "file in WAL mode with `synchronous=NORMAL`).\n\n"
            + to.table(result) + "\n\nThe same on a plain `RDBStorage`, in SQLite's default rollback-journal mode "
            "(it syncs the disk at each of the trial's dozens of commits):\n\n" + to.table(rollback)
            + "\n\n`python benchmarks/trial_overhead.py [--rollback-journal]` (`--profile` adds a cProfile).")


def _storage(quick: bool, summary: Summary) -> str:
    from benchmarks import storage_writes as sw

    results = sw.run(sw.SERVERS, trials=3 if quick else 20)
    for r in results:
        summary.append((f"a trained trial's storage writes on {r.storage}: Optuna's one call per item / ours grouped",
                        f"{r.paired.ratio:.1f}x", "-", "-"))
    return (f"{len(sw.PARAMS)} parameters, {len(sw.USER_ATTRS)} user attributes, {len(sw.CONSTRAINTS)} constraints "
            f"and {len(sw.ARTIFACT_RECORDS)} artifact records per trial, written into running trials of one study "
            "(the two ways alternate):\n\n" + sw.table(results) + "\n\n`python benchmarks/storage_writes.py`.")


def _compile(quick: bool, summary: Summary) -> str:
    from benchmarks import compile_breakeven as cb

    results = cb.run(quick=quick, epochs=3)
    for r in results:
        even = ("failed" if r.error else f"{r.break_even_s:.0f} s of eager training per trial"
                if r.break_even_s != float("inf") else "never (compiled is not faster)")
        summary.append((f"torch.compile break-even, {r.name}", even, "-", "-"))
    return cb.table(results) + "\n\n`python benchmarks/compile_breakeven.py`."


def _e2e(quick: bool, summary: Summary) -> str:
    from benchmarks import e2e_search as e2e

    result = e2e.run(target=0.95, max_seconds=30 if quick else 240)
    summary.append(("digits search to a feasible network with >= 95 % val. accuracy",
                    f"{result.seconds:.1f} s" if result.seconds is not None else "not reached",
                    "-", "-" if result.seconds is None else "reached"))
    return e2e.table(result) + "\n\n`python benchmarks/e2e_search.py`."


def _gpu(quick: bool, summary: Summary) -> str:
    import torch

    if not torch.cuda.is_available():
        summary.append(("GPU trial throughput (CIFAR-shaped, bf16)", "not run: no CUDA device", "-", "-"))
        return ("Not run: this machine has no CUDA device. On a GPU machine: "
                "`python benchmarks/gpu_throughput.py --json gpu.json` (a few minutes on an H100/H200; "
                "`--dry-run` checks it on a CPU).")
    from benchmarks import gpu_throughput as gt

    result = gt.run(gt.parse_args(["--steps", "5", "--accuracy-steps", "50"] if quick else []))
    summary.append(("GPU: ours / per-step loop (fp32)", f"{result['speedup_vs_per_step']:.2f}x", "-", "-"))
    return gt.markdown(result)


SECTIONS: dict[str, tuple[str, Callable[[bool, Summary], str]]] = {
    "throughput": ("Training throughput: multi-step network against the plain snntorch per-step loop", _throughput),
    "cost": ("Cost-model throughput", _cost_model),
    "search": ("Sampler overhead and training-free scoring", _search),
    "overhead": ("Per-trial overhead of a real 10-epoch digits trial", _trial_overhead),
    "storage": ("Storage writes of a trained trial", _storage),
    "compile": ("torch.compile break-even", _compile),
    "e2e": ("End-to-end digits search to 95 % feasible validation accuracy", _e2e),
    "gpu": ("GPU trial throughput", _gpu),
}


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


KEPT_SECTION = "## Co-design: the chip's precision in the trained network"
"""This heading and what follows it in an existing RESULTS.md survive a rewrite (not measured here)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, numbers mean little")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="where to write (default "
                        "benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    names = args.only or list(SECTIONS)
    info = machine()
    summary: Summary = []
    parts: list[str] = []
    failed = 0
    start = time.perf_counter()
    for name in names:
        title, fn = SECTIONS[name]
        print(f"== {title}", flush=True)
        section_start, cpu_start = time.perf_counter(), time.process_time()
        try:
            body = fn(args.quick, summary)
        except Exception:
            failed += 1
            body = "FAILED:\n\n```\n" + traceback.format_exc() + "```"
        took = time.perf_counter() - section_start
        share = (time.process_time() - cpu_start) / took if took else 0.0
        note = f"{took:.0f} s; this process got {share:.0%} of a core"
        print(body + f"\n({note})\n", flush=True)
        parts.append(f"## {title}\n\n{body}\n\n_({note})_\n")
    total = time.perf_counter() - start
    lines = [
        "# Benchmark results" + (" (--quick smoke test: numbers mean little)" if args.quick else ""),
        "",
        f"Written by `python -m benchmarks{' --quick' if args.quick else ''}"
        f"{' --only ' + ' '.join(names) if args.only else ''}` in {total:.0f} s.",
        "",
        "Machine: " + "; ".join(f"{key}: {value}" for key, value in info.items()) + ".",
        "The machine may be shared with other work: each section says how much of a core this process got "
        "(CPU time / wall time; subprocesses not counted). Absolute times scale with it; ratios are measured "
        "interleaved (A B B A ...) so that contention hits baseline and candidate alike.",
        "",
        "## Summary",
        "",
        "| what | measured | target | met |", "|---|---|---|---|",
        *(f"| {what} | {value} | {target} | {met} |" for what, value, target, met in summary),
        "",
        *parts,
    ]
    kept = ""  # sections measured by hand-run benchmarks (codesign.py) are not this run's to drop
    if args.out.exists():
        old = args.out.read_text(encoding="utf-8")
        if KEPT_SECTION in old:
            kept = "\n" + old[old.index(KEPT_SECTION):]
    args.out.write_text("\n".join(lines) + kept, encoding="utf-8")
    print(f"wrote {args.out} in {total:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
