"""``hasnas cost`` as a user runs it: a real subprocess, real files, exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = {
    "name": "vgg-small", "timesteps": 5,
    "layers": [
        {"type": "conv", "in_channels": 3, "out_channels": 64, "kernel_size": 3,
         "input_size": [32, 32], "stride": 1, "padding": 1, "pool_after": 2},
        {"type": "linear", "in_features": 16384, "out_features": 10},
    ],
}


def hasnas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hasnas_optuna.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def network(tmp_path: Path) -> Path:
    path = tmp_path / "net.json"
    path.write_text(json.dumps(EXAMPLE))
    return path


def test_json_output_has_the_documented_keys(network: Path) -> None:
    run = hasnas("cost", str(network), "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    for key in ("memory_params", "memory_bits", "area_mm2", "latency_ms", "energy_uj",
                "energy_dynamic_uj", "energy_leakage_uj", "layers"):
        assert key in out
    assert out["memory_params"] == 27 * 64 + 16384 * 10
    assert out["timesteps"] == 5 and len(out["layers"]) == 2
    assert out["energy_uj"] == pytest.approx(out["energy_dynamic_uj"] + out["energy_leakage_uj"])
    assert sum(layer["energy_uj"] for layer in out["layers"]) == pytest.approx(out["energy_uj"])


def test_flags_change_the_result(network: Path) -> None:
    base = json.loads(hasnas("cost", str(network), "--json").stdout)
    longer = json.loads(hasnas("cost", str(network), "--json", "--timesteps", "10").stdout)
    busier = json.loads(hasnas("cost", str(network), "--json", "--spike-rate", "0.5").stdout)
    spikesim = json.loads(hasnas("cost", str(network), "--json", "--hardware", "spikesim-65nm").stdout)
    assert longer["timesteps"] == 10 and longer["energy_uj"] > base["energy_uj"]
    assert busier["layers"][1]["spike_rate"] == 0.5 and busier["energy_uj"] > base["energy_uj"]
    assert spikesim["hardware"] == "spikesim-65nm" and spikesim["area_mm2"] != base["area_mm2"]


def test_table_with_budgets(network: Path) -> None:
    run = hasnas("cost", str(network), "--paper-budgets")
    assert run.returncode == 0
    assert "layers[0]" in run.stdout and "total" in run.stdout
    for name in ("memory", "area", "latency", "energy"):
        assert f"PASS  {name}" in run.stdout
    tight = hasnas("cost", str(network), "--max-area", "1")
    assert "FAIL  area" in tight.stdout and "latency" not in tight.stdout.split("FAIL")[1]
    assert tight.returncode == 1  # a budget failed: scripts can test the exit status
    # --max-* given with --paper-budgets replaces that one budget
    mixed = hasnas("cost", str(network), "--paper-budgets", "--max-area", "1", "--json")
    budgets = json.loads(mixed.stdout)["budgets"]
    assert budgets["area"]["budget"] == 1 and not budgets["area"]["pass"]
    assert budgets["energy"]["budget"] == 120 and budgets["energy"]["pass"]
    assert mixed.returncode == 1


def test_hardware_file(network: Path, tmp_path: Path) -> None:
    from importlib import resources

    text = (resources.files("hasnas_optuna.cim") / "presets" / "neurosim-22nm.toml").read_text()
    chip = tmp_path / "chip.toml"
    chip.write_text(text.replace("bits_per_cell = 1", "bits_per_cell = 2"))
    run = hasnas("cost", str(network), "--json", "--hardware", str(chip))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["hardware"] == "neurosim-22nm"


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ('{"layers": [', (), "malformed JSON at line 1"),
        ('{"layers": [{"type": "pool"}]}', ("--timesteps", "2"), "layers[0].type='pool' is not a known layer type"),
        (json.dumps({"layers": [{**EXAMPLE["layers"][0], "in_channels": 0}]}), ("--timesteps", "2"),  # type: ignore[dict-item]
         "layers[0].in_channels=0 is out of range"),
        (json.dumps(EXAMPLE), ("--hardware", "neurosim-7nm"), "unknown hardware preset 'neurosim-7nm'"),
        (json.dumps(EXAMPLE), ("--spike-rate", "1.5"), "'1.5' is out of range; a spike rate is in [0, 1]"),
        (json.dumps(EXAMPLE), ("--timesteps", "0"), "'0' must be >= 1"),
        (json.dumps({"layers": EXAMPLE["layers"]}), (), "timesteps is not given"),
        (json.dumps(EXAMPLE), ("--max-energy", "-3"), "'-3' must be > 0"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, content: str, args: tuple[str, ...], message: str) -> None:
    path = tmp_path / "net.json"
    path.write_text(content)
    run = hasnas("cost", str(path), *args)
    assert run.returncode == 2
    assert run.stdout == ""
    assert message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert "Traceback" not in run.stderr


def test_missing_file() -> None:
    run = hasnas("cost", "/nonexistent/net.json")
    assert run.returncode == 2 and "does not exist" in run.stderr


def test_cost_accepts_the_architecture_json_the_search_writes(tmp_path: Path) -> None:
    from hasnas_optuna.architecture import Architecture, Cell
    from hasnas_optuna.cim import estimate_cost, load_hardware

    cell = Cell.from_matrix("0302 0030 3003 0000")
    arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=8, timesteps=3)
    expected = estimate_cost(arch.to_network(), load_hardware())
    bare = tmp_path / "arch.json"
    bare.write_text(arch.to_json())
    rows = tmp_path / "best.json"  # what `hasnas best --json` prints: the first row is costed
    rows.write_text(json.dumps([{"trial": 7, "architecture": arch.to_dict()}]))
    for path in (bare, rows):
        run = hasnas("cost", str(path), "--json")
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert out["memory_params"] == expected.memory_params and out["timesteps"] == 3
        assert out["energy_uj"] == pytest.approx(expected.energy_uj)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**arch.to_dict(), "channels": 0}))
    run = hasnas("cost", str(broken))
    assert run.returncode == 2 and "channels=0" in run.stderr


def test_version() -> None:
    from importlib.metadata import version

    result = hasnas("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"hasnas {version('hasnas-optuna')}"
