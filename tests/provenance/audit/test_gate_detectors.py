"""The audit shows what the similarity gate itself learned from: its detector and cohort."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from flows.cli import app
from provenance.audit.croissant import croissant_snapshot
from provenance.audit.detectors import NOT_CALIBRATED, SECTION_TITLE, gate_detectors
from provenance.audit.html_report import render_html
from provenance.audit.licence_report import build_licence_report
from provenance.audit.members import UnknownCheckpoint
from provenance.models import Checkpoint, EmbeddingIndex, TrainingRun
from tests.common.ledger import (
    COHORT,
    DETECTOR_CONFIG,
    MEMBERS,
    build_recorded_run,
    record_gate,
)


def _run_without_gate(session: Session, like: TrainingRun) -> Checkpoint:
    """A second (memberless) run and checkpoint for which no gate was calibrated."""
    run = TrainingRun(
        policy_name=like.policy_name,
        policy_version=like.policy_version,
        policy_sha256=like.policy_sha256,
        config_name="debug",
        config={},
        snapshot_at=like.snapshot_at,
        members_digest="e" * 64,
        member_count=0,
        status="finished",
    )
    session.add(run)
    session.flush()
    checkpoint = Checkpoint(
        training_run_id=run.id, sha256="9" * 64, uri="unused", step=1, is_final=True
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint


def test_gate_detectors_reads_the_calibrated_gate_index(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    gate_index = record_gate(session, recorded.run, tmp_path)
    (detector,) = gate_detectors(session, recorded.checkpoint.id)  # the CLAP index is not the gate
    assert detector["embedder_sha256"] == COHORT["embedder_sha256"]
    assert detector["kind"] == "musicnn"
    assert detector["name"] == "MSD-musicnn"
    assert detector["licence"] == "ISC"
    assert detector["weights_sha256"] == DETECTOR_CONFIG["weights_sha256"]
    assert detector["settings"] == {"feature": "pool", "patch_frames": 187}
    assert detector["gate_index"]["sha256"] == gate_index.sha256
    assert detector["gate_index"]["artist_model"] == {
        "method": "as_norm",
        "threshold": 0.41,
        "sha256": "f" * 64,
    }
    assert detector["gate_index"]["fingerprint_sha256"] == "b" * 64
    assert detector["cohort"] == COHORT
    with pytest.raises(UnknownCheckpoint, match="12345"):
        gate_detectors(session, 12345)


def test_newest_gate_index_counts_only_when_calibrated(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    record_gate(session, recorded.run, tmp_path)
    # A newer index for the same embedder is the one the gate loads; uncalibrated, it cannot judge.
    session.add(
        EmbeddingIndex(
            training_run_id=recorded.run.id,
            embedder_sha256=COHORT["embedder_sha256"],
            sha256="5" * 64,
            uri=str(tmp_path / "gate-index-2"),
            vectors=30,
            thresholds=None,
        )
    )
    session.flush()
    assert gate_detectors(session, recorded.checkpoint.id) == []


def test_uncalibrated_gate_is_said_plainly(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    report = build_licence_report(session, recorded.checkpoint)
    assert report.gate_detectors == []
    assert report.gate_summary == NOT_CALIBRATED
    assert report.to_dict()["gate_summary"] == NOT_CALIBRATED
    html = render_html(session, report)
    assert SECTION_TITLE in html and NOT_CALIBRATED in html
    doc = croissant_snapshot(report)
    assert doc["gateDetectors"] == []
    assert NOT_CALIBRATED in doc["description"]


def test_html_has_the_gate_section(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    record_gate(session, recorded.run, tmp_path)
    html = render_html(session, build_licence_report(session, recorded.checkpoint))
    section = html[html.index(SECTION_TITLE) : html.index("<h2>Members</h2>")]
    assert '<table id="gate-detectors">' in section
    for text in ("MSD-musicnn", "ISC", "musicnn==0.1.0", "Million Song Dataset", "1" * 64):
        assert text in section, text
    assert "60 tracks" in section and "31 artists" in section
    assert NOT_CALIBRATED not in html


def test_croissant_export_describes_the_gate_detector(session: Session, tmp_path: Path) -> None:
    recorded = build_recorded_run(session, tmp_path)
    record_gate(session, recorded.run, tmp_path)
    doc = croissant_snapshot(build_licence_report(session, recorded.checkpoint))
    (node,) = doc["gateDetectors"]
    assert node["@type"] == "prov:Entity"
    assert node["sha256"] == COHORT["embedder_sha256"]
    assert node["license"] == ["https://spdx.org/licenses/ISC.html"]
    assert node["version"] == "musicnn==0.1.0"
    training, cohort = node["prov:wasDerivedFrom"]
    assert "Million Song Dataset" in training["description"]
    assert cohort["@id"] == f"urn:sha256:{COHORT['sha256']}"
    assert "https://spdx.org/licenses/GPL-2.0-or-later.html" in cohort["license"]
    assert node["gateDetector"]["weights_sha256"] == DETECTOR_CONFIG["weights_sha256"]
    assert "MSD-musicnn" in doc["description"] and SECTION_TITLE in doc["description"]
    text = json.dumps(doc)  # plain JSON: no datetimes left
    mlc = pytest.importorskip("mlcroissant")
    mlc.Dataset(jsonld=json.loads(text))  # the extension keeps the file valid Croissant


def test_cli_json_csv_table_and_export_show_the_gate_detector(
    session: Session, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = build_recorded_run(session, tmp_path)
    record_gate(session, recorded.run, tmp_path)
    bare = _run_without_gate(session, recorded.run)
    session.commit()
    monkeypatch.setenv("FAIRCHORD_DB_URL", db_url)
    runner = CliRunner()
    ckpt = ["--checkpoint", str(recorded.checkpoint.id)]

    done = runner.invoke(app, ["audit", "licenses", *ckpt, "--format", "json"])
    assert done.exit_code == 0, done.output
    (report,) = json.loads(done.stdout)
    (detector,) = report["gate_detectors"]
    assert detector["licence"] == "ISC"
    assert detector["source_package"] == "musicnn==0.1.0"
    assert detector["weights_sha256"] == DETECTOR_CONFIG["weights_sha256"]
    assert detector["training_data"] == DETECTOR_CONFIG["training_data"]
    assert detector["cohort"]["tracks"] == {"cohort": 40, "calibration": 20}
    assert detector["cohort"]["artists"] == 31
    assert detector["cohort"]["licences"] == COHORT["licences"]
    assert "MSD-musicnn" in report["gate_summary"]

    done = runner.invoke(
        app, ["audit", "licenses", "--checkpoint", str(bare.id), "--format", "json"]
    )
    assert done.exit_code == 0, done.output
    (report,) = json.loads(done.stdout)
    assert report["gate_detectors"] == []
    assert report["gate_summary"] == NOT_CALIBRATED

    out = tmp_path / "audit" / "report.csv"
    done = runner.invoke(app, ["audit", "licenses", "--all", "--format", "csv", "--out", str(out)])
    assert done.exit_code == 0, done.output
    with out.open(encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == len(MEMBERS)  # members only
    with (tmp_path / "audit" / "report.gate-detectors.csv").open(encoding="utf-8") as handle:
        calibrated, uncalibrated = csv.DictReader(handle)
    assert calibrated["checkpoint_id"] == str(recorded.checkpoint.id)
    assert calibrated["licence"] == "ISC"
    assert calibrated["source_package"] == "musicnn==0.1.0"
    assert calibrated["cohort_tracks"] == "cohort=40; calibration=20"
    assert (uncalibrated["checkpoint_id"], uncalibrated["status"]) == (
        str(bare.id),
        NOT_CALIBRATED,
    )

    done = runner.invoke(app, ["audit", "licenses", *ckpt])
    assert done.exit_code == 0, done.output
    assert SECTION_TITLE in done.stdout and "musicnn==0.1.0" in done.stdout

    exported = tmp_path / "croissant.json"
    done = runner.invoke(app, ["audit", "export", *ckpt, "--out", str(exported)])
    assert done.exit_code == 0, done.output
    (node,) = json.loads(exported.read_text(encoding="utf-8"))["gateDetectors"]
    assert node["gateDetector"]["cohort"]["sha256"] == COHORT["sha256"]
