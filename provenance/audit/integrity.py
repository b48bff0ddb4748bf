"""Check every stored artefact against the digest the provenance DB recorded for it.

Covers the audit log's hash chain and every chain head anchored outside it
(:mod:`provenance.audit.anchors`), every ledger row against the digest the chain
recorded for it (:mod:`provenance.audit.coverage`), the facts of editable rows
against the events that set them (:mod:`provenance.chain_facts`), every original
in the object store, every feature shard (and its manifest), every checkpoint and
every gate index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
from sqlalchemy import select
from sqlalchemy.orm import Session

from provenance.audit.anchors import check_anchors, find_anchors, head_problem
from provenance.audit.coverage import check_row_coverage
from provenance.audit_log import ChainHead, verify_chain
from provenance.chain_facts import policy_file_problems, run_problems, threshold_problems
from provenance.embedders import segment_embedding_files
from provenance.hashing import sha256_uri
from provenance.index_files import (
    ARTIST_MODEL_FILE,
    FINGERPRINTS_DIR,
    FINGERPRINTS_FILE,
    FINGERPRINTS_LAYOUT,
    FINGERPRINTS_MANIFEST,
    IDS_FILE,
    MELODY_FILE,
    VECTORS_FILE,
    combined_sha256,
)
from provenance.models import Checkpoint, EmbeddingIndex, FeatureSet, FeatureShard, Recording
from provenance.object_store import resolve_location


@dataclass(frozen=True)
class Discrepancy:
    # audit_log | anchor | ledger | thresholds | training_run | policy | object | shard |
    # manifest | checkpoint | index | fingerprints | artist_model | melody
    kind: str
    ref: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.ref}: {self.detail}"


@dataclass
class IntegrityReport:
    checked: dict[str, int]
    discrepancies: list[Discrepancy]

    @property
    def ok(self) -> bool:
        return not self.discrepancies


def sha256_index_dir(path: str) -> str:
    """A gate index folder's identity: the digest over its vectors and id-map files."""
    return combined_sha256(sha256_uri(f"{path}/{VECTORS_FILE}"), sha256_uri(f"{path}/{IDS_FILE}"))


def _check_digest(kind: str, ref: str, uri: str | None, expected: str) -> Discrepancy | None:
    if not uri:
        return Discrepancy(kind, ref, "no stored location recorded")
    uri = resolve_location(uri)  # home:// locations are read in the home now in use
    try:
        is_index_dir = kind == "index" and fsspec.core.url_to_fs(uri)[0].isdir(uri)
        actual = sha256_index_dir(uri) if is_index_dir else sha256_uri(uri)
    except FileNotFoundError:
        return Discrepancy(kind, ref, f"missing file {uri}")
    except OSError as exc:
        return Discrepancy(kind, ref, f"unreadable {uri}: {exc}")
    if actual != expected:
        return Discrepancy(kind, ref, f"sha256 {actual[:16]}… != recorded {expected[:16]}…")
    return None


def _objects(session: Session) -> Iterator[tuple[str, str | None, str]]:
    rows = session.execute(
        select(Recording.id, Recording.object_uri, Recording.sha256).where(
            Recording.object_uri.is_not(None)
        )
    )
    for rid, uri, sha in rows:
        yield f"recording {rid}", uri, sha


def _shards(session: Session) -> Iterator[tuple[str, str | None, str]]:
    for shard in session.execute(select(FeatureShard).order_by(FeatureShard.id)).scalars():
        yield f"feature set {shard.feature_set_id} shard {shard.uri}", shard.uri, shard.sha256


def _manifests(session: Session) -> Iterator[tuple[str, str | None, str]]:
    for fs in session.execute(select(FeatureSet).order_by(FeatureSet.id)).scalars():
        if fs.manifest_sha256:
            yield f"feature set {fs.id} manifest", fs.manifest_uri, fs.manifest_sha256


def _checkpoints(session: Session) -> Iterator[tuple[str, str | None, str]]:
    for ckpt in session.execute(select(Checkpoint).order_by(Checkpoint.id)).scalars():
        yield str(ckpt.id), ckpt.uri, ckpt.sha256


def _indexes(session: Session) -> Iterator[tuple[str, str | None, str]]:
    for index in session.execute(select(EmbeddingIndex).order_by(EmbeddingIndex.id)).scalars():
        yield str(index.id), index.uri, index.sha256


def _fingerprints(session: Session) -> Iterator[tuple[str, str | None, str]]:
    """A calibrated index's fingerprints, against the digest its thresholds record.

    A partitioned table: its manifest against the thresholds' digest, then every file the
    manifest lists against the manifest's sha256 for it (when the manifest itself is
    intact; otherwise its listed digests vouch for nothing). An older index: its one
    ``fingerprints.npz``.
    """
    for index in session.execute(select(EmbeddingIndex).order_by(EmbeddingIndex.id)).scalars():
        entry = (index.thresholds or {}).get("fingerprint")
        if not (isinstance(entry, dict) and entry.get("sha256")):
            continue
        if entry.get("layout") is None:
            yield f"index {index.id}", f"{index.uri}/{FINGERPRINTS_FILE}", str(entry["sha256"])
            continue
        folder = f"{index.uri}/{FINGERPRINTS_DIR}"
        yield f"index {index.id}", f"{folder}/{FINGERPRINTS_MANIFEST}", str(entry["sha256"])
        if entry["layout"] == FINGERPRINTS_LAYOUT:
            for name, sha in _listed_fingerprint_files(folder, str(entry["sha256"])):
                yield f"index {index.id} {name}", f"{folder}/{name}", sha


