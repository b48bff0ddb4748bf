"""Prompt screen without a database: how names match however written, which words pass."""

from __future__ import annotations

import json

import pytest

from generation.prompt_screen import MAX_PROMPT_CHARS, PromptScreen
from generation.screen_names import ScreenedParty
from tests.common.prompt_screen import plain_screen

DEMO = ("Max McCracken|Maxstack", "Mattias Westlund", "Will Savino", "Aleksi Aubry-Carlson")


@pytest.mark.parametrize(
    ("prompt", "name", "method"),
    [
        ("Max McCracken", "Max McCracken", "exact"),
        ("MAX-MCCRACKEN’S theme", "Max McCracken", "exact"),
        ("McCracken, Max", "Max McCracken", "exact"),
        ("maxmccracken", "Max McCracken", "spaced"),
        ("Max Mc Cracken", "Max McCracken", "spaced"),
        ("M.A.X. M.C.C.R.A.C.K.E.N.", "Max McCracken", "spaced"),
        ("m\ta\nx   mccracken", "Max McCracken", "spaced"),
        ("M4X MCCR4CK3N", "Max McCracken", "leet"),
        ("m@x mccr@cken", "Max McCracken", "leet"),
        ("Max McCrakken", "Max McCracken", "fuzzy"),
        ("Max McCarcken", "Max McCracken", "fuzzy"),  # transposition
        ("maxmcracken", "Max McCracken", "fuzzy"),
        ("m a x m c r a c k e n", "Max McCracken", "fuzzy"),
        ("maxstack", "Max McCracken", "exact"),
        ("maxstackesque lead", "Max McCracken", "exact"),
        ("in the style of max stack", "Max McCracken", "spaced"),
        ("Aleksi Aubry Carlson", "Aleksi Aubry-Carlson", "exact"),
        ("w!ll sav|no", "Will Savino", "leet"),
        ("Mattias Westlund-esque strings", "Mattias Westlund", "exact"),
    ],
)
def test_methods(prompt: str, name: str, method: str) -> None:
    result = plain_screen(*DEMO).screen(prompt)
    assert result.verdict == "block"
    assert [(m["name"], m["method"]) for m in result.matches] == [(name, method)]


@pytest.mark.parametrize(
    "prompt",
    [
        "Ｍａｘ　Ｍｃｃｒａｃｋｅｎ",  # fullwidth letters and ideographic space
        "Мах МсСrасkеn",  # Cyrillic look-alikes
        "ΜΑΧ ΜcCrΑcΚen",  # Greek capitals
        "M\u200ba\u200dx\u2060 Mc\u00adCracken",  # zero-width characters, soft hyphen
        "\u202eMax McCracken\u202c",  # right-to-left override
        "M\u0301a\u0308\u0323x\u0336 McCr\u0300acken",  # stacked combining marks
        "Max\u00a0McCracken",  # no-break space
        "Ⓜⓐⓧ Ⓜⓒⓒⓡⓐⓒⓚⓔⓝ",
        "𝓜𝓪𝔁 𝓜𝓬𝓒𝓻𝓪𝓬𝓴𝓮𝓷",
        "Max 🎸 Mc 🎸 Cracken",
    ],
)
def test_unicode_disguises_are_blocked(prompt: str) -> None:
    result = plain_screen(*DEMO).screen(prompt)
    assert [m["name"] for m in result.matches] == ["Max McCracken"]
    assert result.matches[0]["matched_text"] in prompt


def test_unicode_names_and_scripts() -> None:
    screen = plain_screen("Beyoncé Knowles", "Johann Strauß", "坂本龍一", "Łukasz Øster")
    assert screen.screen("beyonce knowles ballad").verdict == "block"
    assert screen.screen("BEYONCÉ KNOWLES").verdict == "block"
    assert screen.screen("johann strauss waltz").verdict == "block"
    assert screen.screen("lukasz oster piano").verdict == "block"
    assert screen.screen("坂本龍一のようなピアノ曲").matches[0]["name"] == "坂本龍一"
    assert screen.screen("坂本さんのピアノ").verdict == "allow"
    for odd in ("\ud800 lone surrogate", "\x00\x01\x02", "👍" * 50, "\u0301\u0301"):
        assert screen.screen(odd).verdict == "allow"


