"""Prompt screen: party names blocked however they are written, musical language allowed."""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from flows.demo_corpus import load_demo_facts, named_artists
from generation.ordinary_words import is_english_word, is_ordinary
from generation.prompt_screen import (
    MAX_PROMPT_CHARS,
    PromptScreen,
    ScreenResult,
    record_screen_decision,
)
from generation.screen_names import ScreenedParty
from generation.string_distance import name_distance, osa_distance
from generation.text_folding import folded_text
from provenance.audit_log import verify_chain
from provenance.consent import ConsentSubject, record_consent
from provenance.models import AuditEvent, GateDecision, Party
from provenance.parties import get_or_create_party

DATA = Path(__file__).parent / "data"
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

# Parties named with ordinary words or very short names: they must not block ordinary
# prompts. "Tape" also opts out of style imitation below.
DECOYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Ambient": ("group", ("AM",)),
    "Tape": ("group", ()),
    "Blue Note": ("organisation", ("BN",)),
    "Line": ("person", ()),
    "XX": ("group", ()),
}
# Demo artists that opt out of style imitation in the list tests: their surnames are
# then screened alone, so ordinary prompts must survive that too.
OPTED_OUT = ("Max McCracken", "Will Savino", "Lincoln Domina", "Irving Berlin", "Tape")


def read_prompts(name: str) -> list[str]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip()]


def demo_artists() -> dict[str, tuple[str, ...]]:
    """The named people of the demo corpus with their aliases, e.g. Max McCracken (Maxstack)."""
    artists: dict[str, tuple[str, ...]] = {}
    for fact in load_demo_facts():
        names, aliases = named_artists(fact.artist)
        for name in names:
            artists[name] = tuple(dict.fromkeys(artists.get(name, ()) + aliases))
    return artists


def register_parties(session: Session) -> dict[str, Party]:
    """Every demo artist and every decoy as parties, through the provenance API."""
    parties = {
        name: get_or_create_party(session, name, aliases=aliases)
        for name, aliases in demo_artists().items()
    }
    for name, (kind, aliases) in DECOYS.items():
        parties[name] = get_or_create_party(session, name, kind=kind, aliases=aliases)
    session.flush()
    return parties


def opt_out(
    session: Session, party: Party, *, purpose: str = "style_imitation", at: dt.datetime = T0
) -> None:
    record_consent(
        session,
        subject=ConsentSubject("party", party.id),
        action="opt_out",
        purpose=purpose,
        effective_at=at,
        origin="cli",
    )


def plain_screen(*names: str, opted_out: tuple[str, ...] = ()) -> PromptScreen:
    """A screen over ``names`` (``"Name|Alias|Alias"``) without a database."""
    parties = []
    for number, spec in enumerate(names, start=1):
        name, *aliases = spec.split("|")
        parties.append(
            ScreenedParty(
                number,
                name,
                aliases=tuple(aliases),
                style_opt_out_event_id=number if name in opted_out else None,
            )
        )
    return PromptScreen(parties)


# --- the prompt lists, on both engines ------------------------------------------------


def test_demo_artists_are_the_corpus_people() -> None:
    artists = demo_artists()
    assert {"Mattias Westlund", "Will Savino", "Max McCracken", "Irving Berlin"} <= set(artists)
    assert artists["Max McCracken"] == ("Maxstack",)
    assert len(artists) == 10


def test_benign_prompts_are_allowed(session: Session) -> None:
    parties = register_parties(session)
    for name in OPTED_OUT:
        opt_out(session, parties[name])
    screen = PromptScreen.from_session(session)
    assert len(screen.style_opt_outs) == len(OPTED_OUT)
    assert {name for _, name, _ in screen.skipped} == {"AM", "BN", "XX"}
    prompts = read_prompts("benign_prompts.txt")
    assert len(prompts) >= 100
    blocked = {p: screen.screen(p).reasons for p in prompts}
    assert {p: r for p, r in blocked.items() if r} == {}


