"""Signing keys for Content Credentials: a development chain, or a real certificate.

``fairchord keys init`` (:func:`init_keys`) writes, under ``$FAIRCHORD_HOME/keys``:

- ``signer.key`` — a new ES256 (P-256) private key, PKCS#8 PEM, mode 0600;
- ``signer.pem`` — its certificate followed by the issuing CA's (the chain C2PA
  signs with; the leaf carries digitalSignature and emailProtection, as C2PA asks);
- ``ca.pem`` — the development CA, self-signed, which ``verify-output`` trusts
  locally. Public validators do not: a credential signed with this chain verifies
  cryptographically but shows as from an unknown signer.

``FAIRCHORD_SIGNING_CERT`` and ``FAIRCHORD_SIGNING_KEY`` name a real certificate
chain and key instead (and ``FAIRCHORD_TRUST_ANCHORS`` the PEM file of CAs that
``verify-output`` trusts). :func:`find_signing_keys` says which is in force.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from provenance.settings import fairchord_home

CERT_ENV = "FAIRCHORD_SIGNING_CERT"
KEY_ENV = "FAIRCHORD_SIGNING_KEY"
TRUST_ENV = "FAIRCHORD_TRUST_ANCHORS"
KEY_NAME, CHAIN_NAME, CA_NAME = "signer.key", "signer.pem", "ca.pem"


class SigningKeyError(ValueError):
    """Keys that cannot be used: missing, unreadable, or not a matching ES256 pair."""


@dataclass(frozen=True)
class SigningKeys:
    """A certificate chain and its private key, as PEM bytes, and where they came from."""

    chain_pem: bytes
    key_pem: bytes
    origin: str  # "env" | "home"
    chain_path: Path
    key_path: Path

    @property
    def leaf(self) -> CertificateFacts:
        return certificate_facts(self.chain_pem)


@dataclass(frozen=True)
class CertificateFacts:
    """The leaf certificate's subject, issuer, serial and sha256 fingerprint (of its DER)."""

    subject: str
    issuer: str
    serial: str
    sha256: str
    not_after: dt.datetime
    self_issued_chain: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "sha256": self.sha256,
            "not_after": self.not_after.isoformat(),
            "self_issued_chain": self.self_issued_chain,
        }


def keys_dir() -> Path:
    return fairchord_home() / "keys"


def certificate_facts(chain_pem: bytes) -> CertificateFacts:
    """Facts about the first certificate of a PEM chain."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise SigningKeyError(f"not a PEM certificate chain: {exc}") from exc
    leaf = certs[0]
    root = certs[-1]
    return CertificateFacts(
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        serial=format(leaf.serial_number, "x"),
        sha256=hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
        not_after=leaf.not_valid_after_utc,
        self_issued_chain=root.subject == root.issuer and _is_development(root),
    )


def _is_development(cert: object) -> bool:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    assert isinstance(cert, x509.Certificate)
    names = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return any("fairchord development" in str(n.value) for n in names)


def _name(common_name: str) -> object:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fairchord development (untrusted)"),
        ]
    )


def _key_usage(*, signer: bool) -> object:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=signer,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not signer,
        crl_sign=not signer,
        encipher_only=False,
        decipher_only=False,
    )


def init_keys(
    directory: Path | None = None,
    *,
    force: bool = False,
    signer_name: str = "fairchord generation signer",
) -> SigningKeys:
    """Create a development CA and an ES256 signer certificate it issued; see the module.

    ``signer_name`` is the signer certificate's common name (what validators show)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    directory = directory or keys_dir()
    key_path, chain_path, ca_path = (directory / n for n in (KEY_NAME, CHAIN_NAME, CA_NAME))
    if key_path.exists() and not force:
        raise SigningKeyError(f"{key_path} already exists; pass --force to replace it")
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("fairchord development CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)  # type: ignore[arg-type]
        .issuer_name(ca_name)  # type: ignore[arg-type]
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signer=False), critical=True)  # type: ignore[arg-type]
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(signer_name))  # type: ignore[arg-type]
        .issuer_name(ca_name)  # type: ignore[arg-type]
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signer=True), critical=True)  # type: ignore[arg-type]
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain_pem = leaf.public_bytes(pem) + ca.public_bytes(pem)
    _write(key_path, key_pem, mode=0o600)
    _write(chain_path, chain_pem, mode=0o644)
    _write(ca_path, ca.public_bytes(pem), mode=0o644)
    return SigningKeys(chain_pem, key_pem, "home", chain_path, key_path)


def _write(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def find_signing_keys() -> SigningKeys | None:
    """The keys in force: ``$FAIRCHORD_SIGNING_CERT``/``_KEY``, else the home's, else None.

    Raises :class:`SigningKeyError` when only one of the two variables is set or a named
    file cannot be read: a half-configured signer is a mistake to report, not to skip.
    """
    cert, key = os.environ.get(CERT_ENV), os.environ.get(KEY_ENV)
    if cert or key:
        if not (cert and key):
            raise SigningKeyError(f"set both {CERT_ENV} and {KEY_ENV}, or neither")
        return _load(Path(cert), Path(key), "env")
    home = keys_dir()
    if (home / KEY_NAME).exists() and (home / CHAIN_NAME).exists():
        return _load(home / CHAIN_NAME, home / KEY_NAME, "home")
    return None


def load_keys(directory: Path) -> SigningKeys:
    """The development keys :func:`init_keys` wrote in ``directory``."""
    return _load(directory / CHAIN_NAME, directory / KEY_NAME, "home")


def _load(chain_path: Path, key_path: Path, origin: str) -> SigningKeys:
    try:
        chain_pem, key_pem = chain_path.read_bytes(), key_path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read signing keys: {exc}") from exc
    certificate_facts(chain_pem)  # a clear error for a file that is no certificate
    return SigningKeys(chain_pem, key_pem, origin, chain_path, key_path)


def trust_anchors_pem() -> str | None:
    """PEM certificates ``verify-output`` trusts: ``$FAIRCHORD_TRUST_ANCHORS``, else the
    home's development CA when there is one."""
    named = os.environ.get(TRUST_ENV)
    path = Path(named) if named else keys_dir() / CA_NAME
    try:
        return path.read_text(encoding="ascii")
    except OSError:
        if named:
            raise SigningKeyError(f"{TRUST_ENV}={named}: cannot read it") from None
        return None
