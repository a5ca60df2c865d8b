"""Trains a GAN (configs/dcgan.py, pggan.py or bagan.py say the command and what it writes)."""

from absl import app, flags, logging
from ml_collections import config_flags

from medgan_jax import parallel
from medgan_jax.gan import train

_CONFIG = config_flags.DEFINE_config_file("config", "configs/dcgan.py", "GAN config file.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/dcgan", "Checkpoints, logs and samples go here.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    parallel.enable_compilation_cache()
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
