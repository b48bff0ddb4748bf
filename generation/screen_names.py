"""Each party's names as the prompt screen looks for them, with the cue and distance each needs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from generation.prompt_tokens import Token, ordinary_word, skeleton, tokens_of
from generation.string_distance import name_distance
from generation.text_folding import fold, isolating, letter_count

__all__ = [
    "DISTINCTIVE_TOKEN_CHARS",
    "MIN_NAME_CHARS",
    "STRONG_NAME_CHARS",
    "NameEntry",
    "ScreenedParty",
    "name_entries",
]

MIN_NAME_CHARS = 3  # shorter names and aliases are not screened
STRONG_NAME_CHARS = 4  # shorter names match only after a cue
DISTINCTIVE_TOKEN_CHARS = 4  # shorter surnames are never matched alone, nor with a cue


@dataclass(frozen=True)
class ScreenedParty:
    """One party as the screen sees it: names, kind, and a style-imitation opt-out if any."""

    party_id: int
    name: str
    kind: str = "person"
    aliases: tuple[str, ...] = ()
    style_opt_out_event_id: int | None = None

    @property
    def style_opt_out(self) -> bool:
        return self.style_opt_out_event_id is not None


@dataclass(frozen=True)
class NameEntry:
    """One way of writing a party's name that the screen looks for."""

    party: ScreenedParty
    alias: str | None  # the alias as written, or None for the party's name
    written: str  # the name, alias or surname as written
    via: str  # name | alias | surname
    tokens: tuple[str, ...]
    plain: str
    skeleton: str
    cue: str  # "" (none needed) | "before" | "around"
    max_distance: int
    given: str = ""  # a person's given name: it, or its initial, stands in for a cue


def name_entries(party: ScreenedParty, skipped: list[tuple[int, str, str]]) -> Iterator[NameEntry]:
    """The entries for ``party``'s name and aliases; names too short to screen go to
    ``skipped`` as (party_id, name as written, reason)."""
    person = party.kind in ("person", "unknown")
    labels: list[tuple[str, str | None]] = [(party.name, None)]
    labels.extend((alias, alias) for alias in party.aliases)
    for written, alias in labels:
        folded = fold(written)
        tokens = tokens_of(folded, leet=False)
        plain = "".join(t.text for t in tokens)
        letters = letter_count(plain)
        if letters < MIN_NAME_CHARS:
            skipped.append((party.party_id, written, f"fewer than {MIN_NAME_CHARS} letters"))
            continue
        # A name of ordinary words ("Blue Note", "Tape") says little without a cue;
        # any other name or alias ("Maxstack", "Enya"), and a person's full name
        # ("Irving Berlin"), blocks alone.
        ordinary = all(ordinary_word(t.text, in_prompt=False) for t in tokens)
        full_name = person and len(tokens) >= 2
        cue = "before" if letters < STRONG_NAME_CHARS or (ordinary and not full_name) else ""
        ideographic = any(isolating(c) for c in plain)
        distance = (
            0 if cue or ideographic else name_distance(len(plain), single_token=len(tokens) == 1)
        )
        via = "name" if alias is None else "alias"
        texts = tuple(t.text for t in tokens)
        leet_tokens = tokens_of(folded, leet=True)
        skeletons = {skeleton(plain), skeleton("".join(t.text for t in leet_tokens))}
        for name_skeleton in sorted(skeletons):
            yield NameEntry(
                party, alias, written, via, texts, plain, name_skeleton, cue, distance,
            )  # fmt: skip
        if person and len(tokens) >= 2 and not cue:
            flipped = (*texts[1:], texts[0])
            yield NameEntry(
                party, alias, written, via, flipped, "".join(flipped),
                skeleton("".join(flipped)), "", distance,
            )  # fmt: skip
        if len(tokens) >= 2:
            yield from _surnames(party, alias, written, tokens, person=person)


def _surnames(
    party: ScreenedParty,
    alias: str | None,
    written: str,
    tokens: Sequence[Token],
    *,
    person: bool,
) -> Iterator[NameEntry]:
    """Surname entries: for a person every token after the first and the whole surname
    ("Aubry-Carlson"), for a group or organisation every token.

    A surname that is not an ordinary word blocks alone, within the one-word edit
    distance. A person's ordinary-word surname ("Berlin") needs a cue before it or the
    initial of the given name ("I. Berlin"); an opted-out party's, a cue either side.
    A group's ordinary words are never matched alone ("Blue" of "Blue Note").
    """
    parts = list(tokens[1:] if person else tokens)
    runs: list[Sequence[Token]] = [[token] for token in parts]
    if person and len(parts) >= 2:
        runs.append(parts)
    given = tokens[0].text if person else ""
    for run in runs:
        texts = tuple(t.text for t in run)
        plain = "".join(texts)
        if letter_count(plain) < DISTINCTIVE_TOKEN_CHARS or isolating(plain[0]):
            continue
        if all(ordinary_word(t.text, in_prompt=False) for t in run):
            if not person:
                continue
            cue = "around" if party.style_opt_out else "before"
            distance = 0
        else:
            cue = ""
            distance = name_distance(len(plain), single_token=True)
        yield NameEntry(
            party, alias, written[run[0].start : run[-1].end], "surname", texts, plain,
            skeleton(plain), cue, distance, given,
        )  # fmt: skip
