"""Error types shared by the whole package.

Every error a user can cause by bad input derives from :class:`HasnasError`; the CLI prints such
errors as one line and exits with status 2, never with a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

__all__ = ["ConfigError", "HasnasError", "did_you_mean", "read_user_file"]


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


def read_user_file(path: str | Path, what: str) -> str:
    """The text of a file the user named, or a :class:`ConfigError` saying why it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} file {str(path)!r} is not UTF-8 text") from None
