"""Models of apps.llm."""
