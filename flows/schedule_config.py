"""The schedules file of `fairchord serve`: read, validated and checked against the disk.

The file names what runs and when (see ``configs/schedules.example.toml``)::

    [serve]                      # optional
    limit = 1                    # flow runs at once (default 1)
    pause_on_shutdown = true     # pause the schedules when `fairchord serve` stops

    [[ingest]]                   # one table per source
    name = "demo-corpus"
    source = "$FAIRCHORD_HOME/corpus/demo/manifest.csv"
    cron = "0 3 * * *"           # or interval_seconds = 86400
    timezone = "UTC"             # cron only; default UTC

    [consent_sync]               # optional
    files = ["$FAIRCHORD_HOME/consent/do-not-train.csv"]
    cron = "30 2 * * *"

    [audit]                      # optional
    cron = "0 5 * * *"

Every problem is reported as a :class:`ScheduleConfigError` naming the file and the
key (``ingest[2].cron``). Paths may use ``~`` and ``$VARIABLE``/``${VARIABLE}``
(``$FAIRCHORD_HOME`` defaults to the fairchord home); relative paths resolve
against the folder of the config file. Flow runs take their database from the
environment of the serving process (``FAIRCHORD_DB_URL`` or ``$FAIRCHORD_HOME``),
so no credentials live in the file.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from flows.schedule_jobs import AuditJob, ConsentSyncJob, IngestJob, ScheduleSpec, ServeConfig
from provenance.ingest_prepare import IngestLimits
from provenance.models.rights import CONSENT_PURPOSES
from provenance.settings import HOME_ENV, fairchord_home

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_LIMIT_TYPES: dict[str, tuple[type, ...]] = {
    "max_duration_s": (int, float),
    "min_duration_s": (int, float),
    "max_bytes": (int,),
    "silence_dbfs": (int, float),
    "near_duplicate_bits": (int,),
    "near_duplicate_duration_tolerance": (int, float),
    "containers": (list,),
    "read_tags": (bool,),
}


class ScheduleConfigError(ValueError):
    """The schedules file is missing, not TOML, or has a bad key or value."""


class _Table:
    """One TOML table being validated; every error names the file and the key."""

    def __init__(self, origin: str, where: str, data: Any) -> None:
        self.origin, self.where = origin, where
        if not isinstance(data, Mapping):
            self.error(None, f"must be a table, got {_kind(data)}")
        self.data: Mapping[str, Any] = data

    def key(self, name: str | None) -> str:
        if name is None:
            return self.where or "(top level)"
        return f"{self.where}.{name}" if self.where else name

    def error(self, name: str | None, message: str) -> NoReturn:
        raise ScheduleConfigError(f"{self.origin}: {self.key(name)}: {message}")

    def only(self, allowed: set[str]) -> None:
        for name in self.data:
            if name not in allowed:
                self.error(name, f"unknown key; allowed: {', '.join(sorted(allowed))}")

    def get(self, name: str, types: tuple[type, ...], default: Any = None) -> Any:
        if name not in self.data:
            return default
        value = self.data[name]
        # TOML booleans are not numbers here, whatever Python thinks.
        if isinstance(value, bool) and bool not in types:
            ok = False
        else:
            ok = isinstance(value, types)
        if not ok:
            wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            self.error(name, f"must be {wanted}, got {_kind(value)} {value!r}")
        return value

    def require(self, name: str, types: tuple[type, ...]) -> Any:
        if name not in self.data:
            self.error(name, "is required")
        return self.get(name, types)


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "an array",
    dict: "a table",
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    for t, name in _TYPE_NAMES.items():
        if isinstance(value, t):
            return name.replace("a number", "a float")
    return type(value).__name__


def _expand(table: _Table, name: str, value: str, base: Path) -> str:
    """``~`` and ``$VARIABLE`` expanded; a relative local path resolved against ``base``."""

    def variable(match: re.Match[str]) -> str:
        var = match.group("braced") or match.group("bare")
        if var in os.environ and os.environ[var]:
            return os.environ[var]
        if var == HOME_ENV:
            return str(fairchord_home())
        table.error(name, f"uses ${var}, which is not set")

    if not value.strip():
        table.error(name, "must not be empty")
    expanded = _VARIABLE.sub(variable, value)
    if "://" in expanded:
        return expanded
    path = Path(expanded).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _name(table: _Table, default: str | None) -> str:
    name = table.get("name", (str,), default)
    if name is None:
        table.error("name", "is required")
    if not _NAME.match(name):
        table.error(
            "name",
            f"{name!r} is not a deployment name: use letters, digits, '.', '_' and '-' "
            "(at most 63, starting with a letter or digit)",
        )
    return str(name)


def _schedule(table: _Table) -> ScheduleSpec:
    cron = table.get("cron", (str,))
    interval = table.get("interval_seconds", (int, float))
    timezone = table.get("timezone", (str,), "UTC")
    if cron is None and interval is None:
        table.error(None, 'needs a schedule: cron = "M H DoM Mon DoW" or interval_seconds = N')
    if cron is not None and interval is not None:
        table.error("interval_seconds", "give either cron or interval_seconds, not both")
    if cron is not None:
        from prefect._internal.schemas.validators import validate_cron_string

        try:
            validate_cron_string(cron)
        except ValueError as exc:
            table.error("cron", f"{cron!r} is not a cron expression ({exc})")
    if interval is not None and not interval > 0:
        table.error("interval_seconds", f"must be positive, got {interval}")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        table.error("timezone", f"{timezone!r} is not an IANA timezone (e.g. Europe/Paris, UTC)")
    return ScheduleSpec(
        cron=cron,
        interval_seconds=float(interval) if interval is not None else None,
        timezone=timezone,
    )


_SCHEDULE_KEYS = {"cron", "interval_seconds", "timezone"}


def _ingest_job(table: _Table, base: Path) -> IngestJob:
    table.only({"name", "source", "manifest", "root", "workers", "limits"} | _SCHEDULE_KEYS)
    source = _expand(table, "source", table.require("source", (str,)), base)
    manifest = table.get("manifest", (str,))
    root = table.get("root", (str,))
    workers = table.get("workers", (int,), 2)
    if workers < 1:
        table.error("workers", f"must be at least 1, got {workers}")
    limits_table = _Table(table.origin, table.key("limits"), table.get("limits", (dict,), {}))
    limits_table.only(set(_LIMIT_TYPES))
    values = {k: limits_table.get(k, _LIMIT_TYPES[k]) for k in limits_table.data}
    for container in values.get("containers", []):
        if not isinstance(container, str):
            limits_table.error("containers", f"must be an array of strings, got {container!r}")
    try:
        limits = IngestLimits.from_dict(values)
    except ValueError as exc:
        limits_table.error(None, str(exc))
    return IngestJob(
        name=_name(table, None),
        source=source,
        manifest=_expand(table, "manifest", manifest, base) if manifest is not None else None,
        root=_expand(table, "root", root, base) if root is not None else None,
        workers=workers,
        limits=limits,
        schedule=_schedule(table),
    )


def _consent_sync_job(table: _Table, base: Path) -> ConsentSyncJob:
    table.only({"name", "files", "purpose", "origin", "create_parties"} | _SCHEDULE_KEYS)
    files = table.require("files", (list,))
    if not files:
        table.error("files", "must list at least one do-not-train list or tdmrep.json")
    expanded = []
    for i, f in enumerate(files):
        if not isinstance(f, str):
            table.error(f"files[{i}]", f"must be a path string, got {_kind(f)} {f!r}")
        expanded.append(_expand(table, f"files[{i}]", f, base))
    purpose = table.get("purpose", (str,), "training")
    if purpose not in CONSENT_PURPOSES:
        table.error("purpose", f"{purpose!r} is not one of {', '.join(CONSENT_PURPOSES)}")
    origin = table.get("origin", (str,))
    if origin is not None and not re.match(r"^https?://[^/]+/?$", origin):
        table.error("origin", f"{origin!r} is not a site origin like https://example.org")
    return ConsentSyncJob(
        name=_name(table, "scheduled"),
        files=tuple(expanded),
        purpose=purpose,
        origin=origin,
        create_parties=table.get("create_parties", (bool,), False),
        schedule=_schedule(table),
    )


def _audit_job(table: _Table) -> AuditJob:
    table.only({"name", "verify"} | _SCHEDULE_KEYS)
    return AuditJob(
        name=_name(table, "scheduled"),
        verify=table.get("verify", (bool,), True),
        schedule=_schedule(table),
    )


def parse_schedule_config(data: Mapping[str, Any], *, path: Path) -> ServeConfig:
    """Validate the parsed TOML ``data`` of the file at ``path``."""
    origin = str(path)
    base = path.resolve().parent
    top = _Table(origin, "", data)
    top.only({"serve", "ingest", "consent_sync", "audit"})

    serve = _Table(origin, "serve", top.get("serve", (dict,), {}))
    serve.only({"limit", "pause_on_shutdown"})
    limit = serve.get("limit", (int,), 1)
    if limit < 1:
        serve.error("limit", f"must be at least 1, got {limit}")

    ingest_tables = top.get("ingest", (list,), [])
    jobs = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(ingest_tables):
        job = _ingest_job(_Table(origin, f"ingest[{i}]", raw), base)
        if job.name in seen:
            raise ScheduleConfigError(
                f"{origin}: ingest[{i}].name: {job.name!r} is already the name of "
                f"ingest[{seen[job.name]}]"
            )
        seen[job.name] = i
        jobs.append(job)
    consent = top.get("consent_sync", (dict,))
    audit = top.get("audit", (dict,))
    config = ServeConfig(
        path=path,
        ingest=tuple(jobs),
        consent_sync=(
            _consent_sync_job(_Table(origin, "consent_sync", consent), base)
            if consent is not None
            else None
        ),
        audit=_audit_job(_Table(origin, "audit", audit)) if audit is not None else None,
        limit=limit,
        pause_on_shutdown=serve.get("pause_on_shutdown", (bool,), True),
    )
    if not config.jobs():
        top.error(None, "schedules nothing: add [[ingest]], [consent_sync] or [audit]")
    return config


def load_schedule_config(path: str | Path) -> ServeConfig:
    """Read and validate the schedules file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScheduleConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScheduleConfigError(f"{path}: cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScheduleConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_schedule_config(data, path=path)


def missing_local_paths(config: ServeConfig) -> list[str]:
    """``key: path`` for every local path the jobs need that does not exist now."""
    missing = []
    for i, job in enumerate(config.ingest):
        for key, value in (("source", job.source), ("manifest", job.manifest)):
            if value is not None and "://" not in value and not Path(value).exists():
                missing.append(f"ingest[{i}].{key}: {value}")
    if config.consent_sync is not None:
        for i, f in enumerate(config.consent_sync.files):
            if "://" not in f and not Path(f).is_file():
                missing.append(f"consent_sync.files[{i}]: {f}")
    return missing
