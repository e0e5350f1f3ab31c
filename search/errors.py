"""The two kinds of failure.

`SpaceError` (bad space file or command-line input) stops everything before Ray starts, with one
line that names the problem. A trial that raises is recorded as FAILED and the study goes on.
`DiskFull` stops a study whichever part of it found no room to write.
"""

from __future__ import annotations


class SpaceError(ValueError):
    """The space file or a command-line value is unusable; the study cannot start."""


class DiskFull(OSError):
    """A write failed for lack of room (ENOSPC, or a store that says its disk is full): the study
    stops, every run with a true status, and `--resume` carries it on once there is room."""

    MARKERS = ("No space left on device", "database or disk is full", "DiskFull")

    @classmethod
    def find(cls, error: BaseException | None, places: tuple[str, ...] = ()) -> DiskFull | None:
        """A `DiskFull` for `error` if it (or what caused it) says the disk is full, naming the
        full path: the one the error names, else the one of `places` with the least room."""
        import errno
        import shutil

        seen = []
        while error is not None and error not in seen and len(seen) < 20:
            seen.append(error)
            if isinstance(error, DiskFull):
                return error
            if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or any(m in str(error) for m in cls.MARKERS):
                path = getattr(error, "filename", None)
                if not path and places:
                    free = {place: shutil.disk_usage(place).free for place in places if _exists(place)}
                    path = min(free, key=free.get) if free else None
                return cls(errno.ENOSPC, "No space left on device", path) if path else cls(errno.ENOSPC, "No space left on device")
            error = error.__cause__ or error.__context__
        return None

    @classmethod
    def from_message(cls, message: str) -> DiskFull | None:
        """A `DiskFull` for an error known only by its message (a trial's, from its process),
        naming the path the message names."""
        import errno
        import re

        if not any(marker in message for marker in cls.MARKERS):
            return None
        named = re.search(r"filesystem of (\S+)|No space left on device: '([^']+)'", message)
        path = next((group for group in named.groups() if group), None) if named else None
        return cls(errno.ENOSPC, "No space left on device", path) if path else cls(errno.ENOSPC, "No space left on device")

    def __str__(self) -> str:
        where = f" on the filesystem of {self.filename}" if self.filename else ""
        return f"No space left on device{where}"


def _exists(path: str) -> bool:
    import os

    return os.path.exists(path)
