"""WSGI entry point, for tools that need one; the service itself runs under ASGI."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "daarion.settings")

application = get_wsgi_application()
