"""The augmentation study: data sizes x methods x seeds, each cell a classifier run.

For every (size, seed) the real training subset is fixed once in a manifest; every GAN
of that cell is trained on exactly those images (its minority class), sampled once,
and shared by every method that mixes its images in. A cell whose metrics.json exists
is skipped, so re-running resumes and adding a method or size runs only the new cells;
a failing cell is recorded and the others go on. The folders are grid.py's; the
reference classifier is the grid's own size=all base cell when it has one. With
config.workers the cells run in several processes (`workers_run`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import copy
import fcntl
import functools
import hashlib
import json
import multiprocessing
import os
import time
import traceback

import jax
import ml_collections
from absl import logging
from jax.experimental import multihost_utils

from medgan_jax import runs
from medgan_jax.classify import mixing
from medgan_jax.classify import train as classify_train
from medgan_jax.data import load_split, subsets
from medgan_jax.data.records import select_classes
from medgan_jax.gan import families, sample
from medgan_jax.gan import train as gan_train
from medgan_jax.study import aggregate, comparisons, grid, report


class StudyLog:
    """Progress lines with the time since the study started (`started`: time.time())."""

    def __init__(self, started: float | None = None):
        self.started = time.time() if started is None else started

    def __call__(self, message: str) -> None:
        minutes, seconds = divmod(int(time.time() - self.started), 60)
        print(f"[study {minutes}m{seconds:02d}s] {message}", flush=True)


def run_study(config: ml_collections.ConfigDict, root: str, say: StudyLog) -> dict:
    """Runs every missing cell of the grid; returns {cell id: result or error}."""
    for name in config.methods:
        needed = grid.method(name).gan
        if needed and needed not in config.gans:
            raise ValueError(f"Method '{name}' needs config.gans.{needed}, which is not set.")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "study_config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=1))
    groups = [(size, seed) for size in config.sizes for seed in config.seeds]
    workers = workers_for(config, len(groups) * len(config.methods))
    if workers > 1:
        return workers_run(config, root, groups, workers, say)
    cells = {}
    for size, seed in groups:
        cells.update(run_group(config, root, size, seed, say))
    return cells


def run_group(config: ml_collections.ConfigDict, root: str, size, seed: int, say) -> dict:
    """Every method's cell of one (size, seed): {cell id: result or error}."""
    manifest = write_subset_manifest(config, size, seed, grid.cell_root(root, size, seed), say)
    cells = {}
    for name in config.methods:
        cells.update(run_recorded(config, root, size, seed, name, manifest, say))
    return cells


def run_recorded(config, root: str, size, seed: int, name: str, manifest: str, say) -> dict:
    """{cell id: result}, or the cell's error recorded there: a failed cell must not stop
    the grid."""
    key = grid.cell_key(size, seed, name)
    try:
        return {key: run_cell(config, name, seed, manifest, grid.cell_root(root, size, seed), say)}
    except mixing.NoCeilingError as error:
        say(f"{key}: no ceiling available ({error})")
        return {key: {"no_ceiling": str(error)}}
    except Exception as error:
        logging.error("Cell %s failed: %s", key, traceback.format_exc())
        say(f"{key} FAILED: {error}")
        return {key: {"error": f"{type(error).__name__}: {error}"}}


def workers_for(config: ml_collections.ConfigDict, num_cells: int) -> int:
    """How many processes run the grid's cells (each cell one task): config.workers,
    where 0 = one per CPU core (at most 4) on a CPU backend, never more than the cells;
    always 1 in a multi-process (multi-host) run and on accelerators, whose programs each
    fill the device."""
    requested = config.get("workers", 1)
    if jax.process_count() > 1 or num_cells < 2:
        return 1
    if requested == 0:
        cpu = jax.default_backend() == "cpu"
        requested = min(os.cpu_count() or 1, 4) if cpu else 1
    return max(1, min(requested, num_cells))


