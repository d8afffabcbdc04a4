"""The bench scripts still start: nothing runs them in CI, so a moved import breaks them
silently (bench/inrequest_app.py once imported the pipeline before Django was set up)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.name for p in (BASE_DIR / "bench").glob("*.py") if "__main__" in p.read_text())
# Served by uvicorn (`module:attribute`), not run: importing them must work.
SERVED = ["bench.inrequest_app", "bench.loop_lag_probe"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_bench_script_shows_its_help(script):
    done = subprocess.run(
        [sys.executable, f"bench/{script}", "--help"], cwd=BASE_DIR, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


@pytest.mark.parametrize("module", SERVED)
def test_each_served_bench_app_imports(module):
    env = {**os.environ, "PYTHONPATH": f"{BASE_DIR}{os.pathsep}{BASE_DIR / 'bench'}"}
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}; print({module}.application)"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
