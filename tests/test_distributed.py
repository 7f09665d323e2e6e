"""Many ``hasnas worker`` processes on one shared storage, killed workers and load: real servers, real processes.

PostgreSQL (127.0.0.1:5432, user postgres, database test), MariaDB (127.0.0.1:3306, root, database test)
and Redis (127.0.0.1:6379) run on every development and CI machine. Every test uses a study name of its
own and deletes its study at the end, so runs never collide.

Trials are made cheap with a memory budget no network meets: the objective costs each network and
never trains it (the search machinery, sampler and storage writes all run as in a real study).
The crash test trains a tiny network for real, long enough to kill its worker in the middle.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import time
import uuid
from collections.abc import Iterator
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from hasnas_optuna._errors import ConfigError
from hasnas_optuna.config import load_config
from hasnas_optuna.search_space import architecture_from_params
from hasnas_optuna.storage import open_storage
from hasnas_optuna.study import counted_trials

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
MARIADB = "mysql://root@127.0.0.1:3306/test"
REDIS = "redis://127.0.0.1:6379/0"
WAIT_S = 600
"""Upper bound on one worker's run: only stops a hung test, never asserts a speed."""

# Every network breaks a 1-parameter memory budget, so no trial trains; the hardware-aware sampler
# still costs its proposals and records its outcome, and every trial gets its memory constraint.
NO_TRAINING = """
[study]
name = "unused"
n_trials = {n_trials}
population_size = 4
hardware_aware = {hardware_aware}
heartbeat_interval = 5
[budgets]
memory = 1
[training]
epochs = 1
pruner = "none"
"""

# One tiny network (a single choice per size knob) that trains for real: 20 epochs on 32 images,
# each epoch reported to the median pruner (which never prunes the first 5 trials).
TRAINING = """
[study]
name = "unused"
n_trials = 1
heartbeat_interval = 1
max_retry = 2
[dataset]
max_train_samples = 32
batch_size = 32
val_fraction = 0.05
[budgets]
area = 100.0
[space]
channels = [4]
hidden_features = [0]
timesteps = [2]
encodings = ["direct"]
[training]
epochs = 20
pruner = "median"
"""

pytestmark = pytest.mark.slow  # real servers and worker processes


@pytest.fixture
def study_name() -> str:
    return f"dist-{uuid.uuid4().hex[:12]}"


def write_config(folder: Path, text: str) -> Path:
    path = folder / "study.toml"
    path.write_text(text)
    return path


WORKER_MAIN = """
import os, sys
os.chdir(workdir)  # as a user's shell would: server storages keep artifacts in the working directory
os.environ["OMP_NUM_THREADS"] = "1"
with open(out_path, "w") as out, open(err_path, "w") as err:
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
sys.stdout.reconfigure(line_buffering=True)
import torch
torch.set_num_threads(1)
from hasnas_optuna.cli import main
sys.exit(main(argv))
"""
"""What each worker process runs: what ``python -m hasnas_optuna.cli worker ...`` runs, its output to files."""


@pytest.fixture(scope="module")
def processes() -> Iterator[BaseContext]:
    """Worker processes come from a fork server that imported hasnas, torch and Lightning once.

    Each worker is a separate OS process (own pid, own database connections, killable) running
    the CLI's ``main``; a fresh interpreter per worker would spend seconds of CPU importing
    Lightning, which is most of this file's run time on a busy machine.
    """
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # the fork server and every worker it forks
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["hasnas_optuna.study", "hasnas_optuna.cli"])
    yield context
    if previous is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = previous


class Worker:
    """One ``hasnas worker`` process; what it prints goes to files (never a pipe that could fill)."""

    def __init__(self, context: BaseContext, folder: Path, index: int, config: Path, storage: str,
                 study_name: str, *extra: str) -> None:
        self.out = folder / f"worker{index}.out"
        self.err = folder / f"worker{index}.err"
        argv = ["worker", str(config), "--storage", storage, "--study-name", study_name, *extra]
        self.process = context.Process(  # type: ignore[attr-defined]
            target=exec, args=(WORKER_MAIN, {"argv": argv, "out_path": str(self.out), "err_path": str(self.err),
                                             "workdir": str(folder)}))
        self.process.start()

    def finish(self) -> None:
        """Wait for a clean exit; fail with what the worker printed otherwise."""
        self.process.join(WAIT_S)
        code = self.process.exitcode
        assert code == 0, f"worker exited with {code}:\n{self.err.read_text()[-3000:]}"
        assert "Traceback" not in self.err.read_text()

    def kill(self) -> None:
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.join()


