"""Prompt-screen test helpers: the demo artists, the prompt lists, a screen without a database."""

from __future__ import annotations

from pathlib import Path

from flows.demo_corpus import load_demo_facts, named_artists
from generation.prompt_screen import PromptScreen
from generation.screen_names import ScreenedParty

DATA = Path(__file__).parents[1] / "generation" / "data"


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
