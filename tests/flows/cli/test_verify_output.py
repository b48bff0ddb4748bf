"""`fairchord verify-output` and `fairchord keys`: every outcome, on a file `generate` signed.

Exit codes: 0 valid and matching, 10 no credential, 11 invalid (one audio sample changed
after signing), 12 valid but unknown to this database (a fresh one), 13 valid but the
checkpoint is tainted since (an artist opted out), 14 valid but contradicted by the record.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from flows.cli import app
from provenance import migrate
from provenance.content_credentials import read_credential
from provenance.db import make_engine
from provenance.output_checks import check_output
from provenance.settings import DB_URL_ENV
from provenance.signing_keys import init_keys
from tests.common.databases import throwaway_database
from tests.common.generation import FAST, PROMPT, GenerateCli, Trained, build_world, train_tiny
from tests.common.ledger import party_opt_out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield train_tiny(tmp_path_factory.mktemp("train"))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def signed(
    session: Session,
    db_url: str,
    tmp_path: Path,
    trained: Trained,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """One clip `fairchord generate` wrote and signed with development keys."""
    monkeypatch.setenv(DB_URL_ENV, db_url)
    init_keys()
    world = build_world(session, tmp_path, trained)
    result = GenerateCli(session, monkeypatch)(
        world, PROMPT, *FAST, "--n", "1", "--out", str(world.out)
    )
    assert result.exit_code == 0, result.output
    return Path(json.loads(result.stdout)["clips"][0]["audio"])


def verify(*args: str) -> tuple[int, list[dict[str, object]]]:
    result = CliRunner().invoke(app, ["verify-output", *args, "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout)


def change_one_sample(path: Path, index: int = 1000) -> None:
    """Add 1 to one 16-bit sample of a WAV file in place (every other byte unchanged)."""
    data = bytearray(path.read_bytes())
    offset = 12  # past "RIFF", size, "WAVE"
    while offset + 8 <= len(data):
        chunk, size = (
            data[offset : offset + 4],
            struct.unpack("<I", data[offset + 4 : offset + 8])[0],
        )
        if chunk == b"data":
            at = offset + 8 + 2 * index
            (value,) = struct.unpack("<h", data[at : at + 2])
            data[at : at + 2] = struct.pack("<h", value + 1 if value < 32767 else value - 1)
            path.write_bytes(bytes(data))
            return
        offset += 8 + size + (size & 1)
    raise AssertionError(f"{path} has no data chunk")


def test_valid_and_matching_exits_0(signed: Path) -> None:
    code, (doc,) = verify(str(signed))
    assert code == 0, doc
    assert doc["result"] == "valid"
    assert doc["record"]["outcome"] == "matches"  # type: ignore[index]
    assert doc["credential"]["trusted"] is True  # type: ignore[index]  # the home's dev CA
    text = CliRunner().invoke(app, ["verify-output", str(signed)])
    assert text.exit_code == 0 and "valid" in text.stdout and "matches generation" in text.stdout
    latest = CliRunner().invoke(app, ["verify-output", "--latest", "--json"])
    assert latest.exit_code == 0, latest.output
    assert [Path(d["file"]).resolve() for d in json.loads(latest.stdout)] == [signed.resolve()]


def test_no_credential_exits_10(tmp_path: Path) -> None:
    plain = tmp_path / "plain.wav"
    sf.write(plain, np.zeros(1600, dtype=np.float32), 16_000, subtype="PCM_16")
    code, (doc,) = verify(str(plain))
    assert (code, doc["result"], doc["credential"]) == (10, "no_credential", None)


def test_one_changed_sample_exits_11(signed: Path) -> None:
    before, _ = sf.read(signed, dtype="int16")
    change_one_sample(signed)
    after, _ = sf.read(signed, dtype="int16")
    assert int(np.count_nonzero(before != after)) == 1
    code, (doc,) = verify(str(signed))
    assert code == 11 and doc["result"] == "invalid"
    assert any("mismatch" in f for f in doc["credential"]["failures"])  # type: ignore[index]


def test_valid_but_unknown_to_a_fresh_database_exits_12(
    signed: Path, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    (tmp_path / "fresh").mkdir()
    with throwaway_database(kind, tmp_path / "fresh") as fresh:
        engine = make_engine(fresh)
        migrate.upgrade(engine)
        engine.dispose()
        monkeypatch.setenv(DB_URL_ENV, fresh)
        code, (doc,) = verify(str(signed))
    assert code == 12 and doc["result"] == "unknown"
    assert "no checkpoint with sha256" in " ".join(doc["record"]["unknown"])  # type: ignore[index]


def test_valid_but_tainted_since_exits_13(signed: Path, session: Session) -> None:
    party_opt_out(session, "Will Savino", at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    session.commit()
    code, (doc,) = verify(str(signed))
    assert code == 13 and doc["result"] == "tainted"
    members = doc["record"]["tainted_members"]  # type: ignore[index]
    assert members and all("opted_out_since_snapshot" in " ".join(m["reasons"]) for m in members)
    text = CliRunner().invoke(app, ["verify-output", str(signed)])
    assert text.exit_code == 13 and "tainted since" in " ".join(text.stdout.split())


def test_a_claim_the_record_contradicts(signed: Path, session: Session) -> None:
    """The check itself (exit 14): a credential whose gate verdict the record does not hold."""
    reading = read_credential(signed)
    assert reading is not None and reading.generation is not None
    claims = {**reading.generation, "gate": {**reading.generation["gate"], "verdict": "block"}}
    check = check_output(session, dataclasses.replace(reading, generation=claims))
    assert check.outcome == "contradicts"
    assert any("recorded as 'allow'" in p for p in check.problems)
    assert check_output(session, reading).outcome == "matches"


def test_several_files_exit_with_the_worst(signed: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.wav"
    sf.write(plain, np.zeros(1600, dtype=np.float32), 16_000, subtype="PCM_16")
    code, docs = verify(str(signed), str(plain))
    assert code == 10 and [d["exit_code"] for d in docs] == [0, 10]
    missing = CliRunner().invoke(app, ["verify-output", str(tmp_path / "nope.wav")])
    assert missing.exit_code == 2


def test_keys_init_says_where_and_that_it_is_untrusted(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["keys", "init"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert str(tmp_path / "home" / "keys" / "signer.key") in text
    assert "untrusted" in text and "FAIRCHORD_SIGNING_CERT" in text
    again = CliRunner().invoke(app, ["keys", "init"])
    assert again.exit_code == 2 and "--force" in again.stderr
    shown = CliRunner().invoke(app, ["keys", "show", "--json"])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["origin"] == "home"
