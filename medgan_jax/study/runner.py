"""The augmentation study: data sizes x methods x seeds, each cell a classifier run.

For every (size, seed) the real training subset is fixed once in a manifest; every GAN
of that cell is trained on exactly those images (its minority class), sampled once,
and shared by every method that mixes its images in. A cell whose metrics.json exists
is skipped, so re-running resumes and adding a method or size runs only the new cells;
a failing cell is recorded and the others go on.

  root/size=S/seed=K/manifest_train.csv     the real subset
  root/size=S/seed=K/gan=NAME/              GAN run (+ generated/ samples)
  root/size=S/seed=K/method=NAME/           classifier run (metrics.json, predictions)
  root/reference_classifier/                all-data classifier for IS/FID (unless the
                                            grid has size=all, method=base)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
import traceback

import jax
import ml_collections
from absl import logging

from medgan_jax.classify import mixing
from medgan_jax.data import load_split, subsets


@dataclasses.dataclass(frozen=True)
class Method:
    """A way to train the classifier: an augmentation name and/or a GAN's images."""

    augment: str = "none"
    gan: str = ""  # a key of config.gans ('' = real images only)


METHODS = {
    "base": Method(),
    "classic": Method(augment="classic"),
    "photometric": Method(augment="photometric"),
    "classic+photometric": Method(augment="classic+photometric"),
    "dcgan": Method(gan="dcgan"),
    "pggan": Method(gan="pggan"),
    "pggan+filtering": Method(gan="pggan+filtering"),
    "dcgan+classic": Method(augment="classic", gan="dcgan"),
    "bagan": Method(gan="bagan"),
}


_STARTED = time.monotonic()


def say(message: str) -> None:
    """A progress line with the time since the study started."""
    minutes, seconds = divmod(int(time.monotonic() - _STARTED), 60)
    print(f"[study {minutes}m{seconds:02d}s] {message}", flush=True)


def method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"config.methods names '{name}'; known methods: {list(METHODS)}.")
    return METHODS[name]


SIZE_UNITS = ("per_class", "minority")


def size_subset(
    size: str, seed: int, unit: str = "per_class", minority: str = "", base_counts: str = ""
) -> dict:
    """A data.subset update for a size of the grid.

    unit 'per_class': 'N' images of every class, 'P%' of each class, or 'all'.
    unit 'minority': 'N' images of the minority class, the other classes as
    `base_counts` (data.subset.class_counts, e.g. 'benign=400') leaves them; 'all' keeps
    every minority image. This is the rare-disease learning curve.
    """
    size = str(size).strip()
    if unit not in SIZE_UNITS:
        raise ValueError(f"config.size_unit='{unit}'; expected one of {SIZE_UNITS}.")
    if size == "all":
        return dict(per_class=0, fraction=1.0, seed=seed)
    if unit == "minority":
        if not (size.isdigit() and int(size) > 0):
            raise ValueError(
                f"config.sizes item '{size}'; with size_unit='minority' expected 'all' or a "
                "count of minority images ('50')."
            )
        counts = ",".join(filter(None, (base_counts, f"{minority}={int(size)}")))
        return dict(per_class=0, fraction=1.0, seed=seed, class_counts=counts)
    if size.endswith("%"):
        return dict(per_class=0, fraction=float(size[:-1]) / 100, seed=seed)
    if size.isdigit() and int(size) > 0:
        return dict(per_class=int(size), fraction=1.0, seed=seed)
    raise ValueError(
        f"config.sizes item '{size}'; expected 'all', a per-class count ('100') or a "
        "percentage ('25%')."
    )


def run_study(config: ml_collections.ConfigDict, root: str) -> dict:
    """Runs every missing cell of the grid; returns {cell id: result or error}."""
    for name in config.methods:
        needed = method(name).gan
        if needed and needed not in config.gans:
            raise ValueError(f"Method '{name}' needs config.gans.{needed}, which is not set.")
    global _STARTED
    _STARTED = time.monotonic()
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "study_config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=1))
    cells = {}
    for size in config.sizes:
        for seed in config.seeds:
            cell_root = os.path.join(root, f"size={size}", f"seed={seed}")
            manifest = write_subset_manifest(config, size, seed, cell_root)
            for name in config.methods:
                key = f"size={size}/seed={seed}/method={name}"
                try:
                    cells[key] = run_cell(config, name, seed, manifest, cell_root)
                except Exception as error:  # a failed cell must not stop the grid
                    logging.error("Cell %s failed: %s", key, traceback.format_exc())
                    cells[key] = {"error": f"{type(error).__name__}: {error}"}
                    say(f"{key} FAILED: {error}")
    return cells


def write_subset_manifest(
    config: ml_collections.ConfigDict, size: str, seed: int, cell_root: str
) -> str:
    """The cell's real training subset, written once and pinned by manifest thereafter."""
    path = os.path.join(cell_root, "manifest_train.csv")
    if not os.path.exists(path):
        data = copy.deepcopy(config.data)
        data.subset.update(
            size_subset(
                size, seed, config.size_unit, config.minority_class, data.subset.class_counts
            )
        )
        records = load_split(data, "train")
        if jax.process_index() == 0:
            subsets.write_manifest(records, path)
        say(f"size={size} seed={seed}: {records.summary()}")
    return path


