"""Content Credentials (a signed C2PA manifest) on every audio file generation writes.

:func:`generation_manifest` builds the manifest of one allowed clip:

- ``c2pa.actions``: one ``c2pa.created`` action, IPTC digital source type
  ``trainedAlgorithmicMedia``, with fairchord and its version as the software agent;
- ``org.fairchord.generation``: the checkpoint's sha256, the snapshot's Merkle digest,
  the training policy (name, version, sha256), the similarity gate's decision (row id,
  verdict, scores), the prompt screen's verdict, the prompt's sha256 (the prompt itself
  only when asked for), the seed, the sampler and the audit chain head (``SEQ:HASH``)
  after the clip's decisions were recorded;
- ``org.fairchord.training-data``: the training snapshot in counts
  (:mod:`provenance.training_data_statement`).

:func:`sign_audio` signs a file into a new one with the configured keys
(:mod:`provenance.signing_keys`) and reads it back with the validator, so what is
recorded is what a reader will see. Signing happens only after the gate allowed the
clip: a blocked clip is never written, signed or not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from generation.gate import GateResult
from generation.prompt_screen import ScreenResult
from generation.request import GenerationRequest, SampledClip
from provenance.content_credentials import (
    GENERATED_SOURCE_TYPE,
    GENERATION_LABEL,
    IPTC_SOURCE_TYPES,
    TRAINING_DATA_LABEL,
    CredentialReading,
    mime_for,
    read_credential,
    sign_file,
)
from provenance.hashing import sha256_bytes
from provenance.models import Checkpoint, GateDecision
from provenance.signing_keys import SigningKeyError, SigningKeys

SOFTWARE = "fairchord"
GENERATION_FORMAT = "fairchord-generation-claims/1"
UNSIGNED_NOTE = "no signing keys configured (fairchord keys init, or FAIRCHORD_SIGNING_CERT/KEY)"


class SigningFailed(RuntimeError):
    """The library refused to sign, or the signed file did not validate."""


@cache
def software_version() -> str:
    """fairchord's installed version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(SOFTWARE)
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0+unknown"


def check_signing_keys(keys: SigningKeys) -> None:
    """Raise :class:`SigningKeyError` unless the key is the P-256 key of the chain's leaf
    certificate (a mismatched pair would fail on every clip, after sampling)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_private_key(keys.key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{keys.key_path}: not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SigningKeyError(f"{keys.key_path}: not an ES256 (P-256) key")
    leaf = x509.load_pem_x509_certificates(keys.chain_pem)[0]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise SigningKeyError(
            f"{keys.key_path} is not the key of the first certificate in {keys.chain_path}"
        )


@dataclass(frozen=True)
class ClipClaims:
    """Everything the manifest of one clip states, gathered before it is written."""

    request: GenerationRequest
    item: SampledClip
    result: GateResult
    screened: ScreenResult
    generation_id: int
    checkpoint: Checkpoint
    snapshot_digest: str
    gate_decision: GateDecision
    screen_decision: GateDecision
    audit_head: str  # SEQ:HASH
    training_data: dict[str, Any]


def generation_claims(claims: ClipClaims) -> dict[str, Any]:
    """The ``org.fairchord.generation`` assertion's data."""
    request, result = claims.request, claims.result
    policy = claims.training_data.get("policy") or {}
    doc: dict[str, Any] = {
        "format": GENERATION_FORMAT,
        "generation_id": claims.generation_id,
        "checkpoint": {
            "sha256": claims.checkpoint.sha256,
            "step": claims.checkpoint.step,
            "training_run_id": claims.checkpoint.training_run_id,
        },
        "snapshot_digest": claims.snapshot_digest,
        "policy": {
            "name": policy.get("name"),
            "version": policy.get("version"),
            "sha256": policy.get("sha256"),
        },
        "gate": {
            "decision_id": claims.gate_decision.id,
            "verdict": result.verdict,
            "track_similarity": result.track_similarity,
            "detector_scores": dict(result.detector_scores),
            "top_artist_score": (
                result.artist_scores[0].get("score") if result.artist_scores else None
            ),
            "thresholds": dict(result.thresholds),
            "index_sha256": result.index_sha256,
        },
        "prompt_screen": {
            "decision_id": claims.screen_decision.id,
            "verdict": claims.screened.verdict,
        },
        "prompt_sha256": sha256_bytes(request.prompt.encode("utf-8")),
        "seed": claims.item.seed,
        "sampler": request.sampler,
        "steps": request.steps,
        "cfg": request.cfg,
        **request.sampling_used(),
        "init_audio_sha256": request.init_audio_sha256,
        "audit_head": claims.audit_head,
    }
    if request.credential_prompt:
        doc["prompt"] = request.prompt
    # Round-trip through JSON: the manifest holds plain JSON values only (no numpy floats).
    return dict(json.loads(json.dumps(doc, default=float)))


def generation_manifest(claims: ClipClaims, *, title: str) -> dict[str, Any]:
    """The C2PA manifest definition of one clip (see the module docstring)."""
    agent = {"name": SOFTWARE, "version": software_version()}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": IPTC_SOURCE_TYPES + GENERATED_SOURCE_TYPE,
                            "softwareAgent": agent,
                        }
                    ]
                },
            },
            {"label": GENERATION_LABEL, "data": generation_claims(claims)},
            {"label": TRAINING_DATA_LABEL, "data": claims.training_data},
        ],
    }


def sign_audio(
    source: Path, dest: Path, manifest: dict[str, Any], keys: SigningKeys, *, container: str
) -> CredentialReading:
    """Sign ``source`` into ``dest`` (a new file) and return the validator's reading of it.

    ``container`` is ``wav`` or ``flac`` (the temporary names carry no telling suffix).

    Raises :class:`SigningFailed` when the library refuses, or when the signed file does
    not read back as a valid credential (a signer that is merely untrusted is valid).
    """
    import c2pa

    mime = mime_for(dest, container)
    if mime is None:
        raise SigningFailed(f"no C2PA container for {container!r}")
    try:
        sign_file(source, dest, manifest, keys, mime=mime)
    except c2pa.C2paError as exc:
        raise SigningFailed(f"C2PA signing failed: {exc}") from exc
    reading = read_credential(dest, container=container)
    if reading is None or not reading.valid:
        failures = ", ".join(reading.failures) if reading is not None else "no manifest"
        raise SigningFailed(f"the signed file does not validate: {failures}")
    return reading


def credential_summary(
    reading: CredentialReading | None, signer_sha256: str | None
) -> dict[str, Any]:
    """The sidecar's ``content_credentials`` entry: signed (label, signer) or unsigned."""
    if reading is None:
        return {
            "status": "unsigned",
            "manifest_label": None,
            "signer": None,
            "signer_sha256": None,
            "note": UNSIGNED_NOTE,
        }
    return {
        "status": "signed",
        "manifest_label": reading.manifest_label,
        "signer": reading.signer,
        "signer_sha256": signer_sha256,
    }
