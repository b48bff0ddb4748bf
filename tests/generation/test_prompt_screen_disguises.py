"""Prompt screen against disguises: confusables, look-alike words, misspellings, scale."""

from __future__ import annotations

import random
import time

import pytest

from generation.ordinary_words import is_english_word, is_ordinary
from generation.prompt_screen import PromptScreen
from generation.screen_names import ScreenedParty
from generation.string_distance import name_distance, osa_distance
from generation.text_folding import folded_text
from tests.common.prompt_screen import demo_artists, plain_screen, read_prompts

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
