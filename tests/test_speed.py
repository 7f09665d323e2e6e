"""Speed features and benchmarks: the compile opt-in, the per-step baseline's math, the GPU script's CPU path.

No timings are asserted here; benchmarks/RESULTS.md holds the measured numbers.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
import pytest
import torch

from hasnas_optuna import ConfigError
from hasnas_optuna.architecture import Architecture, Cell
from hasnas_optuna.config import StudyConfig, TrainingConfig
from hasnas_optuna.network import build_network, release_neurons

ROOT = Path(__file__).resolve().parent.parent


def bench(name: str) -> ModuleType:
    """Import ``benchmarks.<name>`` from this checkout."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"benchmarks.{name}")


# -- [training] compile ----------------------------------------------------------------------------

def test_compile_is_an_opt_in_training_key() -> None:
    assert TrainingConfig().compile is False
    config = StudyConfig.from_dict({"training": {"compile": True}})
    assert config.training.compile is True
    with pytest.raises(ConfigError, match=r"training\.compile='yes' must be true or false"):
        StudyConfig.from_dict({"training": {"compile": "yes"}})
    with pytest.raises(ConfigError, match=r"training\.compile=1 must be true or false"):
        TrainingConfig(compile=1)  # type: ignore[arg-type]


def test_the_objective_passes_compile_to_training(monkeypatch: pytest.MonkeyPatch) -> None:
    from hasnas_optuna import objective as objective_module
    from hasnas_optuna.training import TrainingResult

    seen: list[Any] = []

    def fake_train(arch: Architecture, datamodule: Any, **kwargs: Any) -> TrainingResult:
        seen.append(kwargs.get("compile"))
        return TrainingResult(val_accuracy=0.5, test_accuracy=None, epochs=1, seconds=0.0,
                              spike_rates=[None] * len(arch.to_network().layers))

    monkeypatch.setattr(objective_module, "train_architecture", fake_train)
    for flag in (True, False):
        config = StudyConfig.from_dict({"training": {"compile": flag, "pruner": "none"}})
        study = optuna.create_study(direction="maximize")
        study.optimize(objective_module.HasnasObjective(config), n_trials=1)
        assert study.trials[0].value == 0.5
    assert seen == [True, False]


def test_train_architecture_compiles_the_network_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    from hasnas_optuna.data import DigitsDataModule
    from hasnas_optuna.training import train_architecture

    compiled: list[Any] = []

    def fake_compile(fn: Any, *args: Any, **kwargs: Any) -> Any:
        compiled.append(kwargs)
        return fn  # run eagerly: a real compile takes minutes on a CPU (benchmarks/compile_breakeven.py)

    monkeypatch.setattr(torch, "compile", fake_compile)
    cell = Cell.from_matrix("0302 0030 0003 0000")
    arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=4, timesteps=2)
    modules: list[Any] = []
    result = train_architecture(arch, DigitsDataModule(max_train_samples=128), epochs=1, test=False,
                                compile=True, on_module=modules.append)
    assert compiled == [{"dynamic": False}] and 0.0 <= result.val_accuracy <= 1.0  # static shapes, once
    assert not any(key.startswith("_orig_mod") for key in modules[0].state_dict())  # same parameter names


# -- keeping freed memory (hasnas_optuna/_malloc.py) ----------------------------------------------

