"""Evaluates generated images and classifiers (configs/evaluate.py, config.job='evaluate'),
or runs the whole augmentation study (configs/study.py, config.job='study')."""

from medgan_jax import app
from medgan_jax.evaluation.job import evaluate
from medgan_jax.study import runner

JOBS = {"evaluate": evaluate, "study": runner.main}


def run_job(config, workdir: str):
    """The job the config names in `config.job`."""
    job = config.get("job", "")
    if job not in JOBS:
        raise ValueError(f"config.job='{job}'; evaluate.py runs one of {sorted(JOBS)}.")
    return JOBS[job](config, workdir)


if __name__ == "__main__":
    app.run(run_job, default_config="configs/evaluate.py", default_workdir="runs/eval")
