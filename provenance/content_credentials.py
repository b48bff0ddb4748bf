"""Read and validate a file's Content Credentials (C2PA manifest) with ``c2pa-python``.

:func:`read_credential` returns ``None`` when a file carries no manifest, else a
:class:`CredentialReading` of plain values (it pickles to a Dask worker) saying:

- ``status``: ``valid`` when the claim signature verifies and the hash binding
  matches the bytes (the audio has not changed since signing), else ``invalid``
  with the validator's failure codes. A signer the validator has no trust anchor
  for (every self-signed development chain) is still ``valid``, with
  ``trusted`` false: the signature is sound, but nobody vouches for who made it.
- what fairchord acts on: the ``c2pa.created`` action's IPTC digital source type
  (``trainedAlgorithmicMedia`` marks generated media), the training-and-mining
  entries (``c2pa.training-mining`` / ``cawg.training-mining``), and the
  ``org.fairchord.generation`` assertion of a file fairchord signed.

An invalid manifest is recorded as such and neither grants nor removes
anything; see :func:`training_refusal` and :func:`is_generated_media`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provenance.signing_keys import SigningKeys

# MIME types by container, for the formats both fairchord and c2pa read.
CREDENTIAL_MIME = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "mp4": "audio/mp4",
}
GENERATED_SOURCE_TYPE = "trainedAlgorithmicMedia"
IPTC_SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
GENERATION_LABEL = "org.fairchord.generation"
TRAINING_DATA_LABEL = "org.fairchord.training-data"
MINING_LABELS = ("c2pa.training-mining", "cawg.training-mining")
# Entries whose refusal keeps a file out of training, and the uses that refuse.
TRAINING_ENTRIES = ("ai_generative_training", "ai_training")
REFUSING_USES = ("notAllowed", "constrained")
UNTRUSTED = "signingCredential.untrusted"
# Failure codes about trust or revocation lookups, not about the signature or the bytes.
_TRUST_CODES = (UNTRUSTED, "signingCredential.ocsp.skipped", "timeStamp.untrusted")


class CredentialError(RuntimeError):
    """The C2PA library could not be used at all (not a problem of one file)."""


@dataclass(frozen=True)
class CredentialReading:
    """What a file's active manifest says and whether it validated."""

    status: str  # valid | invalid
    manifest_label: str | None
    signer: str | None
    signer_serial: str | None
    trusted: bool
    digital_source_type: str | None
    training_mining: dict[str, str] = field(default_factory=dict)
    generation: dict[str, Any] | None = None
    training_data: dict[str, Any] | None = None
    assertions: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    claim_generator: str | None = None

    @property
    def valid(self) -> bool:
        return self.status == "valid"

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["assertions"] = list(self.assertions)
        doc["failures"] = list(self.failures)
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> CredentialReading:
        values = dict(doc)
        values["assertions"] = tuple(values.get("assertions", ()))
        values["failures"] = tuple(values.get("failures", ()))
        return cls(**values)


def mime_for(path: str | Path, container: str | None = None) -> str | None:
    """The C2PA MIME type for a container name or a file's suffix, else None."""
    key = (container or Path(path).suffix.lstrip(".")).lower()
    return CREDENTIAL_MIME.get(key)


def _c2pa() -> Any:
    try:
        import c2pa
    except ImportError as exc:  # pragma: no cover - c2pa-python is a locked dependency
        raise CredentialError(f"c2pa-python is not installed: {exc}") from exc
    return c2pa


def reader_context(trust_anchors_pem: str | None) -> Any:
    """A c2pa Context that trusts ``trust_anchors_pem`` (PEM certificates), or None."""
    if not trust_anchors_pem:
        return None
    return _c2pa().Context.from_dict({"trust": {"trust_anchors": trust_anchors_pem}})


def read_credential(
    path: str | Path,
    *,
    container: str | None = None,
    trust_anchors_pem: str | None = None,
) -> CredentialReading | None:
    """The file's credential, or None when it carries none (or its format has none).

    A manifest that is present but cannot be parsed comes back ``invalid`` with the
    library's error as its failure, never as an exception.
    """
    mime = mime_for(path, container)
    if mime is None:
        return None
    c2pa = _c2pa()
    try:
        with open(path, "rb") as handle:
            context = reader_context(trust_anchors_pem)
            reader = c2pa.Reader(mime, handle, context=context)
            try:
                return _reading(reader)
            finally:
                reader.close()
    except c2pa.C2paError as exc:
        name = type(exc).__name__.lstrip("_")
        if "ManifestNotFound" in name or "no JUMBF" in str(exc) or "NotSupported" in name:
            return None
        return CredentialReading(
            status="invalid",
            manifest_label=None,
            signer=None,
            signer_serial=None,
            trusted=False,
            digital_source_type=None,
            failures=(f"unreadable: {str(exc)[:300]}",),
        )


