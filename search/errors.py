"""The two kinds of failure.

`SpaceError` (bad space file or command-line input) stops everything before Ray starts, with one
line that names the problem. A trial that raises is recorded as FAILED and the study goes on.
`DiskFull` stops a study whichever part of it found no room to write.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Iterator


class SpaceError(ValueError):
    """The space file or a command-line value is unusable; the study cannot start."""


class DiskFull(OSError):
    """A write failed for lack of room (ENOSPC, or a store that says its disk is full): the study
    stops, every run with a true status, and `--resume` carries it on once there is room."""

    MARKERS = ("No space left on device", "database or disk is full", "DiskFull")

    @classmethod
    def at(cls, path: str | None) -> DiskFull:
        """The error for the filesystem of `path` (None: unknown). `OSError`'s own signature
        stays, for an error that travels pickled from a trial's process."""
        return cls(errno.ENOSPC, "No space left on device", path)

    @classmethod
    def find(cls, error: BaseException | None, places: tuple[str, ...] = ()) -> DiskFull | None:
        """A `DiskFull` for `error` if it (or what caused it) says the disk is full, naming the
        full path: the one the error names, else the one of `places` with the least room."""
        for cause in causes(error):
            if isinstance(cause, DiskFull):
                return cause
            if (isinstance(cause, OSError) and cause.errno == errno.ENOSPC) or any(m in str(cause) for m in cls.MARKERS):
                path = getattr(cause, "filename", None)
                if not path and places:
                    free = {place: shutil.disk_usage(place).free for place in places if os.path.exists(place)}
                    path = min(free, key=free.get) if free else None
                return cls.at(path)
        return None

    @classmethod
    def from_message(cls, message: str) -> DiskFull | None:
        """A `DiskFull` for an error known only by its message (a trial's, from its process),
        naming the path the message names."""
        if not any(marker in message for marker in cls.MARKERS):
            return None
        named = re.search(r"filesystem of (\S+)|No space left on device: '([^']+)'", message)
        return cls.at(next((group for group in named.groups() if group), None) if named else None)

    def __str__(self) -> str:
        where = f" on the filesystem of {self.filename}" if self.filename else ""
        return f"No space left on device{where}"


def causes(error: BaseException | None) -> Iterator[BaseException]:
    """`error`, then what caused it (`__cause__`, else `__context__`), and so on, each once."""
    seen: list[BaseException] = []
    while error is not None and error not in seen and len(seen) < 20:
        seen.append(error)
        yield error
        error = error.__cause__ or error.__context__
