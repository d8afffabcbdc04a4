"""Django admin for apps.memory."""