def _reading(reader: Any) -> CredentialReading:
    store = json.loads(reader.json())
    label = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(label) or {}
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failure_codes = tuple(str(item.get("code")) for item in results.get("failure", []))
    if not results:  # older stores: a flat validation_status list of failures
        failure_codes = tuple(str(i.get("code")) for i in store.get("validation_status") or [])
    state = str(store.get("validation_state") or "")
    hard = [code for code in failure_codes if code not in _TRUST_CODES]
    valid = state in ("Valid", "Trusted") and not hard
    assertions = {a.get("label"): a.get("data") for a in manifest.get("assertions", [])}
    generator = manifest.get("claim_generator_info") or [{}]
    first = generator[0] if isinstance(generator, list) and generator else {}
    return CredentialReading(
        status="valid" if valid else "invalid",
        manifest_label=label,
        signer=_signer(reader, manifest),
        signer_serial=_serial(reader),
        trusted=state == "Trusted",
        digital_source_type=_source_type(assertions),
        training_mining=_mining(assertions),
        generation=_as_dict(assertions.get(GENERATION_LABEL)),
        training_data=_as_dict(assertions.get(TRAINING_DATA_LABEL)),
        assertions=tuple(str(k) for k in assertions),
        failures=failure_codes,
        claim_generator=" ".join(str(first.get(k, "")) for k in ("name", "version")).strip()
        or None,
    )


def _as_dict(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, dict) else None


def _certificate_info(reader: Any) -> dict[str, Any]:
    try:
        doc = json.loads(reader.crjson())
    except Exception:  # crjson is informative only; the signature was already checked
        return {}
    manifests = doc.get("manifests") or []
    if not manifests:
        return {}
    return dict((manifests[0].get("signature") or {}).get("certificateInfo") or {})


def _signer(reader: Any, manifest: dict[str, Any]) -> str | None:
    subject = _certificate_info(reader).get("subject") or {}
    if subject:
        return ", ".join(f"{k}={v}" for k, v in subject.items())[:512]
    info = manifest.get("signature_info") or {}
    parts = [f"CN={info['common_name']}"] if info.get("common_name") else []
    if info.get("issuer"):
        parts.append(f"O={info['issuer']}")
    return ", ".join(parts) or None


def _serial(reader: Any) -> str | None:
    serial = _certificate_info(reader).get("serialNumber")
    return str(serial) if serial else None


def _source_type(assertions: dict[Any, Any]) -> str | None:
    for label in ("c2pa.actions.v2", "c2pa.actions"):
        data = assertions.get(label) or {}
        for action in data.get("actions", []) if isinstance(data, dict) else []:
            if action.get("action") == "c2pa.created" and action.get("digitalSourceType"):
                return str(action["digitalSourceType"]).removeprefix(IPTC_SOURCE_TYPES)
    return None


def _mining(assertions: dict[Any, Any]) -> dict[str, str]:
    """Training-and-mining entries as ``{"cawg.ai_training": "notAllowed", ...}``."""
    entries: dict[str, str] = {}
    for label in MINING_LABELS:
        data = assertions.get(label)
        if not isinstance(data, dict):
            continue
        for name, entry in (data.get("entries") or {}).items():
            if isinstance(entry, dict) and entry.get("use"):
                entries[str(name)] = str(entry["use"])
    return entries


def training_refusal(reading: CredentialReading) -> list[str]:
    """The training entries a *valid* credential refuses (``notAllowed`` or ``constrained``).

    Empty for an invalid credential: one that does not validate removes nothing.
    """
    if not reading.valid:
        return []
    return sorted(
        name
        for name, use in reading.training_mining.items()
        if name.split(".", 1)[-1] in TRAINING_ENTRIES and use in REFUSING_USES
    )


def is_generated_media(reading: CredentialReading) -> bool:
    """A valid credential saying the file was made by a trained model."""
    return reading.valid and reading.digital_source_type == GENERATED_SOURCE_TYPE


# A training-and-mining assertion that refuses AI training and generative training.
DO_NOT_TRAIN_ASSERTION: dict[str, Any] = {
    "label": "cawg.training-mining",
    "data": {
        "entries": {
            "cawg.ai_generative_training": {"use": "notAllowed"},
            "cawg.ai_training": {"use": "notAllowed"},
            "cawg.ai_inference": {"use": "allowed"},
            "cawg.data_mining": {"use": "allowed"},
        }
    },
}


def sign_file(
    source: str | Path, dest: str | Path, manifest: dict[str, Any], keys: SigningKeys, *, mime: str
) -> None:
    """Write ``source``'s bytes to ``dest`` (a new file) with ``manifest`` signed by ``keys``
    (ES256). Raises ``c2pa.C2paError`` when the library refuses."""
    c2pa = _c2pa()
    info = c2pa.C2paSignerInfo(b"es256", keys.chain_pem, keys.key_pem, None)
    with (
        c2pa.Signer.from_info(info) as signer,
        c2pa.Builder(manifest) as builder,
        open(source, "rb") as src,
        open(dest, "w+b") as out,
    ):
        builder.sign(signer, mime, src, out)
