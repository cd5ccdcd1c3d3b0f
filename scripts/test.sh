#!/usr/bin/env bash
# Set up (venv, packages) and run the whole test suite with coverage.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python -m pytest --cov=trioecho --cov-report=term "$@"
