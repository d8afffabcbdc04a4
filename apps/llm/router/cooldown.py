"""The shared cooldown of failing deployments: failures counted in Redis, so every process
skips a deployment that keeps failing."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from django.conf import settings

from daarion.observability import metrics
from daarion.infra.redis_client import get_async_redis, key

logger = logging.getLogger(__name__)


def health_subject(deployment_id: int, api_key: str | None = None) -> str:
    """What a call's failures count against: the deployment, or, for a call carrying its own key
    (an agent's `<PROVIDER>_API_KEY`), the deployment with that key. A bad personal key must not
    cool the shared deployment down for every other caller; the key appears only as a digest."""
    if not api_key:
        return str(deployment_id)
    return f"{deployment_id}:{hashlib.sha256(api_key.encode()).hexdigest()[:16]}"


class Health:
    """Cooldown of failing deployments. A subject (health_subject: a deployment, or a deployment
    used with one per-call key) that failed `LLM_COOLDOWN_FAILURES` times within a minute is
    skipped for `LLM_COOLDOWN_SECONDS`, in every process: the cooldown lives in Redis, and each
    process re-reads it at most twice a second."""

    REFRESH = 0.5

    def __init__(self) -> None:
        self._until: dict[str, float] = {}  # subject -> epoch seconds
        self._checked: dict[str, float] = {}
        self._failed_recently: set[str] = set()

    @staticmethod
    def _cool_key(subject: str) -> str:
        return key("llm", "cool", subject)

    @staticmethod
    def _fail_key(subject: str) -> str:
        return key("llm", "fail", subject)

    async def cooled(self, subjects: list[str]) -> set[str]:
        now = time.monotonic()
        stale = [i for i in subjects if now - self._checked.get(i, -1e9) > self.REFRESH]
        if stale:
            try:
                values = await get_async_redis().mget([self._cool_key(i) for i in stale])
            except Exception:  # noqa: BLE001 - without Redis, the local view stands
                values = [None] * len(stale)
                logger.warning("cannot read deployment cooldowns", exc_info=True)
            for i, value in zip(stale, values):
                self._checked[i] = now
                self._until[i] = float(value) if value else 0.0
        wall = time.time()
        return {i for i in subjects if self._until.get(i, 0.0) > wall}

    async def failed(self, subject: str) -> None:
        self._failed_recently.add(subject)
        threshold = settings.LLM_COOLDOWN_FAILURES
        seconds = settings.LLM_COOLDOWN_SECONDS
        try:
            client = get_async_redis()
            pipe = client.pipeline(transaction=False)
            pipe.incr(self._fail_key(subject))
            pipe.expire(self._fail_key(subject), 60)
            count, _ = await pipe.execute()
            if int(count) >= threshold:
                until = time.time() + seconds
                await client.set(self._cool_key(subject), str(until), ex=max(1, int(seconds)))
                await client.delete(self._fail_key(subject))
                self._until[subject] = until
                self._checked[subject] = time.monotonic()
                logger.warning("deployment %s cools down for %ss", subject, seconds)
                deployment_id, _, per_key = subject.partition(":")
                metrics.observe_cooldown(int(deployment_id), per_key=bool(per_key))
        except Exception:  # noqa: BLE001
            logger.warning("cannot record a deployment failure", exc_info=True)

    async def succeeded(self, subject: str) -> None:
        if subject not in self._failed_recently:
            return
        self._failed_recently.discard(subject)
        try:
            await get_async_redis().delete(self._fail_key(subject))
        except Exception:  # noqa: BLE001
            logger.warning("cannot reset a deployment failure count", exc_info=True)

    async def state(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """For the models listing: failures in the current minute and cooldown end (of the
        shared deployments; per-key cooldowns are each caller's own)."""
        if not ids:
            return {}
        client = get_async_redis()
        cools: list[Any] = await client.mget([self._cool_key(str(i)) for i in ids])
        fails = await client.mget([self._fail_key(str(i)) for i in ids])
        wall = time.time()
        return {
            i: {
                "cooling_down": bool(c) and float(c) > wall,
                "cooldown_remaining_s": round(max(0.0, float(c) - wall), 1) if c else 0.0,
                "recent_failures": int(f or 0),
            }
            for i, c, f in zip(ids, cools, fails)
        }


health = Health()
