"""Run every speed benchmark and write benchmarks/RESULTS.md.

Run: python -m benchmarks [--quick] [--only NAME ...] [--update] [--out PATH]
(or python benchmarks/run_all.py). About 10 minutes on 2 CPU cores; --quick is a smoke test of a
minute or two whose numbers mean little. ``--only NAME ... --update`` reruns those sections and
replaces them (and their summary rows) in the existing file, which then says so.

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
    from benchmarks import cost_model_speed as cms

    revision = cms.PREVIOUS_RELEASE
    networks, batch_networks = (200, 2000) if quick else (2000, 20000)
    both = cms.against(revision, networks=networks, batch_networks=batch_networks, rounds=3 if quick else 5)
    new, old = both["this"], both[revision]
    chunks = cms.chunking_in_fresh_process(batch_networks)
    (default_cells, default_rate), (double_cells, double_rate) = sorted(chunks.items())
    summary.append(("cost model, one 20-layer network, warm memo (median)", f"{new['warm_us']:.1f} us "
                    f"({old['warm_us'] / new['warm_us']:.2f}x {revision}'s)", "<= 50 us", _met(new["warm_us"] <= 50)))
    summary.append(("cost model, one 20-layer network, cold (memo cleared; median)", f"{new['cold_us']:.1f} us "
                    f"({old['cold_us'] / new['cold_us']:.2f}x {revision}'s)", "<= 50 us", _met(new["cold_us"] <= 50)))
    summary.append(("cost model, batched", f"{new['batch_per_s']:,.0f} networks/s "
                    f"({new['batch_per_s'] / old['batch_per_s']:.2f}x {revision}'s)", ">= 300,000 networks/s",
                    _met(new["batch_per_s"] >= 300_000)))
    rows = [("one network, warm per-layer memo (median of {n}), us", "warm_us", True),
            ("one network, cold: memo cleared before each (median of {n}), us", "cold_us", True),
            (f"batched `estimate_costs` ({batch_networks:,} networks, best of 5), networks/s", "batch_per_s", False)]
    lines = [f"| neurosim-22nm, 20-layer CIFAR networks | this release | {revision} (before cost model v2) | "
             "speed-up |", "|---|---|---|---|"]
    for label, key, lower in rows:
        ratio = old[key] / new[key] if lower else new[key] / old[key]
        lines.append(f"| {label.format(n=networks)} | {new[key]:,.1f} | {old[key]:,.1f} | **{ratio:.2f}x** |")
    return "\n".join([
        *lines, "",
        f"Each side in its own fresh process, alternating, median of the rounds ({revision} extracted with "
        "`git archive`). Targets: <= 50 us per network warm and cold, >= 300,000 networks/s batched.",
        "",
        f"Batch chunk size, side by side (median of 5 alternating runs): {default_cells:,} network-layer cells "
        f"per NumPy pass (the package's; 80 KiB arrays) {default_rate:,.0f} networks/s, {double_cells:,} cells "
        f"(160 KiB arrays, above glibc's 128 KiB mmap threshold) {double_rate:,.0f} networks/s: "
        f"**{default_rate / double_rate:.2f}x**.",
        "",
        f"`python benchmarks/cost_model_speed.py --against {revision}`; `python benchmarks/cost_model_speed.py` "
        "(both presets, this release only).",
    ])


def _calibration(quick: bool, summary: Summary) -> str:
    from benchmarks import cim_calibration as cal
    from benchmarks import cost_model_speed as cms

    networks, runs = cal.load_runs()
    counts = cal.all_counts(networks, runs)
    fits = cal.fit_all(networks, runs, counts=counts)
    in_sample = [cal.score(r, networks[r.network], cal.fitted_chip(r, fits)) for r in runs]
    held_out = cal.cross_validate(networks, runs, counts)
    previous = cal.score_release(cms.PREVIOUS_RELEASE, runs)
    targeted = [s for s in held_out if s.run.node in (22, 32)]
    for quantity, (median_target, worst_target) in cal.TARGETS.items():
        _, median, worst, _ = cal.summary(targeted, quantity)
        summary.append((f"cost model vs NeuroSim V1.4, {quantity}, 22/32 nm, each network held out: median / worst",
                        f"{median:.1%} / {worst:+.1%}", f"<= {median_target:.0%} / <= {worst_target:.0%}",
                        _met(median <= median_target and abs(worst) <= worst_target)))
    return "\n".join([
        f"{len(runs)} NeuroSim V1.4 runs of {len({r.network for r in runs})} networks "
        "(`benchmarks/data/neurosim_v14_runs.json`); errors are model / NeuroSim - 1, the model's neuron parts "
        "left out (NeuroSim has none). Leave one network out: every fit redone without the network, its runs "
        "scored with the result.", "",
        *cal.table(held_out, "Leave one network out"), "",
        *cal.per_layer_summary(held_out), "",
        *cal.table(in_sample, "In sample (fitted on every run, as the presets ship)"), "",
        *cal.table(previous, f"The previous cost model ({cms.PREVIOUS_RELEASE}) on the same runs"), "",
        f"Run F ({', '.join(cal.NOT_FITTED)}) is not fitted for energy and latency (docs/cost-model.md, section 7).",
        "",
        f"`python benchmarks/cim_calibration.py --against {cms.PREVIOUS_RELEASE}` (add `--write` to refit the "
        "presets).",
    ])


def _cli(quick: bool, summary: Summary) -> str:
    from benchmarks import cli_latency as cl

    medians = cl.measure(repeats=1 if quick else 5)
    for name, seconds in medians.items():
        summary.append((f"`{name}`, fresh process (median)", f"{seconds:.2f} s", f"<= {cl.TARGET_S:.0f} s",
                        _met(seconds <= cl.TARGET_S)))
    return cl.table(medians) + "\n\n`python benchmarks/cli_latency.py`."


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


SUMMARY_PREFIXES = {"calibration": ("cost model vs NeuroSim",), "cost": ("cost model, one", "cost model, batched"),
                    "cli": ("`hasnas ",)}
"""Summary rows of a section, by the start of their text (what ``--update`` replaces)."""

SECTIONS: dict[str, tuple[str, Callable[[bool, Summary], str]]] = {
    "throughput": ("Training throughput: multi-step network against the plain snntorch per-step loop", _throughput),
    "calibration": ("Cost model against NeuroSim V1.4: leave-one-network-out cross-validation", _calibration),
    "cost": ("Cost-model throughput", _cost_model),
    "cli": ("Read-only commands and config errors: time to answer", _cli),
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
    parser.add_argument("--update", action="store_true", help="with --only: replace those sections in the "
                        "existing file instead of writing a new one")
    args = parser.parse_args(argv)
    if args.update and not (args.only and args.out.exists()):
        parser.error("--update needs --only and an existing --out file")
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
    if args.update:
        text = _merge(args.out.read_text(encoding="utf-8"), names, parts, summary, info, total, args.quick)
        args.out.write_text(text, encoding="utf-8")
        print(f"updated {args.out} in {total:.0f} s")
        return 1 if failed else 0
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
            start = old.index(KEPT_SECTION)
            end = old.find("\n## ", start + len(KEPT_SECTION))  # that section alone, not what follows it
            kept = "\n" + (old[start:] if end == -1 else old[start:end + 1])
    args.out.write_text("\n".join(lines) + kept, encoding="utf-8")
    print(f"wrote {args.out} in {total:.0f} s")
    return 1 if failed else 0


def _merge(text: str, names: list[str], parts: list[str], summary: Summary, info: dict[str, str], total: float,
           quick: bool) -> str:
    """``text`` (a RESULTS.md) with the sections ``names`` and their summary rows replaced."""
    prefixes = tuple(p for name in names for p in SUMMARY_PREFIXES.get(name, (SECTIONS[name][0],)))
    lines = text.split("\n")
    rows = [i for i, line in enumerate(lines) if line.startswith("| ") and i > lines.index("## Summary")]
    end_of_table = next(i for i in rows if lines[i + 1] == "")
    kept = [line for i, line in enumerate(lines)
            if not (i in rows and i <= end_of_table and line[2:].startswith(prefixes))]
    at = kept.index("## Summary") + 4
    while kept[at].startswith("| "):
        at += 1
    kept[at:at] = [f"| {what} | {value} | {target} | {met} |" for what, value, target, met in summary]
    text = "\n".join(kept)
    for name, part in zip(names, parts, strict=True):
        header = f"## {SECTIONS[name][0]}\n"
        if header in text:
            start = text.index(header)
            following = text.find("\n## ", start + len(header))
            text = text[:start] + part + ("\n" + text[following + 1:] if following != -1 else "")
        else:
            text = text.rstrip("\n") + "\n\n" + part
    note = (f"Sections rerun later with `python -m benchmarks --update --only {' '.join(names)}"
            f"{' --quick' if quick else ''}` in {total:.0f} s: " + "; ".join(f"{k}: {v}" for k, v in info.items())
            + ".")
    head, rest = text.split("\n## Summary", 1)
    return head.rstrip("\n") + "\n\n" + note + "\n\n## Summary" + rest


if __name__ == "__main__":
    sys.exit(main())
