"""Headers are judged before decoding: implausible sample rates and channel counts, and
lengths over the limit, are refused with a reason code and bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

import provenance.ingest_prepare as ingest
from provenance.ingest_checks import HeaderFacts, header_violation, read_header
from provenance.ingest_prepare import IngestLimits, prepare_item
from provenance.ingest_record import ingest_item
from provenance.ingest_runs import get_or_create_source
from provenance.models import Recording
from provenance.object_store import ObjectStore
from provenance.sources import SourceItem, open_source
from tests.common.audio import write_music
from tests.common.hostile_audio import wav_bytes

LIMITS = IngestLimits(max_duration_s=6.0, min_duration_s=1.0, max_bytes=1_500_000)


def _item(path: Path) -> SourceItem:
    return SourceItem(locator=path.name, uri=str(path))


def test_an_8kb_wav_at_1hz_is_refused_from_its_header_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "1hz.wav"
    path.write_bytes(wav_bytes(rate=1, frames=4000))  # 8 KB: "4000 s of audio"
    assert path.stat().st_size < 8200
    store = ObjectStore(str(tmp_path / "objects"))
    # Even with a limit that would let 4000 s through, the rate alone refuses it.
    generous = IngestLimits(max_duration_s=5000.0)
    tracemalloc.start()
    try:
        prepared = prepare_item(store, _item(path), generous)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert prepared.reason_code == "implausible_sample_rate"
    assert "1 Hz" in (prepared.reason_detail or "")
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB to refuse an 8 KB file"
    assert list(store.iter_shas()) == []


@pytest.mark.parametrize(
    ("name", "header", "reason"),
    [
        ("1hz.wav", {"rate": 1, "frames": 4000}, "implausible_sample_rate"),
        ("3999hz.wav", {"rate": 3999, "frames": 8000}, "implausible_sample_rate"),
        ("1mhz.wav", {"rate": 1_000_000, "frames": 4000}, "implausible_sample_rate"),
        ("ch200.wav", {"channels": 200, "frames": 200}, "too_many_channels"),
        ("long.wav", {"rate": 8000, "frames": 8000 * 30}, "too_long"),
    ],
)
def test_header_refusals_never_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, header: dict[str, int], reason: str
) -> None:
    def no_decoding(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("decoded a file its header should have refused")

    monkeypatch.setattr(ingest, "probe_audio", no_decoding)
    path = tmp_path / name
    path.write_bytes(wav_bytes(**header))
    prepared = prepare_item(ObjectStore(str(tmp_path / "objects")), _item(path), LIMITS)
    assert prepared.reason_code == reason


def test_a_too_long_file_costs_no_decoding_memory(tmp_path: Path) -> None:
    """Memory stays bounded by the maximum duration, not by what the file holds."""
    path = tmp_path / "hour.wav"
    path.write_bytes(wav_bytes(rate=8000, frames=8000 * 90))  # 90 s, 1.4 MB
    tracemalloc.start()
    try:
        prepared = prepare_item(ObjectStore(str(tmp_path / "objects")), _item(path), LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert prepared.reason_code == "too_long" and prepared.facts is not None
    assert prepared.facts["duration_s"] == pytest.approx(90.0)
    assert peak < 4 * 2**20, f"{peak / 2**20:.1f} MiB"


def test_a_header_promising_more_than_the_file_holds_decodes_only_what_is_there(
    tmp_path: Path,
) -> None:
    path = tmp_path / "liar.wav"
    path.write_bytes(wav_bytes(frames=22050, declared_data_bytes=0x7FFFFFF0))
    header = read_header(path)
    assert header is not None and header.frames == 22050  # libsndfile clamps to the file
    prepared = prepare_item(ObjectStore(str(tmp_path / "objects")), _item(path), LIMITS)
    assert prepared.reason_code == "truncated_or_corrupt"


def test_header_violation_rules() -> None:
    limits = {
        "min_sample_rate_hz": 4000,
        "max_sample_rate_hz": 384000,
        "max_channels": 32,
        "max_duration_s": 10.0,
    }

    def judge(rate: int, channels: int = 2, frames: int = 1000) -> str | None:
        found = header_violation(HeaderFacts("WAV", "PCM_16", rate, channels, frames), **limits)
        return None if found is None else found[0]

    assert judge(4000) is None and judge(384000) is None and judge(44100) is None
    assert judge(3999) == judge(384001) == "implausible_sample_rate"
    assert judge(0) is None  # left to the decoder: impossible_header
    assert judge(44100, channels=33) == "too_many_channels"
    assert judge(44100, frames=44100 * 11) == "too_long"
    with pytest.raises(ValueError, match="min_sample_rate_hz"):
        IngestLimits(min_sample_rate_hz=50000, max_sample_rate_hz=40000)
    with pytest.raises(ValueError, match="max_channels"):
        IngestLimits(max_channels=0)


def test_implausible_rate_is_recorded_and_a_header_too_long_file_readmits_with_its_facts(
    session: Session, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "1hz.wav").write_bytes(wav_bytes(rate=1, frames=4000))
    write_music(src / "long.flac", 41, seconds=7.0)
    adapter = open_source(str(src))
    source = get_or_create_source(session, adapter)
    store = ObjectStore(str(tmp_path / "objects"))
    items = {item.locator: item for item in adapter.items()}

    rate = ingest_item(session, store, source, None, items["1hz.wav"], LIMITS)
    assert (rate.status, rate.reason_code) == ("quarantined", "implausible_sample_rate")
    row = session.get(Recording, rate.recording_id)
    assert row is not None and row.object_uri is None and row.duration_s is None

    long = ingest_item(session, store, source, None, items["long.flac"], LIMITS)
    assert (long.status, long.reason_code) == ("quarantined", "too_long")
    rec = session.get(Recording, long.recording_id)
    assert rec is not None and rec.pcm_fingerprint is None  # refused on its header
    assert rec.duration_s == pytest.approx(7.0, abs=0.01)
    again = ingest_item(session, store, source, None, items["long.flac"], IngestLimits())
    assert again.status == "accepted"
    session.flush()
    rec = session.scalars(select(Recording).where(Recording.id == long.recording_id)).one()
    assert rec.pcm_fingerprint and rec.peak and rec.rms_dbfs is not None
