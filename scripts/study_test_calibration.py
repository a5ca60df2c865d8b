"""How often the study's test is right: 95% CI coverage and false-positive rate of the
two-level bootstrap (medgan_jax.metrics.study_stats) on simulated studies with a known
effect, a per-seed effect and a shared test set (the simulation of
tests/metrics/test_study_stats.py, with more trials).

  python scripts/study_test_calibration.py [--trials 300]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medgan_jax.metrics import study_stats  # noqa: E402
from tests.metrics.test_study_stats import _simulated_study  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    args = parser.parse_args()
    for num_seeds in (3, 6):
        for effect in (0.0, 0.6):
            rng = np.random.default_rng(10)
            covered = rejected = 0
            for trial in range(args.trials):
                labels, rows = _simulated_study(rng, effect, num_seeds=num_seeds)
                reps, est = study_stats.two_level_bootstrap(
                    rows, labels, num_seeds, n_resamples=400, seed=trial
                )
                diff = study_stats.summarise_difference(
                    reps["b"] - reps["a"], est["b"] - est["a"], num_seeds
                )
                covered += diff["ci_low"] <= effect <= diff["ci_high"]
                rejected += diff["p_value"] < 0.05
            print(
                f"seeds {num_seeds}  effect {effect}:  95% CI coverage {covered / args.trials:.3f}"
                f"  rejected at p < 0.05 {rejected / args.trials:.3f}  ({args.trials} studies)"
            )


if __name__ == "__main__":
    main()
