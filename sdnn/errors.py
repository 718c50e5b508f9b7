"""Errors a user can fix: each message names the config key or file and the fix."""

from __future__ import annotations

import argparse
import errno
import re
from collections.abc import Sequence
from typing import Any

# torch.utils.data re-raises a worker's exception as "Caught <Type> in DataLoader worker process <n>.\nOriginal
# Traceback (most recent call last): ..." (torch/_utils.py ExceptionWrapper.reraise), as the same type where it
# takes one argument, else as a RuntimeError; the last line of the worker's traceback is "<module>.<Type>: <message>"
_WORKER = re.compile(r"Caught (\w+) in DataLoader worker process \d+\.\s*\nOriginal Traceback")


def worker_message(text: str) -> str | None:
    """The message of an ``SDNNError`` raised in a DataLoader worker, from the text torch re-raises it with
    in the main process (None if ``text`` is not such a text, or names another exception)."""
    caught = _WORKER.match(text)
    if caught is None or caught.group(1) not in _names(SDNNError):
        return None
    found = re.findall(rf"^(?:[\w.]+\.)?{caught.group(1)}: (.*)$", text, re.M)
    return found[-1].strip() if found else None


def _names(base: type) -> set[str]:
    """The names of ``base`` and of every subclass of it defined so far."""
    names, todo = set(), [base]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


class SDNNError(Exception):
    """Base class; the CLI prints the message (no traceback) and exits with status 2."""

    def __init__(self, *args: Any):
        if len(args) == 1 and isinstance(args[0], str):
            inner = worker_message(args[0])  # re-raised from a DataLoader worker: our own one line, not its traceback
            if inner is not None:
                args = (inner,)
        super().__init__(*args)


class ConfigError(SDNNError):
    """An impossible or inconsistent configuration value."""


class DataError(SDNNError):
    """A missing, unreadable or malformed data file."""


class CheckpointError(SDNNError):
    """A checkpoint that cannot be resumed: damaged, or holding objects that loading would run."""


class DiskError(SDNNError):
    """A file of the run could not be written (disk full, read-only, no permission); ``where`` and ``reason``
    (None when not known) let a caller that knows what was saved say so (``sdnn.app.run``)."""

    where: str | None = None
    reason: str | None = None


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (``error: ...``, exit status 2), like the rest of sdnn."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message}\n")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``saved`` says what is on disk to resume from (``run.py`` prints it, with the
    command that resumes, and exits with status 130)."""

    def __init__(self, saved: str):
        super().__init__(saved)
        self.saved = saved


# errno values that mean "this place cannot be written": the run stops with one line naming the path
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENOTDIR,
               errno.EEXIST, errno.EISDIR, errno.ENAMETOOLONG}


RESUMES = ("free space or make the folder writable (or choose another hydra.run.dir), then run the same command "
           "again: it continues from whatever was saved")


def disk_error(exc: BaseException, fix: str = RESUMES) -> DiskError | None:
    """An ``OSError`` from writing a file (disk full, read-only, no permission) as one line that names the
    path and ``fix`` (default: a run's, the same command resumes); None for any other exception."""
    if isinstance(exc, DiskError):
        return exc
    if not isinstance(exc, OSError) or exc.errno not in DISK_ERRNOS:
        return None
    where = exc.filename if exc.filename is not None else "a file of the run"
    reason = exc.strerror or type(exc).__name__
    error = DiskError(f"cannot write {where} ({reason}): {fix}")
    error.where, error.reason = str(where), reason
    return error


def user_message(exc: BaseException, disk_fix: str = RESUMES) -> str | None:
    """The one line a command prints for ``exc``: ours (also when raised in a DataLoader worker), or a file
    that cannot be written (with ``disk_fix``); None for anything else (a bug: its traceback is shown)."""
    if isinstance(exc, SDNNError):
        return str(exc)
    disk = disk_error(exc, disk_fix)
    if disk is not None:
        return str(disk)
    return worker_message(str(exc)) if isinstance(exc, RuntimeError) else None


def listed(values: Sequence[Any], limit: int = 10, total: int | None = None) -> str:
    """A list for an error message, cut after ``limit`` values: ``[3, 4, …] (first 10 of 99998)``; ``total``:
    how many there are, where ``values`` holds only the first ones."""
    count = len(values) if total is None else total
    shown = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in list(values[:limit]))
    return f"[{shown}]" if count <= limit else f"[{shown}, …] (first {limit} of {count})"