def run_workers(context: BaseContext, count: int, folder: Path, config: Path, storage: str, study_name: str,
                *extra: str) -> list[Worker]:
    """Start ``count`` workers at once and wait until all have exited cleanly."""
    workers = [Worker(context, folder, i, config, storage, study_name, *extra) for i in range(count)]
    try:
        for worker in workers:
            worker.finish()
    finally:
        for worker in workers:
            worker.kill()
    return workers


@pytest.fixture
def cleanup() -> Iterator[list[tuple[str, str]]]:
    """(storage, study name) pairs to delete after the test, so server databases do not fill up."""
    made: list[tuple[str, str]] = []
    yield made
    for storage, name in made:
        with contextlib.suppress(KeyError, ConfigError):  # the test failed before the study was made
            optuna.delete_study(study_name=name, storage=open_storage(storage, create=False))


def assert_accounted(trials: list[FrozenTrial]) -> None:
    """Every trial finished COMPLETE, numbered 0..n-1 without gaps or repeats, with a distinct id."""
    states = [t.state for t in trials]
    assert states == [TrialState.COMPLETE] * len(trials), states
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert len({t._trial_id for t in trials}) == len(trials)


def assert_intact(trials: list[FrozenTrial], config_path: Path) -> None:
    """Each trial carries our sampler's record, a complete parameter set and the constraint it was costed for."""
    config = load_config(str(config_path))
    names = set(config.space.distributions())
    keys = []
    for t in trials:
        assert set(t.params) == names, t.number
        arch = architecture_from_params(t.params, config.space)
        assert t.user_attrs["architecture"] == json.loads(arch.to_json()), t.number
        assert t.user_attrs["sampler/key"] == arch.key(), t.number  # the sampler's claim is the trained network
        assert t.user_attrs["sampler/outcome"] in {"ranked", "base", "fallback", "repaired", "unresolved"}
        assert t.user_attrs["trained"] is False
        assert t.values == [0.0]
        memory = t.user_attrs["cost/memory_params"]
        assert t.constraints == {"memory": pytest.approx(memory / config.budgets.memory - 1)}
        keys.append(arch.key())
    assert len(set(keys)) == len(keys), "two COMPLETE trials share an architecture"


@pytest.mark.parametrize("backend", ["postgresql", "mariadb", "journal", "redis"])
def test_three_workers_share_one_study(backend: str, tmp_path: Path, study_name: str, processes: BaseContext,
                                       cleanup: list[tuple[str, str]]) -> None:
    storage = {"postgresql": POSTGRES, "mariadb": MARIADB, "redis": REDIS,
               "journal": f"journal://{tmp_path}/study.log"}[backend]
    cleanup.append((storage, study_name))
    n_trials, count = 4, 3
    config = write_config(tmp_path, NO_TRAINING.format(n_trials=n_trials, hardware_aware="true"))
    workers = run_workers(processes, count, tmp_path, config, storage, study_name)

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage, create=False))
    trials = study.get_trials()
    assert_accounted(trials)
    # each worker stops once the study holds n_trials, so at most one trial per other worker is extra
    assert n_trials <= len(trials) <= n_trials + count - 1
    assert counted_trials(study) == len(trials)
    assert_intact(trials, config)
    seeds = {line.split("sampler seed ")[1] for w in workers for line in w.out.read_text().splitlines()
             if "sampler seed" in line}
    assert len(seeds) == count  # every worker built its own sampler with a seed of its own


OPEN_STORAGE_MAIN = """
from hasnas_optuna.storage import open_storage
barrier.wait()  # every process opens the empty database at the same moment
try:
    open_storage(url, heartbeat_interval=5)
    results.put("opened")
except Exception as exc:
    results.put(str(exc))
"""