def test_obfuscated_prompts_are_blocked(session: Session) -> None:
    parties = register_parties(session)
    for name in OPTED_OUT:
        opt_out(session, parties[name])
    screen = PromptScreen.from_session(session)
    demo_ids = {parties[name].id for name in demo_artists()}
    prompts = read_prompts("obfuscated_prompts.txt")
    assert len(prompts) >= 50
    methods: set[str] = set()
    missed, wrong = [], []
    for prompt in prompts:
        result = screen.screen(prompt)
        if result.verdict != "block":
            missed.append(prompt)
        if not {m["party_id"] for m in result.matches} <= demo_ids:
            wrong.append((prompt, result.reasons))
        methods.update(m["method"] for m in result.matches)
    assert missed == []
    assert wrong == []
    assert {"exact", "spaced", "leet", "fuzzy"} <= methods
    named = {m["name"] for p in prompts for m in screen.screen(p).matches}
    assert named == set(demo_artists())  # every demo artist is exercised


# --- style-imitation opt-out ---------------------------------------------------------------


def test_style_opt_out_blocks_the_surname_alone(session: Session) -> None:
    parties = register_parties(session)
    westlund = parties["Mattias Westlund"]
    prompt = "sweeping westlund strings for a fantasy battle"

    # A distinctive surname blocks alone; the method says whether the party opted out.
    free = PromptScreen.from_session(session).screen(prompt)
    assert free.verdict == "block"
    assert (free.matches[0]["via"], free.matches[0]["method"]) == ("surname", "exact")

    # Opting out of training says nothing about style imitation.
    opt_out(session, westlund, purpose="training")
    assert PromptScreen.from_session(session).screen(prompt).matches[0]["method"] == "exact"

    opt_out(session, westlund, at=T0 + dt.timedelta(days=10))
    # Not yet in force at an earlier screening time.
    early = PromptScreen.from_session(session, at=T0 + dt.timedelta(days=5))
    assert early.screen(prompt).matches[0]["method"] == "exact"

    screen = PromptScreen.from_session(session)
    assert screen.style_opt_outs == [westlund.id]
    result = screen.screen(prompt)
    assert result.verdict == "block"
    (match,) = result.matches
    assert match["party_id"] == westlund.id
    assert match["method"] == "style_opt_out"
    assert match["matched_text"] == "westlund"
    assert "opted out of style imitation" in result.reasons[0]
    for variant in ("W e s t l u n d strings", "W3stlund strings", "Westlnd strings"):
        assert screen.screen(variant).verdict == "block", variant
    # The given name alone is still not enough.
    assert screen.screen("mattias plays the strings").verdict == "allow"

    # A later opt-in lifts it again.
    record_consent(
        session,
        subject=ConsentSubject("party", westlund.id),
        action="opt_in",
        purpose="style_imitation",
        effective_at=T0 + dt.timedelta(days=20),
        origin="cli",
    )
    assert PromptScreen.from_session(session).screen(prompt).matches[0]["method"] == "exact"


def test_style_opt_out_widens_the_cues_of_an_ordinary_surname(session: Session) -> None:
    parties = register_parties(session)
    prompt = "Berlin-style show tune with a crooner"
    assert PromptScreen.from_session(session).screen(prompt).verdict == "allow"
    opt_out(session, parties["Irving Berlin"])
    result = PromptScreen.from_session(session).screen(prompt)
    assert [m["name"] for m in result.matches] == ["Irving Berlin"]
    assert result.matches[0]["cue"] == "style"
    # The city in a genre name still passes.
    assert PromptScreen.from_session(session).screen("berlin techno").verdict == "allow"


