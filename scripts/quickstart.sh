#!/usr/bin/env bash
# The project's main job on the embedded synthetic dataset (sets up .venv first).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh" requirements.txt
python -m medgan_jax.data.preview --config=configs/data.py:synthetic_lesions \
  --workdir=runs/quickstart "$@"
