"""Edit distance between names and prompt text, and the filters that find near names fast."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Generic, TypeVar

from rapidfuzz.distance import OSA

__all__ = [
    "MAX_DISTANCE",
    "NearNames",
    "name_distance",
    "osa_distance",
    "squeeze",
    "tokenwise_distance",
]

MAX_DISTANCE = 2  # the largest edit distance name_distance allows

T = TypeVar("T")


def osa_distance(a: str, b: str, limit: int) -> int | None:
    """Optimal string alignment distance (rapidfuzz) between ``a`` and ``b`` if <= ``limit``."""
    distance = int(OSA.distance(a, b, score_cutoff=limit))
    return distance if distance <= limit else None


def name_distance(letters: int, *, single_token: bool) -> int:
    """Edit distance allowed for a name, alias or surname with ``letters`` letters.

    One-word names get less room: a one-word name near an ordinary word is more likely
    than a two-word one.
    """
    if single_token:
        return 2 if letters >= 9 else 1 if letters >= 7 else 0
    return 2 if letters >= 10 else 1 if letters >= 6 else 0


def tokenwise_distance(words: Sequence[str], names: Sequence[str], limit: int) -> int | None:
    """Sum of per-word distances between ``words`` and as many ``names``, if <= ``limit``."""
    total = 0
    for word, name in zip(words, names, strict=True):
        distance = osa_distance(word, name, limit - total)
        if distance is None:
            return None
        total += distance
    return total


def squeeze(text: str) -> str:
    """``text`` with each run of one letter written once ("savinno" → "savino")."""
    return "".join(c for n, c in enumerate(text) if n == 0 or c != text[n - 1])


def _bigrams(text: str) -> frozenset[str]:
    return frozenset(text[p : p + 2] for p in range(len(text) - 1))


def _pieces(text: str, count: int) -> list[tuple[int, str]]:
    """``text`` cut into ``count`` contiguous pieces of near-equal length, with offsets."""
    size, extra = divmod(len(text), count)
    pieces, offset = [], 0
    for n in range(count):
        length = size + (1 if n < extra else 0)
        pieces.append((offset, text[offset : offset + length]))
        offset += length
    return pieces


class NearNames(Generic[T]):
    """Names, each with the edit distance it allows, and the candidates a text may be near.

    Two filters keep the exact distance for few names. Pigeonhole: an edit (a
    transposition across a cut included) breaks at most two pieces, so within distance
    k one of 2k+1 pieces of the name survives intact, shifted by at most k. Count: an
    edit removes at most three of the name's letter pairs (a transposition of "ab" in
    "xaby" changes xa, ab and by).
    """

    def __init__(self) -> None:
        self.items: list[tuple[T, str, int]] = []  # (value, name, allowed distance)
        self._grams: list[frozenset[str]] = []
        # (name length, piece, offset) -> indexes into items; name length -> piece lengths
        self._pieces: dict[tuple[int, str, int], list[int]] = defaultdict(list)
        self._piece_sizes: dict[int, set[int]] = defaultdict(set)
        self._min, self._max = 10**6, 0

    def __bool__(self) -> bool:
        return bool(self.items)

    def add(self, value: T, name: str, max_distance: int) -> None:
        idx = len(self.items)
        self.items.append((value, name, max_distance))
        self._grams.append(_bigrams(name))
        self._min = min(self._min, len(name))
        self._max = max(self._max, len(name))
        for offset, piece in _pieces(name, 2 * max_distance + 1):
            self._pieces[(len(name), piece, offset)].append(idx)
            self._piece_sizes[len(name)].add(len(piece))

    def candidates(self, text: str) -> list[T]:
        """Values whose name may lie within its distance of ``text``, in the order added."""
        n = len(text)
        if n < self._min - MAX_DISTANCE or n > self._max + MAX_DISTANCE:
            return []
        found: set[int] = set()
        for length in range(n - MAX_DISTANCE, n + MAX_DISTANCE + 1):
            for size in self._piece_sizes.get(length, ()):
                for p in range(n - size + 1):
                    piece = text[p : p + size]
                    for offset in range(max(0, p - MAX_DISTANCE), p + MAX_DISTANCE + 1):
                        found.update(self._pieces.get((length, piece, offset), ()))
        grams = _bigrams(text)
        return [
            self.items[idx][0]
            for idx in sorted(found)
            if len(grams & self._grams[idx]) >= len(self._grams[idx]) - 3 * self.items[idx][2]
        ]