def run_cell(
    config: ml_collections.ConfigDict, name: str, seed: int, manifest: str, cell_root: str
) -> dict:
    """Trains (or finds) one classifier of the grid, after its GAN if it needs one."""
    from medgan_jax.classify import train as classify_train

    workdir = os.path.join(cell_root, f"method={name}")
    done = os.path.join(workdir, "metrics.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    spec = method(name)
    clf = copy.deepcopy(config.classifier)
    clf.seed = seed
    clf.data = copy.deepcopy(config.data)
    clf.data.subset.manifest = manifest
    clf.augment = spec.augment
    if spec.gan:
        folder = generated_folder(config, spec.gan, seed, manifest, cell_root)
        clf.synthetic.update(
            amount=config.synthetic_amount, class_name=config.minority_class, folder=folder
        )
    say(f"training classifier {workdir}")
    return classify_train.train_and_evaluate(clf, workdir)


def gan_workdir(cell_root: str, gan: str) -> str:
    return os.path.join(cell_root, f"gan={gan}")


def generated_folder(
    config: ml_collections.ConfigDict, gan: str, seed: int, manifest: str, cell_root: str
) -> str:
    """Trains the cell's GAN on its real subset (once) and samples its images (once)."""
    from medgan_jax.gan import sample
    from medgan_jax.gan import train as gan_train

    workdir = gan_workdir(cell_root, gan)
    folder = os.path.join(workdir, "generated")
    if os.path.exists(os.path.join(folder, "manifest.json")):
        return folder
    gan_config = copy.deepcopy(config.gans[gan])
    gan_config.seed = seed
    gan_config.data = copy.deepcopy(config.data)
    gan_config.data.subset.manifest = manifest
    conditional = gan_train.is_conditional(gan_config)
    if not conditional:
        gan_config.gan.classes = (config.minority_class,)
    say(f"training GAN {workdir}")
    gan_train.train_and_evaluate(gan_config, workdir)
    real = load_split(gan_config.data, "train")
    count = max(1, mixing.synthetic_count(config.synthetic_amount, real, config.minority_class))
    sample.generate_images(
        workdir, count, folder, config.minority_class if conditional else "", seed=seed
    )
    return folder


def reference_classifier(config: ml_collections.ConfigDict, root: str) -> str:
    """A base classifier on all real training data: the feature network for GAN quality
    (the grid's own all-data base cell when it has one)."""
    from medgan_jax.classify import train as classify_train

    if "all" in config.sizes and "base" in config.methods:
        cell = os.path.join(root, "size=all", f"seed={config.seeds[0]}", "method=base")
        if os.path.exists(os.path.join(cell, "metrics.json")):
            return cell
    workdir = os.path.join(root, "reference_classifier")
    if not os.path.exists(os.path.join(workdir, "metrics.json")):
        clf = copy.deepcopy(config.classifier)
        clf.data = copy.deepcopy(config.data)
        say(f"training the reference classifier {workdir}")
        classify_train.train_and_evaluate(clf, workdir)
    return workdir


def environment() -> dict:
    """Versions and devices, so a table can be traced to what produced it."""
    import platform

    import flax
    import numpy as np
    import optax

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


def main(config: ml_collections.ConfigDict, root: str) -> dict:
    """The whole study: grid, GAN quality, statistics, results.json, report.md, plots."""
    from medgan_jax.study import aggregate, report

    cells = run_study(config, root)
    needs_gan = any(method(m).gan for m in config.methods)
    quality = {}
    if needs_gan and config.gan_eval.enabled:
        say("measuring GAN quality (IS, FID, KID, MS-SSIM, memorisation)")
        quality = aggregate.gan_quality(config, root, reference_classifier(config, root))
    results = {
        "environment": environment(),
        "wall_seconds": {k: v.get("wall_seconds") for k, v in cells.items()},
        "sizes": [str(s) for s in config.sizes],
        "size_unit": config.size_unit,
        "minority_class": config.minority_class,
        "seeds": list(config.seeds),
        "methods": list(config.methods),
        "metrics": list(config.metrics),
        "synthetic_amount": config.synthetic_amount,
        "table": aggregate.summarise(config, root, cells),
        "delong": aggregate.delong_tests(config, root, cells),
        "gan_quality": quality,
        "failed_cells": {k: v["error"] for k, v in cells.items() if "error" in v},
    }
    if jax.process_index() == 0:
        with open(os.path.join(root, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        for metric in config.metrics:
            name = f"plot_{report.file_name(metric)}.png"
            report.metric_plot(os.path.join(root, name), results, metric)
        text = report.study_markdown(results)
        with open(os.path.join(root, "report.md"), "w") as f:
            f.write(text)
        print(text, flush=True)
    say(f"done; report in {os.path.join(root, 'report.md')}")
    return results
