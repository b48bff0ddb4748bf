"""Where fairchord keeps things: the home folder and the provenance database URL."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "FAIRCHORD_HOME"
DB_URL_ENV = "FAIRCHORD_DB_URL"


def fairchord_home() -> Path:
    """The local home folder (``$FAIRCHORD_HOME``, default ``~/.fairchord``), created on demand."""
    home = Path(os.environ.get(HOME_ENV) or Path.home() / ".fairchord").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def database_url() -> str:
    """``$FAIRCHORD_DB_URL``, or a SQLite file under the home folder."""
    url = os.environ.get(DB_URL_ENV)
    if url:
        return url
    return f"sqlite:///{fairchord_home() / 'provenance.sqlite'}"
