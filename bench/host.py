"""What every bench records about the machine and the code it measured.

This VM's CPU speed moves with its host's load (seen: a fixed loop taking twice as long an hour
later, with nothing else running here), and every figure of a run moves with it, so each run
records a host-speed figure before and after, next to the load, the CPU and the commit.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def host_speed_ms(seconds: float = 2.0) -> float:
    """The median time of a fixed pure-Python loop: lower is faster."""
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        total = 0
        for i in range(200_000):
            total += i
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


class Snapshot:
    """The load and host speed at the start of a run; `machine()` adds the end's."""

    def __init__(self) -> None:
        self.load, self.speed = os.getloadavg(), host_speed_ms()

    def machine(self) -> dict[str, object]:
        load_after, speed_after = os.getloadavg(), host_speed_ms()
        return {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in self.load],
            "loadavg_after": [round(x, 2) for x in load_after],
            "host_speed_ms_before": self.speed,
            "host_speed_ms_after": speed_after,
        }


def code_state(*measured: str) -> dict[str, object]:
    """The commit measured, and the files of the `measured` paths changed since (a shared
    working tree may hold someone's edits in progress)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=BASE_DIR, capture_output=True, text=True).stdout.strip()

    changed = git("status", "--porcelain", "--", *measured).splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_in_measured_path": changed}
