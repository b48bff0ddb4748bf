"""The schedules file: the documented example, validation errors that name the bad key, the
deployments it makes, and the `fairchord serve` / `fairchord server` checks before anything
runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from typer.testing import CliRunner

from flows.cli import app
from flows.schedule_config import ScheduleConfigError, load_schedule_config, missing_local_paths
from flows.serve import SCHEDULE_TAG, build_deployments, prefect_server_environment
from provenance import migrate
from provenance.db import make_engine
from provenance.settings import database_url

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "schedules.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_schedules_demo_ingest_consent_sync_and_audit_daily(_isolated_home: Path) -> None:
    config = load_schedule_config(EXAMPLE)
    (ingest,) = config.ingest
    assert ingest.name == "demo-corpus"
    assert ingest.source == str(_isolated_home / "corpus" / "demo" / "manifest.csv")
    assert config.consent_sync is not None and config.audit is not None
    assert config.consent_sync.files == (str(_isolated_home / "consent" / "do-not-train.csv"),)
    # Each runs once a day: minute and hour fixed, every day of every month.
    for job in config.jobs():
        assert job.schedule.cron is not None and job.schedule.interval_seconds is None
        minute, hour, *rest = job.schedule.cron.split()
        assert minute.isdigit() and hour.isdigit() and rest == ["*", "*", "*"], job
        assert job.schedule.timezone == "UTC"
    assert config.limit == 1 and config.pause_on_shutdown is True
    assert ingest.limits.max_duration_s == 3600.0 and ingest.limits.min_duration_s == 0.25

    assert missing_local_paths(config) == [
        f"ingest[0].source: {ingest.source}",
        f"consent_sync.files[0]: {config.consent_sync.files[0]}",
    ]
    for path in (ingest.source, config.consent_sync.files[0]):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("party\nSomeone\n", encoding="utf-8")
    assert missing_local_paths(config) == []


def test_deployments_carry_schedule_parameters_and_module_entrypoints(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[ingest]]
name = "field-recordings"
source = "audio"
workers = 3
interval_seconds = 90
[ingest.limits]
max_duration_s = 60.0

[[ingest]]
name = "catalogue"
source = "s3://bucket/catalogue.csv"
cron = "15 1 * * 1"
timezone = "Europe/Paris"

[consent_sync]
files = ["lists/dnt.csv", "example.org/.well-known/tdmrep.json"]
purpose = "commercial_training"
create_parties = true
cron = "0 2 * * *"

[audit]
name = "nightly"
verify = false
cron = "0 5 * * *"
""",
    )
    config = load_schedule_config(path)
    deployments = {(d.flow_name, d.name): d for d in build_deployments(config)}
    assert set(deployments) == {
        ("ingest-source", "field-recordings"),
        ("ingest-source", "catalogue"),
        ("consent-sync", "scheduled"),
        ("audit", "nightly"),
    }
    local = deployments["ingest-source", "field-recordings"]
    assert local.entrypoint == "flows.ingest.ingest_source_flow"
    assert local.parameters["source_uri"] == str(tmp_path / "audio")  # relative to the file
    assert local.parameters["in_flight"] == 3
    assert local.parameters["limits"]["max_duration_s"] == 60.0
    assert local.parameters["limits"]["min_duration_s"] == 0.25
    assert local.tags == [SCHEDULE_TAG]
    (interval,) = [s.schedule for s in local.schedules or []]
    assert isinstance(interval, IntervalSchedule)
    assert interval.interval.total_seconds() == 90

    remote = deployments["ingest-source", "catalogue"]
    assert remote.parameters["source_uri"] == "s3://bucket/catalogue.csv"
    (cron,) = [s.schedule for s in remote.schedules or []]
    assert isinstance(cron, CronSchedule)
    assert (cron.cron, cron.timezone) == ("15 1 * * 1", "Europe/Paris")

    consent = deployments["consent-sync", "scheduled"]
    assert consent.entrypoint == "flows.consent_sync.consent_sync_flow"
    assert consent.parameters == {
        "files": [
            str(tmp_path / "lists" / "dnt.csv"),
            str(tmp_path / "example.org" / ".well-known" / "tdmrep.json"),
        ],
        "purpose": "commercial_training",
        "origin": None,
        "create_parties": True,
    }
    audit = deployments["audit", "nightly"]
    assert audit.entrypoint == "flows.audit.audit_flow"
    assert audit.parameters == {"verify": False}
    # Missing local paths are reported; URIs are left to the flow.
    assert missing_local_paths(config) == [
        f"ingest[0].source: {tmp_path / 'audio'}",
        f"consent_sync.files[0]: {tmp_path / 'lists' / 'dnt.csv'}",
        f"consent_sync.files[1]: {tmp_path / 'example.org' / '.well-known' / 'tdmrep.json'}",
    ]


