#!/usr/bin/env bash
# The GPU check in one call (benchmarks/gpu_check.py: table on stdout, gpu_check.json in $OUT or benchmarks/results, under 8 minutes on an H100/H200); shared/pydeps, if carried, supplies missing pure-Python modules.
cd "$(dirname "$0")/.." && PYTHONPATH="$PWD/shared/pydeps${PYTHONPATH:+:$PYTHONPATH}" exec python3 benchmarks/gpu_check.py --out "${OUT:-benchmarks/results}" "$@"
