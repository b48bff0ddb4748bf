"""`fairchord demo`: every step is a real command whose options parse, in a sensible order."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.cli.demo import demo_steps, timing_table


@pytest.mark.parametrize("config", ["demo", "debug"])
def test_every_demo_step_parses_as_a_fairchord_command(config: str) -> None:
    runner = CliRunner()
    steps = demo_steps(train_config=config, clap_index=True)
    for step in steps:
        # --help is eager but comes last: an unknown command or option fails first.
        result = runner.invoke(app, [*step.args, "--help"])
        assert result.exit_code == 0, (step.args, result.output)
    firsts = [" ".join(s.args[:2]) for s in steps]
    order = [
        "db upgrade",
        "corpus demo",
        "featurize",
        "clap train",
        "clap embed",
        "train --policy",
        "gate calibrate",
    ]
    positions = [next(i for i, f in enumerate(firsts) if f.startswith(o)) for o in order]
    assert positions == sorted(positions)
    assert ("train", "--policy", "commercial", "--config", config) in [s.args for s in steps]


def test_the_clap_index_is_a_flag() -> None:
    default = [s.args[:2] for s in demo_steps(train_config="demo")]
    assert ("clap", "train") in default and ("clap", "embed") not in default
    flagged = [s.args[:2] for s in demo_steps(train_config="demo", clap_index=True)]
    assert flagged.index(("clap", "embed")) == flagged.index(("train", "--policy")) - 1


def test_the_timing_table_sums_the_steps() -> None:
    from rich.console import Console

    table = timing_table(
        [("setup", 100.0, 0), ("1. fairchord db upgrade", 30.4, 0), ("x", 0.0, None)]
    )
    console = Console(width=100, record=True)
    console.print(table)
    text = console.export_text()
    assert "total" in text and "2 min 10 s" in text and "skipped" in text


def test_the_demo_shows_an_allowed_and_a_refused_generation() -> None:
    steps = [s for s in demo_steps(train_config="small") if s.args[0] == "generate"]
    # Allowed (or a variation blocked by the gate, shown); refused by the prompt screen.
    assert [s.ok_codes for s in steps] == [(0, 5), (7,)]


def test_the_demo_signs_and_ends_by_verifying_a_generated_file() -> None:
    steps = [s.args for s in demo_steps(train_config="small")]
    keys = steps.index(("keys", "init", "--if-missing"))
    first_generate = next(i for i, a in enumerate(steps) if a[0] == "generate")
    assert keys < first_generate
    assert steps[-1] == ("verify-output", "--latest")


def test_keys_init_if_missing_keeps_the_keys(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["keys", "init", "--if-missing", "--json"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["keys", "init", "--if-missing", "--json"])
    assert again.exit_code == 0, again.output
    import json

    one, two = json.loads(first.output), json.loads(again.output)
    assert one["created"] is True and two["created"] is False
    assert one["certificate"]["sha256"] == two["certificate"]["sha256"]
    assert runner.invoke(app, ["keys", "init"]).exit_code == 2  # without --if-missing


def test_verify_output_latest_without_generations_says_so(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, ["verify-output", "--latest"])
    assert result.exit_code == 2
    assert "no generated file is recorded" in result.output


def test_stop_after_runs_only_the_first_steps(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--stop-after", "1"])
    assert result.exit_code == 0, result.output
    assert "1/1 Create the provenance database" in result.output
    assert (tmp_path / "home" / "provenance.sqlite").is_file()
