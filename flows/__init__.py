"""Prefect flows, schedules and the ``fairchord`` command line."""
