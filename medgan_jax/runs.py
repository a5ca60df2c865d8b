"""The run-directory contract: what every job writes about itself and every reader loads.

A run directory holds `config.json` (the full config) and `run.json`:

  {"schema": 1, "kind": "gan" | "classifier", "class_names": [...], "task": ...,
   "family": ..., "conditional": ..., "versions": {...}}

Runs written before `run.json` existed (a `classes.json` that is a list in GAN runs and
a dict {"class_names", "task"} in classifier runs) load through the same `load`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform

import flax
import jax
import ml_collections
import numpy as np
import optax

SCHEMA = 1
KINDS = ("gan", "classifier")
RUN_FILE, CONFIG_FILE, LEGACY_CLASSES_FILE = "run.json", "config.json", "classes.json"
# Before run.json, BAGAN was the one family conditional whatever config.gan.conditional said.
_LEGACY_ALWAYS_CONDITIONAL = ("bagan",)


@dataclasses.dataclass(frozen=True)
class Run:
    """A run directory's metadata: its config and what it was trained on."""

    workdir: str
    kind: str  # 'gan' | 'classifier'
    config: ml_collections.ConfigDict
    class_names: tuple[str, ...]
    task: str = ""  # classifiers: 'binary' | 'multiclass' | 'multilabel'
    family: str = ""  # GANs: a key of medgan_jax.gan.families.FAMILIES
    conditional: bool = False  # GANs: whether the generator takes class labels
    versions: dict = dataclasses.field(default_factory=dict)


def versions() -> dict:
    """Software and devices, so a result can be traced to what produced it."""
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "processes": jax.process_count(),
    }


def write(
    workdir: str,
    kind: str,
    config: ml_collections.ConfigDict,
    class_names,
    *,
    task: str = "",
    family: str = "",
    conditional: bool = False,
) -> Run:
    """Writes config.json and run.json (process 0 only) and returns the Run."""
    if kind not in KINDS:
        raise ValueError(f"Run kind '{kind}'; expected one of {KINDS}.")
    run = Run(
        workdir=workdir,
        kind=kind,
        config=config,
        class_names=tuple(str(c) for c in class_names),
        task=task,
        family=family,
        conditional=bool(conditional),
        versions=versions(),
    )
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
            f.write(config.to_json_best_effort(indent=1))
        meta = {"schema": SCHEMA, **dataclasses.asdict(run)}
        del meta["workdir"], meta["config"]
        with open(os.path.join(workdir, RUN_FILE), "w") as f:
            json.dump(meta, f, indent=1)
    return run


def load(workdir: str, kind: str | None = None) -> Run:
    """The Run of `workdir` (either schema); with `kind`, fails unless it is that kind."""
    config = ml_collections.ConfigDict(_read_json(workdir, CONFIG_FILE))
    if os.path.exists(os.path.join(workdir, RUN_FILE)):
        meta = _read_json(workdir, RUN_FILE)
        if meta.get("schema", 0) > SCHEMA:
            raise ValueError(
                f"{os.path.join(workdir, RUN_FILE)} has schema {meta['schema']}; this version "
                f"of medgan_jax reads schema {SCHEMA} or older. Update medgan_jax."
            )
        run = Run(
            workdir=workdir,
            kind=meta["kind"],
            config=config,
            class_names=tuple(meta["class_names"]),
            task=meta.get("task", ""),
            family=meta.get("family", ""),
            conditional=bool(meta.get("conditional", False)),
            versions=meta.get("versions", {}),
        )
    else:
        run = _load_legacy(workdir, config)
    if kind is not None and run.kind != kind:
        raise ValueError(f"{workdir} is a {run.kind} run; expected a {kind} run.")
    return run


def _load_legacy(workdir: str, config: ml_collections.ConfigDict) -> Run:
    """A run written before run.json: classes.json is a list (GAN) or a dict (classifier)."""
    classes = _read_json(workdir, LEGACY_CLASSES_FILE)
    if isinstance(classes, dict):
        return Run(workdir, "classifier", config, tuple(classes["class_names"]), classes["task"])
    family = config.gan.family
    conditional = bool(config.gan.conditional) or family in _LEGACY_ALWAYS_CONDITIONAL
    return Run(workdir, "gan", config, tuple(classes), family=family, conditional=conditional)


def _read_json(workdir: str, name: str):
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} does not exist: {workdir} is not a medgan_jax run directory (or the run "
            "has not started yet)."
        )
    with open(path) as f:
        return json.load(f)
