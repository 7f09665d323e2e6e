"""Data modules on real files in the real formats: idx (gzip or raw), CIFAR python pickles."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from hasnas_optuna import ConfigError
from hasnas_optuna.data import FASHION_MNIST_DEBIAN_DIR, CifarDataModule, IdxDataModule, make_datamodule


def write_idx(path: Path, array: np.ndarray, *, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def fake_mnist(root: Path, *, compress: bool = True, n_train: int = 50, n_test: int = 20) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28)), compress=compress)
    write_idx(root / "train-labels-idx1-ubyte", np.arange(n_train) % 10, compress=compress)
    write_idx(root / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), compress=compress)
    write_idx(root / "t10k-labels-idx1-ubyte", np.arange(n_test) % 10, compress=compress)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_load_and_split(tmp_path: Path, compress: bool) -> None:
    fake_mnist(tmp_path / "raw", compress=compress)
    dm = IdxDataModule(tmp_path, batch_size=8, val_fraction=0.2).prepare()
    assert dm.input_shape == (1, 28, 28) and dm.num_classes == 10
    assert [len(dm.splits[s][0]) for s in ("train", "val", "test")] == [40, 10, 20]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 28, 28) and y.shape == (8,)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # stratified: every class keeps one validation image
    assert sorted(dm.splits["val"][1].tolist()) == list(range(10))


def test_idx_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        IdxDataModule(tmp_path / "nope").prepare()
    fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ConfigError, match="missing t10k-labels-idx1-ubyte"):
        IdxDataModule(tmp_path).prepare()
    fake_mnist(tmp_path)
    corrupt = tmp_path / "train-images-idx3-ubyte.gz"
    corrupt.write_bytes(gzip.compress(gzip.decompress(corrupt.read_bytes())[:-100]))
    with pytest.raises(ConfigError, match=r"train-images-idx3-ubyte\.gz: truncated or corrupt idx file"):
        IdxDataModule(tmp_path).prepare()
    corrupt.write_bytes(b"not gzip at all")
    with pytest.raises(ConfigError, match="cannot read idx file"):
        IdxDataModule(tmp_path).prepare()


def fake_cifar(root: Path, classes: int) -> None:
    rng = np.random.default_rng(1)
    key = b"labels" if classes == 10 else b"fine_labels"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if classes == 10 else ["train", "test"]
    folder = root / ("cifar-10-batches-py" if classes == 10 else "cifar-100-python")
    folder.mkdir(parents=True)
    for name in names:
        batch = {b"data": rng.integers(0, 256, (30, 3072), dtype=np.uint8), key: list(np.arange(30) % classes)}
        (folder / name).write_bytes(pickle.dumps(batch))


@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_python_format(tmp_path: Path, classes: int) -> None:
    fake_cifar(tmp_path, classes)
    dm = CifarDataModule(tmp_path, classes=classes, batch_size=16).prepare()
    assert dm.input_shape == (3, 32, 32)
    assert len(dm.splits["test"][0]) == 30
    assert len(dm.splits["train"][0]) + len(dm.splits["val"][0]) == (150 if classes == 10 else 30)


def test_cifar_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no cifar-10-batches-py files found"):
        CifarDataModule(tmp_path).prepare()
    fake_cifar(tmp_path, 10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="data_batch_3: corrupt CIFAR batch file"):
        CifarDataModule(tmp_path).prepare()


def test_make_datamodule_and_digits() -> None:
    digits = make_datamodule("digits", batch_size=32).prepare()
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert len(digits.splits["train"][0]) + len(digits.splits["val"][0]) + len(digits.splits["test"][0]) == 1797
    with pytest.raises(ConfigError, match="dataset 'cifar10' needs a path"):
        make_datamodule("cifar10")
    with pytest.raises(ConfigError, match="batch_size=0 must be an integer >= 1"):
        make_datamodule("digits", batch_size=0)


@pytest.mark.skipif(not Path(FASHION_MNIST_DEBIAN_DIR).is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_debian() -> None:
    dm = make_datamodule("fashion_mnist", max_train_samples=1000).prepare()
    assert dm.input_shape == (1, 28, 28) and dm.num_classes == 10
    assert len(dm.splits["test"][0]) == 10000 and len(dm.splits["train"][0]) == 1000
