"""Chain heads kept outside the chain catch what the chain cannot see in itself: its newest
rows removed, or every row rewritten and hashed again."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from sqlalchemy import Engine, select

from provenance.audit.anchors import find_anchors, witness
from provenance.audit.integrity import verify_everything
from provenance.audit_log import (
    GENESIS,
    ChainHead,
    append_event,
    canonical_json,
    chain_head,
    event_hash,
    verify_chain,
)
from provenance.consent import ConsentSubject, record_consent
from provenance.db import session_factory
from provenance.models import AuditEvent, Recording
from provenance.settings import fairchord_home
from tests.common.ledger import as_admin


def _chain(engine: Engine, n: int = 5) -> ChainHead:
    with session_factory(engine).begin() as s:
        for i in range(n):
            append_event(s, "test.event", entity="thing", entity_id=i, payload={"i": i})
        return chain_head(s)


def _anchor_problems(engine: Engine, **kwargs: object) -> list[str]:
    with session_factory(engine)() as s:
        report = verify_everything(s, **kwargs)  # type: ignore[arg-type]
    return [str(d) for d in report.discrepancies if d.kind == "anchor"]


def _truncate(engine: Engine, keep: int) -> None:
    as_admin(engine, [f"DELETE FROM audit_log WHERE id > {keep}"], tables=["audit_log"])


def _rewrite_and_rehash(engine: Engine) -> None:
    """Change the first event's payload and hash the whole chain again, consistently."""
    with session_factory(engine)() as s:
        rows = list(s.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars())
        s.expunge_all()
    statements, prev = [], GENESIS
    for row in rows:
        payload = canonical_json({"i": "forged"}) if row.id == 1 else row.payload
        digest = event_hash(
            prev_hash=prev,
            occurred_at=row.occurred_at,
            actor=row.actor,
            action=row.action,
            entity=row.entity,
            entity_id=row.entity_id,
            payload=payload,
        )
        # Unique prev_hash/hash: park the old values first, then write the new chain.
        statements.append(
            f"UPDATE audit_log SET prev_hash = 'x{row.id:063d}', hash = 'y{row.id:063d}' "
            f"WHERE id = {row.id}"
        )
        statements.append(
            f"UPDATE audit_log SET payload = '{payload}', prev_hash = '{prev}', "
            f"hash = '{digest}' WHERE id = {row.id}"
        )
        prev = digest
    parked, final = statements[0::2], statements[1::2]
    as_admin(engine, [*parked, *final], tables=["audit_log"])


def test_head_is_the_newest_row(engine: Engine) -> None:
    with session_factory(engine)() as s:
        assert chain_head(s) == ChainHead(0, GENESIS)
    head = _chain(engine, 3)
    assert head.seq == 3 and ChainHead.parse(str(head)) == head
    assert _anchor_problems(engine, expect_head=head) == []


def test_a_truncated_tail_is_caught_by_the_expected_head(engine: Engine) -> None:
    head = _chain(engine, 5)
    _truncate(engine, keep=3)
    with session_factory(engine)() as s:
        assert verify_chain(s) == (3, [])  # on its own the shorter chain looks fine
    assert _anchor_problems(engine, expect_head=head) == [
        f"anchor expected head {head}: the chain ends at row 3, before the anchored head 5: "
        "its newest rows were removed"
    ]


def test_a_rewritten_and_rehashed_chain_is_caught_by_the_expected_head(engine: Engine) -> None:
    head = _chain(engine, 3)
    _rewrite_and_rehash(engine)
    with session_factory(engine)() as s:
        assert verify_chain(s) == (3, [])
        assert "forged" in s.get(AuditEvent, 1).payload  # type: ignore[union-attr]
    problems = _anchor_problems(engine, expect_head=head)
    assert len(problems) == 1 and problems[0].endswith("the chain was rewritten")


def _plant_anchors(home: Path, head: ChainHead) -> None:
    """A sidecar, a JSON report, a Croissant export, a checkpoint and a witness-log line."""
    (home / "generations").mkdir(parents=True)
    (home / "generations" / "gen-000001-seed1.json").write_text(
        json.dumps({"format": "fairchord-generation/1", "audit_head": head.to_dict()})
    )
    (home / "reports").mkdir()
    (home / "reports" / "licences.json").write_text(json.dumps([{"audit_head": head.to_dict()}]))
    (home / "reports" / "croissant.json").write_text(json.dumps({"auditHead": head.to_dict()}))
    (home / "runs" / "1").mkdir(parents=True)
    header = {"meta": {"format": "fairchord-diffusion/1", "audit_head": str(head)}}
    save_file(
        {"w": np.zeros(2, dtype=np.float32)},
        str(home / "runs" / "1" / "final.safetensors"),
        metadata={"fairchord": json.dumps(header)},
    )
    witness(home, head, "a ticket")


def test_every_anchor_in_the_home_is_checked(engine: Engine) -> None:
    head = _chain(engine, 4)
    home = fairchord_home()
    _plant_anchors(home, head)
    found = find_anchors(home)
    assert len(found) == 5 and {a.head for a in found} == {head}
    assert _anchor_problems(engine, home=home) == []

    _truncate(engine, keep=2)
    problems = _anchor_problems(engine, home=home)
    assert len(problems) == 5
    assert all("its newest rows were removed" in p for p in problems)
    for where in ("gen-000001-seed1.json", "licences.json", "croissant.json", "final.safetensors"):
        assert any(where in p for p in problems), where


def test_a_removed_covering_event_uncovers_its_rows_even_without_an_anchor(
    engine: Engine,
) -> None:
    with session_factory(engine).begin() as s:
        rec = Recording(sha256="a" * 64, size_bytes=1)
        s.add(rec)
        s.flush()
        record_consent(
            s,
            subject=ConsentSubject("recording", rec.id),
            action="opt_out",
            purpose="any",
            effective_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            origin="cli",
        )
    _truncate(engine, keep=0)
    with session_factory(engine)() as s:
        problems = [str(d) for d in verify_everything(s).discrepancies]
    assert problems == [
        "ledger consent_events rows 1: no audit event covers them: inserted outside fairchord, "
        "or the event that recorded them is gone"
    ]


def test_a_checkpoint_header_carries_the_run_head() -> None:
    from training.checkpoint import CheckpointMeta
    from training.train_config import TrainConfig

    head = f"7:{'a' * 64}"
    meta = CheckpointMeta(config=TrainConfig(), run_name="r", audit_head=head)
    assert meta.to_dict()["audit_head"] == head
    assert CheckpointMeta.from_dict(meta.to_dict()).audit_head == head
    # A run without a head writes the header it always did (checkpoints stay byte-identical).
    assert "audit_head" not in CheckpointMeta(config=TrainConfig()).to_dict()
