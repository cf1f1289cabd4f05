"""Shared by the benchmark scripts: wall time and peak memory of the Python driver and of Spark's JVM, and `recsys`
commands run as a user runs them."""
from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GiB RAM, Python {platform.python_version()}"


def reset_peak_rss(pid: int | str = "self") -> bool:
    """Writing 5 to clear_refs resets a process's VmHWM (Linux >= 4.0): the next peak read is from now on."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_gb(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of a process, GB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def _jvm_pid(spark) -> int:
    return spark._jvm.java.lang.ProcessHandle.current().pid()  # noqa: SLF001


def jvm_peak_rss_gb(spark) -> float:
    """Peak resident memory of the Spark driver JVM; in local mode the executors run inside it."""
    return peak_rss_gb(_jvm_pid(spark))


def reset_jvm_peak_rss(spark) -> bool:
    return reset_peak_rss(_jvm_pid(spark))


def python_peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@contextlib.contextmanager
def timed(figures: dict, name: str):
    start = time.perf_counter()
    yield
    figures[name] = time.perf_counter() - start


def run_recsys(*args: str, log: Path) -> tuple[int, float]:
    """Run `recsys <args>` (as `python -m jobs.cli`) from the repository, its output appended to `log`; its exit
    code and wall seconds. Delta is written by delta-rs unless RECSYS_DELTA_WRITER says otherwise."""
    start = time.perf_counter()
    with log.open("a") as out:
        out.write(f"\n$ recsys {' '.join(args)}\n")
        out.flush()
        code = subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=REPO, stdout=out,
                              stderr=subprocess.STDOUT, env={**os.environ, "RECSYS_DELTA_WRITER":
                                                             os.environ.get("RECSYS_DELTA_WRITER", "delta-rs")}).returncode
    return code, time.perf_counter() - start


def recsys(*args: str, log: Path) -> float:
    """`run_recsys`, exiting with an error that names the log when the command fails; the wall seconds."""
    code, seconds = run_recsys(*args, log=log)
    if code != 0:
        sys.exit(f"error: `recsys {' '.join(args)}` failed with exit code {code}; see {log}")
    return seconds
