"""The prompt screen: refuse a text prompt that names a party in the provenance database.

Every party (artist, composer, rights holder, …) is screened by its name, each alias and
its surnames, however the prompt writes them: re-spaced, in leet, misspelt, in look-alike
letters (folded by :mod:`generation.text_folding`). A name part that is an ordinary word
(judged by :mod:`generation.ordinary_words`) needs an imitation cue
(:mod:`generation.prompt_cues`) or the rest of the name; any other surname or alias
blocks on its own (:mod:`generation.screen_names`). ``docs/prompt-screen.md`` states the
rules in full; :class:`ScreenResult` says which party was found, by which name, what text
matched and how.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from generation.ordinary_words import ENGLISH_ZIPF, OTHER_LANGUAGES, OTHER_ZIPF
from generation.prompt_cues import MAX_CUE_FILLERS, cue_after, cue_before, given_name_cue
from generation.prompt_tokens import (
    POSSESSIVE_SUFFIXES,
    STYLE_SUFFIXES,
    Token,
    has_leet_symbols,
    skeleton,
    split_as,
    stems,
    tokens_of,
)
from generation.screen_hits import METHOD_RANK, Hit
from generation.screen_names import (
    DISTINCTIVE_TOKEN_CHARS,
    MIN_NAME_CHARS,
    STRONG_NAME_CHARS,
    NameEntry,
    ScreenedParty,
    name_entries,
)
from generation.string_distance import (
    MAX_DISTANCE,
    NearNames,
    osa_distance,
    squeeze,
    tokenwise_distance,
)
from generation.text_folding import fold
from provenance.gate_decisions import record_decision
from provenance.models import GateDecision, utcnow
from provenance.screen_parties import parties_with_aliases, style_opt_outs

log = logging.getLogger(__name__)

__all__ = [
    "MAX_PROMPT_CHARS",
    "PromptScreen",
    "ScreenResult",
    "record_screen_decision",
]

STAGE = "prompt_screen"
RULES_VERSION = 2

MAX_PROMPT_CHARS = 4000


@dataclass
class ScreenResult:
    verdict: str  # "allow" | "block"
    reasons: list[str]  # one line per party named
    # party_id, name, alias, matched_text, method (exact|spaced|leet|fuzzy|style_opt_out),
    # via (name|alias|surname), span, distance, cue
    matches: list[dict[str, Any]]
    prompt_sha256: str | None = None
    rules: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class PromptScreen:
    """Screen prompts against a fixed set of parties; build once, screen many prompts."""

    def __init__(self, parties: Iterable[ScreenedParty]) -> None:
        self.parties: dict[int, ScreenedParty] = {}
        # (party_id, name as written, reason) for names too short to screen.
        self.skipped: list[tuple[int, str, str]] = []
        self._plain: dict[str, list[NameEntry]] = defaultdict(list)
        # names that block alone, by their leet reading with doubled letters made single
        self._squeezed: dict[str, list[NameEntry]] = defaultdict(list)
        self._skeleton: dict[str, list[NameEntry]] = defaultdict(list)
        self._fuzzy: NearNames[NameEntry] = NearNames()
        self._max_len = 0
        seen: set[tuple[int, str, str, str]] = set()
        for party in parties:
            if party.party_id in self.parties:
                raise ValueError(f"party {party.party_id} given twice")
            self.parties[party.party_id] = party
            for entry in name_entries(party, self.skipped):
                kind = "surname" if entry.via == "surname" else "name"
                key = (party.party_id, kind, entry.plain, entry.skeleton)
                if key in seen:
                    continue
                seen.add(key)
                self._add(entry)
        self._names = sum(len(v) for v in self._plain.values())
        self.style_opt_outs = sorted(p.party_id for p in self.parties.values() if p.style_opt_out)

    # -- building -------------------------------------------------------------------------

    def _add(self, entry: NameEntry) -> None:
        if entry.skeleton == skeleton(entry.plain):
            self._plain[entry.plain].append(entry)
        self._skeleton[entry.skeleton].append(entry)
        if not entry.cue:
            self._squeezed[squeeze(entry.skeleton)].append(entry)
        self._max_len = max(self._max_len, len(entry.plain), len(entry.skeleton))
        if entry.max_distance > 0:
            self._fuzzy.add(entry, entry.skeleton, entry.max_distance)

    @classmethod
    def from_session(cls, session: Session, *, at: dt.datetime | None = None) -> PromptScreen:
        """Every party with its aliases, and the style-imitation opt-outs in force at ``at``."""
        at = at or utcnow()
        if at.tzinfo is None:
            raise ValueError(f"at {at.isoformat()} is naive; give a timezone-aware UTC time")
        named = parties_with_aliases(session)
        opted_out = style_opt_outs(session, at=at)
        parties = [
            ScreenedParty(
                party_id=party.party_id,
                name=party.name,
                kind=party.kind,
                aliases=party.aliases,
                style_opt_out_event_id=opted_out.get(party.party_id),
            )
            for party in named
        ]
        screen = cls(parties)
        log.info(
            "prompt screen: %d parties, %d names, %d skipped, %d style-imitation opt-outs",
            len(screen.parties),
            screen._names,
            len(screen.skipped),
            len(screen.style_opt_outs),
        )
        return screen

    def rules(self) -> dict[str, Any]:
        """The rule constants and the size of what was screened, stored with each decision."""
        return {
            "version": RULES_VERSION,
            "max_prompt_chars": MAX_PROMPT_CHARS,
            "min_name_chars": MIN_NAME_CHARS,
            "strong_name_chars": STRONG_NAME_CHARS,
            "distinctive_token_chars": DISTINCTIVE_TOKEN_CHARS,
            "max_cue_fillers": MAX_CUE_FILLERS,
            "ordinary_zipf": {"en": ENGLISH_ZIPF, **dict.fromkeys(OTHER_LANGUAGES, OTHER_ZIPF)},
            "fuzzy_distance": {"words_6_to_9": 1, "words_10": 2, "word_7_to_11": 1, "word_12": 2},
            "parties": len(self.parties),
            "names": self._names,
            "skipped_names": len(self.skipped),
            "style_opt_outs": len(self.style_opt_outs),
        }

    # -- screening ------------------------------------------------------------------------

    def screen(self, prompt: str) -> ScreenResult:
        """Allow or block ``prompt``; a block names every party found, one reason each."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        digest = hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()
        if len(prompt) > MAX_PROMPT_CHARS:
            return ScreenResult(
                verdict="block",
                reasons=[
                    f"prompt is {len(prompt)} characters; the screen reads at most "
                    f"{MAX_PROMPT_CHARS}"
                ],
                matches=[],
                prompt_sha256=digest,
                rules=self.rules(),
            )
        folded = fold(prompt)
        best: dict[int, Hit] = {}
        plain_tokens = tokens_of(folded, leet=False)
        self._scan(plain_tokens, best, plain=True)
        leet_tokens = tokens_of(folded, leet=True)
        if has_leet_symbols(leet_tokens):
            self._scan(leet_tokens, best, plain=False)
        hits = sorted(best.values(), key=lambda h: (h.start, h.entry.party.party_id))
        matches = [hit.describe(prompt) for hit in hits]
        return ScreenResult(
            verdict="block" if hits else "allow",
            reasons=[hit.reason(match) for match, hit in zip(matches, hits, strict=True)],
            matches=matches,
            prompt_sha256=digest,
            rules=self.rules(),
        )

    def _scan(self, tokens: list[Token], best: dict[int, Hit], *, plain: bool) -> None:
        if not self._skeleton:
            return
        limit = self._max_len + max(len(s) for s in STYLE_SUFFIXES) + 2
        for i in range(len(tokens)):
            text = ""
            for j in range(i + 1, len(tokens) + 1):
                text += tokens[j - 1].text
                if len(text) > limit:
                    break
                window = tokens[i:j]
                for stem, suffix in stems(text, window[-1].text):
                    if plain:
                        for entry in self._plain.get(stem, ()):
                            method = (
                                "exact" if split_as(window, suffix) == entry.tokens else "spaced"
                            )
                            self._consider(tokens, i, j, entry, method, 0, suffix, best)
                    for entry in self._skeleton.get(skeleton(stem), ()):
                        self._consider(tokens, i, j, entry, "leet", 0, suffix, best)
                self._fuzzy_window(tokens, i, j, skeleton(text), best)
                self._doubled_letters(tokens, i, j, skeleton(text), best)

    def _fuzzy_window(
        self, tokens: list[Token], i: int, j: int, text: str, best: dict[int, Hit]
    ) -> None:
        """Misspellings of a name in ``tokens[i:j]``, whose leet reading is ``text``."""
        if len(text) < 5 or not self._fuzzy:
            return
        if all(t.ordinary for t in tokens[i:j]) and not (
            cue_before(tokens, i) or cue_after(tokens, j)
        ):
            return  # ordinary words re-spelt never match without a cue
        window = tokens[i:j]
        spelled_out = all(len(t.text) == 1 for t in window)
        for entry in self._fuzzy.candidates(text):
            held = best.get(entry.party.party_id)
            if held is not None and held.rank[:2] <= (
                int(entry.via == "surname"),
                METHOD_RANK["fuzzy"],
            ):
                continue
            distance = osa_distance(text, entry.skeleton, entry.max_distance)
            if distance is None:
                continue
            if len(window) == len(entry.tokens):
                distance = tokenwise_distance(
                    [t.skeleton for t in window],
                    [skeleton(name) for name in entry.tokens],
                    entry.max_distance,
                )
            elif len(window) > 1 and not spelled_out:
                continue  # re-spaced and misspelt at once: too loose to trust
            if distance:
                self._consider(tokens, i, j, entry, "fuzzy", distance, "", best)

    def _doubled_letters(
        self, tokens: list[Token], i: int, j: int, text: str, best: dict[int, Hit]
    ) -> None:
        """A name that blocks alone, written with letters doubled or made single at any
        distance ("savinno", "mcrackenn"), token for token or in one token; ``text`` is the
        leet reading of ``tokens[i:j]``."""
        squeezed = squeeze(text)
        if len(squeezed) < DISTINCTIVE_TOKEN_CHARS:
            return
        for entry in self._squeezed.get(squeezed, ()):
            if text == entry.skeleton or (j - i > 1 and j - i != len(entry.tokens)):
                continue
            distance = osa_distance(text, entry.skeleton, MAX_DISTANCE)
            if distance is not None:
                self._consider(tokens, i, j, entry, "fuzzy", distance, "", best)

    def _consider(
        self,
        tokens: list[Token],
        i: int,
        j: int,
        entry: NameEntry,
        method: str,
        distance: int,
        suffix: str,
        best: dict[int, Hit],
    ) -> None:
        window = tokens[i:j]
        if suffix and not window[-1].apostrophe:
            if window[-1].ordinary:
                return  # an ordinary word is not a name plus a suffix ("lines", "english")
            if suffix in POSSESSIVE_SUFFIXES and entry.cue and len(entry.tokens) == 1:
                return  # an ordinary-word name takes a possessive only with an apostrophe
        respaced = tuple(map(skeleton, split_as(window, suffix))) != tuple(
            map(skeleton, entry.tokens)
        )
        loose = (respaced or method == "fuzzy") and all(t.ordinary for t in window)
        cue: tuple[int, int] | None = None
        if entry.cue or loose:
            cue = cue_before(tokens, i) or given_name_cue(tokens, i, entry.given)
            if cue is None and (entry.cue == "around" or (loose and entry.via == "surname")):
                cue = cue_after(tokens, j)
                if cue is None and suffix in STYLE_SUFFIXES:
                    cue = (window[-1].end - len(suffix), window[-1].end)
            if cue is None:
                return
        if entry.via == "surname" and entry.party.style_opt_out and not entry.cue:
            method = "style_opt_out"
        hit = Hit(entry, method, window[0].start, window[-1].end, distance, cue)
        held = best.get(entry.party.party_id)
        if held is None or hit.rank < held.rank:
            best[entry.party.party_id] = hit


def record_screen_decision(
    session: Session, generation_id: int | None, result: ScreenResult
) -> GateDecision:
    """Append one prompt-screen decision (allow or block) with its matches + an audit event."""
    return record_decision(
        session,
        generation_id=generation_id,
        stage=STAGE,
        verdict=result.verdict,
        reasons=result.reasons,
        scores={
            "matches": [dict(m) for m in result.matches],
            "prompt_sha256": result.prompt_sha256,
        },
        nearest=[],
        thresholds=result.rules,
        event={
            "party_ids": [m["party_id"] for m in result.matches],
            "methods": [m["method"] for m in result.matches],
            "prompt_sha256": result.prompt_sha256,
        },
    )
