"""Django's PostgreSQL backend with a fail-fast window for outages (see base.py)."""
