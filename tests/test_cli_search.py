"""``hasnas search`` and ``hasnas best`` as a user runs them, against a temporary SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TINY = """
[study]
name = "tiny"
n_trials = 2
population_size = 2
[budgets]
area = 100.0
energy = 10.0
[space]
channels = [4]
hidden_features = [0]
timesteps = [2]
encodings = ["direct"]
[training]
epochs = 1
pruner = "none"
"""


def hasnas(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hasnas_optuna.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


@pytest.mark.slow
def test_search_resume_and_best(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    run = hasnas("search", str(config), "--storage", storage, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "trial   0" in run.stdout and "trial   1" in run.stdout
    assert f"hasnas dashboard --storage {storage}" in run.stdout
    assert "Traceback" not in run.stderr
    again = hasnas("search", str(config), "--storage", storage, "--n-trials", "3", cwd=tmp_path)
    assert "study 'tiny': 2 finished trials, running 1 more" in again.stdout
    assert "trial   2" in again.stdout
    quiet = hasnas("search", str(config), "--storage", storage, "--n-trials", "4", "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and "trial   3" not in quiet.stdout and "4 trials" in quiet.stdout
    best = hasnas("best", "--storage", storage, "--study-name", "tiny", "--json", cwd=tmp_path)
    assert best.returncode == 0, best.stderr
    rows = json.loads(best.stdout)
    assert rows and {"trial", "val_accuracy", "memory_params", "area_mm2", "latency_ms", "energy_uj",
                     "architecture"} <= set(rows[0])
    assert rows == sorted(rows, key=lambda r: -r["val_accuracy"])
    table = hasnas("best", "--storage", storage, "--study-name", "tiny", cwd=tmp_path)
    assert "4 trials" in table.stdout and "val acc" in table.stdout
    assert f"hasnas dashboard --storage {storage} --study-name tiny" in table.stdout
    # the search kept artifacts beside the database, so the best network can be exported as is
    assert (tmp_path / "runs-artifacts").is_dir()
    exported = hasnas("export", "--storage", storage, "--study-name", "tiny", "--out", str(tmp_path / "out"),
                      cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert {"weights.pt", "architecture.json", "cost_report.json", "network.nir"} <= {
        p.name for p in (tmp_path / "out").iterdir()}
    assert json.loads((tmp_path / "out" / "architecture.json").read_text()) == rows[0]["architecture"]


@pytest.mark.slow
def test_search_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nepoch = 1\n")
    run = hasnas("search", str(bad), "--storage", f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"hasnas search: error: {bad}: unknown key 'training.epoch' (did you mean 'epochs'?); allowed: "
        "accelerator, adc_aware, compile, energy_stop_margin, epochs, lr, progress_bar, pruner, quantize, "
        "weight_decay")
    assert not (tmp_path / "x.db").exists()  # nothing ran, nothing was written
    missing = hasnas("best", "--storage", f"sqlite:///{tmp_path / 'y.db'}", "--study-name", "nope", cwd=tmp_path)
    assert missing.returncode == 2 and "no SQLite file" in missing.stderr
    assert not (tmp_path / "y.db").exists()
    assert len(missing.stderr.strip().splitlines()) == 1


def test_every_next_step_command_parses() -> None:
    from hasnas_optuna.cli import build_parser
    from hasnas_optuna.study import next_steps

    parser = build_parser()
    lines = next_steps("digits", "sqlite:///hasnas.db").splitlines()[1:]
    assert len(lines) == 4
    for line in lines:
        words = line.split("#")[0].split()
        assert words[0] == "hasnas"
        args = parser.parse_args(words[1:])  # a missing required option exits here
        assert args.study_name == "digits" and args.storage == "sqlite:///hasnas.db"
