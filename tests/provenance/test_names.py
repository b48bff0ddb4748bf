"""Name normalisation: the identity key, and the case and accent folding under it."""

from __future__ import annotations

import pytest

from provenance.names import fold_case_and_accents, normalize_name


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("  Beyoncé-Knowles ", "beyonce knowles"),
        ("STRAUSS", "strauss"),
        ("Strauß", "strauss"),
        ("ﬁne_tuned", "fine tuned"),  # a ligature decomposes; the underscore separates
        ("Sigur  Rós!", "sigur ros"),
        ("坂本龍一", "坂本龍一"),
        ("", ""),
    ],
)
def test_normalize_name_folds_case_accents_and_punctuation(written: str, key: str) -> None:
    assert normalize_name(written) == key


def test_fold_case_and_accents_keeps_punctuation_and_spacing() -> None:
    assert fold_case_and_accents("Beyoncé-Knowles  STRAUß") == "beyonce-knowles  strauss"


def test_folding_a_string_is_folding_each_character() -> None:
    text = "Ǆemal Ångström ΣΊΣΥΦΟΣ ﬃ İstanbul ǅ"
    assert fold_case_and_accents(text) == "".join(map(fold_case_and_accents, text))
