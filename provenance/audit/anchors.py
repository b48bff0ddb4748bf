"""Chain heads recorded outside the chain, and the check of the chain against them.

A chain that lost its newest rows, or was rewritten and hashed again from the first
row, is still internally consistent. Only a head (sequence number and hash) kept
somewhere else shows it: if the chain no longer holds that row with that hash, it
was cut or rewritten. This is Certificate Transparency's tree head, unsigned.

Where heads are kept (each as ``{"seq": <audit_log id>, "hash": <its hash>}`` under
the key :data:`ANCHOR_KEY`, or ``SEQ:HASH`` text):

- JSON files in the home: generation sidecars, JSON licence reports (a list of
  reports, one head each), Croissant exports (``auditHead``);
- safetensors checkpoints in the home, inside the ``fairchord`` metadata entry;
- ``training_runs.audit_head`` (in the database, so it proves nothing on its own;
  the checkpoints copy it out);
- the witness log ``<home>/audit/anchors.jsonl``: one line per head handed out
  (report, export, sidecar, ``fairchord audit head``), wherever the artefact went.

``fairchord audit verify`` checks every head it finds; ``--expect-head SEQ:HASH``
checks one given from outside (a ticket, an email, a transparency log).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit_log import GENESIS, ChainHead, chain_head
from provenance.models import AuditEvent, TrainingRun

logger = logging.getLogger(__name__)

ANCHOR_KEY = "audit_head"
CROISSANT_KEY = "auditHead"
WITNESS_LOG = Path("audit") / "anchors.jsonl"
# Folders of the home that hold only content-addressed data, never anchors.
_SKIP_DIRS = {"objects", "features", "prefect", "corpus", "clap", "gate-index"}
_MAX_JSON_BYTES = 64 << 20
_MAX_HEADER_BYTES = 100 << 20


@dataclass(frozen=True)
class Anchor:
    where: str
    head: ChainHead


def head_problem(session: Session, head: ChainHead) -> str | None:
    """Why the chain does not contain ``head``, or ``None`` when it does."""
    if head.seq == 0:
        return None if head.hash == GENESIS else f"head 0 must be the genesis hash, not {head.hash}"
    stored = session.execute(
        select(AuditEvent.hash).where(AuditEvent.id == head.seq)
    ).scalar_one_or_none()
    if stored is None:
        newest = chain_head(session)
        if newest.seq < head.seq:
            return (
                f"the chain ends at row {newest.seq}, before the anchored head {head.seq}: "
                "its newest rows were removed"
            )
        return f"row {head.seq} of the anchored head is gone from the chain"
    if stored != head.hash:
        return (
            f"row {head.seq} hashes to {stored[:16]}…, the anchor recorded {head.hash[:16]}…: "
            "the chain was rewritten"
        )
    return None


def parse_anchor(value: Any) -> ChainHead | None:
    """A head from ``{"seq", "hash"}`` or ``"SEQ:HASH"``; ``None`` for anything else."""
    try:
        if isinstance(value, str):
            return ChainHead.parse(value)
        if isinstance(value, dict) and isinstance(value.get("seq"), int):
            return ChainHead.parse(f"{value['seq']}:{value.get('hash')}")
    except ValueError:
        return None
    return None


def witness(home: Path, head: ChainHead, where: str) -> None:
    """Add a line for ``head`` handed out to ``where`` to the home's witness log."""
    path = home / WITNESS_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {
        **head.to_dict(),
        "where": where,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(line, sort_keys=True) + "\n")


def _json_anchors(path: Path) -> Iterator[ChainHead]:
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            return
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    for item in doc if isinstance(doc, list) else [doc]:
        if isinstance(item, dict):
            for key in (ANCHOR_KEY, CROISSANT_KEY):
                head = parse_anchor(item.get(key))
                if head is not None:
                    yield head


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` map of a safetensors file, read from its header only."""
    with path.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path} is too short to be safetensors")
        (length,) = struct.unpack("<Q", raw)
        if length > _MAX_HEADER_BYTES:
            raise ValueError(f"{path}: safetensors header of {length} bytes is implausible")
        header = json.loads(handle.read(length))
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()}


def _checkpoint_anchors(path: Path) -> Iterator[ChainHead]:
    try:
        entry = safetensors_metadata(path).get("fairchord")
        doc = json.loads(entry) if entry else {}
    except (OSError, ValueError):
        return
    head = parse_anchor(doc.get("meta", doc).get(ANCHOR_KEY) if isinstance(doc, dict) else None)
    if head is not None:
        yield head


def _files(home: Path) -> Iterator[Path]:
    for child in sorted(home.iterdir()) if home.is_dir() else []:
        if child.is_dir() and not child.is_symlink():
            if child.name not in _SKIP_DIRS:
                yield from _files(child)
        elif child.is_file():
            yield child


def find_anchors(home: Path, session: Session | None = None) -> list[Anchor]:
    """Every chain head recorded in the home (and in training runs, given a session)."""
    anchors: list[Anchor] = []
    log = home / WITNESS_LOG
    if log.is_file():
        for number, line in enumerate(log.read_text(encoding="utf-8").splitlines(), 1):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            head = parse_anchor(record)
            if head is not None:
                anchors.append(Anchor(f"{log}:{number} ({record.get('where', '?')})", head))
    for path in _files(home):
        if path.suffix == ".json":
            anchors.extend(Anchor(str(path), head) for head in _json_anchors(path))
        elif path.suffix == ".safetensors":
            anchors.extend(Anchor(str(path), head) for head in _checkpoint_anchors(path))
    if session is not None:
        for run_id, text in session.execute(
            select(TrainingRun.id, TrainingRun.audit_head).where(
                TrainingRun.audit_head.is_not(None)
            )
        ):
            head = parse_anchor(text)
            if head is not None:
                anchors.append(Anchor(f"training run {run_id}", head))
    return anchors


def check_anchors(session: Session, anchors: list[Anchor]) -> list[tuple[str, str]]:
    """(where, problem) for each anchor the chain does not contain."""
    problems = []
    seen: dict[ChainHead, str | None] = {}  # many sidecars share a head: ask once per head
    for anchor in anchors:
        if anchor.head not in seen:
            seen[anchor.head] = head_problem(session, anchor.head)
        problem = seen[anchor.head]
        if problem:
            problems.append((anchor.where, problem))
    return problems
