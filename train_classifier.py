"""Trains a classifier (see configs/classifier.py for the command and what it writes)."""

from medgan_jax import app
from medgan_jax.classify import train

if __name__ == "__main__":
    app.run(
        train.train_and_evaluate, default_config="configs/classifier.py", default_workdir="runs/clf"
    )
