"""Audit at scale: `audit licenses --format json` and `audit taint` on a synthetic record.

Builds a provenance DB with (by default) 1 M recordings, 50 k parties, 200 k
consent events and 20 training runs of 100 k members each, through the real
migrations, then times the two CLI commands end to end (process start
included) on SQLite and on PostgreSQL. Rows are bulk-loaded (executemany on
SQLite, COPY on PostgreSQL) so that building the full size takes minutes.

After the runs' snapshot, 1 % of the consent events arrive as opt-outs (half
about a recording, half about a party credited on ~20 recordings) and 0.1 % of
the recordings are re-assessed (half to a licence the policy rejects), so every
run is tainted, for both reasons, and `audit taint` reports each finding.

    python benchmarks/audit_scale.py                    # both engines, full size
    python benchmarks/audit_scale.py --scale 0.1        # a tenth of everything
    python benchmarks/audit_scale.py --engines sqlite
    python benchmarks/audit_scale.py --keep /tmp/bench  # build once, reuse after
    python benchmarks/audit_scale.py --keep /tmp/bench --profile /tmp/prof

With ``--keep DIR`` the populated databases outlive the run (a SQLite file in
DIR, a PostgreSQL database named after the scale) and later runs with the same
scale (and data version) reuse them, upgrading them to the newest migration
first. ``--profile DIR`` runs each command under cProfile and writes one
``.prof`` file per command.

Prints one line per measurement. Target: at most 10 s each on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, insert, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provenance import migrate  # noqa: E402
from provenance.db import make_engine  # noqa: E402
from provenance.models import (  # noqa: E402
    Checkpoint,
    ConsentEvent,
    Credit,
    LicenceAssertion,
    Party,
    Recording,
    Source,
    TrainingRun,
    TrainingRunMember,
)
from provenance.policies import load_policy  # noqa: E402

PG_ADMIN = os.environ.get(
    "FAIRCHORD_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
LICENCES = ["CC-BY-SA-3.0", "GPL-2.0-or-later", "CC-BY-4.0", "MIT", "LicenseRef-Custom"]
N_RUNS = 20
# Bumped whenever populate() changes what it writes, so kept databases are rebuilt.
DATA_VERSION = 2
# Tables whose ids the loader gives explicitly; PostgreSQL sequences move past them after.
EXPLICIT_IDS = ("sources", "parties", "recordings", "licence_assertions", "training_runs")


def _sha(i: int, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{i}".encode()).hexdigest()


def sizes(scale: float) -> dict[str, int]:
    return {
        "recordings": int(1_000_000 * scale),
        "parties": int(50_000 * scale),
        "consent_events": int(200_000 * scale),
        "members": int(100_000 * scale),
    }


def bulk_load(
    engine: Engine, table: Table, columns: Sequence[str], rows: Iterable[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` into ``table``: one executemany on SQLite, one COPY on PostgreSQL."""
    raw = engine.raw_connection()
    try:
        driver: Any = raw.driver_connection
        names = ", ".join(columns)
        if engine.dialect.name == "sqlite":
            driver.execute("PRAGMA synchronous=OFF")
            driver.execute("PRAGMA cache_size=-1000000")
            driver.execute("BEGIN")
            marks = ", ".join("?" for _ in columns)
            driver.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
            driver.execute("COMMIT")
        else:
            with driver.cursor() as cursor:
                with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            driver.commit()
    finally:
        raw.close()


def _time_column(engine: Engine, table: Table, column: str) -> Callable[[dt.datetime], Any]:
    """How the column's own type stores a datetime on this engine (naive text on SQLite)."""
    process = table.c[column].type.bind_processor(engine.dialect)
    return process if process is not None else (lambda value: value)


