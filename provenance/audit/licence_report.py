"""The licence report for one checkpoint: members, totals, obligations and a verdict."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson
from sqlalchemy.orm import Session

from provenance.audit.detectors import gate_detectors, gate_summary
from provenance.audit.members import MemberRow, member_rows
from provenance.audit.signers import output_signers
from provenance.audit.taint import RunTaint, run_taint
from provenance.audit_log import chain_head
from provenance.csv_safety import safe_row
from provenance.models import Checkpoint, TrainingRun, utcnow
from provenance.policies import load_policy

# Obligations that follow from a licence id found in a concluded expression.
_ATTRIBUTION = re.compile(r"^(CC-BY|GPL|LGPL|AGPL|MIT|BSD|Apache|OFL|Artistic)", re.IGNORECASE)
_SHARE_ALIKE = re.compile(r"^(CC-BY(-NC)?-SA|GPL|LGPL|AGPL|OFL)", re.IGNORECASE)
_LICENCE_IDS = re.compile(r"[A-Za-z0-9.+\-]+")
_OPERATORS = {"AND", "OR", "WITH"}


def licence_ids(expression: str) -> list[str]:
    """The licence ids named in an SPDX expression (operators and parentheses dropped)."""
    return [t for t in _LICENCE_IDS.findall(expression or "") if t.upper() not in _OPERATORS]


def obligations(expression: str) -> list[str]:
    """The obligations (``attribution:<id>``, ``share_alike:<id>``) an SPDX expression carries."""
    return list(_obligations(expression))


@functools.lru_cache(maxsize=4096)
def _obligations(expression: str) -> tuple[str, ...]:
    # Reports ask once per member; a snapshot names only a few distinct expressions.
    found = []
    for lid in licence_ids(expression):
        if _ATTRIBUTION.match(lid):
            found.append(f"attribution:{lid}")
        if _SHARE_ALIKE.match(lid):
            found.append(f"share_alike:{lid}")
    return tuple(sorted(set(found)))


def licence_url(licence_id: str) -> str | None:
    if licence_id.startswith("LicenseRef-") or licence_id in {"NOASSERTION", "NONE"}:
        return None
    return f"https://spdx.org/licenses/{licence_id}.html"


@dataclass
class LicenceReport:
    checkpoint_id: int
    checkpoint_sha256: str
    training_run_id: int
    policy: str
    policy_version_at_snapshot: str
    policy_version_now: str
    snapshot_at: dt.datetime
    snapshot_digest: str | None
    generated_at: dt.datetime
    members: list[MemberRow]
    totals_by_licence: dict[str, dict[str, float]]
    totals_by_consent: dict[str, int]
    totals_by_artist: dict[str, dict[str, float]]
    obligations: dict[str, list[str]]
    verdict: str
    taint: RunTaint
    # What the similarity gate itself learned from (``provenance.audit.detectors``).
    gate_detectors: list[dict[str, Any]]
    # The audit chain's head when the report was made ({"seq", "hash"}): an anchor that
    # leaves the database with the report (``provenance.audit.anchors``).
    audit_head: dict[str, Any] | None = None
    # Who signed the Content Credentials of the checkpoint's generated files
    # (``provenance.audit.signers``): {"signers": [...], "unsigned": n}.
    output_signers: dict[str, Any] = field(default_factory=dict)

    @property
    def gate_summary(self) -> str:
        return gate_summary(self.gate_detectors)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: the fields in order, as :func:`dataclasses.asdict` gives them,
        but built directly (asdict's deep copy of every member costs seconds at 100 k
        members); the taint as its verdict and tainted members; then ``gate_summary``, the
        gate detectors in one sentence (or that the gate is not calibrated)."""
        out = self._plain_except_members()
        out["members"] = [m.to_dict() for m in self.members]
        return out

    def _plain_except_members(self) -> dict[str, Any]:
        """:meth:`to_dict` with the members left as :class:`MemberRow` objects."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("totals_by_licence", "totals_by_artist"):
                value = {k: dict(v) for k, v in value.items()}
            elif f.name == "totals_by_consent":
                value = dict(value)
            elif f.name == "output_signers":
                value = {
                    "signers": [dict(x) for x in value.get("signers", [])],
                    "unsigned": value.get("unsigned", 0),
                }
            elif f.name == "obligations":
                value = {k: list(v) for k, v in value.items()}
            elif f.name == "taint":
                value = {"tainted": value.tainted, "members": [asdict(m) for m in value.members]}
            out[f.name] = value
        out["gate_summary"] = self.gate_summary
        return out


def build_licence_report(
    session: Session, checkpoint: Checkpoint, *, now: dt.datetime | None = None
) -> LicenceReport:
    now = now or utcnow()
    run = session.get(TrainingRun, checkpoint.training_run_id)
    assert run is not None, "checkpoint without its training run"
    policy = load_policy(run.policy_name)
    taint = run_taint(session, run, now=now, policy=policy)
    reasons_by_recording = {m.recording_id: m.reasons for m in taint.members}
    rows = member_rows(session, run)
    by_licence: dict[str, dict[str, float]] = defaultdict(lambda: {"recordings": 0, "minutes": 0.0})
    by_artist: dict[str, dict[str, float]] = defaultdict(lambda: {"recordings": 0, "minutes": 0.0})
    by_consent: Counter[str] = Counter()
    needs: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        # Members whose consent has not changed since the snapshot keep its state.
        row.consent_now = taint.consent_now.get(row.recording_id, row.consent_at_snapshot)
        row.taint_reasons = list(reasons_by_recording.get(row.recording_id, ()))
        by_licence[row.concluded_at_snapshot]["recordings"] += 1
        by_licence[row.concluded_at_snapshot]["minutes"] += row.minutes
        by_consent[row.consent_now] += 1
        for artist in row.artists or ["(no named artist)"]:
            by_artist[artist]["recordings"] += 1
            by_artist[artist]["minutes"] += row.minutes
        for obligation in _obligations(row.concluded_at_snapshot):
            needs[obligation].append(row.sha256)
    return LicenceReport(
        checkpoint_id=checkpoint.id,
        checkpoint_sha256=checkpoint.sha256,
        training_run_id=run.id,
        policy=run.policy_name,
        policy_version_at_snapshot=run.policy_version,
        policy_version_now=policy.version,
        snapshot_at=run.snapshot_at,
        snapshot_digest=run.members_digest,
        generated_at=now,
        members=rows,
        totals_by_licence=dict(by_licence),
        totals_by_consent=dict(by_consent),
        totals_by_artist=dict(by_artist),
        obligations={k: sorted(v) for k, v in sorted(needs.items())},
        verdict="tainted" if taint.tainted else "clean",
        taint=taint,
        gate_detectors=gate_detectors(session, checkpoint.id),
        audit_head=chain_head(session).to_dict(),
        output_signers=output_signers(session, checkpoint.id),
    )


def reports_json(reports: Sequence[LicenceReport]) -> str:
    """The reports as a JSON list, indented by two spaces, datetimes written as ``str()`` does:
    the text ``json.dumps([r.to_dict() for r in reports], indent=2, default=str)`` gives
    (orjson writes non-ASCII characters as UTF-8 where json would escape them).

    Encoded with orjson, which also writes the member dataclasses directly: the standard
    library's encoder falls back to pure Python when indenting, which takes seconds for a
    snapshot of 100 k members.
    """
    return (
        orjson.dumps(
            [r._plain_except_members() for r in reports],
            default=str,
            option=orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS,
        ).decode()
        + "\n"
    )


CSV_COLUMNS = [
    "checkpoint_id",
    "recording_id",
    "sha256",
    "title",
    "artists",
    "declared_licence",
    "concluded_at_snapshot",
    "concluded_now",
    "consent_at_snapshot",
    "consent_now",
    "policy",
    "policy_version",
    "minutes",
    "taint_reasons",
    "audit_head",
]


def reports_csv(reports: Sequence[LicenceReport]) -> str:
    """One CSV row per member of every report (cells made safe for spreadsheets)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for r in reports:
        head = r.audit_head or {}
        head_text = f"{head.get('seq')}:{head.get('hash')}" if head else ""
        for m in r.members:
            writer.writerow(
                safe_row(
                    {
                        "checkpoint_id": r.checkpoint_id,
                        "recording_id": m.recording_id,
                        "sha256": m.sha256,
                        "title": m.title or "",
                        "artists": "; ".join(m.artists),
                        "declared_licence": m.declared_licence or "",
                        "concluded_at_snapshot": m.concluded_at_snapshot,
                        "concluded_now": m.concluded_now or "",
                        "consent_at_snapshot": m.consent_at_snapshot,
                        "consent_now": m.consent_now,
                        "policy": r.policy,
                        "policy_version": r.policy_version_at_snapshot,
                        "minutes": f"{m.minutes:.3f}",
                        "taint_reasons": "; ".join(m.taint_reasons),
                        "audit_head": head_text,
                    }
                )
            )
    return buffer.getvalue()
