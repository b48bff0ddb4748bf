#!/usr/bin/env bash
# Set up from nothing and run the main job end to end on the embedded default:
# SQLite + a local folder under $FAIRCHORD_HOME (default ~/.fairchord).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
./scripts/setup.sh
# The demo's closing table of step times starts with the setup.
export FAIRCHORD_DEMO_SETUP_SECONDS=$((SECONDS - started))
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
exec .venv/bin/fairchord demo "$@"
