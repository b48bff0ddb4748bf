"""Alembic environment and versions: the only way the provenance schema changes."""