def test_paths_expand_home_and_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _isolated_home: Path
) -> None:
    monkeypatch.setenv("CORPUS_ROOT", str(tmp_path / "corpora"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    path = write(
        tmp_path,
        """
[[ingest]]
name = "a"
source = "${CORPUS_ROOT}/a/manifest.csv"
cron = "0 3 * * *"
[[ingest]]
name = "b"
source = "~/music"
cron = "0 3 * * *"
[[ingest]]
name = "c"
source = "$FAIRCHORD_HOME/corpus/demo"
cron = "0 3 * * *"
""",
    )
    a, b, c = load_schedule_config(path).ingest
    assert a.source == str(tmp_path / "corpora" / "a" / "manifest.csv")
    assert b.source == str(tmp_path / "user" / "music")
    assert c.source == str(_isolated_home / "corpus" / "demo")


INGEST = '[[ingest]]\nname = "demo"\nsource = "/data"\n'

BAD_CONFIGS = {
    "unknown top-level key": ('ingset = 1\n[audit]\ncron = "0 5 * * *"\n', "ingset: unknown key"),
    "source missing": ('[[ingest]]\nname = "x"\ncron = "0 3 * * *"\n', "ingest[0].source: is"),
    "name missing": ('[[ingest]]\nsource = "/d"\ncron = "0 3 * * *"\n', "ingest[0].name: is"),
    "no schedule": (INGEST, "ingest[0]: needs a schedule"),
    "cron and interval": (
        INGEST + 'cron = "0 3 * * *"\ninterval_seconds = 60\n',
        "ingest[0].interval_seconds: give either cron or interval_seconds",
    ),
    "bad cron": (INGEST + 'cron = "61 * * * *"\n', "ingest[0].cron: '61 * * * *' is not"),
    "hashed cron": (INGEST + 'cron = "H * * * *"\n', "ingest[0].cron"),
    "zero interval": (INGEST + "interval_seconds = 0\n", "ingest[0].interval_seconds: must be"),
    "interval as text": (
        INGEST + 'interval_seconds = "60"\n',
        "ingest[0].interval_seconds: must be an integer or a number, got a string",
    ),
    "interval as boolean": (INGEST + "interval_seconds = true\n", "got a boolean"),
    "bad timezone": (
        INGEST + 'cron = "0 3 * * *"\ntimezone = "Mars/Olympus"\n',
        "ingest[0].timezone: 'Mars/Olympus' is not an IANA timezone",
    ),
    "bad name": (
        '[[ingest]]\nname = "a/b"\nsource = "/d"\ncron = "0 3 * * *"\n',
        "ingest[0].name: 'a/b' is not a deployment name",
    ),
    "duplicate names": (
        INGEST + 'cron = "0 3 * * *"\n' + INGEST + 'cron = "0 4 * * *"\n',
        "ingest[1].name: 'demo' is already the name of ingest[0]",
    ),
    "unknown ingest key": (INGEST + 'crn = "0 3 * * *"\n', "ingest[0].crn: unknown key"),
    "unknown limit": (
        INGEST + 'cron = "0 3 * * *"\n[ingest.limits]\nmax_secs = 3\n',
        "ingest[0].limits.max_secs: unknown key",
    ),
    "inconsistent limits": (
        INGEST
        + 'cron = "0 3 * * *"\n[ingest.limits]\nmin_duration_s = 9.0\nmax_duration_s = 1.0\n',
        "ingest[0].limits: need 0 <= min_duration_s <= max_duration_s",
    ),
    "limit of the wrong type": (
        INGEST + 'cron = "0 3 * * *"\n[ingest.limits]\nread_tags = "no"\n',
        "ingest[0].limits.read_tags: must be true or false",
    ),
    "no workers": (INGEST + 'cron = "0 3 * * *"\nworkers = 0\n', "ingest[0].workers: must be"),
    "ingest not an array": ('[ingest]\nname = "x"\n', "ingest: must be an array, got a table"),
    "no consent files": (
        '[consent_sync]\nfiles = []\ncron = "0 2 * * *"\n',
        "consent_sync.files: must list at least one",
    ),
    "consent file not a string": (
        '[consent_sync]\nfiles = [3]\ncron = "0 2 * * *"\n',
        "consent_sync.files[0]: must be a path string",
    ),
    "bad purpose": (
        '[consent_sync]\nfiles = ["/l.csv"]\npurpose = "fun"\ncron = "0 2 * * *"\n',
        "consent_sync.purpose: 'fun' is not one of",
    ),
    "bad origin": (
        '[consent_sync]\nfiles = ["/l.csv"]\norigin = "example.org"\ncron = "0 2 * * *"\n',
        "consent_sync.origin: 'example.org' is not a site origin",
    ),
    "verify not boolean": (
        '[audit]\nverify = "yes"\ncron = "0 5 * * *"\n',
        "audit.verify: must be true or false, got a string 'yes'",
    ),
    "zero limit": ('[serve]\nlimit = 0\n[audit]\ncron = "0 5 * * *"\n', "serve.limit: must be"),
    "unknown serve key": (
        '[serve]\nlimits = 2\n[audit]\ncron = "0 5 * * *"\n',
        "serve.limits: unknown key",
    ),
    "nothing scheduled": ("[serve]\nlimit = 1\n", "(top level): schedules nothing"),
    "unset variable": (
        '[[ingest]]\nname = "x"\nsource = "$NO_SUCH_VAR_FC/a"\ncron = "0 3 * * *"\n',
        "ingest[0].source: uses $NO_SUCH_VAR_FC, which is not set",
    ),
    "not TOML": ("[[ingest]\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_names_the_key(case: str, tmp_path: Path) -> None:
    text, expected = BAD_CONFIGS[case]
    path = write(tmp_path, text)
    with pytest.raises(ScheduleConfigError) as raised:
        load_schedule_config(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ScheduleConfigError, match="no such file"):
        load_schedule_config(tmp_path / "nope.toml")


def test_serve_check_lists_deployments_and_rejects_bad_files(tmp_path: Path) -> None:
    (tmp_path / "music").mkdir()
    good = write(
        tmp_path,
        '[[ingest]]\nname = "music"\nsource = "music"\ninterval_seconds = 30\n'
        '[audit]\ncron = "0 5 * * *"\n',
    )
    runner = CliRunner()
    result = runner.invoke(app, ["serve", "--check", str(good)])
    assert result.exit_code == 0, result.output
    assert "ingest-source/music: every 30 s" in result.output
    assert "audit/scheduled: cron '0 5 * * *' (UTC)" in result.output

    bad = tmp_path / "bad.toml"
    bad.write_text('[audit]\ncron = "0 25 * * *"\n', encoding="utf-8")
    result = runner.invoke(app, ["serve", "--check", str(bad)])
    assert result.exit_code == 2
    assert "audit.cron: '0 25 * * *' is not a cron expression" in result.output

    missing = tmp_path / "missing.toml"
    missing.write_text('[[ingest]]\nname = "x"\nsource = "gone"\ncron = "0 3 * * *"\n')
    result = runner.invoke(app, ["serve", "--check", str(missing)])
    assert result.exit_code == 2
    assert f"no such path: ingest[0].source: {tmp_path / 'gone'}" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_refuses_without_a_reachable_server(tmp_path: Path) -> None:
    """Schedules never run on Prefect's ephemeral server, so serving without one is refused."""
    (tmp_path / "music").mkdir()
    config = write(
        tmp_path, '[[ingest]]\nname = "music"\nsource = "music"\ninterval_seconds = 30\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-client")
    command = [sys.executable, "-m", "flows.cli", "serve", str(config)]

    def run(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, env=env | extra, capture_output=True, text=True, timeout=120, cwd=REPO
        )

    unmigrated = run({})
    assert unmigrated.returncode == 3, unmigrated.stderr
    assert "fairchord db upgrade" in unmigrated.stderr

    engine = make_engine()
    migrate.upgrade(engine)
    engine.dispose()
    unset = run({})
    assert unset.returncode == 4, unset.stderr
    assert "PREFECT_API_URL is not set" in unset.stderr

    url = f"http://127.0.0.1:{_free_port()}/api"
    unreachable = run({"PREFECT_API_URL": url})
    assert unreachable.returncode == 4, unreachable.stderr
    assert f"the Prefect server at {url} does not answer" in unreachable.stderr


def test_server_environment_keeps_prefect_apart_from_provenance(_isolated_home: Path) -> None:
    env = prefect_server_environment()
    home = _isolated_home / "prefect"
    assert env["PREFECT_HOME"] == str(home)
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"] == (
        f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    )
    assert database_url() == f"sqlite:///{_isolated_home / 'provenance.sqlite'}"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_server_refuses_the_provenance_database(
    _isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIRCHORD_DB_URL", f"sqlite:///{_isolated_home / 'prefect' / 'prefect.db'}")
    result = CliRunner().invoke(app, ["server", "--port", str(_free_port())])
    assert result.exit_code == 2
    assert "points at the Prefect server's own database" in result.output


def test_help_explains_serve_and_server() -> None:
    runner = CliRunner()
    serve_help = runner.invoke(app, ["serve", "--help"]).output
    assert "PREFECT_API_URL" in serve_help and "--check" in serve_help
    assert "Exit codes" in serve_help
    server_help = runner.invoke(app, ["server", "--help"]).output
    assert "$FAIRCHORD_HOME/prefect" in server_help and "--port" in server_help