def test_empty_long_and_invalid_prompts() -> None:
    screen = plain_screen(*DEMO)
    for empty in ("", "   ", "\n\t", "...", "\u200b"):
        result = screen.screen(empty)
        assert result.verdict == "allow" and result.reasons == [] and result.matches == []
    too_long = "warm pads " * (MAX_PROMPT_CHARS // 10 + 1)
    result = screen.screen(too_long)
    assert result.verdict == "block" and "at most" in result.reasons[0]
    with pytest.raises(TypeError, match="string"):
        screen.screen(None)  # type: ignore[arg-type]
    assert PromptScreen([]).screen("Max McCracken").verdict == "allow"
    with pytest.raises(ValueError, match="twice"):
        PromptScreen([ScreenedParty(1, "A B C"), ScreenedParty(1, "D E F")])


def test_short_and_ordinary_word_names() -> None:
    screen = PromptScreen(
        [
            ScreenedParty(1, "Ambient", kind="group", aliases=("AM",)),
            ScreenedParty(2, "Blue Note", kind="organisation"),
            ScreenedParty(3, "Line"),
            ScreenedParty(4, "Enya"),
            ScreenedParty(5, "XX", kind="group"),
            ScreenedParty(6, "Palestrina Giovanni"),
        ]
    )
    assert [name for _, name, _ in screen.skipped] == ["AM", "XX"]
    for prompt in (
        "ambient pad, am radio filter",
        "blue note jazz, a flattened fifth",
        "west african guitar lines",
        "a line of synths",
        "xx time signature",
        "ambient-style pads",
        "emulate tape warmth, ambient",
    ):
        assert screen.screen(prompt).verdict == "allow", prompt
    for prompt, name in (
        ("in the style of Ambient", "Ambient"),
        ("inspired by blue note", "Blue Note"),
        ("sounds like 4mbient", "Ambient"),
        ("in the style of Line", "Line"),
        ("Enya style vocals", "Enya"),
        ("enya-esque choir", "Enya"),
        ("enya type beat", "Enya"),
        ("à la Enya", "Enya"),
    ):
        assert [m["name"] for m in screen.screen(prompt).matches] == [name], prompt
    # A one-word name that is not an ordinary word blocks alone, however short.
    assert [m["name"] for m in screen.screen("enya choir").matches] == ["Enya"]
    # An ordinary word is never stretched by edit distance.
    assert screen.screen("in the style of ambience").verdict == "allow"


def test_distinctive_surname_blocks_alone() -> None:
    free = plain_screen(*DEMO)
    for prompt in (
        "mccracken strings",
        "in the style of McCracken",
        "McCracken-style strings",
        "mccrackenesque",
    ):
        result = free.screen(prompt)
        assert [(m["name"], m["via"]) for m in result.matches] == [("Max McCracken", "surname")], (
            prompt
        )
    opted = plain_screen(*DEMO, opted_out=("Max McCracken",))
    result = opted.screen("mccracken strings")
    assert result.matches[0]["method"] == "style_opt_out"
    assert opted.screen("max strings").verdict == "allow"  # the given name alone
    assert free.screen("will it swing? mattias plays").verdict == "allow"


def test_ordinary_surname_needs_a_cue_or_the_given_name() -> None:
    screen = plain_screen("Irving Berlin", "Lincoln Domina")
    for prompt in ("berlin techno", "a night in berlin", "lincoln center gala"):
        assert screen.screen(prompt).verdict == "allow", prompt
    for prompt, cue in (
        ("in the style of Berlin", "style of"),
        ("sound exactly like Berlin", "sound exactly like"),
        ("sounds a lot like berlin", "sounds a lot like"),
        ("in the vein of Berlin", "vein of"),
        ("a song by berlin", "song by"),
        ("I. Berlin ragtime", "I"),
        ("Berlin show tunes, the way Irving wrote them", "Irving"),
    ):
        result = screen.screen(prompt)
        assert [(m["name"], m["cue"]) for m in result.matches] == [("Irving Berlin", cue)], prompt
    # The full name blocks although both words are ordinary.
    assert screen.screen("irving berlin standard").verdict == "block"
    assert screen.screen("Irvin Berlin standard").matches[0]["method"] == "fuzzy"


def test_reasons_and_json() -> None:
    result = plain_screen(*DEMO).screen("Will Savino and m a x s t a c k")
    assert result.verdict == "block"
    assert result.reasons == [
        'names party 3 "Will Savino" (matched "Will Savino"; exact)',
        'names party 1 "Max McCracken" by alias "Maxstack" (matched "m a x s t a c k"; spaced)',
    ]
    doc = json.loads(json.dumps(result.to_json()))
    assert doc["verdict"] == "block" and len(doc["matches"]) == 2
    assert set(doc["matches"][0]) >= {"party_id", "name", "alias", "matched_text", "method"}
    assert doc["matches"][1]["alias"] == "Maxstack"
