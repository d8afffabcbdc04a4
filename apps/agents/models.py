"""Models of apps.agents."""
