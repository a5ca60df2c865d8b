#!/usr/bin/env bash
# The project's main job on the embedded synthetic dataset (sets up .venv first): the
# augmentation study's quick preset (base vs classic augmentation vs DCGAN images).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh" requirements.txt
python evaluate.py --config=configs/study.py:quick --workdir=runs/study "$@"