def _listed_fingerprint_files(folder: str, expected: str) -> list[tuple[str, str]]:
    """(name, sha256) of every file an intact fingerprint manifest lists."""
    try:
        with fsspec.open(resolve_location(f"{folder}/{FINGERPRINTS_MANIFEST}"), "rb") as handle:
            data = handle.read()
        if hashlib.sha256(data).hexdigest() != expected:
            return []
        files = json.loads(data)["files"]
        return [
            (str(name), str(files[name]["sha256"]))
            for name in sorted(files)
            if "/" not in str(name) and not str(name).startswith(".")
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return []  # the manifest's own check reports it


# Calibration files beside the vectors, by their thresholds entry.
CALIBRATION_FILES = {"artist_model": ARTIST_MODEL_FILE, "melody": MELODY_FILE}


def _calibration_files(key: str) -> Callable[[Session], Iterator[tuple[str, str | None, str]]]:
    """A calibrated index's file for ``key``, against the digest its thresholds record."""

    def files(session: Session) -> Iterator[tuple[str, str | None, str]]:
        for index in session.execute(select(EmbeddingIndex).order_by(EmbeddingIndex.id)).scalars():
            entry = (index.thresholds or {}).get(key)
            if isinstance(entry, dict) and entry.get("sha256"):
                yield (
                    f"index {index.id}",
                    f"{index.uri}/{CALIBRATION_FILES[key]}",
                    str(entry["sha256"]),
                )

    return files


def _manifest_shards(session: Session) -> list[Discrepancy]:
    """Every shard a manifest lists must be the one the DB recorded, with the same digest."""
    found = []
    for fs in session.execute(select(FeatureSet).order_by(FeatureSet.id)).scalars():
        if not fs.manifest_uri:
            continue
        try:
            with fsspec.open(resolve_location(fs.manifest_uri), "rt", encoding="utf-8") as handle:
                manifest = json.load(handle)
        except (OSError, ValueError) as exc:
            found.append(Discrepancy("manifest", f"feature set {fs.id}", f"unreadable: {exc}"))
            continue
        recorded = {
            s.uri.rsplit("/", 1)[-1]: s.sha256
            for s in session.execute(
                select(FeatureShard).where(FeatureShard.feature_set_id == fs.id)
            ).scalars()
        }
        for entry in manifest.get("shards", []):
            name = str(entry.get("path") or entry.get("uri") or entry.get("name", "")).rsplit(
                "/", 1
            )[-1]
            if name in recorded and entry.get("sha256") != recorded[name]:
                found.append(
                    Discrepancy(
                        "manifest",
                        f"feature set {fs.id} shard {name}",
                        "manifest digest differs from the recorded one",
                    )
                )
    return found


CHECKS: dict[str, Callable[[Session], Iterator[tuple[str, str | None, str]]]] = {
    "object": _objects,
    "shard": _shards,
    "manifest": _manifests,
    "checkpoint": _checkpoints,
    "index": _indexes,
    "fingerprints": _fingerprints,
    "artist_model": _calibration_files("artist_model"),
    "melody": _calibration_files("melody"),
    "segment_embeddings": segment_embedding_files,
}


def verify_everything(
    session: Session,
    *,
    progress: Callable[[str], None] | None = None,
    home: Path | None = None,
    expect_head: ChainHead | None = None,
) -> IntegrityReport:
    """Run every check. ``home``: look there for anchored chain heads; ``expect_head``: a
    head witnessed outside the system that the chain must still contain."""
    checked: dict[str, int] = {}
    discrepancies: list[Discrepancy] = []
    rows, problems = verify_chain(session)
    checked["audit_log"] = rows
    discrepancies.extend(Discrepancy("audit_log", f"row {p.row_id}", p.kind) for p in problems)
    anchors = find_anchors(home, session) if home is not None else []
    checked["anchor"] = len(anchors)
    discrepancies.extend(
        Discrepancy("anchor", where, problem) for where, problem in check_anchors(session, anchors)
    )
    if expect_head is not None:
        checked["anchor"] += 1
        head_missing = head_problem(session, expect_head)
        if head_missing:
            discrepancies.append(
                Discrepancy("anchor", f"expected head {expect_head}", head_missing)
            )
    covered, findings = check_row_coverage(session)
    checked["ledger"] = covered
    discrepancies.extend(Discrepancy("ledger", f.ref, f.detail) for f in findings)
    for kind, check in (
        ("thresholds", threshold_problems),
        ("training_run", run_problems),
        ("policy", policy_file_problems),
    ):
        count, found = check(session)
        checked[kind] = count
        discrepancies.extend(Discrepancy(kind, ref, detail) for ref, detail in found)
    for kind, rows_of in CHECKS.items():
        count = 0
        for ref, uri, expected in rows_of(session):
            count += 1
            if progress:
                progress(ref)
            problem = _check_digest(kind, ref, uri, expected)
            if problem:
                discrepancies.append(problem)
        checked[kind] = count
    discrepancies.extend(_manifest_shards(session))
    return IntegrityReport(checked=checked, discrepancies=discrepancies)