def test_opt_out_of_any_purpose_covers_style_imitation(session: Session) -> None:
    parties = register_parties(session)
    opt_out(session, parties["Doug Kaufman"], purpose="any")
    opt_out(session, parties["Tape"])
    screen = PromptScreen.from_session(session)
    assert screen.screen("a kaufman jig").matches[0]["method"] == "style_opt_out"
    # An opted-out party named with an ordinary word still needs a cue.
    assert screen.screen("tape saturation on the drums").verdict == "allow"
    assert screen.screen("in the style of Tape").verdict == "block"
    with pytest.raises(ValueError, match="naive"):
        PromptScreen.from_session(session, at=dt.datetime(2024, 1, 1))


# --- recording decisions --------------------------------------------------------------------


def test_record_screen_decision_writes_row_and_audit_event(session: Session) -> None:
    parties = register_parties(session)
    screen = PromptScreen.from_session(session)
    blocked = screen.screen("in the style of m a x m c c r a c k e n")
    allowed = screen.screen("warm rhodes chords")
    blocked_row = record_screen_decision(session, None, blocked)
    allowed_row = record_screen_decision(session, None, allowed)
    session.flush()

    rows = session.execute(select(GateDecision).order_by(GateDecision.id)).scalars().all()
    assert [r.id for r in rows] == [blocked_row.id, allowed_row.id]
    assert [(r.stage, r.verdict) for r in rows] == [
        ("prompt_screen", "block"),
        ("prompt_screen", "allow"),
    ]
    assert rows[0].reasons == blocked.reasons
    max_id = parties["Max McCracken"].id
    assert rows[0].reasons[0].startswith(f'names party {max_id} "Max McCracken"')
    assert rows[0].scores["matches"][0]["matched_text"] == "m a x m c c r a c k e n"
    assert rows[0].scores["prompt_sha256"] == blocked.prompt_sha256
    assert rows[0].thresholds["parties"] == len(parties)
    assert rows[1].reasons == [] and rows[1].scores["matches"] == []

    events = session.execute(
        select(AuditEvent).where(AuditEvent.action == "gate.decided").order_by(AuditEvent.id)
    ).scalars()
    payloads = [json.loads(e.payload) for e in events]
    assert [(p["stage"], p["verdict"]) for p in payloads] == [
        ("prompt_screen", "block"),
        ("prompt_screen", "allow"),
    ]
    assert payloads[0]["party_ids"] == [parties["Max McCracken"].id]
    assert payloads[0]["methods"] == ["spaced"]
    assert verify_chain(session)[1] == []

    with pytest.raises(ValueError, match="verdict"):
        record_screen_decision(session, None, ScreenResult("maybe", [], []))


# --- without a database ---------------------------------------------------------------------

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


# --- disguises that once got through, and look-alikes that must pass ---------------------------

DEMO_ALL = (
    "Mattias Westlund",
    "Doug Kaufman",
    "Ryan Reilly",
    "Aleksi Aubry-Carlson",
    "Max McCracken|Maxstack",
    "Will Savino",
    "Lincoln Domina",
    "Michael Kievernagel",
    "Giovanni Pierluigi da Palestrina",
    "Irving Berlin",
)


