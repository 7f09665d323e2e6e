"""Optuna storages from one URL string, with crash recovery and one-line errors.

What a ``--storage`` string may be:

* a database URL: ``sqlite:///FILE.db``, ``postgresql://user@host/db``, ``mysql://root@host/db``
  (``mysql://`` and ``mariadb://`` use PyMySQL when it is the driver installed);
* a journal file: ``journal:///PATH`` or a path ending in ``.log``, ``.jsonl`` or ``.journal``
  (Optuna's append-only ``JournalFileBackend``; works on NFS, no server needed);
* ``redis://host:port[/db]``: Optuna's journal on Redis (needs the ``redis`` package).

Database storages get Optuna's heartbeat: a worker records one every ``heartbeat_interval`` seconds
while a trial runs; a trial whose heartbeat is older than the grace period (its worker was killed
or lost) is failed by the next worker that starts a trial, and its parameters are queued again
(``RetryHeartbeatStaleTrialCallback``), so the architecture is trained by another worker. Journal
storages have no heartbeat in Optuna.
"""

from __future__ import annotations

import os
import random
import re
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from hasnas_optuna._errors import ConfigError, HasnasError

__all__ = [
    "DEFAULT_STORAGE", "describe_storage_error", "journal_path", "load_study_for_reading", "masked", "open_storage",
    "sqlite_path",
]

DEFAULT_STORAGE = "sqlite:///hasnas.db"
CONNECT_TIMEOUT = 15
"""Seconds to wait for a database server to answer."""
_JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")
_DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")


