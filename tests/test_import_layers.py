"""The packages import one another only in the direction docs/ARCHITECTURE.md draws."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / ".importlinter"


def test_the_contract_names_every_package_top_down() -> None:
    config = configparser.ConfigParser()
    config.read(CONTRACTS, encoding="utf-8")
    layers = config["importlinter:contract:layers"]
    assert layers["type"] == "layers"
    assert layers["layers"].split() == ["flows", "generation", "training", "provenance"]


def test_no_import_goes_against_the_dependency_direction() -> None:
    # In a child process: import-linter's console must not share pytest's captured streams.
    script = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(script), str(CONTRACTS), "--no-cache", "--no-logo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
