"""The demo projects service is mounted only when DAARION_DEMO_SERVICE says so."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from devtools.testing import BASE_DIR

PROBE = "import django; django.setup(); from daarion import urls; print(any(str(p.pattern) == 'demo/' for p in urls.urlpatterns))"


@pytest.mark.parametrize(("value", "mounted"), [("0", "False"), ("1", "True"), (None, "True")])
def test_demo_service_is_mounted_only_when_the_setting_says_so(value, mounted):
    # A fresh process: the URL map is built once, at import.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "daarion.settings"}
    env.pop("DAARION_DEMO_SERVICE", None)
    if value is not None:
        env["DAARION_DEMO_SERVICE"] = value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=BASE_DIR, env=env, capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip().splitlines()[-1] == mounted
