"""A process's descendants and whether they still run, read from Linux's /proc (no /proc/PID/task/*/children here:
the kernel may be built without it)."""
from __future__ import annotations

import time
from pathlib import Path


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid), or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (command)", which may hold spaces
    return fields[0], int(fields[1])


def descendants(pid: int) -> list[int]:
    stats = {int(entry.name): _stat(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit()}
    parents = {child: stat[1] for child, stat in stats.items() if stat}
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def running(pid: int) -> bool:
    """Alive: a zombie has finished (its reaper may be slow to collect it)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def still_running(pids: list[int], within_s: float) -> list[int]:
    """The processes of `pids` still running after waiting up to `within_s` for all to end."""
    deadline = time.monotonic() + within_s
    while (alive := [pid for pid in pids if running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""
