"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import optuna

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_embedding_example_runs() -> None:
    block = next(b for b in python_blocks() if "set_budget_constraints" in b)
    assert len([line for line in block.splitlines() if line.strip()]) <= 12
    namespace: dict[str, object] = {}
    captured: list[optuna.Study] = []
    original = optuna.Study.optimize

    def optimize(self: optuna.Study, *args: object, **kwargs: object) -> None:
        captured.append(self)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    optuna.Study.optimize = optimize  # type: ignore[method-assign]
    try:
        exec(compile(block, str(README), "exec"), namespace)
    finally:
        optuna.Study.optimize = original  # type: ignore[method-assign]
    (study,) = captured
    assert len(study.trials) == 4
    for trial in study.trials:
        assert sorted(trial.constraints) == ["energy", "memory"]
    # the sampler snippet continues the same example
    sampler_block = next(b for b in python_blocks() if "HardwareAwareSampler(" in b)
    exec(compile(sampler_block, str(README), "exec"), namespace)
    assert type(namespace["sampler"]).__name__ == "HardwareAwareSampler"


def test_cost_example_runs() -> None:
    block = next(b for b in python_blocks() if "load_network" in b)
    exec(compile(block, str(README), "exec"), {})
