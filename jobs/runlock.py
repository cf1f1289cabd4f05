"""One nightly run at a time per warehouse: `<warehouse>/_pipeline/run.lock`.

The lock is a file created atomically (O_CREAT | O_EXCL) holding the holder's pid, host and start time. A second
`recsys pipeline` on the same warehouse finds it and stops with exit 2, naming the holder. A lock whose holder is gone
(same host, no process with that pid) is taken over with a warning; a lock from another host is never taken over,
since this host cannot see that process (remove the file by hand once that run is known to be gone). The lock is
released when the run ends, however it ends (failure, KeyboardInterrupt, SIGTERM).

Between reading a dead holder's file and removing it, a second run that also judged it dead could remove the lock the
first one just took; both would need to start within the same few milliseconds after a crash, which a nightly
schedule does not do.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import socket
from pathlib import Path

from recsys_core.errors import RecsysError

log = logging.getLogger("recsys.pipeline")


class LockHeld(RecsysError):
    """Another run holds the warehouse's lock: exit 2 with one line naming it."""


def lock_path(warehouse: Path) -> Path:
    return Path(warehouse) / "_pipeline" / "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def describe(holder: dict) -> str:
    return f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"


class RunLock:
    """`with RunLock(warehouse):` holds the warehouse's run lock for the block."""

    def __init__(self, warehouse: Path):
        self.path = lock_path(warehouse)
        self.holder = {"pid": os.getpid(), "host": socket.gethostname(),
                       "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        self._previous_sigterm = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_dead()
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(self.holder, handle)
            return
        raise LockHeld(f"could not take the run lock {self.path}: another run keeps creating it")

    def _take_over_if_dead(self) -> None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:  # released between our create and read: try again
            return
        try:
            holder = json.loads(text)
            pid = int(holder["pid"])
        except (ValueError, KeyError, TypeError):
            raise LockHeld(f"the run lock {self.path} is unreadable ({text[:80]!r}); remove it if no nightly run is "
                           f"going on this warehouse") from None
        if holder.get("host") != self.holder["host"] or _alive(pid):
            raise LockHeld(f"another nightly run holds this warehouse: {describe(holder)} (lock {self.path}); wait "
                           f"for it to end, or remove the lock if that process is gone")
        log.warning("taking over the run lock of a run that is gone (%s)", describe(holder))
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        try:
            if json.loads(self.path.read_text()).get("pid") == self.holder["pid"]:
                self.path.unlink()
        except (FileNotFoundError, ValueError):
            pass

    def __enter__(self) -> "RunLock":
        self.acquire()
        # cron's and Airflow's stop is SIGTERM: end the run as an exception, so the lock is released on the way out.
        self._previous_sigterm = signal.signal(signal.SIGTERM, _terminate)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self._previous_sigterm or signal.SIG_DFL)
        self.release()


def _terminate(signum, frame):
    raise SystemExit(128 + signum)
