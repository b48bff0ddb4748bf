"""The demo corpus, built for real and ingested by the ingest flow, reproduces the expected
commercial decision for every one of its 30 files, the one signed "do not train" included."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from flows.demo_corpus import (
    DEMO_ROWS,
    build_demo_corpus,
    load_demo_facts,
    missing_requirements,
    read_demo_manifest,
)
from flows.ingest import run_ingest
from flows.render_scores import DEFAULT_SOUNDFONT
from provenance.db import session_factory
from provenance.eligibility import eligibility_table
from provenance.models import (
    ConsentEvent,
    ContentCredential,
    Credit,
    LicenceAssertion,
    Party,
    Recording,
)
from provenance.policies import load_policy

MISSING = missing_requirements(load_demo_facts(), soundfont=DEFAULT_SOUNDFONT)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(MISSING),
        reason="demo corpus needs Debian packages: "
        + ", ".join(p for p, _ in MISSING)
        + " — run scripts/setup.sh as root",
    ),
]


@pytest.fixture(scope="module")
def demo_manifest(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Kept in pytest's cache between runs when there is one: a rebuild verifies every copy
    # and render by sha256 and redoes only what changed.
    cache = request.config.cache
    root = (
        cache.mkdir("fairchord-demo-corpus")
        if cache is not None
        else tmp_path_factory.mktemp("fairchord-demo-corpus")
    )
    return build_demo_corpus(root)


def test_demo_ingest_reproduces_expected_commercial_decisions(
    engine: Engine, db_url: str, demo_manifest: Path
) -> None:
    summary = run_ingest(str(demo_manifest), db_url=db_url)
    counts = summary["counts"]
    assert counts["items"] == DEMO_ROWS
    assert counts["accepted"] == DEMO_ROWS, summary["outcomes"]
    assert counts["quarantined"] == 0 and counts["flags"] == {}

    rows = read_demo_manifest(demo_manifest)
    policy = load_policy("commercial")
    with session_factory(engine)() as session:
        ids = dict(session.execute(select(Recording.sha256, Recording.id)).tuples().all())
        assert set(ids) == {r["sha256"] for r in rows}
        table = {e.recording_id: e for e in eligibility_table(session, policy)}
        decisions = {}
        for row in rows:
            verdict = table[ids[row["sha256"]]]
            decisions[row["path"]] = (verdict.eligible, tuple(verdict.reasons))
        expected = {
            r["path"]: r["expected_commercial_decision"].startswith("include") for r in rows
        }
        wrong = {p: d for p, d in decisions.items() if d[0] != expected[p]}
        assert wrong == {}
        assert sum(expected.values()) == 19

        # The reasons are the ones the facts give.
        def reasons(suffix: str) -> tuple[str, ...]:
            return next(d[1] for p, d in decisions.items() if p.endswith(suffix))

        assert "no_named_artist" in reasons("introzik.ogg")
        assert any("LicenseRef-Drascula" in r for r in reasons("track2.ogg"))
        assert any("LicenseRef-Essen-NonCommercial" in r for r in reasons("altdeu10-3.wav"))
        assert any("LicenseRef-Humdrum-Palestrina" in r for r in reasons("Agnus_01.wav"))
        assert "noassertion" in reasons("berlinAlexandersRagtime.wav")
        assert "noassertion" in reasons("dialog-warning.oga")
        # The signed excerpt: its credential's refusal is the only reason, shown as such.
        assert reasons("through-space-excerpt.flac") == ("opted_out:recording:c2pa",)
        signed = ids[next(r["sha256"] for r in rows if r["credential"] == "do_not_train")]
        (credential,) = session.execute(select(ContentCredential)).scalars()
        assert (credential.recording_id, credential.status) == (signed, "valid")
        (event,) = session.execute(select(ConsentEvent)).scalars()
        assert (event.recording_id, event.origin, event.action) == (signed, "c2pa", "opt_out")

        # Facts came from the manifest, credits name people only.
        names = set(session.execute(select(Party.name)).scalars())
        assert {"Mattias Westlund", "Max McCracken", "Irving Berlin"} <= names
        assert not any(n.lower().startswith("traditional") for n in names)
        sources = set(session.execute(select(Credit.fact_source)).scalars())
        assert sources == {"manifest"}
        declared = session.execute(
            select(LicenceAssertion.declared).where(
                LicenceAssertion.recording_id == ids[rows[0]["sha256"]]
            )
        ).scalar_one()
        assert declared == rows[0]["licence"] == "GPL-2.0-or-later"
