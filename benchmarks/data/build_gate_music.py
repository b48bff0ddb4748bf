"""Regenerate ``benchmarks/data/gate_music.csv`` from installed Debian music packages.

    bash benchmarks/install_gate_music.sh            # root: apt-get install the packages
    python3 benchmarks/data/build_gate_music.py      # needs mutagen (pip install mutagen)

Reads only file headers and tags (mutagen) plus whole-file sha256 for de-duplication; no
audio is decoded. Attribution, in order: a per-file credit from the package itself
(``OVERRIDES`` below, each one copied from a credits file, album manifest or file name
inside the package), the file's ARTIST / TPE1 tag, a package credits file parsed here
(Hedgewars ``Data/Music/credits.txt``, Naev ``SOUND_LICENSE.yaml``, Warzone 2100
``album.json``), a DEP-5 ``Files:`` paragraph naming one holder for that file, else
``unknown:<package>``. Unknown-artist tracks are kept as ``outside`` only in packages
that hold no track by a training artist.

Split: ``training`` rows get ``train``; ``outside`` rows are split by artist (sha256 of
the normalised artist key, first byte even -> tune), where collaborations and aliases
are merged first so that one person never lands in both halves; ``same_artist`` rows are
split by track (sha256 of the path), except that copies of one (artist, title) in two
packages share the first copy's path as key.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import json
import re
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

MIN_SECONDS = 20.0
# Unattributed packages with at least this many tracks are split by track, not as one
# "artist": whole, each would tip the balance of the two halves on its own.
UNKNOWN_BY_TRACK = 10
AUDIO_RE = re.compile(r"\.(ogg|oga|opus|mp3|flac|wav)$", re.IGNORECASE)
OUT = Path(__file__).with_name("gate_music.csv")

# The 19 recordings of the demo training snapshot (shared/corpus/demo_manifest.csv).
WESNOTH = "/usr/share/games/wesnoth/1.16/data/core/music/"
TRAINING = (
    {
        WESNOTH + f + ".ogg"
        for f in (
            "breaking_the_chains legends_of_the_north elvish-theme battle-epic love_theme "
            "suspense main_menu underground transience elf-land"
        ).split()
    }
    | {
        "/usr/share/games/singularity/music/Awakening.ogg",
        "/usr/share/games/singularity/music/Coherence.ogg",
        "/usr/share/games/asc/music/machine_wars.mp3",
    }
    | {
        f"/usr/share/hyperrogue/music/hr-{n}.ogg"
        for n in (
            "savino-caribbean savino-ivory savino-ocean savino-palace "
            "domina-hunting domina-mountain"
        ).split()
    }
)

# Canonical training-artist names and the patterns that recognise them in credits.
TRAINING_ARTISTS = {
    "Mattias Westlund": r"westlund",
    "Doug Kaufman": r"\bkaufman\b",
    "Ryan Reilly": r"ryan reilly",
    "Aleksi Aubry-Carlson": r"aubry",
    "Max McCracken (Maxstack)": r"maxstack|mccracken",
    "Will Savino": r"savino",
    "Lincoln Domina": r"lincoln domina|^domina$",
    "Michael Kievernagel": r"kievernagel",
}

# Spellings of one person in different packages (normalised form -> canonical name).
ALIASES = {
    "matrin linda": "Martin Linda",
    "alex almarza": "Alex Almarza",
    "zhaytee": "Joseph G. Toscano (Zhaytee)",
    "joseph g toscano": "Joseph G. Toscano (Zhaytee)",
    "http zhaymusic com": "Joseph G. Toscano (Zhaytee)",
    "klaus halfmann aka hasi50": "Klaus Halfmann",
    "krobonil": "Chris Leutwyler",
    "0zone0ne": "Max Freeman",
    "ozoneone": "Max Freeman",
    "djhelium": "DJ Helium",
    "matthew pablo": "Matthew Pablo",
    "hsr": "HSR",
    "martin strohmeier": "Martin Strohmeier (K-Pone)",
}

# Tags that are not a person: fall through to the next attribution source.
BAD_TAGS = re.compile(r"soundbible|must credit|^unknown$|^various", re.IGNORECASE)

# Per-package selection. ``music``: regex a path must match (default: a music directory);
# ``skip``: regex of paths to leave out (sound effects, ambience, stems, videos);
# ``artist``: file-name regex -> artist, copied from the package's own credits.
DEFAULT_MUSIC = r"/(music|musics|Music|Musics|tunes|zik|cdtracks)/"
PACKAGES: dict[str, dict] = {
    "wesnoth-1.16-music": {},
    "singularity-music": {},
    "hyperrogue-music": {"skip": r"/sounds/"},
    "asc-music": {"artist": {r".": "Michael Kievernagel"}},  # debian/copyright: Files: *
    "starfighter-data": {},
    "naev-data": {},
    "supertux-data": {
        "artist": {r"ice_music|worldmap_old": "Joseph G. Toscano (Zhaytee)"},  # tag: zhaymusic.com
    },
    "supertuxkart-data": {
        "music": r"/data/music/|/tracks/(ancient_colosseum_labyrinth|battleisland|cave)/",
        "artist": {r"xeon6\.ogg$": None},  # debian/copyright names only the commissioner
    },
    "widelands-data": {},
    "warzone2100-music": {},
    "hedgewars-data": {},
    "colobot-common-sounds": {},
    "freedroidrpg-data": {"music": r"/sound/music/|/titles/[^/]+\.ogg$"},
    "flare-game": {"skip": r"/soundfx/|wind_ambient"},
    "warmux-data": {
        "artist": {r"Mike_Errecart": "Mike Errecart", r"Olivier_Militon": "Olivier Militon"},
    },
    "plee-the-bear-data": {"skip": r"/sequencer/"},  # sequencer/ holds per-instrument stems
    "davegnukem-data": {},
    "btanks-data": {},
    "marsshooter-data": {"music": r"/audio/"},
    "searchandrescue-data": {},
    "pushover-data": {"music": r"/themes/"},
    "planetblupi-music-ogg": {},
    "trackballs-data": {},
    "enigma-data": {},
    "fretsonfire-songs-muldjord": {"music": r"/song\.ogg$"},  # guitar.ogg is a stem
    "fretsonfire-songs-sectoid": {
        "music": r"/song\.ogg$",
        "artist": {r".": "Sectoid"},  # package and directory name: the band's songs
    },
    "amoebax-data": {},
    "openclonk-data": {"music": r"/Music\.ocg/"},
    "xmoto-data": {},
    "noiz2sa-data": {"music": r"/sounds/stg"},
    "lugaru-data": {"music": r"/Sounds/Music"},
    "extremetuxracer-data": {},
    "tumiki-fighters-data": {"music": r"/sounds/"},
    "lordsawar-data": {},
    "pinball-data": {"music": r"/pinball/(professor|tux)/[a-z]+\.ogg$"},
    "freedink-data": {"music": r"/Sound/"},
    "torus-trooper-data": {},
    "gunroar-data": {},
    "mu-cade-data": {},
    "titanion-data": {},
    "parsec47-data": {"music": r"/sounds/ptn"},
    "rrootage-data": {"music": r"/sounds/stg"},
    "a7xpg-data": {"music": r"/sounds/bgm"},
    "zaz-data": {"music": r"/zaz/mus\d\.ogg$"},
    "tuxmath-data": {"music": r"/sounds/.*\.ogg$"},
    "tuxtype-data": {"music": r"/sounds/.*\.ogg$"},
    "gigalomania-data": {},
    "mazeofgalious-data": {"music": r"/sound/jorito/"},
    "glob2-data": {},
    "hex-a-hop-data": {"music": r"/music-"},
    "epiphany-data": {"music": r"/sfx/epiphany_(credits|game|menu)"},
    "frozen-bubble-data": {"music": r"/snd/.*zik"},
    "lincity-ng-data": {
        "artist": {r"pronobozo": "pronobozo", r"Robert van Herk": "Robert van Herk"}
    },
    "powermanga-data": {"music": r"/music_"},
    "caveexpress-data": {"music": r"/sounds/music-"},  # cavepacker-data ships the same two
    "alienblaster-data": {"music": r"/sound/(intro|playon)\.wav$"},
    "abe-data": {"music": r"/sounds/(game|intro)\.ogg$"},
    "scorched3d-data": {},
    "ardentryst": {"music": r"/Music/"},
    "adonthell-data": {"music": r"/audio/at-demo"},
    "wizznic-data": {"music": r"/music/|menu-music"},
    "brainparty-data": {"music": r"/electricity\.ogg$"},
    "bumprace-data": {"music": r"Flying_me_softly"},
    "hannah-data": {"music": r"/bgm\d"},
    "instead-data": {"music": r"/instead\.ogg$"},
    "orbital-eunuchs-sniper-data": {"music": r"/oes\.ogg$"},
    "pax-britannica-data": {"music": r"/audio/music\.ogg$"},
    "phlipple-data": {"music": r"/theme\.ogg$"},
    "raincat-data": {},
    "freeorion-data": {"music": r"artificial_intelligence"},
    "freeciv-data": {"music": r"/stdmusic/"},
    "drascula-music": {"music": r"/audio/track"},
}


def norm(name: str) -> str:
    """Lower-case ASCII words: accents, parenthesised parts and punctuation removed."""
    s = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    s = re.sub(r"\(.*?\)|<.*?>", " ", s)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", s).split())


def canonical(name: str) -> str:
    for canon, pat in TRAINING_ARTISTS.items():
        if re.search(pat, norm(name)) or re.search(pat, name.lower()):
            return canon
    return ALIASES.get(norm(name), name.strip())


def people(artist: str) -> list[str]:
    """Individual credited names in an artist string ("A & B", "A and B")."""
    parts = re.split(r"\s*(?:&|\band\b|,)\s*", re.sub(r"\(.*?\)", "", artist))
    return [canonical(p) for p in parts if p.strip()] or [artist]


# --- package credits files -------------------------------------------------------------


def dep5(pkg: str) -> list[dict[str, str]]:
    path = Path(f"/usr/share/doc/{pkg}/copyright")
    if not path.is_file():
        return []
    paras: list[dict[str, str]] = []
    cur: dict[str, str] = {}
    key = ""
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            if cur:
                paras.append(cur)
            cur, key = {}, ""
        elif line[0] in " \t" and key:
            cur[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            cur[key] = value.strip()
    if cur:
        paras.append(cur)
    if not paras or "format" not in paras[0]:
        return []  # not machine-readable: licence stays NOASSERTION
    return [p for p in paras if "files" in p]


def dep5_match(paras: list[dict[str, str]], path: str) -> dict[str, str] | None:
    """Last ``Files:`` paragraph whose pattern matches a suffix of the installed path."""
    suffixes = [path[i + 1 :] for i, c in enumerate(path) if c == "/"]
    best = None
    for para in paras:
        for pat in para["files"].split():
            if any(fnmatch.fnmatchcase(s, pat) for s in suffixes):
                best = para
    return best


SPDX = {
    "gpl-2": "GPL-2.0-only",
    "gpl-2+": "GPL-2.0-or-later",
    "gpl-3": "GPL-3.0-only",
    "gpl-3+": "GPL-3.0-or-later",
    "lgpl-2.1": "LGPL-2.1-only",
    "lgpl-2.1+": "LGPL-2.1-or-later",
    "expat": "MIT",
    "cc0": "CC0-1.0",
    "cc0-1.0": "CC0-1.0",
    "cc-by-3.0": "CC-BY-3.0",
    "cc-by-4.0": "CC-BY-4.0",
    "cc-by-sa-3.0": "CC-BY-SA-3.0",
    "cc-by-sa-3.0+": "CC-BY-SA-3.0",
    "cc-by-sa-4.0": "CC-BY-SA-4.0",
    "public-domain": "LicenseRef-public-domain",
    "drascula-license": "LicenseRef-Drascula",
    "battle-tanks-license": "LicenseRef-Battle-Tanks",
}


def spdx(licence_field: str) -> str:
    first = licence_field.split("\n")[0].strip()
    if not first:
        return "NOASSERTION"
    out = []
    for tok in re.split(r"\s+(or|and)\s+", first):
        if tok in ("or", "and"):
            out.append(tok.upper())
        elif tok.lower() in SPDX:
            out.append(SPDX[tok.lower()])
        else:
            return "NOASSERTION"
    return " ".join(out)


TEAM_WORDS = re.compile(
    r"team|project|others|various|contributors|commissioned|soft s\.l|software|games\b",
    re.IGNORECASE,
)


def dep5_artist(para: dict[str, str] | None) -> str | None:
    """The holder of a file-specific paragraph when it names people, not a project."""
    if not para or para["files"].strip() == "*":
        return None
    holders = [h for h in para.get("copyright", "").split("\n") if h.strip()]
    if len(holders) != 1 or TEAM_WORDS.search(holders[0]):
        return None
    name = re.sub(
        r"^((©|\(c\)|copyright)\s*)*(\d{4}(\s*[-,]\s*\d{4})*\s*,?\s*)?",
        "",
        holders[0].strip(),
        flags=re.IGNORECASE,
    )
    name = re.sub(r"\s*(<.*?>|\(?https?://\S+\)?)", "", name).strip(" ,.")
    return name or None


def credits_files(pkg: str) -> dict[str, str]:
    """File name (lower case) -> artist from a credits file the package ships."""
    out: dict[str, str] = {}
    if pkg == "hedgewars-data":
        f = Path("/usr/share/games/hedgewars/Data/Music/credits.txt")
        for line in f.read_text(errors="replace").splitlines() if f.is_file() else []:
            if "=" in line:
                name, _, who = line.partition("=")
                who = re.sub(r"<.*?>", "", who.split(' - "')[0]).strip()
                out[name.strip().lower()] = who
    elif pkg == "naev-data":
        f = Path("/usr/share/naev/dat/snd/SOUND_LICENSE.yaml")
        who, section = None, None
        for line in f.read_text(errors="replace").splitlines() if f.is_file() else []:
            if line.startswith("- "):
                who = re.sub(r"<.*?>|\(.*?\)", "", line[2:]).strip().rstrip(":").strip()
                who = None if who.lower() in ("vega strike",) else who
            elif line.strip().endswith(":"):
                section = line.strip()[:-1]
            elif line.strip().startswith("- ") and section == "music" and who:
                out[line.strip()[2:].strip().lower()] = who
    elif pkg == "warzone2100-music":
        for f in Path("/usr/share/games/warzone2100/music/albums").glob("*/album.json"):
            album = json.loads(f.read_text())
            for track in album.get("tracks", []):
                if track.get("author"):
                    out[track["filename"].lower()] = track["author"]
    return out


# --- scanning --------------------------------------------------------------------------


def package_files(pkg: str) -> list[str]:
    res = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True)
    if res.returncode != 0:
        print(f"warning: {pkg} is not installed; skipped", file=sys.stderr)
        return []
    return sorted(
        p
        for p in res.stdout.splitlines()
        if AUDIO_RE.search(p) and Path(p).is_file() and not Path(p).is_symlink()
    )


def tag_text(tags, *keys: str) -> str:
    if tags is None:
        return ""
    for key in keys:
        try:
            value = tags.get(key) or tags.get(key.upper())
        except (KeyError, ValueError, TypeError):
            value = None
        if value:
            text = value.text if hasattr(value, "text") else value
            if isinstance(text, list):
                text = ", ".join(str(t) for t in text)
            return str(text).strip()
    return ""


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def scan() -> list[dict]:
    import mutagen

    rows: list[dict] = []
    seen: dict[str, str] = {}
    for pkg, spec in PACKAGES.items():
        paras = dep5(pkg)
        credited = credits_files(pkg)
        music = re.compile(spec.get("music", DEFAULT_MUSIC))
        skip = re.compile(spec["skip"]) if "skip" in spec else None
        for path in package_files(pkg):
            if not music.search(path) or (skip and skip.search(path)):
                continue
            try:
                audio = mutagen.File(path)
            except Exception as exc:  # noqa: BLE001 - a broken file is reported and skipped
                print(f"warning: {path}: {exc!r}", file=sys.stderr)
                continue
            if audio is None or audio.info is None:
                continue
            duration = float(audio.info.length)
            if duration < MIN_SECONDS:
                continue
            digest = sha256(path)
            if digest in seen:
                print(f"duplicate: {path} == {seen[digest]}", file=sys.stderr)
                continue
            seen[digest] = path
            para = dep5_match(paras, path)
            name = Path(path).name
            artist, source = None, ""
            for pat, who in spec.get("artist", {}).items():
                if re.search(pat, path):
                    artist, source = who, "package credits (override)"
                    break
            else:
                tag = tag_text(audio.tags, "artist", "TPE1")
                if tag and not BAD_TAGS.search(tag):
                    artist, source = tag, "tag"
                elif name.lower() in credited:
                    artist, source = credited[name.lower()], "package credits file"
                elif dep5_artist(para):
                    artist, source = dep5_artist(para), "debian/copyright Files paragraph"
            rows.append(
                {
                    "package": pkg,
                    "path": path,
                    "artist": canonical(artist) if artist else f"unknown:{pkg}",
                    "licence": spdx(para.get("license", "")) if para else "NOASSERTION",
                    "duration_s": f"{duration:.2f}",
                    "title": tag_text(audio.tags, "title", "TIT2"),
                    "sample_rate": getattr(audio.info, "sample_rate", ""),
                    "source": source or "none",
                }
            )
    return rows


def h0(key: str) -> int:
    return hashlib.sha256(key.encode()).digest()[0]


def assign(rows: list[dict]) -> list[dict]:
    training_pkgs = {r["package"] for r in rows if r["artist"] in TRAINING_ARTISTS}
    kept = []
    for r in rows:
        if r["path"] in TRAINING:
            r["role"] = "training"
        elif any(p in TRAINING_ARTISTS for p in people(r["artist"])):
            r["role"] = "same_artist"
        elif r["artist"].startswith("unknown:") and r["package"] in training_pkgs:
            print(
                f"dropped (unknown artist in a package with training artists): {r['path']}",
                file=sys.stderr,
            )
            continue
        else:
            r["role"] = "outside"
        kept.append(r)

    # Outside: merge collaborators/aliases (union-find), split on the group's key.
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for r in kept:
        names = [norm(p) or p for p in people(r["artist"])]
        for other in names[1:]:
            a, b = find(names[0]), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    first_path: dict[tuple[str, str], str] = {}
    unknown_sizes = Counter(r["artist"] for r in kept if r["artist"].startswith("unknown:"))
    for r in kept:
        if r["role"] == "training":
            r["split"] = "train"
        elif r["role"] == "outside":
            key = find(norm(people(r["artist"])[0]) or r["artist"])
            if unknown_sizes.get(r["artist"], 0) >= UNKNOWN_BY_TRACK:
                key = r["path"]  # large unattributed package: split by track
            r["split_key"] = key
            r["split"] = "tune" if h0(key) % 2 == 0 else "report"
        else:
            title = norm(r["title"])
            key = first_path.setdefault((r["artist"], title), r["path"]) if title else r["path"]
            r["split"] = "tune" if h0(key) % 2 == 0 else "report"
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--summary", action="store_true", help="print counts per role/split")
    args = parser.parse_args()
    rows = assign(scan())
    rows.sort(key=lambda r: (r["package"], r["path"]))
    cols = ["package", "path", "artist", "licence", "duration_s", "role", "split"]
    with args.out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}")
    if args.summary:
        summary(rows)


def summary(rows: list[dict]) -> None:
    from collections import defaultdict

    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["role"], r["split"])].append(r)
    for (role, split), rs in sorted(groups.items()):
        minutes = sum(float(r["duration_s"]) for r in rs) / 60
        artists = {r["artist"] for r in rs}
        unknown = sum(r["artist"].startswith("unknown:") for r in rs)
        print(
            f"{role:12s} {split:6s} tracks={len(rs):4d} artists={len(artists):4d} "
            f"unknown_tracks={unknown:3d} minutes={minutes:7.1f}"
        )
    same = Counter((r["artist"], r["split"]) for r in rows if r["role"] == "same_artist")
    for (artist, split), n in sorted(same.items()):
        print(f"  same_artist {artist:28s} {split:6s} {n}")
    big = Counter(r.get("split_key") for r in rows if r["role"] == "outside").most_common(8)
    print("largest outside artist groups:", big)
    print("licences:", Counter(r["licence"] for r in rows).most_common())
    total_h = sum(float(r["duration_s"]) for r in rows) / 3600
    print(f"total hours: {total_h:.1f}")


if __name__ == "__main__":
    main()
