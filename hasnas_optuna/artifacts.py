"""Per-trial artifacts: architecture drawing and JSON, per-layer costs, training curve, weights.

Artifacts are Optuna artifacts (what ``optuna.artifacts.upload_artifact`` makes, uploaded together
into a ``FileSystemArtifactStore``), so optuna-dashboard lists them on each trial's page and
serves them when started with the same store (``hasnas dashboard`` wires it in).

Optuna refuses to change a finished trial, artifacts included: :func:`save_trial_artifacts` must
run inside the objective, before it returns. The files of one trial:

==================== =====================================================================
``architecture.svg`` the drawing of :func:`hasnas_optuna.drawing.architecture_svg`
``architecture.json`` ``Architecture.to_json()``, what :func:`hasnas_optuna.export` rebuilds
``cost_report.json`` ``CostReport.to_dict()``: totals and the per-layer, per-component breakdown
``cost_layers.csv``  the per-layer breakdown as a table
``training_curve.svg`` losses and validation accuracy per epoch
``weights.pt``       the trained network's ``state_dict`` (``torch.save``)
==================== =====================================================================

Where the store lives (:func:`artifact_dir_for`): an explicit folder, else ``<stem>-artifacts/``
beside a SQLite file (``sqlite:///runs/hasnas.db`` -> ``runs/hasnas-artifacts/``).

Example:
    >>> artifact_dir_for("sqlite:///runs/hasnas.db").as_posix()
    'runs/hasnas-artifacts'
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna.artifacts.exceptions import ArtifactNotFound

from hasnas_optuna._errors import ConfigError
from hasnas_optuna._trial_writes import upload_artifacts
from hasnas_optuna.storage import journal_path, masked, sqlite_path

if TYPE_CHECKING:
    import torch
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.storages import BaseStorage
    from optuna.study._frozen import FrozenStudy
    from optuna.trial import FrozenTrial

    from hasnas_optuna.architecture import Architecture
    from hasnas_optuna.cim import CostReport

__all__ = [
    "ARCHITECTURE_JSON",
    "ARCHITECTURE_SVG",
    "ARTIFACT_DIR_ATTR",
    "COST_CSV",
    "COST_JSON",
    "CURVE_SVG",
    "WEIGHTS",
    "artifact_dir_for",
    "cost_layers_csv",
    "download_trial_artifact",
    "find_artifact",
    "open_artifact_store",
    "save_trial_artifacts",
    "training_curve_svg",
    "trial_artifact_names",
    "trial_logger",
    "write_training_curve",
]

_LOG = optuna.logging.get_logger("hasnas_optuna.artifacts")

ARCHITECTURE_SVG = "architecture.svg"
ARCHITECTURE_JSON = "architecture.json"
COST_JSON = "cost_report.json"
COST_CSV = "cost_layers.csv"
CURVE_SVG = "training_curve.svg"
WEIGHTS = "weights.pt"
_MIMETYPES = {
    ".svg": "image/svg+xml", ".json": "application/json", ".csv": "text/csv", ".png": "image/png",
    ".pt": "application/octet-stream",
}


# ---------------------------------------------------------------------------------------------
# Where the store lives

ARTIFACT_DIR_ATTR = "hasnas/artifact_dir"
"""Study user attribute: the absolute artifact folder the search wrote to (readers find it there)."""


def artifact_dir_for(storage: str | BaseStorage | None, artifact_dir: str | Path | None = None, *,
                     study: optuna.Study | FrozenStudy | None = None) -> Path:
    """The artifact folder of a study: ``artifact_dir`` if given; else beside a SQLite or journal file;
    else, for a database server, the one the search recorded on ``study``, or ``NAME-artifacts`` in
    the working directory (NAME the study's name).

    Raises :class:`ConfigError` for an in-memory SQLite database (nothing of it outlives the process)
    or a server storage without a study to name the folder after.

    Example:
        >>> artifact_dir_for("sqlite:///hasnas.db").as_posix(), artifact_dir_for("sqlite://", "arts").as_posix()
        ('hasnas-artifacts', 'arts')
        >>> artifact_dir_for("sqlite://")
        Traceback (most recent call last):
        ...
        hasnas_optuna._errors.ConfigError: storage 'sqlite://' is in memory: it keeps no artifacts; ...
    """
    if artifact_dir is not None:
        return Path(artifact_dir)
    url = storage if isinstance(storage, str) else getattr(storage, "url", None)
    path = (sqlite_path(url) or journal_path(url)) if isinstance(url, str) else None
    if path is not None:  # it moves with the file
        return path.parent / f"{path.stem}-artifacts"
    recorded = study.user_attrs.get(ARTIFACT_DIR_ATTR) if study is not None else None
    if isinstance(recorded, str):
        return Path(recorded)
    shown = masked(url) if isinstance(url, str) else type(storage).__name__
    if not isinstance(url, str) or url.startswith("sqlite:"):  # an in-memory database, or a storage object
        raise ConfigError(f"storage {shown!r} is in memory: it keeps no artifacts; give an artifact folder "
                          "(--artifact-dir DIR) or a database file")
    if study is None:
        raise ConfigError(f"storage {shown!r} has no database file to keep artifacts beside; "
                          "give an artifact folder (--artifact-dir DIR)")
    return Path.cwd() / f"{study.study_name}-artifacts"


def open_artifact_store(path: str | Path, *, create: bool = True) -> FileSystemArtifactStore:
    """A ``FileSystemArtifactStore`` on ``path``, made if ``create``; :class:`ConfigError` if unusable.

    Example:
        >>> open_artifact_store("no/such/folder", create=False)
        Traceback (most recent call last):
        ...
        hasnas_optuna._errors.ConfigError: artifact folder 'no/such/folder' does not exist
    """
    folder = Path(path)
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create artifact folder {str(folder)!r}: {exc.strerror}") from None
    if not folder.is_dir():
        raise ConfigError(f"artifact folder {str(folder)!r} does not exist")
    return FileSystemArtifactStore(str(folder))


def trial_logger(artifact_dir: str | Path, study_name: str, trial_number: int) -> Any:
    """A Lightning logger for one trial under ``<artifact_dir>/lightning_logs/<study>/trial-<n>``.

    TensorBoard when ``tensorboard`` (or ``tensorboardX``) is installed, else CSV; pass it to
    :func:`hasnas_optuna.training.train_architecture` as ``logger=``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     logger = trial_logger(tmp, "digits", 3)
        ...     Path(logger.log_dir).relative_to(tmp).as_posix()
        'lightning_logs/digits/trial-3'
    """
    import importlib.util

    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    root = Path(artifact_dir) / "lightning_logs"
    name, version = str(study_name), f"trial-{trial_number}"
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        return TensorBoardLogger(str(root), name=name, version=version, default_hp_metric=False)
    return CSVLogger(str(root), name=name, version=version)


# ---------------------------------------------------------------------------------------------
# Writing

def cost_layers_csv(report: CostReport) -> str:
    """The per-layer breakdown of ``report`` as CSV text: one row per crossbar-mapped layer.

    Example:
        >>> from hasnas_optuna.cim import Layer, Network, estimate_cost, load_hardware
        >>> report = estimate_cost(Network([Layer.linear(64, 10, name="fc")]), load_hardware(), timesteps=2)
        >>> cost_layers_csv(report).splitlines()[1].split(",")[:4]
        ['0', 'fc', 'linear', '640']
    """
    rows = [layer.to_dict() for layer in report.layers]
    out = io.StringIO()
    if not rows:
        return ""
    flat_keys = [k for k, v in rows[0].items() if not isinstance(v, Mapping)]
    area_parts = list(rows[0]["area_breakdown_mm2"])
    energy_parts = list(rows[0]["energy_breakdown_uj"])
    header = flat_keys + [f"area_{p}_mm2" for p in area_parts] + [f"energy_{p}_uj" for p in energy_parts]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row[k] for k in flat_keys] + [row["area_breakdown_mm2"][p] for p in area_parts]
                        + [row["energy_breakdown_uj"][p] for p in energy_parts])
    return out.getvalue()


def write_training_curve(history: Sequence[Mapping[str, float]], folder: str | Path) -> Path | None:
    """Write ``training_curve.svg`` (loss and validation accuracy per epoch) into ``folder``.

    ``history`` is the objective's per-epoch list (``epoch``, ``train_loss``, ``val_loss``,
    ``val_acc``); returns the file written, or ``None`` for an empty history. Plain SVG text, no
    plotting library: it runs after every trial, where a matplotlib figure cost about 3 % of a
    10-epoch digits trial (benchmarks/RESULTS.md, per-trial overhead).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_training_curve([{"epoch": 0.0, "train_loss": 2.0, "val_acc": 0.5}], tmp).name
        'training_curve.svg'
    """
    if not history:
        return None
    path = Path(folder) / CURVE_SVG
    path.write_text(training_curve_svg(history), encoding="utf-8")
    return path


def training_curve_svg(history: Sequence[Mapping[str, float]]) -> str:
    """Two panels as SVG text: training and validation loss, and validation accuracy, per epoch."""
    epochs = [row.get("epoch", float(i)) + 1 for i, row in enumerate(history)]
    width, height, pad = 360, 240, 44
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * width}" height="{height}" '
             f'viewBox="0 0 {2 * width} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">',
             f'<rect width="{2 * width}" height="{height}" fill="white"/>']
    panels = [("loss", "cross-entropy", [("train_loss", "#1f5fa8", ""), ("val_loss", "#d9730d", "5,3")], None),
              ("validation accuracy", "accuracy", [("val_acc", "#2a8a3e", "")], (0.0, 1.0))]
    for k, (title, ylabel, series, fixed) in enumerate(panels):
        x0 = k * width
        lines = [(key, color, dash, [(e, float(row[key])) for e, row in zip(epochs, history, strict=True)
                                     if key in row and math.isfinite(float(row[key]))]) for key, color, dash in series]
        values = [v for *_, points in lines for _, v in points]
        low, high = fixed or (min(values, default=0.0), max(values, default=1.0))
        if high - low < 1e-9:
            low, high = low - 0.5, high + 0.5
        first, last = min(epochs), max(epochs)
        span = (last - first) or 1.0

        def xy(e: float, v: float, x0: float = x0, low: float = low, high: float = high, first: float = first,
               span: float = span) -> str:
            x = x0 + pad + (e - first) / span * (width - 1.5 * pad)
            y = height - pad - (v - low) / (high - low) * (height - 2 * pad)
            return f"{x:.1f},{y:.1f}"

        left, right, top, bottom = x0 + pad, x0 + width - pad / 2, pad, height - pad
        parts.append(f'<text x="{x0 + width / 2:.1f}" y="18" font-size="13" text-anchor="middle">{title}</text>')
        parts.append(f'<polyline points="{left},{top} {left},{bottom} {right},{bottom}" fill="none" stroke="#444"/>')
        for value in (low, (low + high) / 2, high):
            parts.append(f'<text x="{left - 4:.1f}" y="{xy(first, value).split(",")[1]}" font-size="10" '
                         f'text-anchor="end" dominant-baseline="middle">{value:.3g}</text>')
        for e in sorted({first, last, epochs[len(epochs) // 2]}):
            parts.append(f'<text x="{xy(e, low).split(",")[0]}" y="{bottom + 14:.1f}" font-size="10" '
                         f'text-anchor="middle">{e:g}</text>')
        parts.append(f'<text x="{x0 + width / 2:.1f}" y="{height - 8}" font-size="11" text-anchor="middle">'
                     f'epoch</text>')
        parts.append(f'<text x="{x0 + 12}" y="{height / 2:.1f}" font-size="11" text-anchor="middle" '
                     f'transform="rotate(-90 {x0 + 12} {height / 2:.1f})">{ylabel}</text>')
        for j, (key, color, dash, points) in enumerate(lines):
            if not points:
                continue
            dashes = f' stroke-dasharray="{dash}"' if dash else ""
            coords = " ".join(xy(e, v) for e, v in points)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="2"{dashes}>'
                         f'<title>{key}</title></polyline>')
            parts += [f'<circle cx="{c.split(",")[0]}" cy="{c.split(",")[1]}" r="2.5" fill="{color}"/>'
                      for c in coords.split()]
            parts.append(f'<text x="{right - 4:.1f}" y="{top + 4 + 14 * j}" font-size="10" text-anchor="end" '
                         f'fill="{color}">{key.replace("_", " ")}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def save_trial_artifacts(
    trial: optuna.Trial,
    *,
    artifact_store: ArtifactStore,
    architecture: Architecture,
    report: CostReport | None = None,
    history: Sequence[Mapping[str, float]] = (),
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, str]:
    """Upload a running trial's artifacts (see the module docstring); returns ``{file name: artifact id}``.

    Call it inside the objective, before it returns (Optuna refuses to change finished trials).
    Files are written to a temporary folder and copied into ``artifact_store``.

    Args:
        trial: The running trial.
        artifact_store: Where the files go (:func:`open_artifact_store`).
        architecture: The trial's architecture (drawing and JSON).
        report: Its cost report (per-layer JSON and CSV); left out when ``None``.
        history: Per-epoch training metrics (training curve); left out when empty.
        state_dict: The trained network's weights (``weights.pt``); left out when ``None``.

    Example:
        >>> import tempfile
        >>> from hasnas_optuna.architecture import Architecture, Cell
        >>> cell = Cell.from_matrix("0302 0030 3003 0000")
        >>> arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=4)
        >>> study = optuna.create_study()
        >>> trial = study.ask()
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     ids = save_trial_artifacts(trial, artifact_store=open_artifact_store(tmp), architecture=arch)
        ...     sorted(ids), trial_artifact_names(study, study.trials[0])
        (['architecture.json', 'architecture.svg'], ['architecture.json', 'architecture.svg'])
    """
    from hasnas_optuna.drawing import architecture_svg

    with tempfile.TemporaryDirectory(prefix="hasnas-artifacts-") as tmp:
        folder = Path(tmp)
        files: list[Path] = []

        def text(name: str, body: str) -> None:
            path = folder / name
            path.write_text(body, encoding="utf-8")
            files.append(path)

        text(ARCHITECTURE_SVG, architecture_svg(architecture, title=f"trial {trial.number}: "
                                                f"{architecture.to_network().name}"))
        text(ARCHITECTURE_JSON, architecture.to_json(indent=2) + "\n")
        if report is not None:
            text(COST_JSON, json.dumps(report.to_dict(), indent=2) + "\n")
            text(COST_CSV, cost_layers_csv(report))
        curve = write_training_curve(list(history), folder)
        if curve is not None:
            files.append(curve)
        if state_dict is not None:
            import torch

            path = folder / WEIGHTS
            torch.save({key: value.detach().cpu() for key, value in state_dict.items()}, path)
            files.append(path)
        ids = upload_artifacts(trial, artifact_store, [
            (path, _MIMETYPES.get(path.suffix, "application/octet-stream")) for path in files])
    _LOG.debug("trial %d: uploaded %s", trial.number, ", ".join(ids))
    return ids


# ---------------------------------------------------------------------------------------------
# Reading

def _metas(study: optuna.Study, trial: FrozenTrial) -> list[Any]:
    return list(get_all_artifact_meta(trial, storage=study._storage))


def trial_artifact_names(study: optuna.Study, trial: FrozenTrial) -> list[str]:
    """File names of a trial's artifacts, sorted (a name uploaded twice appears once); see
    :func:`save_trial_artifacts` for an example."""
    return sorted({meta.filename for meta in _metas(study, trial)})


def find_artifact(study: optuna.Study, trial: FrozenTrial, filename: str) -> Any | None:
    """The ``ArtifactMeta`` of the trial's artifact called ``filename`` (the last one uploaded), or ``None``.

    Example:
        >>> study = optuna.create_study()
        >>> study.optimize(lambda t: 0.0, n_trials=1)
        >>> find_artifact(study, study.trials[0], "weights.pt") is None
        True
    """
    found = [meta for meta in _metas(study, trial) if meta.filename == filename]
    return found[-1] if found else None


def download_trial_artifact(study: optuna.Study, trial: FrozenTrial, filename: str, *,
                            artifact_store: ArtifactStore, dest: str | Path) -> Path:
    """Copy the trial's artifact ``filename`` to the file ``dest``; :class:`ConfigError` if it is missing.

    Example:
        >>> import tempfile
        >>> study = optuna.create_study()
        >>> study.optimize(lambda t: 0.0, n_trials=1)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     download_trial_artifact(study, study.trials[0], "weights.pt",
        ...                             artifact_store=open_artifact_store(tmp), dest=f"{tmp}/w.pt")
        Traceback (most recent call last):
        ...
        hasnas_optuna._errors.ConfigError: trial 0 has no artifact 'weights.pt' (it has none)
    """
    meta = find_artifact(study, trial, filename)
    if meta is None:
        names = trial_artifact_names(study, trial)
        raise ConfigError(f"trial {trial.number} has no artifact {filename!r} "
                          f"({'it has ' + ', '.join(names) if names else 'it has none'})")
    dest = Path(dest)
    if dest.exists():
        dest.unlink()
    try:
        download_artifact(artifact_store=artifact_store, file_path=str(dest), artifact_id=meta.artifact_id)
    except (ArtifactNotFound, FileNotFoundError):
        raise ConfigError(f"trial {trial.number}: artifact {filename!r} ({meta.artifact_id}) is listed but "
                          "missing from the artifact folder; is --artifact-dir the folder the search used?") from None
    return dest
