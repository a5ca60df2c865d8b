#!/usr/bin/env bash
# The whole test suite (sets up .venv with the dev requirements first).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh" requirements-dev.txt
python -m pytest -q "$@"