def workers_run(config, root: str, groups: list, workers: int, say) -> dict:
    """Every cell in `workers` fresh processes (spawned: a forked JAX runtime is unsafe),
    one task per cell, largest sizes first and within a group the cells that train a GAN
    first, so that the processes finish together (whole groups as tasks left one process
    alone with the last group). XLA:CPU runs the small networks of a study on about one
    core, so a 2-core machine finishes the grid in about half the time. A cell's numbers
    do not depend on the process it ran in nor on what ran before it (tests/study)."""
    say(f"running {len(groups)} (size, seed) groups in {workers} processes")
    settings = {
        name: getattr(jax.config, name)
        for name in ("jax_platforms", "jax_compilation_cache_dir", "jax_threefry_partitionable")
    }
    context = multiprocessing.get_context("spawn")
    order = sorted(groups, key=lambda g: -list(config.sizes).index(g[0]))
    methods = sorted(config.methods, key=lambda name: not grid.method(name).gan)  # stable
    cells = {}
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(settings,)
    ) as pool:
        log = StudyLog(say.started)
        reference = None
        if measures_gan_quality(config):  # its feature network, beside the cells
            reference = pool.submit(reference_classifier, config, root, log)
        manifests = {  # while the first process starts
            group: write_subset_manifest(config, *group, grid.cell_root(root, *group), say)
            for group in order
        }
        futures = {
            pool.submit(run_recorded, config, root, *group, name, manifests[group], log): group
            for group in order
            for name in methods
        }
        unfinished = collections.Counter(futures.values())
        quality = []  # each finished group's GANs measured while later cells train
        measure = functools.partial(aggregate.group_gan_quality, config, root)
        for future in concurrent.futures.as_completed(futures):
            group = futures[future]
            unfinished[group] -= 1
            if unfinished[group] == 0 and reference is not None and reference.exception() is None:
                quality.append(pool.submit(measure, reference.result(), *group))
        for future in futures:
            cells.update(future.result())
        for future in quality:  # a failure here is raised again where main() measures
            if future.exception() is not None:
                logging.error("GAN quality in a worker failed: %s", future.exception())
    keys = [grid.cell_key(size, seed, name) for size, seed in groups for name in config.methods]
    return {key: cells[key] for key in keys}  # in grid order, as one process returns them


def _start_worker(settings: dict) -> None:
    """A study worker's JAX: the parent's platform, compilation cache and PRNG settings."""
    from medgan_jax import app

    cache = settings.pop("jax_compilation_cache_dir")
    app.configure(compilation_cache=cache or "", distributed=False)
    for name, value in settings.items():  # after configure(), which sets its own defaults
        if value is not None:
            jax.config.update(name, value)


def write_subset_manifest(
    config: ml_collections.ConfigDict, size: str, seed: int, cell: str, say=print
) -> str:
    """The cell's real training subset, written once and pinned by manifest thereafter."""
    path = os.path.join(cell, "manifest_train.csv")
    if not os.path.exists(path):
        data = copy.deepcopy(config.data)
        data.subset.update(
            grid.size_subset(
                size, seed, config.size_unit, config.minority_class, data.subset.class_counts
            )
        )
        records = load_split(data, "train")
        if jax.process_index() == 0:
            subsets.write_manifest(records, path)
        say(f"size={size} seed={seed}: {records.summary()}")
    if jax.process_count() > 1:  # the others read what process 0 wrote
        multihost_utils.sync_global_devices(f"manifest {path}")
    return path


