#!/usr/bin/env bash
# Creates .venv (once) and installs the given requirements file when it changed.
# Usage: source scripts/setup_env.sh requirements.txt|requirements-dev.txt
# Installs with uv when it can get it (a fresh environment in a fraction of pip's time),
# else with pip; both resolve the same pins. Both write the packages' bytecode at install
# (pip does by default, uv with --compile-bytecode): where PYTHONDONTWRITEBYTECODE is set,
# as on the machines this project is developed on, every process would otherwise compile
# TensorFlow's and JAX's sources again at import (README, Quickstart: the times measured).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
reqs="${1:-requirements.txt}"
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$(cat requirements.txt "$reqs" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  if ! { .venv/bin/python -m pip install -q uv 2>/dev/null \
      && VIRTUAL_ENV="$PWD/.venv" .venv/bin/python -m uv pip install -q --compile-bytecode -r "$reqs"; }; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r "$reqs"
  fi
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# glibc's malloc settings for every process below (medgan_jax/launch.py says why; the
# entry points otherwise restart themselves to set them).
GLIBC_TUNABLES="$(.venv/bin/python medgan_jax/launch.py)"
if [ -n "$GLIBC_TUNABLES" ]; then export GLIBC_TUNABLES; else unset GLIBC_TUNABLES; fi
