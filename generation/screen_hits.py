"""One name found in a prompt: where, how and after which cue, its rank, and its report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from generation.screen_names import NameEntry

__all__ = ["METHODS", "METHOD_RANK", "Hit"]

METHODS = ("exact", "spaced", "leet", "fuzzy", "style_opt_out")
METHOD_RANK = {method: rank for rank, method in enumerate(METHODS)}


@dataclass
class Hit:
    entry: NameEntry
    method: str
    start: int  # span in the prompt
    end: int
    distance: int = 0
    cue: tuple[int, int] | None = None  # span of the cue in the prompt

    @property
    def rank(self) -> tuple[int, int, int]:
        # the whole name or an alias says more than a surname; then the surer method
        return int(self.entry.via == "surname"), METHOD_RANK[self.method], self.start

    def describe(self, prompt: str) -> dict[str, Any]:
        """The match as stored with the decision."""
        entry = self.entry
        return {
            "party_id": entry.party.party_id,
            "name": entry.party.name,
            "alias": entry.alias,
            "matched_text": prompt[self.start : self.end],
            "method": self.method,
            "via": entry.via,
            "written": entry.written,
            "span": [self.start, self.end],
            "distance": self.distance,
            "cue": prompt[self.cue[0] : self.cue[1]] if self.cue else None,
        }

    def reason(self, match: dict[str, Any]) -> str:
        """One line saying which party ``match`` (this hit described) names, and how."""
        text = f'names party {match["party_id"]} "{match["name"]}"'
        if match["via"] == "alias":
            text += f' by alias "{match["alias"]}"'
        elif match["via"] == "surname":
            text += f' by surname "{match["written"]}"'
        detail = [self.method]
        if self.method == "fuzzy":
            detail.append(f"distance {self.distance}")
        if self.method == "style_opt_out":
            detail.append("the party opted out of style imitation")
        elif match["cue"]:
            detail.append(f'after cue "{match["cue"]}"')
        return f'{text} (matched "{match["matched_text"]}"; {", ".join(detail)})'
