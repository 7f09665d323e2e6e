"""Error types shared by the whole package.

Every error a user can cause by bad input derives from :class:`HasnasError`; the CLI prints such
errors as one line and exits with status 2, never with a traceback.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ConfigError", "HasnasError", "read_user_file"]


class HasnasError(Exception):
    """Base class of every user-facing error raised by hasnas-optuna."""


class ConfigError(HasnasError, ValueError):
    """A value in a network description, hardware preset or study config is invalid.

    The message names the offending field, the bad value and what would be allowed.
    """


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
