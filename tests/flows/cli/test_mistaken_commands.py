"""Mistaken commands: each exits with its documented code and one line saying what is wrong
and what to do, never a traceback; nothing heavy runs before the arguments are checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BAD_INPUT, NOT_INITIALISED = 2, 3

# (argv, expected exit code, a fragment the one line must contain)
MISTAKES: list[tuple[list[str], int, str]] = [
    (["db", "upgrade", "9999"], BAD_INPUT, "9999"),
    (["db", "downgrade", "nonsense"], BAD_INPUT, "nonsense"),
    (["train", "--policy", "nosuch"], BAD_INPUT, "unknown policy 'nosuch'"),
    (["train", "--config", "huge"], BAD_INPUT, "huge"),
    (["train", "--max-steps", "0"], BAD_INPUT, "--max-steps"),
    (["train", "--clap", "/nope/clap.pt"], BAD_INPUT, "/nope/clap.pt"),
    (["ingest", "gcs://bucket/x"], BAD_INPUT, "install gcsfs"),
    (["ingest", "s3://bucket/x"], BAD_INPUT, "cannot reach it"),
    (["ingest", "/nope/folder"], BAD_INPUT, "does not exist"),
    (["ingest", ".", "--workers", "0"], BAD_INPUT, "--workers"),
    (["ingest", ".", "--manifest", "/nope/m.csv"], BAD_INPUT, "/nope/m.csv"),
    (["ingest", ".", "--max-duration", "-1"], BAD_INPUT, "max_duration"),
    (["policy", "show", "nosuch"], BAD_INPUT, "nosuch"),
    (["policy", "check", "--policy", "nosuch"], BAD_INPUT, "nosuch"),
    (["gate", "calibrate", "--false-block-rate", "2"], BAD_INPUT, "--false-block-rate"),
    (["gate", "calibrate", "--clip-seconds", "-1"], BAD_INPUT, "--clip-seconds"),
    (["gate", "check", "/nope/a.wav"], BAD_INPUT, "/nope/a.wav"),
    (["clap", "train", "--config", "huge"], BAD_INPUT, "huge"),
    (["clap", "embed", "--clap", "/nope/clap.pt"], BAD_INPUT, "/nope/clap.pt"),
    (["featurize", "--clap-tags", "/nope/clap.pt"], BAD_INPUT, "/nope/clap.pt"),
    (["audit", "licenses", "--format", "html", "--all"], BAD_INPUT, "--all"),
    (["audit", "licenses", "--format", "csv", "--json"], BAD_INPUT, "--json"),
    (["audit", "verify", "--expect-head", "garbage"], BAD_INPUT, "garbage"),
    (["serve", "--check", "/nope/schedules.toml"], BAD_INPUT, "/nope/schedules.toml"),
    (["consent", "sync", "/nope/list.csv"], BAD_INPUT, "/nope/list.csv"),
    (["consent", "import", "/nope/statements.csv"], BAD_INPUT, "/nope/statements.csv"),
    (["consent", "add", "--party", "X", "--opt-out", "--purpose", "dancing"], BAD_INPUT, "dancing"),
    (["server", "--port", "0"], BAD_INPUT, "--port"),
]


def run(argv: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(FAIRCHORD_HOME=str(home), PREFECT_HOME=str(home / "prefect"))
    env.pop("FAIRCHORD_DB_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *argv],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    assert run(["db", "upgrade"], home).returncode == 0
    return home


def assert_one_line(result: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output, output
    assert result.returncode == code, output
    lines = output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert fragment in lines[0], output


@pytest.mark.parametrize(("argv", "code", "fragment"), MISTAKES, ids=lambda v: str(v))
def test_a_mistake_gets_one_line_and_its_exit_code(
    home: Path, argv: list[str], code: int, fragment: str
) -> None:
    assert_one_line(run(argv, home), code, fragment)


def test_a_bad_store_url_is_one_line_before_any_command(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIRCHORD_STORE_URL", "ftp://somewhere/store")
    assert_one_line(run(["policy", "show", "commercial"], home), BAD_INPUT, "FAIRCHORD_STORE_URL")


def test_an_uninitialised_database_is_exit_3(tmp_path: Path) -> None:
    result = run(["policy", "check", "--policy", "commercial"], tmp_path)
    assert_one_line(result, NOT_INITIALISED, "fairchord db upgrade")
