"""Audit at scale: `audit licenses --format json` and `audit taint` on a synthetic record.

Builds a provenance DB with (by default) 1 M recordings, 50 k parties, 200 k
consent events and 20 training runs of 100 k members each, through the real
migrations, then times the two CLI commands end to end (process start
included) on SQLite and on PostgreSQL.

    python benchmarks/audit_scale.py                    # both engines, full size
    python benchmarks/audit_scale.py --scale 0.1        # a tenth of everything
    python benchmarks/audit_scale.py --engines sqlite

Prints one line per measurement. Target: at most 10 s each on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, insert, text
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
CHUNK = 20_000


def _sha(i: int, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{i}".encode()).hexdigest()


def _chunks(rows: list[dict], size: int = CHUNK) -> Iterator[list[dict]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def populate(engine: Engine, *, scale: float, seed: int = 0) -> int:
    """Fill the DB; return the id of a checkpoint to report on."""
    rng = random.Random(seed)
    n_rec = int(1_000_000 * scale)
    n_party = int(50_000 * scale)
    n_consent = int(200_000 * scale)
    n_runs = 20
    n_members = int(100_000 * scale)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    snapshot_at = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    policy = load_policy("commercial")
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
        conn.execute(
            insert(Party),
            [
                {
                    "id": p,
                    "name": f"Artist {p}",
                    "normalized_name": f"artist {p}",
                    "kind": "person",
                    "created_at": base,
                }
                for p in range(1, n_party + 1)
            ],
        )
        for chunk in _chunks(
            [
                {
                    "id": r,
                    "sha256": _sha(r, "rec"),
                    "size_bytes": 1000,
                    "title": f"Track {r}",
                    "status": "accepted",
                    "duration_s": 60.0 + r % 240,
                    "codec": "OGG/VORBIS",
                    "object_uri": f"s3://bench/objects/{r}",
                    "source_id": 1,
                    "created_at": base,
                }
                for r in range(1, n_rec + 1)
            ]
        ):
            conn.execute(insert(Recording), chunk)
        for chunk in _chunks(
            [
                {"recording_id": r, "party_id": 1 + (r * 7919) % n_party, "role": "artist"}
                for r in range(1, n_rec + 1)
            ]
        ):
            conn.execute(insert(Credit), chunk)
        for chunk in _chunks(
            [
                {
                    "recording_id": r,
                    "declared": lic,
                    "concluded": lic,
                    "asserted_by": "bench",
                    "asserted_at": base,
                }
                for r in range(1, n_rec + 1)
                for lic in [LICENCES[r % 4]]
            ]
        ):
            conn.execute(insert(LicenceAssertion), chunk)
        # Most consent events predate the snapshots; 1 % arrive afterwards (opt-outs).
        events = []
        for e in range(n_consent):
            late = e % 100 == 0
            when = snapshot_at + dt.timedelta(days=10) if late else base + dt.timedelta(minutes=e)
            subject = {"party_id": None, "recording_id": None, "source_id": None}
            if e % 2:
                subject["party_id"] = rng.randint(1, n_party)
            else:
                subject["recording_id"] = rng.randint(1, n_rec)
            events.append(
                {
                    **subject,
                    "action": "opt_out" if late else "opt_in",
                    "purpose": "training",
                    "effective_at": when,
                    "recorded_at": when,
                    "origin": "registry_import",
                    "dedupe_key": _sha(e, "consent"),
                }
            )
        for chunk in _chunks(events):
            conn.execute(insert(ConsentEvent), chunk)
        for run_id in range(1, n_runs + 1):
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
                ],
            )
            start = (run_id - 1) * (n_rec - n_members) // max(n_runs - 1, 1)
            for chunk in _chunks(
                [
                    {
                        "training_run_id": run_id,
                        "recording_id": r,
                        "sha256": _sha(r, "rec"),
                        "concluded_licence": LICENCES[r % 4],
                        "licence_assertion_id": r,
                        "consent_state": "none",
                        "leaf_hash": _sha(r, "leaf"),
                    }
                    for r in range(start + 1, start + n_members + 1)
                ]
            ):
                conn.execute(insert(TrainingRunMember), chunk)
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
                ],
            )
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))
        else:
            conn.execute(text("ANALYZE"))
    return 1


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.sqlite'}"
        return
    name = f"fairchord_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def time_cli(args: list[str], url: str, home: Path) -> tuple[float, int]:
    env = dict(os.environ, FAIRCHORD_DB_URL=url, FAIRCHORD_HOME=str(home))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    took = time.perf_counter() - started
    if done.returncode not in (0, 4):
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return took, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full size")
    parser.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args()
    print(
        f"scale {args.scale}: {int(1e6 * args.scale):,} recordings, "
        f"{int(5e4 * args.scale):,} parties, {int(2e5 * args.scale):,} consent events, "
        f"20 runs × {int(1e5 * args.scale):,} members; {os.cpu_count()} cores"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.engines.split(","):
            with database(kind, Path(tmp)) as url:
                engine = make_engine(url)
                migrate.upgrade(engine)
                started = time.perf_counter()
                checkpoint = populate(engine, scale=args.scale)
                engine.dispose()
                print(f"{kind}: populated in {time.perf_counter() - started:.1f} s")
                for label, cli in (
                    (
                        "audit licenses --format json",
                        [
                            "audit",
                            "licenses",
                            "--checkpoint",
                            str(checkpoint),
                            "--format",
                            "json",
                            "--out",
                            str(Path(tmp) / "report.json"),
                        ],
                    ),
                    ("audit taint", ["audit", "taint", "--json"]),
                ):
                    took, code = time_cli(cli, url, Path(tmp) / "home")
                    print(f"{kind}: {label}: {took:.2f} s (exit {code})")


if __name__ == "__main__":
    main()
