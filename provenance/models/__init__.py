"""All ORM models; importing this package registers every table on ``Base.metadata``."""

from provenance.models.audit import AuditEvent
from provenance.models.base import Base, UTCDateTime, utcnow
from provenance.models.catalog import IngestionRun, QuarantineItem, Recording, Sighting, Source
from provenance.models.credentials import ContentCredential
from provenance.models.features import Embedder, FeatureSet, FeatureSetRecording, FeatureShard
from provenance.models.generation import GateDecision, Generation
from provenance.models.parties import Credit, Party, PartyAlias
from provenance.models.rights import ConsentEvent, LicenceAssertion
from provenance.models.training import Checkpoint, EmbeddingIndex, TrainingRun, TrainingRunMember

# Tables that accept INSERT only; the database enforces it with triggers.
APPEND_ONLY_TABLES = (
    "consent_events",
    "audit_log",
    "training_run_members",
    "gate_decisions",
    "licence_assertions",
    "credits",
    "party_aliases",
    "parties",
    "content_credentials",
)

__all__ = [
    "APPEND_ONLY_TABLES",
    "AuditEvent",
    "Base",
    "Checkpoint",
    "ConsentEvent",
    "ContentCredential",
    "Credit",
    "Embedder",
    "EmbeddingIndex",
    "FeatureSet",
    "FeatureSetRecording",
    "FeatureShard",
    "GateDecision",
    "Generation",
    "IngestionRun",
    "LicenceAssertion",
    "Party",
    "PartyAlias",
    "QuarantineItem",
    "Recording",
    "Sighting",
    "Source",
    "TrainingRun",
    "TrainingRunMember",
    "UTCDateTime",
    "utcnow",
]
