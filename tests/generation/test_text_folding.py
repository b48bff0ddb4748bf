"""Look-alike folding for the prompt screen builds on the identity key's case and accent folding."""

from __future__ import annotations

from generation.text_folding import folded_text
from provenance.names import fold_case_and_accents, normalize_name


def test_the_screen_folds_accents_and_case_as_the_identity_key_does() -> None:
    for name in ("Beyoncé Knowles", "STRAUß", "Sigur Rós", "Dvořák", "Ǆemal", "坂本龍一"):
        assert folded_text(name) == fold_case_and_accents(name) == normalize_name(name)


def test_the_screen_also_folds_look_alikes_the_identity_key_keeps() -> None:
    disguised = "Ԝеѕtlսոԁ"  # Cyrillic and Armenian letters
    assert normalize_name(disguised) != "westlund"
    assert folded_text(disguised) == "westlund"


def test_marks_with_a_combining_class_are_dropped_as_in_the_identity_key() -> None:
    # A Javanese pangkon (a spacing mark with a combining class) neither splits nor stays.
    assert folded_text("ab\ua9c0cd") == normalize_name("ab\ua9c0cd") == "abcd"
