"""The demo: what `manage.py seed_demo` puts in a fresh development stack (stub models, the demo
agents and tools, memories) and the small projects service its HTTP tool calls. Nothing imports
it; it uses the other apps only through their services."""
