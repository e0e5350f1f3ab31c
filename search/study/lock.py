"""One driver per study: a lease on the study in its results directory, held by the launcher
that runs it.

The lease is filelock's `SoftFileLease`: a marker file naming its holder (host, process and the
process's start, so a recycled process id is not mistaken for it), kept fresh by a heartbeat
thread. A launcher that finds the study held refuses before it starts anything. The lease is
taken over once its holder is gone: at once when the holder was a process on this machine that
has ended (killed or not), and after `LEASE_S` without a heartbeat when it was on another node
sharing the results directory (a lost node). A marker file, not a kernel lock (flock), so that it
works on every shared filesystem a cluster's nodes may use; the library does the takeover
atomically. Beside the marker, `<study>.holder.json` says since when, for the message a refused
launcher prints.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from search.errors import SpaceError

# Seconds without a heartbeat after which another node's launcher takes a study over. The holder
# renews every third of it; every launcher of a study must use the same value.
LEASE_S = 60.0
LOCKS = "locks"  # the results directory's folder of study leases


class StudyHeld(SpaceError):
    """Another launcher runs this study (exit 2, one line naming the holder)."""


class StudyLease:
    """The lease on study `name` in `results_dir`, taken with `take` and given back with
    `release` (or on leaving it as a context); a process that dies gives it back by dying."""

    def __init__(self, results_dir: Path, name: str, *, lease_s: float = LEASE_S) -> None:
        from filelock import SoftFileLease

        folder = Path(results_dir) / LOCKS
        folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.holder_file = folder / f"{name}.holder.json"
        self.lease = SoftFileLease(str(folder / f"{name}.lock"), lease_duration=lease_s, timeout=0, thread_local=False)

    def take(self) -> StudyLease:
        """Hold the study, or raise `StudyHeld` naming who does. A holder on another node is
        watched for one lease period first: if its heartbeat has stopped, the study is taken over."""
        from filelock import Timeout

        try:
            self.lease.acquire(timeout=0)
        except Timeout:
            owner = self.lease.owner
            if owner is None or owner.hostname == self._this_host():
                raise StudyHeld(self._held_message()) from None  # a live process here
            print(f"Study {self.name} is held by a launcher on {owner.hostname}; checking its heartbeat for up to {self.lease.lease_duration:.0f} s.", flush=True)
            try:
                self.lease.acquire(timeout=self.lease.lease_duration * 4 / 3)
            except Timeout:
                raise StudyHeld(self._held_message()) from None
        self.holder_file.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(), "command": sys.argv}))
        return self

    def _this_host(self) -> str:
        """How the lease names this machine (its hostname, marked with the process namespace
        inside a container): what a throwaway lease of this process records."""
        from filelock import SoftFileLease

        probe = SoftFileLease(str(self.lease.lock_file) + f".probe-{os.getpid()}", lease_duration=self.lease.lease_duration, timeout=0)
        with probe:
            return probe.owner.hostname if probe.owner else socket.gethostname()

    def release(self) -> None:
        if self.lease.is_locked:
            self.holder_file.unlink(missing_ok=True)
            self.lease.release(force=True)

    def __enter__(self) -> StudyLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _held_message(self) -> str:
        owner = self.lease.owner
        who = f"process {owner.pid} on {owner.hostname}" if owner else "another launcher"
        try:
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(json.loads(self.holder_file.read_text())["since"]))
            who += f", since {since}"
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return (
            f"Study {self.name} is being run by another launcher ({who}); only one may run a study at a time. "
            "Wait for it to end, or stop it and run this command again with --resume."
        )
