"""ASGI entry point (the production server): `uvicorn daarion.asgi:application`.

Static files (the admin's CSS/JS, the dashboard's chart library) are served by Django's
ASGI static handler unless DAARION_SERVE_STATIC=0 (put a CDN or nginx in front instead);
it answers only under STATIC_URL and passes every other request straight through.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "daarion.settings")

django_application = get_asgi_application()

if os.environ.get("DAARION_SERVE_STATIC", "1") not in {"0", "false", "no"}:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(django_application)
else:
    application = django_application
