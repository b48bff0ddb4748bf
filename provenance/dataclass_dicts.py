"""Dataclasses read back from their dict form: the version checked, unknown keys refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any


def checked_fields(
    cls: type,
    data: Mapping[str, Any],
    *,
    what: str,
    version: int | None = None,
    tuples: Iterable[str] = (),
) -> dict[str, Any]:
    """Keyword arguments for ``cls(**...)`` from ``data``.

    With ``version``, a ``"version"`` key (if present) must equal it and is dropped. Keys
    that are not fields of ``cls`` are refused, naming ``what``. Fields named in ``tuples``
    become tuples (JSON and TOML give lists).
    """
    values = dict(data)
    if version is not None:
        found = values.pop("version", version)
        if found != version:
            raise ValueError(f"{what} version {found}; this code reads {version}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; expected some of {sorted(known)}")
    for key in tuples:
        if key in values:
            values[key] = tuple(values[key])
    return values
