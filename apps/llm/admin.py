"""Django admin for apps.llm."""
