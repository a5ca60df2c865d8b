#!/usr/bin/env bash
# The GPU check in one call (benchmarks/gpu_check.py): a table on stdout and gpu_check.json
# in $OUT (or benchmarks/results), in under 8 minutes on an H100/H200. shared/pydeps, if
# present, supplies pure-Python modules the machine lacks (ml_collections, ...).
cd "$(dirname "$0")/.." && PYTHONPATH="$PWD/shared/pydeps${PYTHONPATH:+:$PYTHONPATH}" \
  exec python3 benchmarks/gpu_check.py --out "${OUT:-benchmarks/results}" "$@"
