"""Experiment, not shipped: the app with the OpenAI-compatible client's JSON POST done by
aiohttp instead of httpx, to measure what the HTTP client costs the proxy per call.

    pip install aiohttp   # into a scratch folder: pip install --target /tmp/aioh aiohttp
    PYTHONPATH=bench/experiments:/tmp/aioh .venv/bin/python -m daarion.devstack exec --data-dir .data/bench -- \
        .venv/bin/python bench/proxy_overhead.py --ours-app aiohttp_upstream:application --no-litellm \
        --out bench/results/proxy_overhead_aiohttp_experiment.json

Only the non-streamed path is replaced (errors mapped roughly); streams still use httpx.
"""

import aiohttp

from daarion.asgi import application  # noqa: F401, I001 - the app uvicorn serves; sets Django up first
from apps.llm.providers.base import ProviderError, error_from_status  # noqa: E402
from apps.llm.providers.openai_compat import OpenAICompatibleProvider  # noqa: E402


async def _post_json(self, path: str, body: dict, api_key: str | None = None) -> dict:  # noqa: ANN001
    session = getattr(self, "_aiohttp", None)
    if session is None:
        session = self._aiohttp = aiohttp.ClientSession(
            base_url=self.spec.base_url.rstrip("/") + "/", headers=self.default_headers(),
            timeout=aiohttp.ClientTimeout(total=self.spec.timeout), connector=aiohttp.TCPConnector(limit=200),
        )
    try:
        headers = self.call_headers(api_key) if hasattr(self, "call_headers") else None
        async with session.post(path.lstrip("/"), json=body, headers=headers) as response:
            if response.status >= 400:
                raise error_from_status(response.status, (await response.text())[:500], None)
            data = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ProviderError("connection", f"{type(exc).__name__}: {exc}"[:300]) from exc
    if not isinstance(data, dict):
        raise ProviderError("malformed", "upstream answered with JSON that is not an object")
    return data


OpenAICompatibleProvider._post_json = _post_json
