"""`fairchord generate` holds no transaction while it samples: on SQLite, where every
transaction holds the write lock, other commands can write meanwhile. The ledger may change
under the sampling, so the prompt screen and the taint check run again before anything is
recorded or written."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

import generation.pipeline
from provenance.consent import ConsentSubject, record_consent
from provenance.db import make_engine, session_factory
from provenance.parties import find_party, get_or_create_party
from tests.common.generation import FAST, PROMPT, GenerateCli, Trained, build_world, rows, written
from tests.common.ledger import party_opt_out

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def paused(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Sampling waits at its first clip until the test lets it go."""
    inside, go = threading.Event(), threading.Event()
    real = generation.pipeline.sample_clip

    def wait_then_sample(*args: Any, **kwargs: Any) -> Any:
        inside.set()
        assert go.wait(120), "the test never let the sampling go"
        return real(*args, **kwargs)

    monkeypatch.setattr("generation.pipeline.sample_clip", wait_then_sample)
    yield inside, go
    go.set()


def _generate_in_background(
    cli: GenerateCli, world: Any, inside: threading.Event
) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = cli(world, PROMPT, *FAST, "--n", "1", "--out", str(world.out))
        finally:
            inside.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert inside.wait(300), "generate never reached its sampling"
    assert "result" not in box, box["result"].output
    return thread, box


def _write_meanwhile(db_url: str, write: Callable[[Session], None]) -> None:
    """Commit ``write`` from another connection; it must not wait for generate's lock."""
    done: dict[str, Any] = {}

    def run() -> None:
        engine = make_engine(db_url)
        try:
            with session_factory(engine).begin() as other:
                write(other)
            done["ok"] = True
        except BaseException as exc:
            done["error"] = exc
        finally:
            engine.dispose()

    writer = threading.Thread(target=run, daemon=True)
    writer.start()
    # Against a held write lock this would wait out SQLite's 60 s busy timeout and fail.
    writer.join(timeout=30)
    assert not writer.is_alive(), "the write waited for generate's write lock"
    assert done.get("ok"), done.get("error")


def _finish(thread: threading.Thread, box: dict[str, Any], go: threading.Event) -> Any:
    go.set()
    thread.join(timeout=300)
    assert not thread.is_alive()
    return box["result"]


def test_a_consent_change_goes_through_while_generate_samples(
    session: Session,
    db_url: str,
    tmp_path: Path,
    trained: Trained,
    cli: GenerateCli,
    paused: tuple[threading.Event, threading.Event],
) -> None:
    world = build_world(session, tmp_path, trained)
    inside, go = paused
    thread, box = _generate_in_background(cli, world, inside)

    def opt_in(other: Session) -> None:
        party = find_party(other, "Will Savino")
        assert party is not None
        record_consent(
            other,
            subject=ConsentSubject("party", party.id),
            action="opt_in",
            purpose="training",
            effective_at=dt.datetime.now(dt.UTC),
            origin="cli",
        )

    _write_meanwhile(db_url, opt_in)
    result = _finish(thread, box, go)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "allowed"
    assert len(written(world.out)) == 3  # audio, PNG, sidecar
    gens, _ = rows(session)
    assert [g.status for g in gens] == ["allowed"]


def test_an_opt_out_while_sampling_refuses_the_checkpoint_before_anything_is_written(
    session: Session,
    db_url: str,
    tmp_path: Path,
    trained: Trained,
    cli: GenerateCli,
    paused: tuple[threading.Event, threading.Event],
) -> None:
    world = build_world(session, tmp_path, trained)
    inside, go = paused
    thread, box = _generate_in_background(cli, world, inside)
    _write_meanwhile(
        db_url,
        lambda other: party_opt_out(
            other, "Will Savino", at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        ),
    )
    result = _finish(thread, box, go)
    assert result.exit_code == 8, result.output
    assert "tainted" in " ".join(result.stderr.split())
    assert written(world.out) == []
    gens, decisions = rows(session)
    assert [g.status for g in gens] == ["refused_tainted"]
    assert not [d for d in decisions if d.stage == "similarity_gate"]


def test_a_party_added_while_sampling_refuses_the_prompt_before_anything_is_written(
    session: Session,
    db_url: str,
    tmp_path: Path,
    trained: Trained,
    cli: GenerateCli,
    paused: tuple[threading.Event, threading.Event],
) -> None:
    world = build_world(session, tmp_path, trained)
    inside, go = paused
    thread, box = _generate_in_background(cli, world, inside)
    # The prompt says "soft dynamics": a party of that full name now appears in it.
    _write_meanwhile(db_url, lambda other: get_or_create_party(other, "Soft Dynamics"))
    result = _finish(thread, box, go)
    assert result.exit_code == 7, result.output
    assert written(world.out) == []
    gens, decisions = rows(session)
    assert [g.status for g in gens] == ["blocked_prompt"]
    assert gens[0].params.get("screened_again") == "after sampling"
    assert [(d.stage, d.verdict) for d in decisions] == [("prompt_screen", "block")]
