"""Evaluates generated images and classifiers (configs/evaluate.py, config.job='evaluate'),
or runs the whole augmentation study (configs/study.py, config.job='study')."""

if __name__ == "__main__":  # before JAX is imported (medgan_jax/launch.py says why)
    from medgan_jax import launch

    launch.reexec_with_malloc_tunables()

from medgan_jax import app  # noqa: E402
from medgan_jax.evaluation.job import evaluate  # noqa: E402
from medgan_jax.study import runner  # noqa: E402

JOBS = {"evaluate": evaluate, "study": runner.main}


def run_job(config, workdir: str):
    """The job the config names in `config.job`."""
    job = config.get("job", "")
    if job not in JOBS:
        raise ValueError(f"config.job='{job}'; evaluate.py runs one of {sorted(JOBS)}.")
    return JOBS[job](config, workdir)


if __name__ == "__main__":
    app.run(run_job, default_config="configs/evaluate.py", default_workdir="runs/eval")
