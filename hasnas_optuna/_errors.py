"""Error types shared by the whole package.

Every error a user can cause by bad input derives from :class:`HasnasError`; the CLI prints such
errors as one line and exits with status 2, never with a traceback.
"""

from __future__ import annotations

__all__ = ["ConfigError", "HasnasError"]


class HasnasError(Exception):
    """Base class of every user-facing error raised by hasnas-optuna."""


class ConfigError(HasnasError, ValueError):
    """A value in a network description, hardware preset or study config is invalid.

    The message names the offending field, the bad value and what would be allowed.
    """
