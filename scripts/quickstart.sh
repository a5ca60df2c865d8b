#!/usr/bin/env bash
# The project's main job on the embedded synthetic dataset (sets up .venv first): the
# augmentation study's demo preset (a rare-class learning curve: base vs classic
# augmentation vs DCGAN images vs both, 3 seeds, tested with DeLong and paired t-tests).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh" requirements.txt
python evaluate.py --config=configs/study.py:demo --workdir=runs/demo "$@"