@contextlib.contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """A new, empty database on the server for one test (Optuna has never made its tables there)."""
    name = f"hasnas_{uuid.uuid4().hex[:12]}"
    if backend == "postgresql":
        import psycopg

        admin: Any = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    else:
        import pymysql

        admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
        url = f"mysql://root@127.0.0.1:3306/{name}"
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield url
    finally:
        if backend == "postgresql":  # connections still open (a failed test) would block the drop
            admin.cursor().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                                   "AND pid <> pg_backend_pid()", (name,))
        admin.cursor().execute(f"DROP DATABASE {name}")
        admin.close()


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_workers_started_together_on_an_empty_database_all_open_it(backend: str, processes: BaseContext) -> None:
    """Six workers creating Optuna's tables at once: without the retry, all but one failed
    (PostgreSQL: duplicate key in pg_type_typname_nsp_index; MariaDB: table already exists)."""
    count = 6
    with fresh_database(backend) as url:
        barrier = processes.Barrier(count)  # type: ignore[attr-defined]
        results = processes.Queue()  # type: ignore[attr-defined]
        opened = [processes.Process(target=exec, args=(  # type: ignore[attr-defined]
            OPEN_STORAGE_MAIN, {"url": url, "barrier": barrier, "results": results})) for _ in range(count)]
        for process in opened:
            process.start()
        outcomes = [results.get(timeout=WAIT_S) for _ in opened]
        for process in opened:
            process.join(WAIT_S)
        assert outcomes == ["opened"] * count
        study = optuna.create_study(storage=open_storage(url), study_name="after")  # the schema is whole
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
        del study
        import gc

        gc.collect()  # close the storage's connections before the database is dropped


def test_killed_worker_trial_is_failed_and_retrained(tmp_path: Path, study_name: str, processes: BaseContext,
                                                     cleanup: list[tuple[str, str]]) -> None:
    cleanup.append((POSTGRES, study_name))
    config = write_config(tmp_path, TRAINING)
    reader = open_storage(POSTGRES)  # no heartbeat: it only watches
    victim = Worker(processes, tmp_path, 0, config, POSTGRES, study_name)
    try:
        deadline = time.monotonic() + WAIT_S
        running: FrozenTrial | None = None
        while running is None:  # wait until a trial is RUNNING and has reported a trained epoch
            assert victim.process.is_alive(), f"worker ended early:\n{victim.err.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no trial started training"
            time.sleep(0.05)
            try:
                study = optuna.load_study(study_name=study_name, storage=reader)
            except KeyError:
                continue
            running = next((t for t in study.get_trials(states=(TrialState.RUNNING,))
                            if "architecture" in t.user_attrs and t.intermediate_values), None)
        os.kill(victim.process.pid, signal.SIGKILL)  # in the middle of training: no chance to clean up
        victim.process.join()
    finally:
        victim.kill()
    assert study.get_trials()[running.number].state == TrialState.RUNNING  # nobody has noticed yet
    time.sleep(3)  # the grace period (2 heartbeat intervals) passes: the trial is stale from now on

    run_workers(processes, 1, tmp_path, config, POSTGRES, study_name)  # until the study holds 1 counted trial
    trials = optuna.load_study(study_name=study_name, storage=reader).get_trials()
    killed = trials[running.number]
    assert killed.state == TrialState.FAIL
    assert "trained" not in killed.user_attrs  # it never finished training
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.number > killed.number
    assert retry.system_attrs["retry_history"] == [killed.number]
    assert retry.params == killed.params
    assert retry.user_attrs["sampler/key"] == killed.user_attrs["sampler/key"]
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["trained"] is True
    assert len(retry.intermediate_values) == 20  # trained from scratch, every epoch
    assert retry.values == [retry.user_attrs["val_accuracy"]]
    # the failed attempt does not count towards n_trials, so the worker stopped after the retry
    assert counted_trials(optuna.load_study(study_name=study_name, storage=reader)) == 1
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]


def test_four_workers_times_25_trials_on_postgresql(tmp_path: Path, study_name: str, processes: BaseContext,
                                                   cleanup: list[tuple[str, str]]) -> None:
    cleanup.append((POSTGRES, study_name))
    # plain NSGA-II, no hardware-aware filter: trials cost only their storage writes and one cost estimate
    config = write_config(tmp_path, NO_TRAINING.format(n_trials=10, hardware_aware="false"))
    run_workers(processes, 4, tmp_path, config, POSTGRES, study_name, "--n-trials", "25", "--quiet")

    study = optuna.load_study(study_name=study_name, storage=open_storage(POSTGRES, create=False))
    trials = study.get_trials()
    assert len(trials) == 100  # --n-trials counts this worker's trials, whatever the config's n_trials
    assert_accounted(trials)
    for t in trials:
        assert t.user_attrs["trained"] is False and set(t.constraints) == {"memory"}
        assert t.constraints["memory"] > 0