def run_cell(
    config: ml_collections.ConfigDict, name: str, seed: int, manifest: str, cell: str, say
) -> dict:
    """Trains (or finds) one classifier of the grid, after its GAN if it needs one."""
    workdir = grid.method_workdir(cell, name)
    done = os.path.join(workdir, "metrics.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    spec = grid.method(name)
    clf = copy.deepcopy(config.classifier)
    clf.seed = seed
    clf.data = copy.deepcopy(config.data)
    clf.data.subset.manifest = manifest
    clf.augment = spec.augment
    if spec.class_weighting:
        clf.class_weighting = spec.class_weighting
    if spec.added:
        clf.synthetic.update(
            source=spec.added, amount=config.synthetic_amount, class_name=config.minority_class
        )
    if spec.gan:
        folder = generated_folder(config, spec.gan, seed, manifest, cell, say)
        clf.synthetic.update(
            amount=config.synthetic_amount, class_name=config.minority_class, folder=folder
        )
    say(f"training classifier {workdir}")
    return classify_train.train_and_evaluate(clf, workdir)


def generated_folder(
    config: ml_collections.ConfigDict, gan: str, seed: int, manifest: str, cell: str, say
) -> str:
    """Trains the cell's GAN on its real subset (once) and samples its images (once)."""
    workdir = grid.gan_workdir(cell, gan)
    folder = os.path.join(workdir, "generated")
    with held(workdir):  # cells sharing it in other study workers wait for it
        if not os.path.exists(os.path.join(folder, "manifest.json")):
            train_and_sample(config, gan, seed, manifest, cell, workdir, folder, say)
    return folder


@contextlib.contextmanager
def held(workdir: str):
    """A run folder's lock, for a study's worker processes. A several-process (multi-host)
    run has no workers; its processes run every cell together and must not wait on each
    other."""
    os.makedirs(workdir, exist_ok=True)
    if jax.process_count() > 1:
        yield
        return
    with open(os.path.join(workdir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def train_and_sample(config, gan: str, seed: int, manifest: str, cell: str, workdir, folder, say):
    """The cell's GAN trained on its real subset and its images sampled into `folder`."""
    gan_config = copy.deepcopy(config.gans[gan])
    gan_config.seed = seed
    gan_config.data = copy.deepcopy(config.data)
    gan_config.data.subset.manifest = manifest
    conditional = families.is_conditional(gan_config)
    if not conditional:
        gan_config.gan.classes = (config.minority_class,)
    if "pretrain" in gan_config:
        gan_config = fine_tuning_config(config, gan, gan_config, cell, say)
    say(f"training GAN {workdir}")
    state = gan_train.train(gan_config, workdir)
    real = load_split(gan_config.data, "train")
    count = max(1, mixing.synthetic_count(config.synthetic_amount, real, config.minority_class))
    class_name = config.minority_class if conditional else ""
    sample.generate_images(workdir, count, folder, class_name, seed=seed, state=state)


def fine_tuning_config(
    config: ml_collections.ConfigDict, gan: str, gan_config: ml_collections.ConfigDict, cell, say
) -> ml_collections.ConfigDict:
    """Transfer: pretrains on the cell's majority-class training images (all of its classes
    for a conditional GAN) for `pretrain.num_steps`, then returns the config that
    fine-tunes that run on the minority class's images for the rest of `num_steps`.

    The pretraining run is named by what it trains on (its config and its exact images),
    so cells whose majority images are identical (the demo's sizes of one seed share their
    400 benign images) share one run, which they would otherwise repeat bit for bit."""
    pretrain = gan_config.pretrain
    if not 0 < pretrain.num_steps < gan_config.num_steps:
        raise ValueError(
            f"config.gans.{gan}.pretrain.num_steps={pretrain.num_steps}; expected between 0 "
            f"and its num_steps={gan_config.num_steps} (the total of both stages)."
        )
    first = _without_pretrain(gan_config)
    first.num_steps = pretrain.num_steps
    first.gan.classes = ()  # a conditional GAN pretrains on every class of the cell
    subset = load_split(first.data, "train")
    if not families.is_conditional(first):
        first.gan.classes = tuple(c for c in subset.class_names if c != config.minority_class)
    study_root = os.path.dirname(os.path.dirname(cell))
    workdir = grid.pretrain_workdir(study_root, gan, pretraining_key(first, subset))
    with held(workdir):  # a worker on another size waits
        if not os.path.exists(os.path.join(workdir, "checkpoints")):
            say(f"pretraining GAN {workdir} on {first.gan.classes or 'every class'}")
        gan_train.train(first, workdir)  # resumes, or returns at once when it is done
    second = _without_pretrain(gan_config)
    second.num_steps = gan_config.num_steps - pretrain.num_steps
    second.gan.classes = (config.minority_class,)  # conditional GANs too: fine-tune on it
    second.gan.init.from_run = workdir
    second.gan.init.freeze_d_layers = pretrain.freeze_d_layers
    return second


def pretraining_key(first: ml_collections.ConfigDict, subset) -> str:
    """A digest of a pretraining run's config (less the manifest's path) and the ordered
    images and labels it trains on: equal keys give the same run."""
    config = json.loads(first.to_json_best_effort())
    config["data"]["subset"].pop("manifest", None)
    images = select_classes(subset, first.gan.classes)
    content = json.dumps(
        [config, images.class_names, images.ids.tolist(), images.labels.tolist()],
        sort_keys=True,
    )
    return hashlib.sha1(content.encode()).hexdigest()[:12]


def _without_pretrain(gan_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of a GAN config without its `pretrain` block (configs from flags are locked)."""
    copied = copy.deepcopy(gan_config)
    with copied.unlocked():
        del copied["pretrain"]
    return copied


def reference_classifier(config: ml_collections.ConfigDict, root: str, say) -> str:
    """A base classifier on all real training data: the feature network for GAN quality
    (the grid's own all-data base cell when it has one)."""
    if "all" in config.sizes and "base" in config.methods:
        cell = grid.method_workdir(grid.cell_root(root, "all", config.seeds[0]), "base")
        if os.path.exists(os.path.join(cell, "metrics.json")):
            return cell
    workdir = grid.reference_workdir(root)
    if not os.path.exists(os.path.join(workdir, "metrics.json")):
        clf = copy.deepcopy(config.classifier)
        clf.data = copy.deepcopy(config.data)
        say(f"training the reference classifier {workdir}")
        classify_train.train_and_evaluate(clf, workdir)
    return workdir


def measures_gan_quality(config: ml_collections.ConfigDict) -> bool:
    return bool(grid.gans_of(config.methods)) and config.gan_eval.enabled


def main(config: ml_collections.ConfigDict, root: str) -> dict:
    """The whole study: grid, GAN quality, statistics, results.json, report.md, plots."""
    say = StudyLog()
    cells = run_study(config, root, say)
    quality = {}
    if measures_gan_quality(config):
        say("measuring GAN quality (IS, FID, KID, MS-SSIM, memorisation)")
        quality = aggregate.gan_quality(config, root, reference_classifier(config, root, say))
    results = {
        "environment": runs.versions(),
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
        "comparisons": comparisons.all_comparisons(config, root),
        "gan_quality": quality,
        "failed_cells": {k: v["error"] for k, v in cells.items() if "error" in v},
        "no_ceiling": {k: v["no_ceiling"] for k, v in cells.items() if "no_ceiling" in v},
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
