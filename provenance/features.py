"""Feature sets in the provenance DB: which recordings are featurized, with which mel config.

One feature set per mel config hash; a changed config makes a new feature
set, so mels of different configs are never mixed. Plain functions: the
caller owns the transaction (they flush, never commit).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit_log import append_event
from provenance.models import (
    AuditEvent,
    Credit,
    FeatureSet,
    FeatureSetRecording,
    FeatureShard,
    LicenceAssertion,
    Party,
    PartyAlias,
    Recording,
    utcnow,
)

# Roles whose parties count as a segment's "artists" (used for per-artist similarity).
ARTIST_ROLES = ("artist", "composer", "performer")
# Fields of a recording.* audit event payload that carry genre / instrument words.
TAG_PAYLOAD_KEYS = ("genre", "genres", "tags", "instruments", "instrumentation", "style")


def get_or_create_feature_set(
    session: Session, *, mel_config_hash: str, mel_config: dict[str, Any], root_uri: str
) -> FeatureSet:
    """The feature set for this mel config, created (with an audit event) when new."""
    existing = session.execute(
        select(FeatureSet).where(FeatureSet.mel_config_hash == mel_config_hash)
    ).scalar_one_or_none()
    if existing is not None:
        if existing.mel_config != mel_config:
            raise ValueError(
                f"feature set {existing.id} has hash {mel_config_hash} but a different config "
                f"{existing.mel_config!r} != {mel_config!r}"
            )
        return existing
    fs = FeatureSet(mel_config_hash=mel_config_hash, mel_config=mel_config, root_uri=root_uri)
    session.add(fs)
    session.flush()
    append_event(
        session,
        "feature_set.created",
        entity="feature_set",
        entity_id=fs.id,
        payload={"mel_config_hash": mel_config_hash, "root_uri": root_uri},
    )
    return fs


def recordings_to_featurize(session: Session, feature_set_id: int) -> list[Recording]:
    """Accepted, non-duplicate recordings with an object uri that this feature set lacks, by id."""
    covered = select(FeatureSetRecording.recording_id).where(
        FeatureSetRecording.feature_set_id == feature_set_id
    )
    return list(
        session.execute(
            select(Recording)
            .where(
                Recording.status == "accepted",
                Recording.duplicate_of_id.is_(None),
                Recording.object_uri.is_not(None),
                Recording.id.not_in(covered),
            )
            .order_by(Recording.id)
        ).scalars()
    )


def covered_recording_ids(session: Session, feature_set_id: int) -> list[int]:
    return list(
        session.execute(
            select(FeatureSetRecording.recording_id)
            .where(FeatureSetRecording.feature_set_id == feature_set_id)
            .order_by(FeatureSetRecording.recording_id)
        ).scalars()
    )


def banned_names(session: Session) -> list[str]:
    """Every party name and alias in the DB: none may appear in a caption."""
    names = list(session.execute(select(Party.name)).scalars())
    names += list(session.execute(select(PartyAlias.alias)).scalars())
    return sorted({n for n in names if n and n.strip()})


def artist_ids(session: Session, recording_id: int) -> list[int]:
    return sorted(
        set(
            session.execute(
                select(Credit.party_id).where(
                    Credit.recording_id == recording_id, Credit.role.in_(ARTIST_ROLES)
                )
            ).scalars()
        )
    )


def concluded_licence(session: Session, recording_id: int) -> str:
    """The concluded SPDX expression of the newest licence assertion, else ``NOASSERTION``."""
    row = session.execute(
        select(LicenceAssertion.concluded)
        .where(LicenceAssertion.recording_id == recording_id)
        .order_by(LicenceAssertion.asserted_at.desc(), LicenceAssertion.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return row or "NOASSERTION"


def recording_tags(session: Session, recording_id: int) -> list[str]:
    """Genre / instrument text from the payloads of the recording's ``recording.*`` audit events.

    Ingestion records manifest and file-tag facts there; captions filter names out of them.
    """
    payloads = session.execute(
        select(AuditEvent.payload)
        .where(
            AuditEvent.entity == "recording",
            AuditEvent.entity_id == str(recording_id),
            AuditEvent.action.like("recording.%"),
        )
        .order_by(AuditEvent.id)
    ).scalars()
    tags: list[str] = []
    for raw in payloads:
        try:
            payload = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(payload, dict):
            continue
        for key in TAG_PAYLOAD_KEYS:
            value = payload.get(key)
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, str) and v.strip() and v not in tags:
                    tags.append(v)
    return tags


@dataclass(frozen=True)
class CoveredRecording:
    recording_id: int
    segments: int
    shard_name: str


def record_shards(
    session: Session,
    feature_set: FeatureSet,
    *,
    shards: Sequence[dict[str, Any]],
    recordings: Iterable[CoveredRecording],
    manifest_uri: str,
    manifest_sha256: str,
    shard_uri_prefix: str,
) -> list[FeatureShard]:
    """Record new shards, the recordings they cover and the new manifest; one audit event."""
    rows: dict[str, FeatureShard] = {}
    for shard in shards:
        row = FeatureShard(
            feature_set_id=feature_set.id,
            uri=f"{shard_uri_prefix.rstrip('/')}/{shard['name']}",
            sha256=shard["sha256"],
            rows=shard["rows"],
        )
        session.add(row)
        rows[shard["name"]] = row
    session.flush()
    covered = list(recordings)
    for rec in covered:
        shard_row = rows.get(rec.shard_name)
        if shard_row is None:
            raise ValueError(
                f"recording {rec.recording_id} names shard {rec.shard_name!r}, "
                f"not one of the new shards {sorted(rows)}"
            )
        session.add(
            FeatureSetRecording(
                feature_set_id=feature_set.id,
                recording_id=rec.recording_id,
                shard_id=shard_row.id,
                segments=rec.segments,
            )
        )
    feature_set.manifest_uri = manifest_uri
    feature_set.manifest_sha256 = manifest_sha256
    feature_set.updated_at = utcnow()
    session.flush()
    append_event(
        session,
        "feature_set.extended",
        entity="feature_set",
        entity_id=feature_set.id,
        payload={
            "mel_config_hash": feature_set.mel_config_hash,
            "manifest_sha256": manifest_sha256,
            "shards": [
                {"name": s["name"], "sha256": s["sha256"], "rows": s["rows"]} for s in shards
            ],
            "recording_ids": [r.recording_id for r in covered],
            "segments": sum(r.segments for r in covered),
        },
    )
    return list(rows.values())


def feature_set_for_hash(session: Session, mel_config_hash: str) -> FeatureSet | None:
    return session.execute(
        select(FeatureSet).where(FeatureSet.mel_config_hash == mel_config_hash)
    ).scalar_one_or_none()


def feature_set_files(session: Session, feature_set: FeatureSet) -> FeatureSetFiles:
    """Where a feature set's manifest and shards are recorded, with their digests."""
    shards = session.execute(
        select(FeatureShard.uri, FeatureShard.sha256)
        .where(FeatureShard.feature_set_id == feature_set.id)
        .order_by(FeatureShard.id)
    ).all()
    manifest = (
        (feature_set.manifest_uri, feature_set.manifest_sha256)
        if feature_set.manifest_uri and feature_set.manifest_sha256
        else None
    )
    return FeatureSetFiles(
        root_uri=feature_set.root_uri,
        mel_config_hash=feature_set.mel_config_hash,
        manifest=manifest,
        shards=[(str(uri), str(sha)) for uri, sha in shards],
    )


@dataclass(frozen=True)
class FeatureSetFiles:
    root_uri: str
    mel_config_hash: str
    manifest: tuple[str, str] | None  # (location, sha256)
    shards: list[tuple[str, str]]  # (location, sha256) in recording order