def test_plain_optuna_and_the_dashboard_open_the_same_postgresql_url() -> None:
    # the [postgres] extra installs SQLAlchemy's default driver (psycopg 3): a user's own Optuna
    # code and optuna-dashboard need no driver-qualified URL
    import optuna_dashboard

    with fresh_database("postgresql") as url:
        ours = open_storage(url)
        optuna.create_study(storage=ours, study_name="shared").add_trial(optuna.trial.create_trial(value=1.0))
        plain = optuna.load_study(study_name="shared", storage=url)
        assert [t.value for t in plain.trials] == [1.0]
        import io
        from wsgiref.util import setup_testing_defaults

        environ: dict[str, Any] = {"PATH_INFO": "/api/studies", "wsgi.errors": io.StringIO()}
        setup_testing_defaults(environ)
        status: list[str] = []
        body = b"".join(optuna_dashboard.wsgi(url)(environ, lambda s, h, *_: status.append(s)))
        assert status[0].startswith("200") and b'"shared"' in body


def test_a_search_on_a_database_server_keeps_its_artifacts_and_export_finds_them(tmp_path: Path) -> None:
    # no --artifact-dir: the weights go to NAME-artifacts in the working directory, the study records
    # the folder, and export run from elsewhere finds it (before, a server storage kept no artifacts)
    import io
    import subprocess
    import sys

    from hasnas_optuna.config import StudyConfig
    from hasnas_optuna.study import run_search

    run_dir, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run_dir.mkdir(), elsewhere.mkdir()
    config = StudyConfig.from_dict({
        "study": {"name": "kept", "n_trials": 1, "population_size": 2},
        "space": {"channels": [4], "hidden_features": [0], "timesteps": [2], "encodings": ["direct"]},
        "training": {"epochs": 1, "pruner": "none"},
    })
    with fresh_database("postgresql") as url:
        out = io.StringIO()
        cwd = os.getcwd()
        os.chdir(run_dir)
        try:
            study = run_search(config, storage=url, out=out)
        finally:
            os.chdir(cwd)
        folder = run_dir / "kept-artifacts"
        assert f"artifacts (weights, drawings, costs): {folder}" in out.getvalue()
        assert study.user_attrs["hasnas/artifact_dir"] == str(folder) and any(folder.rglob("*"))
        result = subprocess.run(
            [sys.executable, "-m", "hasnas_optuna.cli", "export", "--storage", url, "--study-name", "kept",
             "--out", str(tmp_path / "exported")], cwd=elsewhere, capture_output=True, text=True, timeout=WAIT_S)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "exported" / "trial.json").is_file()


def test_no_password_in_anything_a_run_writes(tmp_path: Path) -> None:
    # the server trusts local connections, so a URL with a password works; it must never be shown
    import subprocess
    import sys

    secret = "S3cretPW"
    config = tmp_path / "tiny.toml"
    config.write_text('[study]\nname = "secret"\nn_trials = 1\npopulation_size = 2\n[space]\nchannels = [4]\n'
                      'hidden_features = [0]\ntimesteps = [2]\nencodings = ["direct"]\n'
                      '[training]\nepochs = 1\npruner = "none"\n')
    with fresh_database("postgresql") as url:
        url = url.replace("postgres@", f"postgres:{secret}@")
        outputs = []
        for args in (["search", str(config), "--storage", url],
                     ["best", "--storage", url, "--study-name", "secret"],
                     ["best", "--storage", url + "?password=" + secret, "--study-name", "nope"],
                     ["report", "--storage", url, "--study-name", "secret", "--out", str(tmp_path / "report")],
                     ["export", "--storage", url, "--study-name", "secret", "--out", str(tmp_path / "export")]):
            result = subprocess.run([sys.executable, "-m", "hasnas_optuna.cli", *args], cwd=tmp_path,
                                    capture_output=True, text=True, timeout=WAIT_S)
            outputs.append(result.stdout + result.stderr)
        assert "postgres:***@" in outputs[0] and "no study 'nope'" in outputs[2]
        assert all(secret not in text for text in outputs), outputs
        written = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert len(written) > 5 and not any(secret.encode() in p.read_bytes() for p in written)


def test_a_reader_leaves_an_empty_database_empty() -> None:
    import psycopg

    with fresh_database("postgresql") as url:
        with pytest.raises(ConfigError, match=r"holds no Optuna studies .* nothing was written to it"):
            open_storage(url, create=False)
        with psycopg.connect(url) as db:
            tables = db.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            assert tables.fetchone() == (0,)
