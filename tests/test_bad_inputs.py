"""The catalogue of bad inputs: each is one line on stderr, exit status 2, no traceback, and no change
to any study data (every row of the SQLite file holding a study is the same afterwards)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hasnas_optuna.cli import main
from hasnas_optuna.config import StudyConfig
from hasnas_optuna.study import run_search

GOOD = """
[study]
name = "kept"
n_trials = 2
[budgets]
memory = 1
"""
"""A study whose every network breaks the memory budget: it runs in a second and trains nothing."""


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A SQLite file with study 'kept' (2 trials) that every case below must leave untouched."""
    folder = tmp_path_factory.mktemp("kept")
    storage = f"sqlite:///{folder / 'kept.db'}"
    run_search(StudyConfig.from_dict({"study": {"name": "kept", "n_trials": 2}, "budgets": {"memory": 1}}),
               storage=storage, out=None)
    yield folder, storage


def digest(folder: Path) -> str:
    """Every row of every table of the study file (its bytes move when SQLite checkpoints its WAL)."""
    connection = sqlite3.connect(folder / "kept.db")
    try:
        return hashlib.sha256("\n".join(connection.iterdump()).encode()).hexdigest()
    finally:
        connection.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return str(path)


CASES = {
    # config typos and wrong types
    "unknown key": (GOOD.replace("n_trials = 2", "n_trails = 2"),
                    "unknown key 'study.n_trails' (did you mean 'n_trials'?); allowed:"),
    "unknown section": (GOOD + "[trainig]\nepochs = 1\n", "unknown key 'trainig' (did you mean 'training'?); allowed:"),
    "wrong type": (GOOD.replace("n_trials = 2", 'n_trials = "two"'), "study.n_trials='two' must be an integer"),
    "not TOML": ("[study\nname = 1\n", "malformed TOML: Expected ']' at the end of a table declaration (at line 1"),
    "bad objective": (GOOD.replace("n_trials = 2", 'objectives = ["accuracy", "power"]'),
                      "use names from accuracy, memory"),
    # budgets of zero or below
    "zero budget": (GOOD.replace("memory = 1", "memory = 0"), "budget memory=0 must be a number > 0 (params)"),
    "negative budget": (GOOD.replace("memory = 1", "energy = -1.0"), "budget energy=-1.0 must be a number > 0 (uJ)"),
    # unknown hardware preset
    "unknown preset": (GOOD + '[hardware]\npreset = "neurosim-22mn"\n',
                       "unknown hardware preset 'neurosim-22mn' (did you mean 'neurosim-22nm'?); use one of "
                       "neurosim-22nm, neurosim-32nm"),
    # missing dataset files
    "missing dataset": (GOOD + '[dataset]\nname = "fashion_mnist"\npath = "/no/such/folder"\n',
                        "dataset directory '/no/such/folder' does not exist"),
    "dataset without a path": (GOOD + '[dataset]\nname = "cifar10"\n', "needs a path"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_is_one_line_and_touches_nothing(case: str, kept: tuple[Path, str], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder, storage = kept
    before = digest(folder)
    text, expected = CASES[case]
    code, err = run(capsys, "search", config(tmp_path, text), "--storage", storage, "--study-name", "kept",
                    "--quiet")
    assert code == 2
    assert err.startswith("hasnas search: error: ") and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert digest(folder) == before


def test_bad_budget_values_name_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "search", config(tmp_path, GOOD.replace("memory = 1", "memory = 0")),
                    "--storage", f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 2 and "budget memory=0 must be a number > 0" in err, err
    assert not (tmp_path / "x.db").exists()


def test_corrupt_dataset_files(kept: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, storage = kept
    before = digest(folder)
    data = tmp_path / "fashion"
    data.mkdir()
    real = Path("/usr/share/datasets/fashion-mnist")
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        source = next(real.glob(name + "*"), None) if real.is_dir() else None
        if source is not None and source.suffix != ".gz":
            shutil.copy(source, data / name)
        else:  # a header that promises 60000 images, and no pixels
            (data / name).write_bytes(bytes([0, 0, 8, 3, 0, 0, 234, 96, 0, 0, 0, 28, 0, 0, 0, 28]))
    images = data / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])  # truncated, as by an interrupted copy
    text = GOOD + f'[dataset]\nname = "fashion_mnist"\npath = "{data}"\n'
    code, err = run(capsys, "search", config(tmp_path, text), "--storage", storage, "--study-name", "kept")
    assert code == 2 and "truncated or corrupt idx file" in err and str(images) in err, err
    assert len(err.strip().splitlines()) == 1
    assert digest(folder) == before


def test_study_with_other_directions_or_space(kept: tuple[Path, str], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder, storage = kept
    before = digest(folder)
    two_objectives = GOOD.replace("n_trials = 2", 'objectives = ["accuracy", "energy"]')
    code, err = run(capsys, "search", config(tmp_path, two_objectives), "--storage", storage, "--study-name", "kept")
    assert code == 2 and "study 'kept' has directions ['maximize']" in err and "new --study-name" in err, err
    code, err = run(capsys, "search", config(tmp_path, GOOD + "[space]\nchannels = [4, 8]\n"),
                    "--storage", storage, "--study-name", "kept")
    assert code == 2 and "another search space" in err, err
    assert digest(folder) == before


def test_unreachable_and_malformed_storages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = config(tmp_path, GOOD)
    code, err = run(capsys, "search", study, "--storage", "postgresql://postgres@127.0.0.1:1/test")
    assert code == 2 and "cannot open storage 'postgresql://postgres@127.0.0.1:1/test'" in err, err
    assert "Connection refused" in err or "connect" in err
    code, err = run(capsys, "worker", study, "--storage", "mysql://root@127.0.0.1:1/test")
    assert code == 2 and "cannot open storage" in err, err
    code, err = run(capsys, "search", study, "--storage", "ftp://host/db")
    assert code == 2 and "is not a storage" in err and "journal:///PATH" in err, err
    code, err = run(capsys, "search", study, "--storage", f"sqlite:///{tmp_path}/no/such/dir/s.db")
    assert code == 2 and "does not exist" in err, err
    code, err = run(capsys, "best", "--storage", f"sqlite:///{tmp_path / 'absent.db'}", "--study-name", "x")
    assert code == 2 and "no SQLite file" in err, err
    assert not (tmp_path / "absent.db").exists()  # reading never creates an empty database
    assert len(err.strip().splitlines()) == 1


def test_unknown_study_name_lists_the_studies(kept: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    folder, storage = kept
    before = digest(folder)
    code, err = run(capsys, "best", "--storage", storage, "--study-name", "kep")
    assert code == 2 and "no study 'kep'" in err and "studies there: kept" in err, err
    assert digest(folder) == before


@pytest.mark.slow
def test_sqlite_file_in_a_read_only_folder() -> None:
    # pytest's tmp_path sits in a folder only its owner may enter: use one every user can read
    tmp_path = Path(tempfile.mkdtemp(prefix="hasnas-ro-"))
    tmp_path.chmod(0o755)
    folder = tmp_path / "read-only"
    folder.mkdir()
    study = config(tmp_path, GOOD)
    folder.chmod(0o555)
    cache = tmp_path / "cache"  # matplotlib (imported by Lightning) wants a writable config folder
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)
    command = [sys.executable, "-m", "hasnas_optuna.cli", "search", study, "--storage",
               f"sqlite:///{folder / 'runs.db'}", "--quiet"]
    if os.geteuid() == 0:  # root writes anywhere: run as nobody, as a user without write access would
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("running as root needs util-linux's setpriv to drop privileges for this test")
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                                env={**os.environ, "HOME": str(tmp_path), "MPLCONFIGDIR": str(cache)})
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == (f"hasnas search: error: storage 'sqlite:///{folder / 'runs.db'}': folder "
                                         f"'{folder}' is read-only; a new SQLite file cannot be made there "
                                         "(choose a writable path)")
        assert list(folder.iterdir()) == []
        # reading a study kept in a read-only folder still works (the file is in WAL mode)
        archive = tmp_path / "archive"
        archive.mkdir()
        old = config(tmp_path, GOOD.replace('"kept"', '"old"'))
        made = subprocess.run([sys.executable, "-m", "hasnas_optuna.cli", "search", old, "--storage",
                               f"sqlite:///{archive / 'old.db'}", "--quiet"], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        archive.chmod(0o555)
        read = subprocess.run([*command[: command.index("search")], "best", "--storage",
                               f"sqlite:///{archive / 'old.db'}", "--study-name", "old"],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path,
                              env={**os.environ, "HOME": str(tmp_path), "MPLCONFIGDIR": str(cache)})
        assert read.returncode == 0, read.stderr
        assert "study 'old': 2 trials" in read.stdout
    finally:
        for path in (folder, tmp_path / "archive"):
            if path.exists():
                path.chmod(0o755)
        shutil.rmtree(tmp_path)


def test_bad_command_line_values(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--n-trials", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --n-trials: '0' must be >= 1" in err and len(err.strip().splitlines()) == 1
    code, err = run(capsys, "search", "/no/such/study.toml")
    assert code == 2 and "/no/such/study.toml" in err, err


@pytest.mark.parametrize("content", ["empty", "foreign"])
def test_readers_never_write_optuna_tables_into_a_database(content: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    path = tmp_path / "not-a-study.db"
    path.touch()
    if content == "foreign":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE mine (x)")
    before = path.read_bytes()
    code, err = run(capsys, "best", "--storage", f"sqlite:///{path}", "--study-name", "x")
    assert code == 2 and "holds no Optuna studies" in err and "nothing was written" in err
    assert path.read_bytes() == before


@pytest.mark.parametrize(("argv", "message"), [
    (["--study-name", ""], "--study-name='' must be a non-empty string"),
    (["--study-name", "../../x"], "--study-name '../../x' must not contain '/'"),
    (["--study-name", "sqlite:///other.db"], "looks like a storage URL"),
    (["--study-name", "digits "], "has spaces at its ends"),
    (["--study-name", "DIGITS"], "study 'digits' exists and differs only in letter case"),
    (["--seed", "4294967296"], None),
])
def test_unsafe_study_names_are_refused_and_nothing_changes(argv: list[str], message: str | None, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import optuna

    db = tmp_path / "kept.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="digits").set_user_attr("mine", 1)
    before = digest(tmp_path)
    if message is None:  # the seed is checked by the config, in range of NumPy's 32-bit seeds
        path = config(tmp_path, GOOD.replace("n_trials = 2", "n_trials = 2\nseed = 4294967296"))
        code, err = run(capsys, "search", path, "--storage", f"sqlite:///{db}")
        message = "study.seed=4294967296 must be an integer >= 0 and <= 4294967295"
    else:
        code, err = run(capsys, "search", config(tmp_path, GOOD), "--storage", f"sqlite:///{db}", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert digest(tmp_path) == before and not list(tmp_path.glob("*artifacts*"))


@pytest.mark.parametrize("storage", ["sqlite:///", "sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_storage_is_refused_for_a_search(storage: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "search", config(tmp_path, GOOD), "--storage", storage)
    assert code == 2 and "is an in-memory database: the search would be lost" in err


@pytest.mark.parametrize(("text", "message"), [
    ('{"layers": [{"type": "linear", "in_features": ' + "9" * 5000 + ', "out_features": 10}]}',
     "JSON value out of range"),
    ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply to read"),
])
def test_pathological_json_is_one_line(text: str, message: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "net.json"
    path.write_text(text)
    code, err = run(capsys, "cost", str(path))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_device_as_a_hardware_file_is_refused_not_read_forever(capsys: pytest.CaptureFixture[str]) -> None:
    network = Path(__file__).resolve().parents[1] / "examples" / "vgg-small.json"
    code, err = run(capsys, "cost", str(network), "--hardware", "/dev/zero")
    assert code == 2 and "hardware file '/dev/zero' is larger than 16 MiB" in err
