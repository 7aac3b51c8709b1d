"""User-facing errors.

A :class:`KsegError` carries one line that names the bad file or key and says how to fix it. The
CLI prints that line and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class KsegError(Exception):
    """An error caused by the user's input, with a message that says how to fix it."""


class ConfigError(KsegError, ValueError):
    """A bad configuration key or value."""


class DataError(KsegError):
    """A missing, unreadable or inconsistent data file or folder."""


class ModelError(KsegError):
    """A model file that cannot be loaded or an option the model cannot take."""


class ClusterError(KsegError):
    """A multi-worker training job that lost a worker or cannot reach one."""


def did_you_mean(name: object, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``valid`` to ``name``, or ``""``: the hint of
    an unknown-key or unknown-name message."""
    close = difflib.get_close_matches(str(name), list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
