"""Trains a classifier (see configs/classifier.py for the command and what it writes)."""

if __name__ == "__main__":  # before JAX is imported (medgan_jax/launch.py says why)
    from medgan_jax import launch

    launch.reexec_with_malloc_tunables()

from medgan_jax import app  # noqa: E402
from medgan_jax.classify import train  # noqa: E402

if __name__ == "__main__":
    app.run(
        train.train_and_evaluate, default_config="configs/classifier.py", default_workdir="runs/clf"
    )
