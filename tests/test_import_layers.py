"""The packages import one another only in the direction docs/ARCHITECTURE.md draws."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / ".importlinter"


def test_the_contract_names_every_package_top_down() -> None:
    config = configparser.ConfigParser()
    config.read(CONTRACTS, encoding="utf-8")
    layers = config["importlinter:contract:layers"]
    assert layers["type"] == "layers"
    assert layers["layers"].split() == ["flows", "generation", "training", "provenance"]


def test_no_import_goes_against_the_dependency_direction(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    status = lint_imports(config_filename=str(CONTRACTS), no_cache=True, no_logo=True)
    assert status == 0, capsys.readouterr().out