@pytest.mark.parametrize(
    ("prompt", "names"),
    [
        # a distinctive surname or an alias alone
        ("westlund battle music", ["Mattias Westlund"]),
        ("maxstack pad", ["Max McCracken"]),
        ("savino drone", ["Will Savino"]),
        ("westlunds epic overture", ["Mattias Westlund"]),
        # a possessive
        ("Kaufman's battle theme", ["Doug Kaufman"]),
        ("Reilly’s heroic march", ["Ryan Reilly"]),
        # a surname after a cue the screen did not know
        ("sound exactly like Kievernagel", ["Michael Kievernagel"]),
        ("in the manner of Berlin", ["Irving Berlin"]),
        ("in the vein of Berlin", ["Irving Berlin"]),
        # an initial with a surname
        ("D. Kaufman", ["Doug Kaufman"]),
        ("I. Berlin ragtime song", ["Irving Berlin"]),
        # a list
        ("kaufman, reilly and westlund", ["Doug Kaufman", "Ryan Reilly", "Mattias Westlund"]),
        # a double surname alone, however joined
        ("Aubry–Carlson", ["Aleksi Aubry-Carlson"]),
        ("aubry_carlson synth pads", ["Aleksi Aubry-Carlson"]),
        ("AubryCarlson strategy score", ["Aleksi Aubry-Carlson"]),
        # a misspelt surname alone
        ("westlunf", ["Mattias Westlund"]),
        ("kievernagle", ["Michael Kievernagel"]),
        ("mcrackenn epic score", ["Max McCracken"]),
        ("savinno drone", ["Will Savino"]),
        ("kaufmann celtic fiddle tune", ["Doug Kaufman"]),
        # fullwidth letters
        ("ｍａｘｓｔａｃｋ", ["Max McCracken"]),
        # homoglyphs from Unicode's confusables
        ("in the style of Ԝеѕtlսոԁ", ["Mattias Westlund"]),
        ("Ꮇattіas Ꮃеѕtlսոԁ", ["Mattias Westlund"]),
        ("ᴍᴀx ᴍᴄᴄʀᴀᴄᴋᴇɴ", ["Max McCracken"]),
        ("ꓪestlund orchestral suite", ["Mattias Westlund"]),
        ("ᏚᎪᏙᎥΝᎾ space drone", ["Will Savino"]),
        ("Ɱax McCracken fanfare", ["Max McCracken"]),
    ],
)
def test_disguised_names_are_blocked(prompt: str, names: list[str]) -> None:
    result = plain_screen(*DEMO_ALL).screen(prompt)
    assert sorted(m["name"] for m in result.matches) == sorted(names), result.reasons


@pytest.mark.parametrize(
    "prompt",
    [
        "dominant seventh chords in a slow blues",
        "maximal techno with relentless kicks",
        "willow creek folk with banjo",
        "berlin techno, dark warehouse, 135 bpm",
        "a night in berlin, minimal techno",
        "lincoln center style orchestral gala piece",
        "a domino rally of percussion hits",
        "max stack of compressors on the vocal bus",
        "really warm analog pads",
        "casino lounge jazz",
        "saving grace gospel choir",
        "westward journey theme",
        "palestine folk melody on an oud",
        "michaelmas carol for choir",
        "cracking vinyl and tape hiss",
        "sounds exactly like rain on a tin roof",
        "in the manner of a lullaby",
        "songs by the campfire with ukulele",
        "will it swing? add a shuffle",
        "m o d u l a r synth bleeps",
    ],
)
def test_lookalike_words_pass(prompt: str) -> None:
    opted = plain_screen(*DEMO_ALL, opted_out=("Irving Berlin", "Lincoln Domina", "Will Savino"))
    assert opted.screen(prompt).reasons == []


def test_folding_reads_confusables_small_capitals_and_fullwidth() -> None:
    assert folded_text("Ԝеѕtlսոԁ") == "westlund"  # Cyrillic and Armenian
    assert folded_text("Ꮇattіas Ꮃеѕtlսոԁ") == "mattias westlund"  # Cherokee
    assert folded_text("ᴍᴀx ᴍᴄᴄʀᴀᴄᴋᴇɴ") == "max mccracken"  # small capitals
    assert folded_text("ｍａｘｓｔａｃｋ") == "maxstack"  # fullwidth, by NFKC
    assert folded_text("Łukasz Øster Strauß Beyoncé Þór") == "lukasz oster strauss beyonce thor"
    assert folded_text("ṃɱ") == "mm"  # UTS #39 reads m as "rn"; m-like letters stay m
    assert folded_text("rn") == "rn"  # ASCII is never remapped
    assert folded_text("坂本龍一") == "坂本龍一"  # ideographs keep their own identity