_FAULTS_PER_ALLOCATION = """
import resource, torch
from hasnas_optuna._malloc import keep_freed_memory
print(keep_freed_memory())
faults = []
for _ in range(8):  # a 64 MiB tensor, written and freed: an activation of one training step
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 * 2**20)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(max(faults[4:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_kept_memory_is_reused_without_page_faults() -> None:
    """Real page-fault counts in fresh processes: glibc's defaults fault a large block in at every
    allocation (about 16 384 4-KiB pages for 64 MiB); once freed memory is kept, none."""
    def run(env: dict[str, str]) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", _FAULTS_PER_ALLOCATION], capture_output=True, text=True,
                             check=True, env={**os.environ, **env}).stdout.split()
        return out[0], int(out[1])

    applied, kept = run({"HASNAS_KEEP_FREED_MEMORY": "1"})
    skipped, default = run({"HASNAS_KEEP_FREED_MEMORY": "0"})
    assert (applied, skipped) == ("True", "False")
    assert kept <= 16 < default  # more than one fault per 4 MiB: even 2 MiB huge pages fault 32 times


def test_building_a_network_keeps_freed_memory() -> None:
    code = ("from hasnas_optuna import _malloc\nfrom hasnas_optuna.architecture import Architecture, Cell\n"
            "from hasnas_optuna.network import build_network\nprint(_malloc._applied)\n"
            "cell = Cell.from_matrix('0302 0030 0003 0000')\n"
            "build_network(Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell))\n"
            "print(_malloc._applied)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "HASNAS_KEEP_FREED_MEMORY": "1"}).stdout.split()
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert out == ["None", str(glibc)]  # nothing changes on import; the first network applies it


# -- the per-step snntorch baseline of benchmarks/training_throughput.py ---------------------------

@pytest.mark.parametrize("encoding", ["direct", "latency"])
def test_every_benchmarked_variant_computes_what_our_network_computes(encoding: str) -> None:
    """The per-step baseline and each step between it and ours: same logits and gradients (eval mode)."""
    tt = bench("training_throughput")
    cell = Cell.from_matrix("0302 0031 0004 0000")  # convs, skip, avgpool; forward-only
    arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=4, timesteps=3,
                        hidden_features=16, encoding=encoding)
    models = tt.variants(arch)
    assert list(models) == list(tt.VARIANTS)
    images = torch.rand(6, 1, 8, 8)
    ours = models[tt.OURS].eval()
    torch.manual_seed(1)  # latency encoding is deterministic; the seed only pins anything random
    expected = ours(images)
    expected.square().sum().backward()
    for name, model in models.items():
        if name == tt.OURS:
            continue
        model.eval()
        out = model(images)
        assert torch.allclose(out, expected, atol=1e-5), name
        out.square().sum().backward()
        for (param, p), q in zip(ours.named_parameters(), model.parameters(), strict=True):
            assert p.grad is not None and q.grad is not None, (name, param)
            assert torch.allclose(p.grad, q.grad, atol=1e-4), (name, param)
    # the variants differ in what they are meant to: memory format and LIF execution
    network = models["multi-step, NCHW, autograd LIF"]
    nchw, nhwc = network.reduce[0][0].weight, ours.reduce[0][0].weight  # conv 4 -> 8 channels
    assert nchw.is_contiguous() and nhwc.is_contiguous(memory_format=torch.channels_last) and not nhwc.is_contiguous()
    lif = network.reduce_lif
    assert lif.forward == lif.unfused and models[tt.NCHW_FUSED].reduce_lif.forward != lif.unfused
    for model in models.values():
        release_neurons(model)


def test_per_step_baseline_refuses_backward_cells() -> None:
    tt = bench("training_throughput")
    cell = Cell.from_matrix("0302 0030 3003 0000")  # 2 -> 0 backward edge
    net = build_network(Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=2))
    with pytest.raises(ValueError, match="forward-only"):
        tt.PerStepLoop(net)
    release_neurons(net)


def test_interleave_alternates_baseline_and_candidate() -> None:
    common = bench("_common")
    order: list[str] = []
    paired = common.interleave(lambda: order.append("a"), lambda: order.append("b"), repeats=4)
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(paired.ratios) == 4


def test_storage_benchmark_writes_the_same_rows_both_ways() -> None:
    sw = bench("storage_writes")
    study = optuna.create_study(storage="sqlite://", sampler=sw._Joint())
    optunas, ours = study.ask(), study.ask()
    sw.write_like_optuna(optunas)
    sw.write_grouped(ours)
    first, second = study.get_trials(deepcopy=False)
    assert first.user_attrs == second.user_attrs == sw.USER_ATTRS
    assert first.system_attrs == second.system_attrs and first.constraints == sw.CONSTRAINTS
    assert first.distributions == second.distributions and len(first.params) == len(sw.PARAMS)
    [result] = sw.run([], trials=1)  # the SQLite file only
    assert result.storage == "sqlite" and len(result.paired.ratios) == 1


def test_trial_overhead_parts_add_up() -> None:
    to = bench("trial_overhead")
    times = to.TrialTimes(training=[4.0, 6.0], test=[0.5, 0.5], train_architecture=[5.0, 7.0],
                          objective=[5.5, 7.5], optimize=14.0)
    parts = times.per_trial()
    assert parts == {"training": 5.0, "test": 0.5, "lightning": 0.5, "objective": 0.5, "outside": 0.5, "total": 7.0}
    result = to.OverheadResult(parts, trials=2, epochs=10, import_s=1.0)
    assert result.overhead == pytest.approx(1.5) and result.fraction == pytest.approx(1.5 / 7.0)


# -- benchmarks/gpu_throughput.py ------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (["--batch", "0"], "--batch must be >= 1"),
    (["--timesteps", "-1"], "--timesteps must be >= 1"),
    (["--accuracy-steps", "-3"], "--accuracy-steps must be >= 0"),
    (["--tolerance", "2"], "--tolerance must be in"),
    (["--cifar-dir", "/nonexistent"], "has no cifar-10-batches-py"),
    (["--dry-run", "--device", "nonsense"], "--device 'nonsense'"),
    (["--precision", "fp16"], "unrecognized arguments"),
])
def test_gpu_script_rejects_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    gt = bench("gpu_throughput")
    with pytest.raises(SystemExit) as exc:
        gt.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_script_says_when_there_is_no_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    gt = bench("gpu_throughput")
    with pytest.raises(SystemExit):
        gt.parse_args([])
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "--dry-run" in err


def test_gpu_script_dry_run_on_the_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = bench("gpu_throughput")
    out = tmp_path / "gpu.json"
    assert gt.main(["--dry-run", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["dry_run"] is True and result["device"] == "cpu"
    assert set(result["samples_per_s"]) == {"per-step fp32", "ours fp32", "ours bf16", "ours fp32 NCHW",
                                            "ours bf16 NCHW"}
    assert set(result["speedup_channels_last"]) == {"fp32", "bf16"}
    assert all(v > 0 for v in result["samples_per_s"].values())
    assert result["recommended"].startswith("ours") and result["trials_per_hour"] > 0
    assert "DRY RUN" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU section would run the GPU benchmark")
def test_run_all_writes_results_with_the_machine(tmp_path: Path) -> None:
    run_all = bench("run_all")
    out = tmp_path / "RESULTS.md"
    assert run_all.main(["--only", "gpu", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Benchmark results") and "Machine: date: " in text and "cpu: " in text
    assert "| GPU trial throughput (CIFAR-shaped, bf16) | not run: no CUDA device |" in text
    with pytest.raises(SystemExit):
        run_all.main(["--only", "nonsense"])
