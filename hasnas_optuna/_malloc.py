"""Keep freed memory in the process (glibc), so that training does not page-fault its tensors anew.

PyTorch allocates CPU tensors with plain ``malloc``. glibc serves large blocks with fresh ``mmap``
pages and hands freed memory at the top of its heap back to the system, so every training step
page-faults its activations and gradients in again: on a virtual machine each fault costs
microseconds, and a conv layer on a 160-image batch spent more time faulting than computing
(docs/speed.md). Two ``mallopt`` settings keep that memory in the process instead; the process's
resident memory then stays at its peak, as with a GPU's caching allocator.

Building a network (:func:`hasnas_optuna.build_network`) calls :func:`keep_freed_memory`, so
``hasnas search``, ``hasnas worker`` and any training loop of the user's get it.
``HASNAS_KEEP_FREED_MEMORY=0`` in the environment leaves the allocator alone. Other C libraries
(macOS, musl, Windows) are left alone too.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_LARGEST = 2**31 - 1  # mallopt takes an int

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (at most once per process); ``True`` if it now does.

    Process-wide and for the rest of the process: resident memory no longer shrinks after a peak.

    Example:
        >>> from hasnas_optuna import keep_freed_memory
        >>> keep_freed_memory() in (True, False)  # False on macOS, musl, or with HASNAS_KEEP_FREED_MEMORY=0
        True
    """
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get("HASNAS_KEEP_FREED_MEMORY", "1").strip() == "0":
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # Blocks of any size come from the heap, and freed heap memory is not trimmed back to the system.
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _LARGEST)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _LARGEST))