def test_ordinary_words_by_frequency() -> None:
    for word in ("berlin", "tape", "stack", "max", "ambient", "lincoln", "kaufmann"):
        assert is_ordinary(word), word
    for word in ("westlund", "kievernagel", "maxstack", "kaufman", "reilly", "carlson", "domina"):
        assert not is_ordinary(word), word
    # A prompt word is judged in English alone: "kaufmann" is a German word.
    assert not is_english_word("kaufmann") and is_english_word("casino")


# --- the edit-distance machinery -------------------------------------------------------------


def reference_osa(a: str, b: str) -> int:
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = int(a[i - 1] != b[j - 1])
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def test_osa_distance_matches_the_full_table() -> None:
    rng = random.Random(7)
    for _ in range(1200):
        a = "".join(rng.choice("abc") for _ in range(rng.randint(0, 9)))
        b = "".join(rng.choice("abc") for _ in range(rng.randint(0, 9)))
        full = reference_osa(a, b)
        for limit in range(4):
            assert osa_distance(a, b, limit) == (full if full <= limit else None), (a, b, limit)


def mutate(rng: random.Random, word: str, edits: int) -> str:
    letters = list(word)
    for _ in range(edits):
        op = rng.choice(("insert", "delete", "substitute", "transpose"))
        p = rng.randrange(len(letters) - 1)
        if op == "insert":
            letters.insert(p, rng.choice("abcdefghijklmnopqrstuvwxyz"))
        elif op == "delete":
            del letters[p]
        elif op == "substitute":
            letters[p] = rng.choice("abcdefghijklmnopqrstuvwxyz")
        else:
            letters[p], letters[p + 1] = letters[p + 1], letters[p]
    return "".join(letters)


def test_every_misspelling_within_the_allowed_distance_is_caught() -> None:
    """The pigeonhole and letter-pair filters never hide a name within its distance."""
    names = list(demo_artists())
    screen = plain_screen(*names)
    rng = random.Random(11)
    checked = 0
    for _ in range(1200):
        name = rng.choice(names)
        words = name.replace("-", " ").lower().split()
        letters = sum(len(w) for w in words)
        budget = name_distance(letters, single_token=len(words) == 1)
        spent = rng.randint(1, budget)
        target = rng.randrange(len(words))
        if len(words[target]) < 4:
            continue
        mutated = mutate(rng, words[target], spent)
        if reference_osa(words[target], mutated) > budget:
            continue  # sequential edits can undo or compound each other
        if is_english_word(mutated):
            continue  # a misspelling that lands on an ordinary word is read as that word
        words[target] = mutated
        prompt = "a track by " + " ".join(words)
        assert screen.screen(prompt).verdict == "block", (name, prompt)
        checked += 1
    assert checked > 800


def test_thousands_of_parties_screen_quickly() -> None:
    rng = random.Random(3)
    syllables = "ka ro mi ten lu sa ber gan dor vel mar tin son li ne ho qui zar pel fen".split()

    def word() -> str:
        return "".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))).capitalize()

    parties = [
        ScreenedParty(
            n,
            f"{word()} {word()}",
            aliases=(f"{word()}{word()}",) if n % 3 == 0 else (),
            style_opt_out_event_id=n if n % 10 == 0 else None,
        )
        for n in range(1, 3001)
    ]
    started = time.perf_counter()
    screen = PromptScreen(parties)
    built = time.perf_counter() - started
    prompts = read_prompts("benign_prompts.txt")
    started = time.perf_counter()
    results = [screen.screen(p) for p in prompts]
    per_prompt = (time.perf_counter() - started) / len(prompts)
    assert built < 20 and per_prompt < 0.25, (built, per_prompt)
    assert sum(r.verdict == "block" for r in results) == 0
    target = parties[1233]
    disguised = " ".join(target.name.lower().replace("a", "4"))
    assert target.party_id in {m["party_id"] for m in screen.screen(disguised).matches}
