"""Imitation cues: the words around a name that ask for its style or credit it."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from generation.prompt_tokens import Token, skeleton

__all__ = [
    "CUES_AFTER",
    "CUES_BEFORE",
    "CUE_FILLERS",
    "MAX_CUE_FILLERS",
    "cue_after",
    "cue_before",
    "given_name_cue",
]

MAX_CUE_FILLERS = 2  # words such as "exactly" allowed inside a cue ("sounds exactly like")

# Imitation and attribution cues, as token sequences. Verbs such as "emulate" or "imitate"
# are left out on purpose: "emulate tape saturation" is ordinary production language.
CUES_BEFORE: tuple[tuple[str, ...], ...] = (
    ("style", "of"),
    ("styles", "of"),
    ("styled", "after"),
    ("styled", "like"),
    ("vein", "of"),
    ("manner", "of"),
    ("mould", "of"),
    ("mold", "of"),
    ("spirit", "of"),
    ("footsteps", "of"),
    ("inspired", "by"),
    ("influenced", "by"),
    ("reminiscent", "of"),
    ("evocative", "of"),
    ("a", "la"),
    ("ala",),
    ("alla",),
    ("imitation", "of"),
    ("pastiche", "of"),
    ("copy", "of"),
    ("clone", "of"),
    ("knockoff", "of"),
    ("signature", "sound", "of"),
    ("sounds", "like"),
    ("sound", "like"),
    ("sounding", "like"),
    ("sing", "like"),
    ("sings", "like"),
    ("play", "like"),
    ("plays", "like"),
    ("playing", "like"),
    ("write", "like"),
    ("writes", "like"),
    ("similar", "to"),
    ("homage", "to"),
    ("tribute", "to"),
    ("channeling",),
    ("channelling",),
    ("song", "by"),
    ("songs", "by"),
    ("track", "by"),
    ("tracks", "by"),
    ("tune", "by"),
    ("piece", "by"),
    ("music", "by"),
    ("composed", "by"),
    ("written", "by"),
    ("produced", "by"),
    ("performed", "by"),
    ("arranged", "by"),
)
# Words allowed inside a cue, between its words: "sounds exactly like", "sound a lot like".
CUE_FILLERS = frozenset(
    "exactly just very much more a lot bit little kind sort of somewhat quite rather "
    "almost really totally precisely heavily strongly closely deeply clearly".split()
)
CUES_AFTER: tuple[tuple[str, ...], ...] = (
    ("style",),
    ("styled",),
    ("esque",),
    ("type", "beat"),
    ("inspired",),
    ("like",),
    ("vibes",),
)


@cache
def _cue_skeletons(where: str) -> tuple[tuple[str, ...], ...]:
    cues = CUES_BEFORE if where == "before" else CUES_AFTER
    return tuple(tuple(skeleton(word) for word in cue) for cue in cues)


@cache
def _filler_skeletons() -> frozenset[str]:
    return frozenset(skeleton(word) for word in CUE_FILLERS)


def cue_before(tokens: Sequence[Token], i: int) -> tuple[int, int] | None:
    """The span of an imitation cue ending right before token ``i``, if any.

    Up to ``MAX_CUE_FILLERS`` words of ``CUE_FILLERS`` may stand between the cue's words
    ("sounds exactly like"), never between the cue and the name.
    """
    for cue in _cue_skeletons("before"):
        k = i
        for n, word in enumerate(reversed(cue)):
            if n:
                skipped = 0
                while (
                    k > 0
                    and skipped < MAX_CUE_FILLERS
                    and tokens[k - 1].skeleton != word
                    and tokens[k - 1].skeleton in _filler_skeletons()
                ):
                    k, skipped = k - 1, skipped + 1
            if k == 0 or tokens[k - 1].skeleton != word:
                break
            k -= 1
        else:
            return tokens[k].start, tokens[i - 1].end
    return None


def cue_after(tokens: Sequence[Token], j: int) -> tuple[int, int] | None:
    """The span of a style word starting at token ``j``, if any."""
    for cue in _cue_skeletons("after"):
        n = len(cue)
        if j + n <= len(tokens) and tuple(t.skeleton for t in tokens[j : j + n]) == cue:
            return tokens[j].start, tokens[j + n - 1].end
    return None


def given_name_cue(tokens: Sequence[Token], i: int, given: str) -> tuple[int, int] | None:
    """The span of the given name's initial with a full stop right before token ``i``
    ("I. Berlin"), or else of the given name anywhere in the prompt ("Berlin … Irving")."""
    if not given:
        return None
    if i > 0:
        token = tokens[i - 1]
        if token.dotted and token.text == given[0]:
            return token.start, token.end
    given_skeleton = skeleton(given)
    for token in tokens:
        if token.skeleton == given_skeleton:
            return token.start, token.end
    return None
