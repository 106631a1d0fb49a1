"""The errors of this package, in one place: `cli.run_cli` reports each of the
user's (a bad flag, file, checkpoint or example) as one line `error: <what>, <where>`,
and a run stopped by a non-finite step as a failed run."""

from __future__ import annotations

import os


def one_line(error: BaseException) -> str:
    """An exception's message as one line: what, then where."""
    text = str(error)
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    elif isinstance(error, OSError) and error.filename and error.strerror:
        text = f"{error.strerror.lower()}, {error.filename}"  # what, then where
    text = " ".join(text.split())
    return text or type(error).__name__


class UserError(ValueError):
    """Something the user can fix: `what` went wrong, `where` (a file, flag or step)."""

    def __init__(self, what: str, where: str | os.PathLike | None = None) -> None:
        self.what = what
        self.where = None if where is None else os.fspath(where)
        super().__init__(what if where is None else f"{what}, {self.where}")


class UsageError(UserError):
    """A command line argparse rejects."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: `what` went wrong, `where` (a path)."""

    def __init__(self, what: str, where: str | os.PathLike) -> None:
        self.what, self.where = what, os.fspath(where)
        super().__init__(f"{what}, {self.where}")


class TaskDataError(ValueError):
    """An example that cannot be used as given (the message names it)."""


class NonFiniteLossError(RuntimeError):
    """A step whose loss or mask gradient is not finite; the run stops before that step's update."""
