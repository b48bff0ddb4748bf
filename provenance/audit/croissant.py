"""A Croissant 1.1 JSON-LD description of a checkpoint's training snapshot.

Every member is a ``cr:FileObject`` (sha256 + contentUrl of the original in
the object store), licences are SPDX URLs, and provenance is stated with
PROV-O: the snapshot ``prov:wasDerivedFrom`` each original, and
``prov:wasGeneratedBy`` the training run that froze it. A ``members`` record
set carries one inline record per member (sha256, title, artists, licence,
consent at snapshot), so the file stands on its own.

Extension: ``gateDetectors`` ("What the gate itself learned from") lists the
detector(s) of the checkpoint's similarity gate as ``prov:Entity`` nodes: the
pretrained embedder (sha256, SPDX licence, source package) that
``prov:wasDerivedFrom`` its own training data and the outside-music cohort it
was calibrated against; ``gateDetector`` holds the recorded facts as a JSON
literal (``provenance.audit.detectors.gate_detectors``). An empty list means the
gate is not calibrated, which the dataset's description also says.
``auditHead`` is the audit chain's head (``{"seq", "hash"}``) when the export was
made, an anchor ``fairchord audit verify`` checks (``provenance.audit.anchors``).
"""

from __future__ import annotations

from typing import Any

import orjson

from provenance.audit.detectors import SECTION_TITLE, joined
from provenance.audit.licence_report import LicenceReport, licence_ids, licence_url

CROISSANT_1_1 = "http://mlcommons.org/croissant/1.1"

CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "prov": "http://www.w3.org/ns/prov#",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileObject": "cr:fileObject",
    "fileProperty": "cr:fileProperty",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "gateDetectors": {"@id": "fairchord:gateDetectors", "@container": "@set"},
    "gateDetector": {"@id": "fairchord:gateDetector", "@type": "@json"},
    "auditHead": {"@id": "fairchord:auditHead", "@type": "@json"},
}

_MEMBER_FIELDS = (
    ("sha256", "sc:Text", "sha256 of the original bytes"),
    ("title", "sc:Text", "title as recorded"),
    ("artists", "sc:Text", "credited artists, comma-separated"),
    ("licence", "sc:Text", "concluded SPDX licence expression at snapshot time"),
    ("licence_url", "sc:URL", "SPDX licence page(s)"),
    ("consent", "sc:Text", "consent state at snapshot time"),
    ("minutes", "sc:Float", "minutes of audio"),
)


_MIME_BY_CONTAINER = {
    "OGG": "audio/ogg",
    "MP3": "audio/mpeg",
    "WAV": "audio/wav",
    "FLAC": "audio/flac",
}


def _encoding(codec: str | None) -> str:
    container = (codec or "").split("/", 1)[0].upper()
    return _MIME_BY_CONTAINER.get(container, "application/octet-stream")


def _licences(ids: Any) -> list[str] | str:
    urls = sorted({u for i in ids for u in [licence_url(i)] if u})
    return urls or "NOASSERTION"


def _gate_detector(detector: dict[str, Any]) -> dict[str, Any]:
    """One detector of the similarity gate as a PROV entity, with what it learned from."""
    name = detector["name"] or detector["kind"]
    derived: list[dict[str, Any]] = [
        {
            "@type": "prov:Entity",
            "name": f"training data of {name}",
            "description": detector["training_data"] or "not recorded",
        }
    ]
    if cohort := detector["cohort"]:
        tracks = cohort.get("tracks") or {}
        derived.append(
            {
                "@type": "prov:Entity",
                "@id": f"urn:sha256:{cohort.get('sha256')}",
                "name": "outside-music cohort the gate is calibrated against",
                "description": (
                    f"{sum(tracks.values())} tracks ({joined(tracks)}) by "
                    f"{cohort.get('artists')} artists, {cohort.get('seconds')} s, from "
                    f"{joined(cohort.get('packages'))}; licences {joined(cohort.get('licences'))}"
                ),
                "license": _licences(licence_ids(" ".join(cohort.get("licences") or {}))),
            }
        )
    return {
        "@type": "prov:Entity",
        "@id": f"urn:sha256:{detector['embedder_sha256']}",
        "name": name,
        "description": (
            f"Detector of the similarity gate ({detector['kind']}): {detector['task'] or ''}. "
            "It judges generated audio against the snapshot; it did not learn from it."
        ),
        "license": _licences(licence_ids(detector["licence"] or "")),
        "sha256": detector["embedder_sha256"],
        "version": detector["source_package"] or "",
        "citation": detector["reference"] or "",
        "prov:wasDerivedFrom": derived,
        # The recorded facts as they are (datetimes as ISO 8601 text).
        "gateDetector": orjson.loads(orjson.dumps(detector)),
    }


