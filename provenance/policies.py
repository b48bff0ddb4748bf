"""Licence policies: named, versioned TOML files shipped in ``provenance/policies/``.

A policy file holds::

    name = "commercial"            # must match the file name
    version = "1"                  # bump on any change
    description = "..."
    [consent]
    requirement = "not_opted_out"  # or "opt_in_required"
    purpose = "commercial_training"
    [credits]
    require_named_artist = true    # a credit with role "artist" on every file
    [obligations]
    attribution_ok = true          # licences that oblige attribution are acceptable
    share_alike_ok = true          # licences with share-alike terms are acceptable
    [licences]
    allowed = ["CC-BY-4.0", ...]   # SPDX ids or LicenseRef-*
    [provenance]                   # optional table
    ai_generated_ok = false        # files whose valid Content Credentials say a trained
                                   # model made them; false (the default) keeps them out

Every allowed id is checked against the SPDX list when the policy loads (a typo
is an error, not a silently unusable policy). A policy is identified in the
record by name, version and the sha256 of the file's bytes.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from provenance.consent import covering_purposes
from provenance.licences import conclude_licence, licence_obligations

CONSENT_REQUIREMENTS = ("opt_in_required", "not_opted_out")
OBLIGATIONS = ("attribution", "share_alike")


class PolicyError(ValueError):
    """A policy that cannot be found or does not make sense."""


@dataclass(frozen=True)
class Policy:
    name: str
    version: str
    sha256: str
    description: str
    consent_requirement: str
    consent_purpose: str
    require_named_artist: bool
    attribution_ok: bool
    share_alike_ok: bool
    allowed_licences: tuple[str, ...]
    # Generated media (a valid credential saying trainedAlgorithmicMedia) may be trained on:
    # off unless a policy says so, as training on generated audio launders its provenance.
    ai_generated_ok: bool = False

    def licence_allowed(self, licence_id: str) -> bool:
        """Whether one licence id (no operators) may be used under this policy.

        ``X+`` ("X or later") is allowed when ``X+`` or ``X`` is listed; a listed
        licence whose obligations the policy does not accept is not allowed.
        """
        allowed = set(self.allowed_licences)
        listed = licence_id in allowed or (licence_id.endswith("+") and licence_id[:-1] in allowed)
        if not listed:
            return False
        obligations = licence_obligations(licence_id)
        if "attribution" in obligations and not self.attribution_ok:
            return False
        return not ("share_alike" in obligations and not self.share_alike_ok)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "description": self.description,
            "consent": {"requirement": self.consent_requirement, "purpose": self.consent_purpose},
            "credits": {"require_named_artist": self.require_named_artist},
            "obligations": {
                "attribution_ok": self.attribution_ok,
                "share_alike_ok": self.share_alike_ok,
            },
            "licences": {"allowed": list(self.allowed_licences)},
            "provenance": {"ai_generated_ok": self.ai_generated_ok},
        }


def _policy_dir() -> Any:
    return resources.files("provenance").joinpath("policies")


def policy_names() -> list[str]:
    """Names of the policies shipped with fairchord, sorted."""
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in _policy_dir().iterdir()
        if entry.name.endswith(".toml")
    )


def _get(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in table:
        raise PolicyError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind):
        raise PolicyError(f"{where}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def parse_policy(data: bytes, *, origin: str = "<policy>") -> Policy:
    """Build a :class:`Policy` from TOML bytes; ``origin`` names it in errors."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{origin}: not valid TOML: {exc}") from exc
    consent = _get(doc, "consent", dict, origin)
    credits = _get(doc, "credits", dict, origin)
    obligations = _get(doc, "obligations", dict, origin)
    licences = _get(doc, "licences", dict, origin)
    requirement = _get(consent, "requirement", str, f"{origin} [consent]")
    if requirement not in CONSENT_REQUIREMENTS:
        raise PolicyError(
            f"{origin}: consent requirement {requirement!r} unknown; "
            f"allowed: {', '.join(CONSENT_REQUIREMENTS)}"
        )
    purpose = _get(consent, "purpose", str, f"{origin} [consent]")
    try:
        covering_purposes(purpose)
    except ValueError as exc:
        raise PolicyError(f"{origin}: {exc}") from exc
    provenance = doc.get("provenance", {})
    if not isinstance(provenance, dict):
        raise PolicyError(f"{origin}: 'provenance' must be a table, got {provenance!r}")
    ai_generated_ok = provenance.get("ai_generated_ok", False)
    if not isinstance(ai_generated_ok, bool):
        raise PolicyError(
            f"{origin} [provenance]: 'ai_generated_ok' must be bool, got {ai_generated_ok!r}"
        )
    allowed = _get(licences, "allowed", list, f"{origin} [licences]")
    normalised = []
    for entry in allowed:
        if not isinstance(entry, str):
            raise PolicyError(f"{origin}: allowed licence {entry!r} is not a string")
        conclusion = conclude_licence(entry)
        if conclusion.concluded != entry:
            why = (
                f"concludes {conclusion.concluded!r}; list that id instead"
                if conclusion.concluded != "NOASSERTION"
                else conclusion.reason
            )
            raise PolicyError(f"{origin}: allowed licence {entry!r}: {why}")
        normalised.append(entry)
    return Policy(
        name=_get(doc, "name", str, origin),
        version=str(_get(doc, "version", str, origin)),
        sha256=hashlib.sha256(data).hexdigest(),
        description=str(doc.get("description", "")).strip(),
        consent_requirement=requirement,
        consent_purpose=purpose,
        require_named_artist=_get(credits, "require_named_artist", bool, f"{origin} [credits]"),
        attribution_ok=_get(obligations, "attribution_ok", bool, f"{origin} [obligations]"),
        share_alike_ok=_get(obligations, "share_alike_ok", bool, f"{origin} [obligations]"),
        allowed_licences=tuple(normalised),
        ai_generated_ok=ai_generated_ok,
    )


def load_policy_file(path: str | Path) -> Policy:
    """A policy from any TOML file (for custom policies and tests)."""
    path = Path(path)
    return parse_policy(path.read_bytes(), origin=str(path))


def load_policy(name: str) -> Policy:
    """The shipped policy ``name`` (see :func:`policy_names`)."""
    names = policy_names()
    if name not in names:
        raise PolicyError(f"unknown policy {name!r}; available: {', '.join(names)}")
    data = _policy_dir().joinpath(f"{name}.toml").read_bytes()
    policy = parse_policy(data, origin=f"policy {name}")
    if policy.name != name:
        raise PolicyError(f"policy file {name}.toml declares name {policy.name!r}")
    return policy
