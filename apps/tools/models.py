"""Models of apps.tools."""
