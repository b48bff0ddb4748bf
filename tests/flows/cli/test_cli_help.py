"""The CLI's help shows flags as flags, `--version` answers, and `--json` means JSON."""

from __future__ import annotations

from importlib.metadata import version

import pytest
import typer
from typer.testing import CliRunner

from flows.cli import app


def command_paths() -> list[list[str]]:
    """Every command and group of the `fairchord` app, as argv prefixes."""
    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]

    def walk(group: object, prefix: list[str]) -> None:
        for name, command in getattr(group, "commands", {}).items():
            paths.append([*prefix, name])
            walk(command, [*prefix, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "fairchord")
def test_help_shows_flags_without_a_value(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert "<bool>" not in result.output


def json_options() -> list[tuple[str, str]]:
    """(command, help of its --json option) for every command that has one."""
    found = []
    for path in command_paths():
        command = typer.main.get_command(app)
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        for param in getattr(command, "params", []):
            if "--json" in getattr(param, "opts", []):
                found.append((" ".join(path), str(param.help)))
    return found


def test_every_json_option_says_what_it_prints() -> None:
    """One JSON document, or JSON Lines (one object per line): each --help says which."""
    options = json_options()
    assert len(options) >= 20
    vague = [c for c, h in options if "one JSON document" not in h and "JSON Lines" not in h]
    assert vague == []


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"fairchord {version('fairchord')}"


def test_json_flag_is_a_flag_not_a_value() -> None:
    result = CliRunner().invoke(app, ["gate", "check", "--json", "true"])
    assert result.exit_code == 2  # "true" is taken as a file that does not exist
    assert "true is not a file" in result.output