def populate(engine: Engine, *, scale: float, seed: int = 0) -> int:
    """Fill the DB; return the id of a checkpoint to report on."""
    rng = random.Random(seed)
    n = sizes(scale)
    n_rec, n_party, n_members = n["recordings"], n["parties"], n["members"]
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    snapshot_at = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    policy = load_policy("commercial")
    recordings = Recording.__table__
    stamp = _time_column(engine, recordings, "created_at")
    with engine.begin() as conn:
        conn.execute(
            insert(Source),
            [
                {
                    "id": 1,
                    "uri": "s3://bench/music",
                    "kind": "folder",
                    "config": {},
                    "created_at": base,
                }
            ],
        )
    bulk_load(
        engine,
        Party.__table__,
        ("id", "name", "normalized_name", "kind", "created_at"),
        ((p, f"Artist {p}", f"artist {p}", "person", stamp(base)) for p in range(1, n_party + 1)),
    )
    bulk_load(
        engine,
        recordings,
        (
            "id",
            "sha256",
            "size_bytes",
            "title",
            "status",
            "duration_s",
            "codec",
            "object_uri",
            "source_id",
            "created_at",
        ),
        (
            (
                r,
                _sha(r, "rec"),
                1000,
                f"Track {r}",
                "accepted",
                60.0 + r % 240,
                "OGG/VORBIS",
                f"s3://bench/objects/{r}",
                1,
                stamp(base),
            )
            for r in range(1, n_rec + 1)
        ),
    )
    bulk_load(
        engine,
        Credit.__table__,
        ("recording_id", "party_id", "role"),
        ((r, 1 + (r * 7919) % n_party, "artist") for r in range(1, n_rec + 1)),
    )
    bulk_load(
        engine,
        LicenceAssertion.__table__,
        ("id", "recording_id", "declared", "concluded", "asserted_by", "asserted_at"),
        (
            (r, r, LICENCES[r % 4], LICENCES[r % 4], "bench", stamp(base))
            for r in range(1, n_rec + 1)
        ),
    )

    # Most consent events predate the snapshots; 1 % arrive afterwards (opt-outs). Half
    # are about a party, which reaches the ~20 recordings credited to it.
    def consent_rows() -> Iterator[tuple[Any, ...]]:
        for e in range(n["consent_events"]):
            late = e % 100 == 0
            when = snapshot_at + dt.timedelta(days=10) if late else base + dt.timedelta(minutes=e)
            about_party = rng.random() < 0.5
            party_id = rng.randint(1, n_party) if about_party else None
            recording_id = None if about_party else rng.randint(1, n_rec)
            action = "opt_out" if late else "opt_in"
            yield (
                party_id,
                recording_id,
                action,
                "training",
                stamp(when),
                stamp(when),
                "registry_import",
                _sha(e, "consent"),
            )

    bulk_load(
        engine,
        ConsentEvent.__table__,
        (
            "party_id",
            "recording_id",
            "action",
            "purpose",
            "effective_at",
            "recorded_at",
            "origin",
            "dedupe_key",
        ),
        consent_rows(),
    )
    # 0.1 % of recordings are re-assessed after the snapshots: half to a licence the
    # commercial policy rejects (tainting), half to one it allows.
    reassessed = sorted(rng.sample(range(1, n_rec + 1), int(1_000 * scale)))
    bulk_load(
        engine,
        LicenceAssertion.__table__,
        ("id", "recording_id", "declared", "concluded", "asserted_by", "asserted_at"),
        (
            (
                n_rec + i + 1,
                r,
                lic,
                lic,
                "rights review",
                stamp(snapshot_at + dt.timedelta(days=20)),
            )
            for i, r in enumerate(reassessed)
            for lic in [LICENCES[4] if i % 2 == 0 else LICENCES[2]]
        ),
    )
    with engine.begin() as conn:
        conn.execute(
            insert(TrainingRun),
            [
                {
                    "id": run_id,
                    "policy_name": policy.name,
                    "policy_version": policy.version,
                    "policy_sha256": policy.sha256,
                    "config_name": "small",
                    "config": {},
                    "snapshot_at": snapshot_at,
                    "members_digest": _sha(run_id, "digest"),
                    "member_count": n_members,
                    "status": "finished",
                    "started_at": snapshot_at,
                }
                for run_id in range(1, N_RUNS + 1)
            ],
        )

    # Run k's members are a window of consecutive recordings; the windows overlap.
    def member_rows() -> Iterator[tuple[Any, ...]]:
        for run_id in range(1, N_RUNS + 1):
            start = (run_id - 1) * (n_rec - n_members) // max(N_RUNS - 1, 1)
            for r in range(start + 1, start + n_members + 1):
                yield (
                    run_id,
                    r,
                    _sha(r, "rec"),
                    LICENCES[r % 4],
                    r,
                    "none",
                    _sha(r, "leaf"),
                )

    bulk_load(
        engine,
        TrainingRunMember.__table__,
        (
            "training_run_id",
            "recording_id",
            "sha256",
            "concluded_licence",
            "licence_assertion_id",
            "consent_state",
            "leaf_hash",
        ),
        member_rows(),
    )
    with engine.begin() as conn:
        conn.execute(
            insert(Checkpoint),
            [
                {
                    "id": run_id,
                    "training_run_id": run_id,
                    "sha256": _sha(run_id, "ckpt"),
                    "uri": f"s3://bench/ckpt/{run_id}",
                    "step": 1000,
                    "is_final": True,
                    "created_at": snapshot_at,
                }
                for run_id in range(1, N_RUNS + 1)
            ],
        )
        if engine.dialect.name == "postgresql":
            for table in (*EXPLICIT_IDS, "checkpoints"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    analyze(engine)
    return 1


def analyze(engine: Engine) -> None:
    """Planner statistics, as a maintained database has them (autovacuum, PRAGMA optimize)."""
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def _scale_tag(scale: float) -> str:
    return f"{scale:g}".replace(".", "_") + f"_v{DATA_VERSION}"


@contextmanager
def database(kind: str, workdir: Path, *, keep: bool, scale: float) -> Iterator[tuple[str, bool]]:
    """Yield the URL of a database of ``kind`` and whether it is already populated.

    Kept databases are named after the scale; a marker file written after a
    complete population says they may be reused.
    """
    if kind not in ("sqlite", "postgresql"):
        raise SystemExit(f"unknown engine {kind!r}; allowed: sqlite, postgresql")
    marker = workdir / f"audit-scale-{_scale_tag(scale)}.{kind}.ready"
    if kind == "sqlite":
        path = workdir / f"audit-scale-{_scale_tag(scale)}.sqlite"
        ready = keep and marker.exists() and path.exists()
        if not ready:
            for stale in (
                path,
                path.with_name(path.name + "-wal"),
                path.with_name(path.name + "-shm"),
            ):
                stale.unlink(missing_ok=True)
        yield f"sqlite:///{path}", ready
        return
    name = (
        f"fairchord_bench_keep_{_scale_tag(scale)}"
        if keep
        else f"fairchord_bench_{uuid.uuid4().hex[:8]}"
    )
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        exists = conn.execute(
            text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
        ).first()
        ready = keep and marker.exists() and exists is not None
        if not ready:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url, ready
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def time_cli(
    args: list[str], url: str, home: Path, profile: Path | None = None
) -> tuple[float, int, str]:
    env = dict(os.environ, FAIRCHORD_DB_URL=url, FAIRCHORD_HOME=str(home))
    runner = [sys.executable]
    if profile is not None:
        runner += ["-m", "cProfile", "-o", str(profile)]
    started = time.perf_counter()
    done = subprocess.run(
        [*runner, "-m", "flows.cli", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - started
    if done.returncode not in (0, 4):
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return took, done.returncode, done.stdout


def check_taint(stdout: str) -> str:
    """A one-line summary of `audit taint --json`."""
    findings = json.loads(stdout)
    tainted = sum(len(f["members"]) for f in findings)
    reasons = {r.split(":")[0] for f in findings for m in f["members"] for r in m["reasons"]}
    return f"{len(findings)} runs tainted, {tainted:,} members ({', '.join(sorted(reasons))})"


def check_report(path: Path, members: int) -> str:
    """A one-line summary of the JSON licence report, refusing one that lost members."""
    (report,) = json.loads(path.read_text(encoding="utf-8"))
    if len(report["members"]) != members:
        raise SystemExit(f"report lists {len(report['members'])} members, expected {members}")
    return f"{len(report['members']):,} members, {len(report['taint']['members']):,} tainted"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full size")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the populated databases (SQLite file in DIR) and reuse them on later runs",
    )
    parser.add_argument("--repeat", type=int, default=1, help="time each command this many times")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="run each command under cProfile, into DIR"
    )
    args = parser.parse_args()
    if not 0 < args.scale <= 1:
        raise SystemExit(f"--scale must be in (0, 1], got {args.scale}")
    if args.repeat < 1:
        raise SystemExit(f"--repeat must be at least 1, got {args.repeat}")
    n = sizes(args.scale)
    print(
        f"scale {args.scale}: {n['recordings']:,} recordings, {n['parties']:,} parties, "
        f"{n['consent_events']:,} consent events, {N_RUNS} runs × {n['members']:,} members; "
        f"{os.cpu_count()} cores",
        flush=True,
    )
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for kind in args.engines.split(","):
            with database(kind, workdir, keep=args.keep is not None, scale=args.scale) as (
                url,
                ready,
            ):
                engine = make_engine(url)
                if ready:
                    before = migrate.current_revision(engine)
                    started = time.perf_counter()
                    migrate.upgrade(engine)
                    if migrate.current_revision(engine) != before:
                        analyze(engine)
                        print(
                            f"{kind}: kept DB upgraded from {before} in "
                            f"{time.perf_counter() - started:.1f} s",
                            flush=True,
                        )
                    print(f"{kind}: reusing {url}", flush=True)
                else:
                    migrate.upgrade(engine)
                    started = time.perf_counter()
                    populate(engine, scale=args.scale)
                    print(f"{kind}: populated in {time.perf_counter() - started:.1f} s", flush=True)
                    if args.keep:
                        (workdir / f"audit-scale-{_scale_tag(args.scale)}.{kind}.ready").write_text(
                            url + "\n", encoding="utf-8"
                        )
                engine.dispose()
                report = Path(tmp) / "report.json"
                for label, cli in (
                    (
                        "audit licenses --format json",
                        ["audit", "licenses", "--checkpoint", "1", "--format", "json"]
                        + ["--out", str(report)],
                    ),
                    ("audit taint", ["audit", "taint", "--json"]),
                ):
                    for attempt in range(args.repeat):
                        profile = None
                        if args.profile:
                            profile = args.profile / f"{kind}-{label.split()[1]}.prof"
                        took, code, stdout = time_cli(cli, url, Path(tmp) / "home", profile)
                        extra = "; " + (
                            check_report(report, n["members"])
                            if "licenses" in cli
                            else check_taint(stdout)
                        )
                        print(
                            f"{kind}: {label}: {took:.2f} s (exit {code}{extra})"
                            + (f" [{attempt + 1}/{args.repeat}]" if args.repeat > 1 else ""),
                            flush=True,
                        )


if __name__ == "__main__":
    main()
