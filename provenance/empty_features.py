"""Recordings a feature set covers with no segment at all (empty audio), so reruns skip them."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from provenance.models import FeatureSetRecording


def cover_empty_recordings(
    session: Session, feature_set_id: int, recording_ids: Iterable[int]
) -> None:
    """Mark each recording covered by the feature set with 0 segments and no shard.

    The caller owns the transaction.
    """
    for rid in recording_ids:
        session.add(
            FeatureSetRecording(
                feature_set_id=feature_set_id, recording_id=rid, shard_id=None, segments=0
            )
        )
