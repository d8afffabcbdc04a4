"""Django admin for apps.agents."""
