"""User-facing errors.

Everything a user can get wrong (a suite field, a model option, a dataset root)
raises :class:`UserError`. The CLI prints its message without a traceback and
exits with code 2, so scripts can tell bad input (2) from a regression (1).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: printed as-is by the CLI, exit code 2."""

    exit_code = 2


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' if none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