def croissant_snapshot(report: LicenceReport) -> dict[str, Any]:
    """Build the JSON-LD document (a dict ready for ``json.dump``)."""
    run_id = f"training-run-{report.training_run_id}"
    licences = sorted(
        {
            u
            for m in report.members
            for i in licence_ids(m.concluded_at_snapshot)
            if (u := licence_url(i))
        }
    )
    distribution = []
    records = []
    for m in report.members:
        file_id = f"recording-{m.sha256[:16]}"
        ids = licence_ids(m.concluded_at_snapshot)
        distribution.append(
            {
                "@type": "cr:FileObject",
                "@id": file_id,
                "name": file_id,
                "description": m.title or "(untitled)",
                "contentUrl": m.object_uri or f"urn:sha256:{m.sha256}",
                "encodingFormat": _encoding(m.codec),
                "sha256": m.sha256,
                "license": [u for u in (licence_url(i) for i in ids) if u]
                or m.concluded_at_snapshot,
                "prov:wasDerivedFrom": m.source_url or m.source_uri or None,
            }
        )
        records.append(
            {
                "members/sha256": m.sha256,
                "members/title": m.title or "",
                "members/artists": ", ".join(m.artists),
                "members/licence": m.concluded_at_snapshot,
                "members/licence_url": " ".join(u for u in (licence_url(i) for i in ids) if u),
                "members/consent": m.consent_at_snapshot,
                "members/minutes": round(m.minutes, 4),
            }
        )
    for entry in distribution:
        if entry["prov:wasDerivedFrom"] is None:
            del entry["prov:wasDerivedFrom"]
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "@id": f"fairchord:checkpoint-{report.checkpoint_sha256}",
        "name": f"fairchord-snapshot-run-{report.training_run_id}",
        "description": (
            f"The recordings that training run {report.training_run_id} learned from, frozen at "
            f"{report.snapshot_at.isoformat()} under policy '{report.policy}' "
            f"v{report.policy_version_at_snapshot}; snapshot digest (Merkle root) "
            f"{report.snapshot_digest}; checkpoint sha256 {report.checkpoint_sha256}. "
            f"{SECTION_TITLE}: {report.gate_summary}."
        ),
        "conformsTo": CROISSANT_1_1,
        "citeAs": f"fairchord training snapshot {report.snapshot_digest}",
        "datePublished": report.generated_at.date().isoformat(),
        "license": licences or ["NOASSERTION"],
        "url": f"urn:sha256:{report.checkpoint_sha256}",
        "version": "1.0.0",
        "prov:wasGeneratedBy": {
            "@id": run_id,
            "@type": "prov:Activity",
            "name": f"fairchord training run {report.training_run_id}",
            "prov:startedAtTime": report.snapshot_at.isoformat(),
        },
        "prov:wasDerivedFrom": [{"@id": d["@id"]} for d in distribution],
        "distribution": distribution,
        "gateDetectors": [_gate_detector(d) for d in report.gate_detectors],
        # The certificates that signed the Content Credentials of the checkpoint's outputs.
        "contentCredentials": {
            "signers": [
                {
                    "@type": "prov:Agent",
                    "name": s["subject"],
                    "sha256": s["sha256"],
                    "filesSigned": s["files"],
                }
                for s in report.output_signers.get("signers", [])
            ],
            "unsignedFiles": report.output_signers.get("unsigned", 0),
        },
        # The audit chain's head when exported: `fairchord audit verify` checks it.
        "auditHead": report.audit_head,
        "recordSet": [
            {
                "@type": "cr:RecordSet",
                "@id": "members",
                "name": "members",
                "description": "One record per member of the training snapshot.",
                "field": [
                    {
                        "@type": "cr:Field",
                        "@id": f"members/{name}",
                        "name": name,
                        "description": description,
                        "dataType": data_type,
                    }
                    for name, data_type, description in _MEMBER_FIELDS
                ],
                "data": records,
            }
        ],
    }
