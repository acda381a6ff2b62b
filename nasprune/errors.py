"""User-facing errors. The CLI prints ``nasprune: error: <message>`` on one line and exits with code 2."""

from __future__ import annotations

from nasprune.spec import SpecError

__all__ = ["DataError", "NaspruneError", "SpecError", "USER_ERRORS"]


class NaspruneError(ValueError):
    """Bad input a user can fix; the message names the value and what would be accepted."""


class DataError(NaspruneError):
    """A dataset is missing or malformed; the message names the paths tried and how to get the data."""


# Everything the CLI turns into a one-line error with exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (NaspruneError, SpecError)
