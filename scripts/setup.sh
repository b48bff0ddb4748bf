#!/usr/bin/env bash
# Set up fairchord from nothing: Debian packages (as root), a virtualenv in
# .venv with the locked stack, and the project itself. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${FAIRCHORD_VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3

# Debian packages: the demo corpus audio, fluidsynth + a soundfont to render
# the score rows, and Chromium for the HTML report test.
APT_PACKAGES="wesnoth-1.16-music singularity-music hyperrogue-music asc-music drascula-music
  frozen-bubble-data sound-theme-freedesktop fluidsynth timgm6mb-soundfont chromium"
if [ "${FAIRCHORD_SKIP_APT:-0}" != "1" ]; then
  missing=""
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = "0" ]; then
      echo "installing Debian packages:$missing"
      apt-get update -q >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
    else
      echo "warning: not root; install these Debian packages yourself:$missing" >&2
    fi
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# pip, with its output shown only when it fails.
quiet_pip() {
  local log
  log=$(mktemp)
  if ! "$VENV/bin/pip" "$@" >"$log" 2>&1; then
    grep -v "WARNING: Location" "$log" >&2 || true
    echo "error: pip $* failed" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
}

stamp="$VENV/.fairchord-lock.sha256"
want=$(sha256sum requirements/lock.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  quiet_pip install -q --upgrade pip "setuptools==84.2.1"
  # --no-deps: the lock is complete, and it keeps pip from resolving another torch.
  quiet_pip install -q --no-deps -r requirements/lock.txt
  echo "$want" > "$stamp"
fi
quiet_pip install -q --no-deps --no-build-isolation -e .
echo "fairchord installed in $VENV"
