"""Reliability of one search: clean interruption and resume, failing trials, reproducibility."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch.utils.data import DataLoader, TensorDataset

from hasnas_optuna.config import StudyConfig
from hasnas_optuna.data import DigitsDataModule
from hasnas_optuna.study import counted_trials, run_search

TRAINED = {
    "study": {"name": "r", "n_trials": 3, "population_size": 2},
    "budgets": {"area": 100.0, "energy": 10.0},
    "space": {"channels": [4], "hidden_features": [0], "timesteps": [2], "encodings": ["direct"]},
    "training": {"epochs": 1, "pruner": "none"},
}
"""Tiny networks that all fit the budgets and train in about a second each."""


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_marks_the_trial_and_the_same_command_resumes(tmp_path: Path, signum: int) -> None:
    process, storage = _search_until_training(tmp_path, "stop", n_trials=2)
    try:
        time.sleep(1.0)
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted; the running trial is marked interrupted" in err and "Traceback" not in err, err
    study = optuna.load_study(study_name="stop", storage=storage)
    stopped, queued = study.trials  # the interrupted process queued its trial again before it exited
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs["status"] == f"interrupted ({signal.Signals(signum).name})", stopped.user_attrs
    assert queued.state == TrialState.WAITING and queued.params == stopped.params
    assert queued.system_attrs["failed_trial"] == 0
    assert counted_trials(study) == 0

    # the same command again resumes: the interrupted architecture first, then the rest
    _rerun_with_one_epoch(tmp_path, storage)
    study = optuna.load_study(study_name="stop", storage=storage)
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    retry = study.trials[1]
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == stopped.params
    assert retry.user_attrs["trained"] is True and counted_trials(study) == 2


def _search_command(storage: str) -> list[str]:
    return [sys.executable, "-m", "hasnas_optuna.cli", "search", "study.toml", "--storage", storage]


_ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def _search_until_training(tmp_path: Path, name: str, *, n_trials: int) -> tuple[subprocess.Popen[str], str]:
    """Start ``hasnas search`` of a 40-epoch study in ``tmp_path``; return once a trial has started to train."""
    (tmp_path / "study.toml").write_text(
        f'[study]\nname = "{name}"\nn_trials = {n_trials}\npopulation_size = 2\n[budgets]\narea = 100.0\n'
        '[space]\nchannels = [4]\nhidden_features = [0]\ntimesteps = [2]\n[training]\nepochs = 40\npruner = "none"\n'
        '[dataset]\nmax_train_samples = 256\n'
    )
    storage = f"sqlite:///{tmp_path / 's.db'}"
    process = subprocess.Popen(_search_command(storage), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=_ONE_THREAD)
    deadline = time.monotonic() + 120
    while not _training(storage, name):  # a trial is running and has started to train
        if process.poll() is not None or time.monotonic() >= deadline:
            process.kill()
            pytest.fail(f"the search never started training: {process.communicate()}")
        time.sleep(0.2)
    return process, storage


def _rerun_with_one_epoch(tmp_path: Path, storage: str) -> subprocess.CompletedProcess[str]:
    """The same ``hasnas search`` command again, after cutting the study to one epoch; it must succeed."""
    (tmp_path / "study.toml").write_text((tmp_path / "study.toml").read_text().replace("epochs = 40", "epochs = 1"))
    again = subprocess.run(_search_command(storage), cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env=_ONE_THREAD)
    assert again.returncode == 0, again.stderr
    return again


def _training(storage: str, name: str) -> bool:
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except Exception:  # not created yet
        return False
    return any(t.state == TrialState.RUNNING and "architecture" in t.user_attrs for t in study.trials)


class FlakyDigits(DigitsDataModule):
    """Digits whose training images are broken for the first ``broken`` fits: NaN, or absurdly many."""

    def __init__(self, fault: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fault = fault
        self.fits = 0

    def train_dataloader(self) -> DataLoader[Any]:
        self.fits += 1
        if self.fits > 1:
            return super().train_dataloader()
        x, y = self.prepare().splits["train"]
        if self.fault == "nan":
            return DataLoader(TensorDataset(torch.full_like(x[:64], float("nan")), y[:64]), batch_size=64)
        # one batch of 10^9 images (a view: no memory until the first layer computes on it)
        huge = x[:1].expand(10**9, *x.shape[1:])
        return DataLoader(TensorDataset(huge, y[:1].expand(10**9)), batch_size=None, sampler=[slice(None)])


@pytest.mark.parametrize(("fault", "reason"), [
    ("nan", "failed: training diverged at epoch 0: non-finite weights in network."),
    ("memory", "failed: out of memory: "),
])
@pytest.mark.slow
def test_a_failing_trial_records_why_and_the_study_carries_on(fault: str, reason: str) -> None:
    config = StudyConfig.from_dict(TRAINED)
    study = run_search(config, storage="sqlite://", datamodule=FlakyDigits(fault), out=None)
    first, *rest = study.trials
    assert first.state == TrialState.FAIL and first.user_attrs["status"].startswith(reason), first.user_attrs
    assert [t.state for t in rest] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert all(t.user_attrs["trained"] and t.user_attrs["val_accuracy"] > 0.1 for t in rest)
    assert counted_trials(study) == 3  # a trial that failed on its own counts: it is not retried


@pytest.mark.slow
def test_same_seed_same_trials_and_results() -> None:
    config = StudyConfig.from_dict(TRAINED)

    def record() -> list[tuple[Any, ...]]:
        study = run_search(config, storage="sqlite://", out=None)
        return [(t.params, t.values, t.constraints, t.user_attrs["spike_rates"], t.user_attrs["history"])
                for t in study.trials]

    first, second = record(), record()
    assert len(first) == 3 and first == second
    other = run_search(StudyConfig.from_dict({**TRAINED, "study": {**TRAINED["study"], "seed": 1}}),
                       storage="sqlite://", out=None)
    assert [t.params for t in other.trials] != [row[0] for row in first]


@pytest.mark.slow
def test_a_killed_search_is_resumed_by_the_same_command_at_once(tmp_path: Path) -> None:
    # SIGKILL leaves no handler to mark the trial: the rerun sees its process is gone, fails it and retries it
    process, storage = _search_until_training(tmp_path, "killed", n_trials=1)
    try:
        process.kill()
        process.communicate(timeout=30)
    finally:
        process.kill()
    killed = optuna.load_study(study_name="killed", storage=storage).trials[0]
    assert killed.state == TrialState.RUNNING and killed.user_attrs["worker"].endswith(f":{process.pid}")
    again = _rerun_with_one_epoch(tmp_path, storage)
    assert "trials 0 were left RUNNING by a process that is gone: failed, and queued again" in again.stdout
    first, retry = optuna.load_study(study_name="killed", storage=storage).trials
    assert first.state == TrialState.FAIL and first.user_attrs["status"].startswith("interrupted: its process")
    assert retry.state == TrialState.COMPLETE and retry.params == first.params and retry.user_attrs["trained"]


def test_a_trial_left_without_a_worker_is_failed_after_the_grace_period(tmp_path: Path) -> None:
    # a process killed while its trial was being sampled: no worker attribute, no heartbeat
    from hasnas_optuna.study import open_study, reclaim_stale_trials

    config = StudyConfig.from_dict({"study": {"name": "orphan", "heartbeat_interval": 5}})
    study = open_study(config, storage=f"sqlite:///{tmp_path / 's.db'}")
    orphan = study.ask()
    mine = study.ask()
    study._storage.set_trial_user_attr(mine._trial_id, "worker", f"{os.uname().nodename}:{os.getpid()}")
    assert reclaim_stale_trials(study, config) == []  # too recent, and a live process's
    assert reclaim_stale_trials(study, config, now=time.time() + 11) == [orphan.number]
    states = {t.number: t.state for t in study.trials}
    assert states[orphan.number] == TrialState.FAIL and states[mine.number] == TrialState.RUNNING
