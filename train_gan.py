"""Trains a GAN (configs/dcgan.py, pggan.py or bagan.py say the command and what it writes)."""

from medgan_jax import app
from medgan_jax.gan import train

if __name__ == "__main__":
    app.run(train.train, default_config="configs/dcgan.py", default_workdir="runs/dcgan")
