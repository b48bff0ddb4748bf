"""Content Credentials read at ingest: a valid "do not train" credential becomes an opt-out
(origin ``c2pa``) that keeps the file out of eligibility and the next snapshot; a credential
saying a trained model made the file excludes it unless a policy allows generated media; a
credential that does not validate is recorded and changes nothing."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from provenance.audit_log import verify_chain
from provenance.db import session_factory
from provenance.eligibility import eligibility, eligible_recordings
from provenance.ingest_prepare import prepare_item
from provenance.ingest_runs import ingest_source
from provenance.models import ConsentEvent, ContentCredential, Recording, Sighting, utcnow
from provenance.object_store import ObjectStore
from provenance.policies import Policy, PolicyError, load_policy, parse_policy, policy_names
from provenance.signing_keys import SigningKeys, init_keys
from provenance.snapshot import freeze_snapshot, run_members
from provenance.sources import open_source
from provenance.sources.base import SourceItem
from tests.common.audio import write_music
from tests.common.credentials import DO_NOT_TRAIN, created, flip_wav_sample_byte, sign_audio
from tests.common.ingest import TEST_LIMITS

FILES = ("plain.wav", "refused.flac", "tampered.wav", "generated.wav")


@dataclass
class SignedCorpus:
    root: Path
    keys: SigningKeys

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.csv"


def build_signed_corpus(base: Path) -> SignedCorpus:
    """Four licensed files by named artists: no credential, a valid "do not train", the same
    kind of credential on a WAV whose audio changed after signing, and generated media."""
    keys = init_keys(base / "rights-holder")
    raw, root = base / "raw", base / "corpus"
    raw.mkdir()
    root.mkdir()
    write_music(root / "plain.wav", 31, seconds=3.0)
    sign_audio(
        write_music(raw / "refused.flac", 32, seconds=3.0),
        root / "refused.flac",
        keys,
        DO_NOT_TRAIN,
    )
    tampered = sign_audio(
        write_music(raw / "t.wav", 33, seconds=3.0), root / "tampered.wav", keys, DO_NOT_TRAIN
    )
    flip_wav_sample_byte(tampered)
    sign_audio(
        write_music(raw / "g.wav", 34, seconds=3.0),
        root / "generated.wav",
        keys,
        created("trainedAlgorithmicMedia"),
    )
    rows = [f"{name},{name},Artist {n},CC-BY-4.0,," for n, name in enumerate(FILES)]
    text = "path,title,artists,licence,consent,source_url\n" + "\n".join(rows) + "\n"
    (root / "manifest.csv").write_text(text, encoding="utf-8")
    return SignedCorpus(root, keys)


def recording_ids(session: Session) -> dict[str, int]:
    """Recording id by the locator it was first seen at."""
    return {
        locator: rid
        for rid, locator in session.execute(
            select(Sighting.recording_id, Sighting.locator).order_by(Sighting.id)
        ).tuples()
    }


def allowing_generated(policy_name: str) -> Policy:
    shipped = Path(__file__).resolve().parents[2] / "provenance" / "policies"
    data = (shipped / f"{policy_name}.toml").read_bytes()
    return parse_policy(data + b"\n[provenance]\nai_generated_ok = true\n")


def test_do_not_train_credential_keeps_the_file_out_of_the_snapshot(
    engine: Engine, tmp_path: Path
) -> None:
    corpus = build_signed_corpus(tmp_path)
    sessions = session_factory(engine)
    store = ObjectStore(str(tmp_path / "objects"))
    result = ingest_source(sessions, open_source(str(corpus.manifest)), store, limits=TEST_LIMITS)
    assert result.counts["accepted"] == 4, result.outcomes

    with sessions() as s:
        ids = recording_ids(s)
        rows = {
            row.recording_id: row
            for row in s.scalars(select(ContentCredential).order_by(ContentCredential.id))
        }
        assert set(rows) == {ids["refused.flac"], ids["tampered.wav"], ids["generated.wav"]}
        refused, tampered = rows[ids["refused.flac"]], rows[ids["tampered.wav"]]
        assert refused.status == "valid" and not refused.trusted
        assert refused.manifest_label and refused.manifest_label.startswith("urn:c2pa:")
        assert refused.claims["training_mining"]["cawg.ai_training"] == "notAllowed"
        assert refused.signer and "fairchord generation signer" in refused.signer
        assert refused.file_sha256 == s.get(Recording, ids["refused.flac"]).sha256  # type: ignore[union-attr]
        assert tampered.status == "invalid"
        assert "assertion.dataHash.mismatch" in tampered.validation["failures"]
        assert rows[ids["generated.wav"]].digital_source_type == "trainedAlgorithmicMedia"

        (event,) = s.scalars(select(ConsentEvent))
        assert (event.recording_id, event.action, event.purpose, event.origin) == (
            ids["refused.flac"],
            "opt_out",
            "training",
            "c2pa",
        )
        assert event.evidence is not None and refused.manifest_label in event.evidence
        assert f"signed by {refused.signer}" in event.evidence
        assert "cawg.ai_training=notAllowed" in event.evidence

        # Both shipped policies: the refusal and generated media are out, the rest in.
        for name in policy_names():
            policy = load_policy(name)
            verdicts = {loc: eligibility(s, rid, policy) for loc, rid in ids.items()}
            assert verdicts["refused.flac"].reasons == ["opted_out:recording:c2pa"], name
            assert verdicts["refused.flac"].consent_state == "opted_out"
            assert verdicts["generated.wav"].reasons == ["ai_generated"], name
            assert verdicts["tampered.wav"].eligible and verdicts["plain.wav"].eligible, name
            eligible = {v.recording_id for v in eligible_recordings(s, policy)}
            assert eligible == {ids["plain.wav"], ids["tampered.wav"]}, name
            # A policy that explicitly allows generated media takes it; the opt-out stands.
            lenient = allowing_generated(name)
            assert lenient.ai_generated_ok and not policy.ai_generated_ok
            eligible = {v.recording_id for v in eligible_recordings(s, lenient)}
            assert eligible == {ids["plain.wav"], ids["tampered.wav"], ids["generated.wav"]}

        run = freeze_snapshot(
            s,
            policy=load_policy("commercial"),
            config_name="debug",
            config={},
            feature_set_id=None,
            at=utcnow() + dt.timedelta(seconds=1),
        )
        members = {m.recording_id for m in run_members(s, run.id)}
        assert members == {ids["plain.wav"], ids["tampered.wav"]}
        s.commit()
        count, problems = verify_chain(s)
        assert problems == [] and count > 0
        totals = (
            s.scalar(select(func.count()).select_from(ConsentEvent)),
            s.scalar(select(func.count()).select_from(ContentCredential)),
        )

    # The same bytes again, from the same place and from a new one: nothing is added twice.
    ingest_source(sessions, open_source(str(corpus.manifest)), store, limits=TEST_LIMITS)
    elsewhere = tmp_path / "mirror"
    elsewhere.mkdir()
    shutil.copy(corpus.root / "refused.flac", elsewhere / "refused-copy.flac")
    (elsewhere / "manifest.csv").write_text(
        "path,title,artists,licence,consent,source_url\n"
        "refused-copy.flac,Copy,Artist 1,CC-BY-4.0,,\n",
        encoding="utf-8",
    )
    again = ingest_source(
        sessions, open_source(str(elsewhere / "manifest.csv")), store, limits=TEST_LIMITS
    )
    assert [o.status for o in again.outcomes] == ["duplicate"]
    with sessions() as s:
        assert (
            s.scalar(select(func.count()).select_from(ConsentEvent)),
            s.scalar(select(func.count()).select_from(ContentCredential)),
        ) == totals
        count, problems = verify_chain(s)
        assert problems == []


def test_a_credential_problem_never_refuses_the_audio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import provenance.content_credentials as content_credentials

    keys = init_keys(tmp_path / "keys")
    path = sign_audio(
        write_music(tmp_path / "raw.wav", 41, seconds=2.0), tmp_path / "s.wav", keys, DO_NOT_TRAIN
    )
    store = ObjectStore(str(tmp_path / "objects"))
    item = SourceItem(locator="s.wav", uri=str(path))
    read = prepare_item(store, item, TEST_LIMITS)
    assert read.accepted and read.credential is not None
    assert read.credential["status"] == "valid"

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the C2PA library fell over")

    monkeypatch.setattr(content_credentials, "read_credential", broken)
    unread = prepare_item(store, item, TEST_LIMITS)
    assert unread.accepted and unread.credential is None and unread.sha256 == read.sha256

    # A container C2PA does not cover is not asked at all.
    ogg = prepare_item(
        store,
        SourceItem(locator="x.ogg", uri=str(write_music(tmp_path / "x.ogg", 42, seconds=2.0))),
        TEST_LIMITS,
    )
    assert ogg.accepted and ogg.credential is None


def test_policy_provenance_table() -> None:
    for name in policy_names():
        assert load_policy(name).ai_generated_ok is False
        assert load_policy(name).to_dict()["provenance"] == {"ai_generated_ok": False}
    shipped = Path(__file__).resolve().parents[2] / "provenance" / "policies" / "research.toml"
    with pytest.raises(PolicyError, match="ai_generated_ok"):
        parse_policy(shipped.read_bytes() + b'\n[provenance]\nai_generated_ok = "yes"\n')
    with pytest.raises(PolicyError, match="provenance"):
        parse_policy(b"provenance = 1\n" + shipped.read_bytes())
