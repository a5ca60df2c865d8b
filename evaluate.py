"""Evaluates generated images and classifiers (see configs/evaluate.py for the command)."""

from absl import app, flags, logging
from ml_collections import config_flags

from medgan_jax.study import evaluate

_CONFIG = config_flags.DEFINE_config_file("config", "configs/evaluate.py", "Evaluation config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/eval", "Reports and plots go here.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    evaluate.evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
