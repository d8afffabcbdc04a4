"""ASGI entry point (the production server): `uvicorn daarion.asgi:application`."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "daarion.settings")

application = get_asgi_application()
