"""`fairchord clap train --config debug`, `clap embed` and `clap eval` end to end on a tiny
featurized corpus: four one-segment recordings by two artists, one not eligible commercially.

The database is SQLite only: CLAP is the subject here, the provenance layer is tested on both
engines elsewhere, and training the CLAP twice would double this test's time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from flows.cli import app
from flows.featurize import featurize_flow
from provenance import migrate
from provenance.audit.integrity import verify_everything
from provenance.db import make_engine, session_factory
from provenance.hashing import sha256_file
from provenance.models import AuditEvent, Embedder
from provenance.object_store import location_path
from tests.common.corpus import seed_tone_corpus
from training.clap_embedder import default_clap_path
from training.clap_eval import DEFAULT_TRANSFORMS
from training.segment_embeddings import EMBEDDING_DIM, embedding_matrix, read_embeddings
from training.shards import open_datasets


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[CliRunner, str, dict[str, int]]:
    url = f"sqlite:///{tmp_path / 'fairchord.sqlite'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    monkeypatch.setenv("FAIRCHORD_DB_URL", url)
    folder = tmp_path / "audio"
    folder.mkdir()
    return CliRunner(), url, seed_tone_corpus(url, folder)


def invoke_json(runner: CliRunner, *args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_clap_without_a_feature_set_or_checkpoint_fails_with_a_reason(
    cli: tuple[CliRunner, str, dict[str, int]],
) -> None:
    runner, _, _ = cli
    unknown = runner.invoke(app, ["clap", "train", "--config", "huge"])
    assert unknown.exit_code == 2 and "allowed: debug, demo" in unknown.output
    no_features = runner.invoke(app, ["clap", "train", "--config", "debug"])
    assert no_features.exit_code == 2 and "run `fairchord featurize` first" in no_features.output
    missing = runner.invoke(app, ["clap", "embed"])
    assert missing.exit_code == 2
    assert str(default_clap_path()) in missing.output and "fairchord clap train" in missing.output


@pytest.mark.slow  # 35-60 s on 2 shared cores: two training steps, two loads, ten embeddings
def test_clap_train_embed_eval_on_a_tiny_featurized_corpus(
    cli: tuple[CliRunner, str, dict[str, int]],
) -> None:
    runner, url, ids = cli
    featurized = featurize_flow(db_url=url)
    assert featurized["recordings"] == 4 and featurized["segments"] == 4
    root = Path(featurized["root"])

    trained = invoke_json(runner, "clap", "train", "--config", "debug")
    checkpoint = default_clap_path()
    assert trained["checkpoint"] == str(checkpoint) and checkpoint.is_file()
    assert trained["sha256"] == sha256_file(checkpoint)
    # Only the commercially eligible recordings: "d" is CC-BY-NC.
    assert trained["recordings"] == 3 and trained["segments"] == 3
    assert trained["steps"] == 2
    assert math.isfinite(trained["first_loss"]) and math.isfinite(trained["last_loss"])
    assert Path(trained["loss_png"]).read_bytes().startswith(b"\x89PNG")
    sha = trained["sha256"]

    embedded = invoke_json(runner, "clap", "embed")
    assert embedded["embedder_sha256"] == sha and embedded["segments"] == 4
    path = Path(embedded["embeddings"])
    assert path == root / f"embeddings-{sha[:12]}.arrow"
    table = read_embeddings(root, sha)
    # One row per segment of the feature set, keyed by (recording, segment index).
    segments = open_datasets(root)
    expected_keys = sorted(zip(segments["recording_id"], segments["segment_index"], strict=True))
    keys = list(
        zip(
            table.column("recording_id").to_pylist(),
            table.column("segment_index").to_pylist(),
            strict=True,
        )
    )
    assert keys == expected_keys and {k[0] for k in keys} == set(ids.values())
    assert set(table.column("embedder_sha256").to_pylist()) == {sha}
    vectors = embedding_matrix(table)
    assert vectors.shape == (4, EMBEDDING_DIM)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    evaluated = invoke_json(runner, "clap", "eval", "--queries", "1")
    assert evaluated["embedder_sha256"] == sha
    assert evaluated["segments"] == 4 and evaluated["queries"] == 1
    assert set(evaluated["recall_at_1"]) == set(DEFAULT_TRANSFORMS)
    assert all(v in (0.0, 1.0) for v in evaluated["recall_at_1"].values())
    # Same artist: a-b and c-d; different: the other four cross pairs.
    assert evaluated["artist_pairs"] == {"same": 2, "different": 4}
    assert 0.0 <= evaluated["artist_roc_auc"] <= 1.0

    # The embedder is recorded once, with an audit event, however often it is used.
    with session_factory(make_engine(url))() as session:
        rows = session.execute(select(Embedder)).scalars().all()
        assert [(r.sha256, location_path(r.uri)) for r in rows] == [(sha, checkpoint)]
        events = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "embedder.trained")
        )
        assert events == 1
        # The segment-embeddings file is recorded with its digest, and `audit verify` re-hashes it.
        assert embedded["embeddings_sha256"] == sha256_file(path)
        report = verify_everything(session)
        assert report.checked["segment_embeddings"] == 1 and report.ok, report.discrepancies
        with path.open("ab") as handle:
            handle.write(b"\0")
        tampered = verify_everything(session)
        assert [d.kind for d in tampered.discrepancies] == ["segment_embeddings"]
