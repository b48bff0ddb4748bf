#!/usr/bin/env bash
# Set up from nothing and run the whole test suite on SQLite and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
.venv/bin/ruff check .
.venv/bin/mypy provenance flows training generation
# The dependency direction (.importlinter; docs/ARCHITECTURE.md).
.venv/bin/lint-imports --no-cache --no-logo
.venv/bin/python -m pytest -q "$@"
