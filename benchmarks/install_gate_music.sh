#!/usr/bin/env bash
# Install the Debian packages whose music benchmarks/data/gate_music.csv lists.
# Root only (apt-get). Idempotent: already-installed packages are left as they are.
# Approximate download: ~3.8 GB for all of them (~3.5 GB beyond the four packages of the
# demo training snapshot: wesnoth-1.16-music, singularity-music, hyperrogue-music,
# asc-music); largest: supertuxkart-data 0.63 GB, widelands-data 0.38 GB, naev-data
# 0.35 GB, freedroidrpg-data 0.23 GB. Then: python3 benchmarks/data/build_gate_music.py
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "install_gate_music.sh: run as root (apt-get install)" >&2
    exit 1
fi

PACKAGES=(
    a7xpg-data
    abe-data
    adonthell-data
    alienblaster-data
    amoebax-data
    ardentryst
    asc-music
    brainparty-data
    btanks-data
    bumprace-data
    caveexpress-data
    colobot-common-sounds
    davegnukem-data
    drascula-music
    enigma-data
    epiphany-data
    extremetuxracer-data
    flare-game
    freeciv-data
    freedink-data
    freedroidrpg-data
    freeorion-data
    fretsonfire-songs-muldjord
    fretsonfire-songs-sectoid
    frozen-bubble-data
    gigalomania-data
    glob2-data
    gunroar-data
    hannah-data
    hedgewars-data
    hex-a-hop-data
    hyperrogue-music
    instead-data
    lincity-ng-data
    lordsawar-data
    lugaru-data
    marsshooter-data
    mazeofgalious-data
    mu-cade-data
    naev-data
    noiz2sa-data
    openclonk-data
    orbital-eunuchs-sniper-data
    parsec47-data
    pax-britannica-data
    phlipple-data
    pinball-data
    planetblupi-music-ogg
    plee-the-bear-data
    powermanga-data
    pushover-data
    raincat-data
    rrootage-data
    scorched3d-data
    searchandrescue-data
    singularity-music
    starfighter-data
    supertux-data
    supertuxkart-data
    titanion-data
    torus-trooper-data
    trackballs-data
    tumiki-fighters-data
    tuxmath-data
    tuxtype-data
    warmux-data
    warzone2100-music
    wesnoth-1.16-music
    widelands-data
    wizznic-data
    xmoto-data
    zaz-data
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install_gate_music.sh: all ${#PACKAGES[@]} packages already installed"
    exit 0
fi

echo "install_gate_music.sh: installing ${#missing[@]} of ${#PACKAGES[@]} packages"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
