"""Who holds our event loop when it is late: daarion.asgi's application with a watchdog around it,
for hunting the proxy's tail latency (docs/BENCHMARKS.md, "Session 6 runs").

A task on the loop notes the time every 2 ms; a thread looks every 3 ms, and while the loop is
more than LOOP_LAG_MS (default 15) late it samples the loop thread's stack. At exit (SIGTERM,
as the bench stops its servers) it writes LOOP_LAG_OUT (default /tmp/loop_lag.txt):
- each stall with its start (seconds after the first request), length and sampled stacks, the
  most frequent stack tails first;
- garbage collections over 3 ms (generation, ms);
- each live-config check or reload with its wall and CPU time (a reload runs in a thread);
- each thread of the process with its CPU time.

A stack that ends in `select` means the loop was waiting for the GIL or the CPU, not running
our code. The watchdog costs a little CPU: compare its figures with each other, not with a
plain run.

    PYTHONPATH=bench .venv/bin/python -m devtools.devstack exec --data-dir .data/bench -- \\
        .venv/bin/python bench/proxy_overhead.py --ours-app loop_lag_probe:application \\
        --rates 500 --no-litellm --no-max-rate --cpu-requests 0 --out /tmp/probe.json
"""

from __future__ import annotations

import asyncio
import collections
import gc
import glob
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from daarion.asgi import application as inner
from daarion.infra.live_config import LiveSnapshot

LATE = float(os.environ.get("LOOP_LAG_MS", "15")) / 1000
OUT = os.environ.get("LOOP_LAG_OUT", "/tmp/loop_lag.txt")
T0 = time.perf_counter()

_state: dict[str, Any] = {"started": False, "last": time.perf_counter(), "tid": None, "gc_start": 0.0}
_stalls: list[tuple[float, float, list[list[str]]]] = []  # (start s, ms, stacks)
_gcs: list[tuple[int, float]] = []
_checks: list[tuple[float, str, float, float, bool]] = []  # (start s, config, wall ms, cpu ms, reloaded)


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _state["gc_start"] = time.perf_counter()
    elif (ms := (time.perf_counter() - _state["gc_start"]) * 1000) > 3:
        _gcs.append((info["generation"], round(ms, 2)))


_check_and_reload = LiveSnapshot._check_and_reload


def _timed_check(self: LiveSnapshot, recheck: bool) -> Any:
    started, cpu, loaded = time.perf_counter(), time.thread_time(), self._loaded_at
    try:
        return _check_and_reload(self, recheck)
    finally:
        _checks.append(
            (
                round(started - T0, 3),
                self.name,
                round((time.perf_counter() - started) * 1000, 2),
                round((time.thread_time() - cpu) * 1000, 2),
                self._loaded_at != loaded,
            )
        )


def _stack(frame: Any) -> list[str]:
    root = os.getcwd() + "/"
    return [
        f"{f.filename.replace(root, '').split('site-packages/')[-1]}:{f.lineno} {f.name}" for f in traceback.extract_stack(frame)
    ][-12:]


def _watch() -> None:
    stall_started, samples = None, []
    while True:
        time.sleep(0.003)
        now = time.perf_counter()
        if now - _state["last"] > LATE:
            if stall_started is None:
                stall_started, samples = _state["last"], []
            frame = sys._current_frames().get(_state["tid"])
            if frame is not None and len(samples) < 6:
                samples.append(_stack(frame))
        elif stall_started is not None:
            _stalls.append((round(stall_started - T0, 3), round((now - stall_started) * 1000, 1), samples))
            stall_started = None


def _write() -> None:
    tails = collections.Counter(tuple(s[-6:]) for _, _, samples in _stalls for s in samples)
    names = {t.native_id: t.name for t in threading.enumerate()}
    with open(OUT, "w") as out:
        out.write(f"stalls over {LATE * 1000:.0f} ms: {len(_stalls)}\n")
        out.write("".join(f"  at {t:.3f} s: {ms} ms\n" for t, ms, _ in _stalls))
        out.write(f"collections over 3 ms (generation, ms): {_gcs}\n")
        out.write("live-config checks over 5 ms or reloading (at s, config, wall ms, cpu ms, reloaded):\n")
        out.write("".join(f"  {c}\n" for c in _checks if c[4] or c[2] > 5))
        for task in sorted(glob.glob("/proc/self/task/*")):
            fields = open(task + "/stat").read().rsplit(")", 1)[1].split()
            tid = int(task.rsplit("/", 1)[1])
            out.write(f"thread {names.get(tid, tid)}: user {int(fields[11])} ticks, system {int(fields[12])} ticks\n")
        for tail, count in tails.most_common(20):
            out.write(f"\n{count} samples ending in:\n  " + "\n  ".join(tail) + "\n")


async def _beat() -> None:
    while True:
        _state["last"] = time.perf_counter()
        await asyncio.sleep(0.002)


def _start() -> None:
    _state["started"], _state["tid"] = True, threading.get_ident()
    LiveSnapshot._check_and_reload = _timed_check  # type: ignore[method-assign]
    gc.callbacks.append(_on_gc)
    _state["beat"] = asyncio.get_running_loop().create_task(_beat())
    threading.Thread(target=_watch, name="loop-lag-watch", daemon=True).start()
    # uvicorn installed its handlers at start-up; the bench stops its servers with SIGTERM.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: (_write(), os._exit(0)))


async def application(scope: dict, receive: Any, send: Any) -> None:
    if not _state["started"] and scope["type"] == "http":
        _start()
    await inner(scope, receive, send)
