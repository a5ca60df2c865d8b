"""Evaluates generated images and classifiers (configs/evaluate.py), or runs the whole
augmentation study (configs/study.py), as the config says."""

from absl import app, flags, logging
from ml_collections import config_flags

from medgan_jax import parallel
from medgan_jax.evaluation.job import evaluate
from medgan_jax.study import runner

_CONFIG = config_flags.DEFINE_config_file("config", "configs/evaluate.py", "Evaluation config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/eval", "Reports and plots go here.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    parallel.enable_compilation_cache()
    config = _CONFIG.value
    job = runner.main if "sizes" in config else evaluate  # a study config has sizes
    job(config, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
