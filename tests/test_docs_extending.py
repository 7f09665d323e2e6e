"""docs/extending.md: every Python block runs as written, in order, and does what the text says."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest

from hasnas_optuna.cim import METRICS, unregister_metric

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


@pytest.fixture
def namespace() -> dict[str, object]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield {}
    if "power" in METRICS:
        unregister_metric("power")


def test_every_block_runs(namespace: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 3
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("memory: 2570 of 4000 (ok)") and out[1].startswith("power: ")
    trials = namespace["study"].trials  # type: ignore[attr-defined]
    assert len({(t.params["width"], t.params["depth"]) for t in trials}) == 5  # five different MLPs
    assert all(namespace["space"].network(t.params).memory_params <= 20_000 for t in trials)  # type: ignore[attr-defined]
    assert namespace["sampler"].cost is namespace["my_cost_model"]  # type: ignore[attr-defined]
