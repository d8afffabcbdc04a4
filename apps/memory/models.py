"""Models of apps.memory."""
