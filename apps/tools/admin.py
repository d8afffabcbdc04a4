"""Django admin for apps.tools."""
