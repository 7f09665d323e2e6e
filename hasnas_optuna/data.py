"""Datasets as Lightning data modules: embedded digits, (Fashion-)MNIST idx files, CIFAR-10/100.

Nothing is downloaded: digits ship with scikit-learn, the others are read from a directory the user
already has (Debian's ``dataset-fashion-mnist`` package installs real Fashion-MNIST idx files in
:data:`FASHION_MNIST_DEBIAN_DIR`). Pixels are scaled to
``[0, 1]`` so that rate and latency encoding can read them as spike probabilities. Any other
``LightningDataModule`` with ``input_shape`` and ``num_classes`` attributes works too.
"""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from hasnas_optuna._errors import ConfigError
from hasnas_optuna.config import DATASET_SHAPES

__all__ = [
    "DATASETS", "FASHION_MNIST_DEBIAN_DIR", "CifarDataModule", "DigitsDataModule", "IdxDataModule",
    "TensorDataModule", "make_datamodule",
]

DATASETS = tuple(DATASET_SHAPES)
"""The data sets a study can name (their shapes: :data:`hasnas_optuna.config.DATASET_SHAPES`)."""
FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
"""Where Debian's ``dataset-fashion-mnist`` package puts the idx files (``dpkg -L`` to check)."""


class TensorDataModule(pl.LightningDataModule):
    """Train, validation and test tensors held in memory, served in mini-batches.

    Subclasses fill ``self.splits`` in :meth:`load`; ``input_shape`` is ``(channels, height,
    width)``.
    """

    def __init__(self, *, batch_size: int = 64, val_fraction: float = 0.2, seed: int = 0,
                 max_train_samples: int | None = None) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be an integer >= 1")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction={val_fraction!r} must be in (0, 1)")
        if max_train_samples is not None and max_train_samples < 1:
            raise ConfigError(f"max_train_samples={max_train_samples!r} must be >= 1")
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.max_train_samples = max_train_samples
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.input_shape: tuple[int, int, int] = (0, 0, 0)
        self.num_classes = 0

    def load(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Return ``((train_x, train_y), (test_x, test_y))``; x is float in [0, 1], NCHW."""
        raise NotImplementedError

    def prepare(self) -> TensorDataModule:
        """Load and split once (idempotent); returns self so it can be chained."""
        if self.splits:
            return self
        (train_x, train_y), (test_x, test_y) = self.load()
        rng = np.random.default_rng(self.seed)
        train_idx, val_idx = _stratified_split(train_y, self.val_fraction, rng)
        if self.max_train_samples is not None:
            train_idx = train_idx[: self.max_train_samples]
        self.splits = {
            "train": _tensors(train_x[train_idx], train_y[train_idx]),
            "val": _tensors(train_x[val_idx], train_y[val_idx]),
            "test": _tensors(test_x, test_y),
        }
        self.input_shape = tuple(int(v) for v in train_x.shape[1:])  # type: ignore[assignment]
        self.num_classes = int(max(train_y.max(), test_y.max()) + 1)
        return self

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _loader(self, split: str, *, shuffle: bool) -> DataLoader[Any]:
        self.prepare()
        x, y = self.splits[split]
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(TensorDataset(x, y), batch_size=self.batch_size, shuffle=shuffle, generator=generator)

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader[Any]:
        return self._loader("test", shuffle=False)

    def sample_batch(self, size: int = 128) -> torch.Tensor:
        """The first ``size`` training inputs (e.g. for training-free scoring)."""
        self.prepare()
        return self.splits["train"][0][:size]


class DigitsDataModule(TensorDataModule):
    """scikit-learn's 8x8 handwritten digits (1 797 images, 10 classes), embedded, no download.

    A stratified 20 % of the images is the test split; the rest is split again into train/val.

    Example:
        >>> dm = DigitsDataModule(batch_size=32).prepare()
        >>> dm.input_shape, dm.num_classes, len(dm.splits["test"][0])
        ((1, 8, 8), 10, 359)
    """

    def load(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)[:, None]
        y = digits.target.astype(np.int64)
        train_idx, test_idx = _stratified_split(y, 0.2, np.random.default_rng(12345))
        return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])


class IdxDataModule(TensorDataModule):
    """MNIST or Fashion-MNIST from a directory of the original idx files (``.gz`` or not).

    ``root`` must contain ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (also looked for under ``raw/``).
    """

    FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")

    def __init__(self, root: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)

    def load(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        train_x, train_y, test_x, test_y = (_read_idx(self._find(name)) for name in self.FILES)
        for images, labels, split in ((train_x, train_y, "train"), (test_x, test_y, "t10k")):
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise ConfigError(
                    f"{self.root}: {split} images {images.shape} and labels {labels.shape} do not match"
                )
        scale = np.float32(1 / 255)
        return ((train_x[:, None] * scale, train_y.astype(np.int64)),
                (test_x[:, None] * scale, test_y.astype(np.int64)))

    def _find(self, name: str) -> Path:
        if not self.root.is_dir():
            raise ConfigError(f"dataset directory {str(self.root)!r} does not exist")
        for folder in (self.root, self.root / "raw"):
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
        raise ConfigError(f"{self.root}: missing {name}[.gz]; expected the four idx files {', '.join(self.FILES)}")


class CifarDataModule(TensorDataModule):
    """CIFAR-10 or CIFAR-100 from the official "python version" directory.

    ``root`` is ``cifar-10-batches-py`` / ``cifar-100-python`` or a folder that contains it.
    """

    def __init__(self, root: str | Path, *, classes: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if classes not in (10, 100):
            raise ConfigError(f"classes={classes!r} must be 10 or 100")
        self.root = Path(root)
        self.classes = classes

    def load(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        if self.classes == 10:
            folder = self._folder("cifar-10-batches-py")
            train = [_read_cifar(folder / f"data_batch_{i}", b"labels") for i in range(1, 6)]
            test = _read_cifar(folder / "test_batch", b"labels")
            train_x = np.concatenate([x for x, _ in train])
            train_y = np.concatenate([y for _, y in train])
        else:
            folder = self._folder("cifar-100-python")
            train_x, train_y = _read_cifar(folder / "train", b"fine_labels")
            test = _read_cifar(folder / "test", b"fine_labels")
        return (train_x, train_y), test

    def _folder(self, name: str) -> Path:
        for folder in (self.root, self.root / name):
            if (folder / ("test_batch" if self.classes == 10 else "test")).is_file():
                return folder
        raise ConfigError(f"{self.root}: no {name} files found (expected {name}/ with its batch files)")


def make_datamodule(name: str, *, path: str | Path | None = None, **kwargs: Any) -> TensorDataModule:
    """The data module for a dataset name (see :data:`DATASETS`).

    Example:
        >>> make_datamodule("digits").prepare().num_classes
        10
        >>> make_datamodule("imagenet")
        Traceback (most recent call last):
        ...
        hasnas_optuna._errors.ConfigError: dataset 'imagenet' is not known; use one of digits, mnist, \
fashion_mnist, cifar10, cifar100
    """
    if name not in DATASETS:
        raise ConfigError(f"dataset {name!r} is not known; use one of {', '.join(DATASETS)}")
    if name == "digits":
        return DigitsDataModule(**kwargs)
    if path is None:
        default = FASHION_MNIST_DEBIAN_DIR if name == "fashion_mnist" else None
        if default is None:
            raise ConfigError(f"dataset {name!r} needs a path to the directory holding its files")
        path = default
    if name in ("mnist", "fashion_mnist"):
        return IdxDataModule(path, **kwargs)
    return CifarDataModule(path, classes=10 if name == "cifar10" else 100, **kwargs)


def _stratified_split(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    keep, held = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        cut = round(len(idx) * fraction)
        held.append(idx[:cut])
        keep.append(idx[cut:])
    return rng.permutation(np.concatenate(keep)), np.sort(np.concatenate(held))


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y.astype(np.int64))


def _read_idx(path: Path) -> np.ndarray:
    """Read an idx file (magic 0x0000080N, big-endian dimension sizes, unsigned bytes)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise ConfigError(f"{path}: cannot read idx file ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 4:
        raise ConfigError(f"{path}: not an idx file of unsigned bytes (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise ConfigError(f"{path}: truncated or corrupt idx file ({len(data)} bytes, expected {expected})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_cifar(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise ConfigError(f"{path}: missing CIFAR batch file")
    try:
        with path.open("rb") as handle:
            batch = pickle.load(handle, encoding="bytes")  # the official CIFAR format is a pickle
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: corrupt CIFAR batch file ({type(exc).__name__})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise ConfigError(f"{path}: corrupt CIFAR batch file (data shape {data.shape})")
    return data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, labels
