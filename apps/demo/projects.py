"""A tiny projects service the project serves itself, as the target of the demo HTTP tool
`projects.list` (POST /demo/projects.list with toolcore's {"args", "context"} body), mounted
only when `DAARION_DEMO_SERVICE` is on (apps/demo/urls.py).
"""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

_PROJECTS = {
    "microdao:7": [
        {"id": "proj-1", "name": "DAARION Messenger", "status": "active", "lead": "agent:pm"},
        {"id": "proj-2", "name": "Agent runtime v3", "status": "active", "lead": "agent:cto"},
        {"id": "proj-3", "name": "Community grants", "status": "planning", "lead": "agent:sofia"},
    ],
}


def projects_of(microdao_id: str) -> list[dict]:
    return _PROJECTS.get(microdao_id) or [
        {"id": "proj-welcome", "name": f"Onboarding for {microdao_id}", "status": "planning", "lead": None}
    ]


@csrf_exempt
@require_POST
def projects_list(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body or b"{}")
        microdao_id = str(body["args"]["microdao_id"])
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'expected {"args": {"microdao_id": ...}}'}, status=400)
    return JsonResponse([{**p, "microdao_id": microdao_id} for p in projects_of(microdao_id)], safe=False)