def sqlite_path(storage: str) -> Path | None:
    """The database file of a ``sqlite:///FILE`` URL; ``None`` for in-memory or non-SQLite storages.

    Example:
        >>> sqlite_path("sqlite:////data/s.db?timeout=5").as_posix(), sqlite_path("sqlite://"), sqlite_path("postgresql://h/db")
        ('/data/s.db', None, None)
    """
    if not storage.startswith("sqlite:///"):
        return None
    path = storage[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


def journal_path(storage: str) -> Path | None:
    """The file of a journal storage string; ``None`` if ``storage`` names no journal file.

    Example:
        >>> journal_path("journal:///runs/a.log").as_posix(), journal_path("runs/b.jsonl").as_posix()
        ('/runs/a.log', 'runs/b.jsonl')
        >>> journal_path("sqlite:///a.db") is None
        True
    """
    if storage.startswith("journal://"):
        return Path(storage[len("journal://"):]) if storage[len("journal://"):] else None
    if "://" not in storage and storage.endswith(_JOURNAL_SUFFIXES):
        return Path(storage)
    return None


def open_storage(
    storage: str,
    *,
    create: bool = True,
    heartbeat_interval: int | None = None,
    max_retry: int | None = 3,
) -> BaseStorage:
    """Open the storage ``storage`` names; :class:`ConfigError` with one line if it cannot.

    Args:
        storage: URL or journal file (see the module docstring).
        create: Whether a missing SQLite or journal file may be made. Readers (``hasnas best``,
            ``report``, ``dashboard``) pass ``False`` and never leave an empty file behind.
        heartbeat_interval: Seconds between heartbeats of a running trial (database storages only;
            ``None`` or 0: off). The grace period is twice the interval.
        max_retry: How often a trial whose worker died is queued again (``None``: always).

    Example:
        >>> open_storage("sqlite:///no/such/folder/s.db")
        Traceback (most recent call last):
        ...
        hasnas_optuna._errors.ConfigError: storage 'sqlite:///no/such/folder/s.db': folder 'no/such/folder' ...
        >>> open_storage("ftp://host/db")
        Traceback (most recent call last):
        ...
        hasnas_optuna._errors.ConfigError: storage 'ftp://host/db' is not a storage; use a database URL ...
    """
    try:
        journal = journal_path(storage)
        if journal is not None:
            return _journal_file(storage, journal, create)
        scheme = storage.split("://", 1)[0].split("+", 1)[0] if "://" in storage else ""
        if scheme == "redis":
            return _journal_redis(storage)
        if scheme not in _DATABASE_SCHEMES:
            raise ConfigError(
                f"storage {masked(storage)!r} is not a storage; use a database URL (sqlite:///FILE.db, "
                "postgresql://..., mysql://...), a journal file (journal:///PATH or PATH.log) or redis://HOST:PORT")
        return _database(storage, scheme, create, heartbeat_interval or None, max_retry)
    except HasnasError:
        raise
    except ImportError as exc:
        extra = {"redis": "redis", "postgresql": "postgres", "postgres": "postgres"}.get(
            storage.split("://", 1)[0].split("+", 1)[0], "mysql")
        raise ConfigError(f"storage {masked(storage)!r} needs a driver that is not installed ({exc}); "
                          f"pip install 'hasnas-optuna[{extra}]'") from None
    except Exception as exc:  # SQLAlchemy and driver errors: unreachable server, bad credentials, bad URL
        raise ConfigError(describe_storage_error(storage, exc)) from None


def load_study_for_reading(storage: str, study_name: str) -> optuna.Study:
    """Load a stored study; one-line :class:`ConfigError` for a missing file or an unknown name.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = optuna.create_study(storage=f"sqlite:///{tmp}/s.db", study_name="a")
        ...     load_study_for_reading(f"sqlite:///{tmp}/s.db", "b")
        Traceback (most recent call last):
        ...
        hasnas_optuna._errors.ConfigError: no study 'b' in sqlite:///.../s.db; studies there: a
    """
    backend = open_storage(storage, create=False)
    names = [s.study_name for s in backend.get_all_studies()]
    if study_name not in names:
        raise ConfigError(f"no study {study_name!r} in {masked(storage)}; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=study_name, storage=backend)


def describe_storage_error(storage: str, exc: BaseException) -> str:
    """One line for an error a storage raised (drivers put their detail on the first line)."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"cannot open storage {masked(storage)!r}: {type(exc).__name__}: {detail[0] if detail else ''}".rstrip(": ")


def masked(storage: str) -> str:
    """``storage`` with any password replaced by ``***`` (output ends up in shared log files).

    Example:
        >>> masked("postgresql://hasnas:secret@db/hasnas"), masked("sqlite:///a.db")
        ('postgresql://hasnas:***@db/hasnas', 'sqlite:///a.db')
        >>> masked("postgresql://hasnas@db/hasnas?password=secret&sslmode=require"), masked("redis://:pw@r:6379/0")
        ('postgresql://hasnas@db/hasnas?password=***&sslmode=require', 'redis://:***@r:6379/0')
    """
    storage = _PASSWORD_QUERY.sub(r"\1***", storage)
    scheme, sep, rest = storage.partition("://")
    user, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in user:
        return storage
    return f"{scheme}://{user.split(':', 1)[0]}:***@{host}"


_PASSWORD_QUERY = re.compile(r"([?&](?:password|passwd|pwd)=)[^&]*", re.IGNORECASE)


def _database(storage: str, scheme: str, create: bool, heartbeat_interval: int | None,
              max_retry: int | None) -> BaseStorage:
    url = storage
    engine_kwargs: dict[str, Any] = {}
    if scheme == "sqlite":
        path = sqlite_path(storage)
        if path is None:
            if not create:
                raise ConfigError(f"storage {storage!r} is an in-memory database: it holds no studies to read")
            heartbeat_interval = None  # one process only, and its heartbeat thread would see another database
        else:
            _check_file(storage, path, "SQLite file", create)
            if not create and not os.access(path.parent, os.W_OK):
                # a reader in a folder it cannot write to: SQLite could not make the WAL index file
                # there, so read the file as an immutable snapshot
                url = f"sqlite:///file:{path.resolve()}?mode=ro&immutable=1&uri=true"
        # several local workers on one file: wait for the lock instead of failing at once
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif scheme == "postgres":  # SQLAlchemy knows only the long name
        url = "postgresql" + storage[len("postgres"):]
        scheme = "postgresql"
    if "+" not in url.split("://", 1)[0] and scheme in _DRIVERS:
        url = _with_driver(url, scheme)
    if scheme != "sqlite":  # an unreachable server fails within seconds, not after the OS's TCP timeout
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    with warnings.catch_warnings():  # heartbeat and its retry callback are "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry) if heartbeat_interval else None
        for attempt in range(_SCHEMA_ATTEMPTS):
            try:
                rdb = optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs or None, heartbeat_interval=heartbeat_interval,
                    grace_period=2 * heartbeat_interval if heartbeat_interval else None,
                    heartbeat_stale_trial_callback=callback,
                    skip_table_creation=not create,  # a reader never writes Optuna's tables into a database
                )
                break
            except Exception as exc:
                if not create and _no_optuna_tables(exc):
                    raise ConfigError(f"storage {masked(storage)!r} holds no Optuna studies (no Optuna tables: "
                                      "an empty or foreign database); nothing was written to it") from None
                if attempt == _SCHEMA_ATTEMPTS - 1 or not _lost_schema_race(exc):
                    raise
                time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
    if scheme == "sqlite" and create and sqlite_path(storage) is not None:
        _write_ahead_log(rdb)
    return rdb


_SCHEMA_ATTEMPTS = 8


def _no_optuna_tables(exc: BaseException) -> bool:
    """Whether opening without creating tables failed because the database has none of Optuna's
    (Optuna may wrap the driver's error: the whole chain of causes is read)."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(getattr(seen, "orig", None) or seen).lower()
        if "no such table" in text or "does not exist" in text or "doesn't exist" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _lost_schema_race(exc: BaseException) -> bool:
    """Whether opening a database failed because another worker was creating Optuna's tables at once.

    Workers started together on an empty database all run ``CREATE TABLE IF NOT EXISTS`` and insert
    the schema version: all but one fail, on PostgreSQL with a unique violation in its catalogue
    (``pg_type_typname_nsp_index``), on MySQL with "table already exists". Opening again then
    finds the tables; nothing of a study is written before that.
    """
    import sqlalchemy.exc

    if isinstance(exc, sqlalchemy.exc.IntegrityError):
        return True
    text = str(getattr(exc, "orig", None) or exc).lower()
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and "already exists" in text


def _write_ahead_log(rdb: optuna.storages.RDBStorage) -> None:
    """Put a SQLite file in write-ahead-log mode with ``synchronous=NORMAL``.

    A trial writes its parameters and attributes in about 80 small transactions; in SQLite's
    default rollback-journal mode each one syncs the disk, which was most of the per-trial overhead
    (docs/speed.md). In WAL mode with ``synchronous=NORMAL`` a commit syncs nothing and the file
    stays consistent if the process is killed at any point; only a power cut or OS crash can lose
    the last commits, never corrupt the file. Readers also no longer block the writer. WAL needs a
    local disk (SQLite on NFS is unsafe in any mode: use a journal file or a server there). The
    mode is stored in the file, so later readers open it in WAL mode too; a reader in a folder it
    cannot write to (an archive) opens the file as an immutable snapshot instead.
    """
    from sqlalchemy import event

    def configure(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(rdb.engine, "connect", configure)
    rdb.engine.dispose()  # the connections made while creating the tables reconnect with it


_DRIVERS = {"postgresql": ("psycopg", "psycopg2"), "mysql": ("MySQLdb", "pymysql"), "mariadb": ("MySQLdb", "pymysql")}
"""Python drivers per URL scheme, SQLAlchemy's default first (whose name it may not import)."""


def _with_driver(url: str, scheme: str) -> str:
    """``scheme+driver://...`` with the first driver that is installed.

    SQLAlchemy picks one default driver per database (psycopg 3 for PostgreSQL, mysqlclient for
    MySQL) and fails if that one is missing even when another is installed.
    """
    import importlib.util

    for module in _DRIVERS[scheme]:
        if importlib.util.find_spec(module) is not None:
            return f"{scheme}+{module.lower()}{url[len(scheme):]}"
    raise ImportError(f"no {scheme} driver ({' or '.join(_DRIVERS[scheme])})")


def _check_file(storage: str, path: Path, kind: str, create: bool) -> None:
    """The file of a SQLite or journal storage exists (or, with ``create``, can be made) and, with
    ``create``, can be written; :class:`ConfigError` otherwise."""
    if not path.is_file():
        if not create:
            raise ConfigError(f"storage {storage!r}: no {kind} {str(path)!r}")
        _check_writable_folder(storage, path.parent)
    elif create and not os.access(path, os.W_OK):
        raise ConfigError(f"storage {storage!r}: {kind} {str(path)!r} is read-only")


def _check_writable_folder(storage: str, folder: Path) -> None:
    shown = str(folder) if str(folder) else "."
    if not folder.is_dir():
        raise ConfigError(f"storage {storage!r}: folder {shown!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"storage {storage!r}: folder {shown!r} is read-only; a new SQLite file cannot be made "
                          "there (choose a writable path)")


def _journal_file(storage: str, path: Path, create: bool) -> BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    _check_file(storage, path, "journal file", create)
    # an open(O_EXCL) lock: safe on NFSv3+ and on local disks, unlike plain file locks
    return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def _journal_redis(storage: str) -> BaseStorage:
    from optuna.storages.journal import JournalRedisBackend

    with warnings.catch_warnings():  # "experimental" in Optuna 5: documented in docs/distributed.md instead
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        backend = JournalRedisBackend(storage)
    backend._redis.ping()  # fail now, with one line, rather than at the first trial
    return optuna.storages.JournalStorage(backend)
