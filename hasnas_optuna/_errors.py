"""Error types shared by the whole package.

Every error a user can cause by bad input derives from :class:`HasnasError`; the CLI prints such
errors as one line and exits with status 2, never with a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["ConfigError", "HasnasError", "did_you_mean", "parse_json", "read_user_file"]


class HasnasError(Exception):
    """Base class of every user-facing error raised by hasnas-optuna."""


class ConfigError(HasnasError, ValueError):
    """A value in a network description, hardware preset or study config is invalid.

    The message names the offending field, the bad value and what would be allowed.
    """


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` to a misspelled ``value``, else ``""``.

    Example:
        >>> did_you_mean("energie", ["memory", "area", "latency", "energy"])
        " (did you mean 'energy'?)"
        >>> did_you_mean("power", ["memory", "area"])
        ''
    """
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


USER_FILE_BYTES = 16 << 20
"""Largest network, hardware or study file read (16 MiB): a device or a wrong file is refused, not read forever."""


def read_user_file(path: str | Path, what: str) -> str:
    """The text of a file the user named, or a :class:`ConfigError` saying why it cannot be read."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(USER_FILE_BYTES + 1)
        if len(data) > USER_FILE_BYTES:
            raise ConfigError(f"{what} file {str(path)!r} is larger than {USER_FILE_BYTES >> 20} MiB; "
                              "is it the right file?")
        return data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} file {str(path)!r} is not UTF-8 text") from None


def parse_json(text: str, where: str) -> object:
    """JSON a user gave, or one :class:`ConfigError` line (bad syntax, numbers of thousands of digits,
    nesting deeper than Python's recursion allows).

    Example:
        >>> parse_json("[" * 100_000, "net.json")
        Traceback (most recent call last):
        ...
        hasnas_optuna._errors.ConfigError: net.json: JSON nested too deeply to read
    """
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise ConfigError(f"{where}: JSON nested too deeply to read") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"{where}: JSON value out of range: {str(exc).split(';')[0]}") from None
