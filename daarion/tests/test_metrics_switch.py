"""DAARION_METRICS=0 turns the counting off (what bench/proxy_overhead.py --metrics-off
compares): the server still answers /metrics, with its scrape-time gauges and none of the
counters, while a server with metrics on counts the same request."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from devtools.testing import start_asgi_server


def _names(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_off_counts_nothing_and_still_scrapes(server_env, tmp_path, transactional_db, make_token, bearer):
    headers = bearer(make_token(scopes=["metrics"]))
    folder = tmp_path / "prometheus"
    folder.mkdir()
    off = start_asgi_server(
        {**server_env, "DAARION_METRICS": "0", "PROMETHEUS_MULTIPROC_DIR": str(folder)}, tmp_path, name="metrics-off"
    )
    try:
        assert httpx.get(f"{off.url}/health/live").status_code == 200
        scraped = httpx.get(f"{off.url}/metrics", headers=headers, timeout=30)
    finally:
        off.stop()
    assert scraped.status_code == 200
    names = _names(scraped.text)
    assert "daarion_celery_queue_length" in names  # read at scrape time either way
    assert not any(name.startswith("daarion_http_") for name in names)

    on = start_asgi_server({**server_env, "PROMETHEUS_MULTIPROC_DIR": str(folder)}, tmp_path, name="metrics-on")
    try:
        assert httpx.get(f"{on.url}/health/live").status_code == 200
        scraped = httpx.get(f"{on.url}/metrics", headers=headers, timeout=30)
    finally:
        on.stop()
    assert "daarion_http_requests_total" in _names(scraped.text)
