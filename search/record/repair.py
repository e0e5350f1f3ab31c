"""Records repaired before a study writes to them again.

The searcher's journal (`optuna.journal`, Optuna's `JournalFileBackend`) is the one file a study
appends to; everything else it writes is whole files renamed into place (checkpoints) or
transactions (MLflow's store). A machine that crashes or a disk that fills up in the middle of an
append leaves the journal's last entry cut short. Optuna reads past such a tail, but its next
append continues on the same line, and from then on every read of the journal fails
(`JSONDecodeError`): no study in it could be resumed again. `repair_journal` cuts the torn tail
off and keeps it beside the journal.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from search.errors import SpaceError


class JournalDamaged(SpaceError):
    """An entry before the journal's last is unreadable: nothing is written to it."""


def repair_journal(path: Path) -> str | None:
    """Cut a torn last entry off the journal at `path`, keeping it in `<path>.torn-<time>`.

    Holds Optuna's own lock on the journal meanwhile (a study of another launcher appending to
    the same journal waits). Returns one line saying what was dropped, or None if the journal is
    whole (or missing). Raises `JournalDamaged`, naming the file and the entry, if an entry
    before the last cannot be read: that is no torn write, and nothing is changed.
    """
    from optuna.storages.journal import JournalFileSymlinkLock

    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        keep = _whole_entries(data, path)
        if keep == len(data):
            return None
        aside = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}")
        aside.write_bytes(data[keep:])
        with open(path, "r+b") as journal:
            journal.truncate(keep)
            journal.flush()
            os.fsync(journal.fileno())
    finally:
        lock.release()
    return (
        f"The searcher's journal {path} ended in a torn entry ({len(data) - keep} bytes, a write cut short by a crash or "
        f"a full disk): dropped and kept in {aside.name}; what it said is settled from MLflow's record."
    )


def _whole_entries(data: bytes, path: Path) -> int:
    """The length of `data` up to the end of its last whole entry; raises `JournalDamaged` if
    an earlier entry is unreadable."""
    lines = data.split(b"\n")  # the last item is what follows the last newline (b"" if none)
    whole = len(data) - len(lines[-1])
    for number, line in enumerate(lines[:-1], start=1):
        try:
            json.loads(line)
        except ValueError:
            if number < len(lines) - 1:
                raise JournalDamaged(
                    f"The searcher's journal {path} is damaged at entry {number} of {len(lines) - 1} (not its last, so no torn "
                    "write): move it aside to start a new study, or restore it from a backup to resume."
                ) from None
            whole -= len(line) + 1  # the last entry, newline written but unreadable: torn too
    return whole
