"""Run directories as medgan_jax wrote them before runs.py (run.json) existed."""

from __future__ import annotations

import json
import shutil

from medgan_jax import runs


def as_legacy_run(workdir, copy_to):
    """A copy of `workdir` with the old metadata: no run.json; classes.json a list of class
    names (GAN runs) or {"class_names", "task"} (classifier runs)."""
    shutil.copytree(workdir, copy_to)
    run = runs.load(str(copy_to))
    (copy_to / "run.json").unlink()
    if run.kind == "gan":
        classes = list(run.class_names)
    else:
        classes = {"class_names": list(run.class_names), "task": run.task}
    (copy_to / "classes.json").write_text(json.dumps(classes))
    return copy_to
