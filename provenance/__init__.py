"""Provenance: the SQL record of what came in, under which licence and consent, and what used it."""
