"""Adding images to the classifier's training set (never validation or test).

`config.synthetic.source` says where the added images come from: 'synthetic' (a GAN's
samples, the default), 'oversample' (the training set's own images of the class,
repeated in a fresh random order: the rebalancing control) or 'real_topup' (real images
of the class from the rest of the training split that the subset left out: the ceiling).

The synthetic images come from a folder written by `medgan_jax.gan.sample` (with its
manifest.json) or are sampled now from a GAN run into workdir/synthetic/. The amount is
a count ("1000"), a percentage of the real training set ("10%"), or "balance" (top the
conditioning class up to the largest class's count). Each synthetic image gets the GAN's
conditioning class as a hard label; for multi-label data that label is positive and
the others are masked out (unknown), not claimed negative. With labels='soft', a prior
classifier's probabilities become every synthetic image's target instead (real images
keep one-hot targets), so an unconvincing sample teaches less than a convincing one.
"""

from __future__ import annotations

import dataclasses
import json
import os

import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from medgan_jax import runs
from medgan_jax.classify import predict
from medgan_jax.data import load_split, pipeline, sources
from medgan_jax.data.records import DataError, Records
from medgan_jax.gan import sample

SYNTHETIC_PREFIX = "synthetic:"
SOURCES = ("synthetic", "oversample", "real_topup")


class NoCeilingError(DataError):
    """No unused real images (and no way to render fresh ones) for a real top-up."""


def added_records(
    cfg: ml_collections.ConfigDict,
    real: Records,
    data: ml_collections.ConfigDict,
    workdir: str,
    seed: int,
) -> Records | None:
    """The images `cfg` (config.synthetic) adds to the real training set, labelled."""
    source = cfg.get("source", "synthetic") or "synthetic"
    if source not in SOURCES:
        raise ValueError(f"config.synthetic.source='{source}'; expected one of {SOURCES}.")
    if source == "synthetic":
        return synthetic_records(cfg, real, workdir)
    _check_class(cfg.class_name, real)
    count = synthetic_count(cfg.amount, real, cfg.class_name)
    if count == 0:
        return None
    if source == "oversample":
        return oversampled_records(real, cfg.class_name, count, seed)
    return unused_real_records(real, data, cfg.class_name, count, seed)


def _rows_of_class(records: Records, class_name: str) -> np.ndarray:
    k = records.class_names.index(class_name)
    hit = records.labels[:, k] > 0 if records.multi_label else records.labels == k
    return np.flatnonzero(hit)


def oversampled_records(real: Records, class_name: str, count: int, seed: int) -> Records:
    """`count` of the real images of `class_name`, each repeated as evenly as possible:
    whole shuffled passes over them (a fresh random order each), the last one cut short."""
    own = _rows_of_class(real, class_name)
    if own.size == 0:
        raise DataError(f"config.synthetic.source='oversample': no '{class_name}' images.")
    rng = np.random.default_rng(seed)
    passes = [rng.permutation(own) for _ in range(-(-count // own.size))]
    picked = real.take(np.concatenate(passes)[:count])
    return dataclasses.replace(
        picked, description=f"{count} repeated real '{class_name}' images (oversampling)"
    )


def unused_real_records(
    real: Records, data: ml_collections.ConfigDict, class_name: str, count: int, seed: int
) -> Records:
    """`count` real images of `class_name` from the training split that `real` (a subset)
    does not hold, in a seeded random order; fresh renders where an embedded dataset's
    split runs short. Raises NoCeilingError when neither is possible."""
    everything = data.copy_and_resolve_references()
    everything.subset.update(
        per_class=0, class_counts="", fraction=1.0, num_patients=0, imbalance_ratio=0.0,
        manifest="",
    )  # fmt: skip
    pool = load_split(everything, "train")
    held = set(real.ids.tolist())
    unused = np.asarray([i for i in _rows_of_class(pool, class_name) if pool.ids[i] not in held])
    order = np.random.default_rng(seed).permutation(unused).astype(np.int64)
    if order.size >= count:
        chosen = pool.take(order[:count])
    elif data.source == "synthetic" and not real.multi_label:
        fresh = sources.fresh_synthetic_records(everything, class_name, count - order.size, seed)
        chosen = mix(pool.take(order), fresh)
    else:
        raise NoCeilingError(
            f"A real top-up needs {count} unused '{class_name}' training images; the "
            f"training split has {order.size} beyond the subset (no ceiling available)."
        )
    return dataclasses.replace(
        chosen, description=f"{count} unused real '{class_name}' images (real top-up)"
    )


def synthetic_count(amount: str, real: Records, class_name: str) -> int:
    """How many synthetic images `amount` asks for, given the real training set."""
    amount = str(amount).strip()
    if amount in ("", "0"):
        return 0
    if amount == "balance":
        counts = real.class_counts()
        return max(0, max(counts.values()) - counts[class_name])
    if amount.endswith("%"):
        return int(round(float(amount[:-1]) / 100 * len(real)))
    try:
        count = int(amount)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(
            f"config.synthetic.amount='{amount}'; expected a count ('1000'), a percentage of "
            "the real training set ('10%') or 'balance'."
        )
    return count


def synthetic_records(
    cfg: ml_collections.ConfigDict, real: Records, workdir: str
) -> Records | None:
    """The synthetic training images `cfg` (config.synthetic) asks for, labelled."""
    _check_class(cfg.class_name, real)
    count = synthetic_count(cfg.amount, real, cfg.class_name)
    if count == 0:
        return None
    folder = cfg.folder or _sample_from_gan(cfg, count, workdir)
    names = _folder_files(folder)
    if len(names) < count:
        raise DataError(
            f"config.synthetic asks for {count} images but {folder} holds {len(names)}; "
            "generate more with python -m medgan_jax.gan.sample."
        )
    names = names[:count]
    paths = np.asarray([os.path.abspath(os.path.join(folder, n)) for n in names])
    ids = np.asarray([SYNTHETIC_PREFIX + os.path.join(os.path.basename(folder), n) for n in names])
    k = real.class_names.index(cfg.class_name)
    if real.multi_label:
        labels = np.zeros((count, real.num_classes), np.float32)
        labels[:, k] = 1.0
        mask = np.zeros_like(labels)
        mask[:, k] = 1.0
    else:
        labels, mask = np.full(count, k, np.int32), None
    records = Records(
        ids=ids,
        labels=labels,
        class_names=real.class_names,
        paths=paths,
        label_mask=mask,
        patient_ids=None if real.patient_ids is None else np.full(count, "synthetic"),
        description=f"{count} synthetic '{cfg.class_name}' images from {folder}",
    )
    if real.images is not None:  # real images are held in memory: hold these too
        records = _load_into_memory(records, real.images.shape[1:], real.images.dtype)
    logging.info("Mixing in %s.", records.description)
    return records


def _check_class(class_name: str, real: Records) -> None:
    if class_name not in real.class_names:
        raise DataError(
            f"config.synthetic.class_name='{class_name}'; the data has classes "
            f"{list(real.class_names)}."
        )


def mix(real: Records, synthetic: Records | None) -> Records:
    """Real training records followed by the synthetic ones."""
    if synthetic is None:
        return real
    if (real.images is None) != (synthetic.images is None):
        raise ValueError("Real and synthetic records must both be files or both in memory.")

    def cat(a, b):
        return None if a is None else np.concatenate([a, b])

    mask = real.label_mask
    if real.multi_label and (mask is not None or synthetic.label_mask is not None):
        ones = lambda r: np.ones_like(r.labels) if r.label_mask is None else r.label_mask
        mask = np.concatenate([ones(real), ones(synthetic)])
    return dataclasses.replace(
        real,
        ids=cat(real.ids, synthetic.ids),
        labels=cat(real.labels, synthetic.labels),
        paths=cat(real.paths, synthetic.paths),
        images=cat(real.images, synthetic.images),
        label_mask=mask,
        patient_ids=cat(real.patient_ids, synthetic.patient_ids),
        description=f"{real.description} + {synthetic.description}",
    )


def is_synthetic(records: Records) -> np.ndarray:
    """bool [N]: which rows are synthetic images."""
    return np.char.startswith(records.ids.astype(str), SYNTHETIC_PREFIX)


def _folder_files(folder: str) -> list[str]:
    manifest = os.path.join(folder, "manifest.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            return list(json.load(f)["files"])
    if not os.path.isdir(folder):
        raise DataError(f"config.synthetic.folder={folder} does not exist.")
    return sorted(n for n in os.listdir(folder) if n.lower().endswith((".png", ".jpg", ".jpeg")))


def _sample_from_gan(cfg: ml_collections.ConfigDict, count: int, workdir: str) -> str:
    """Samples `count` images from cfg.gan_workdir into workdir/synthetic (once)."""
    if not cfg.gan_workdir:
        raise ValueError("config.synthetic needs a folder or a gan_workdir to take images from.")
    folder = os.path.join(workdir, "synthetic")
    manifest = os.path.join(folder, "manifest.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            done = json.load(f)
        if done["num"] >= count and done["seed"] == cfg.seed:
            return folder
    conditional = runs.load(cfg.gan_workdir, kind="gan").conditional
    sample.generate_images(
        cfg.gan_workdir, count, folder, cfg.class_name if conditional else "", seed=cfg.seed
    )
    return folder


def _load_into_memory(records: Records, shape: tuple[int, ...], dtype) -> Records:
    """Reads the files as arrays shaped like the real in-memory images."""
    height, width, channels = shape
    images = np.empty((len(records), *shape), dtype)
    for i, path in enumerate(records.paths):  # once per run, a few thousand small PNGs
        picture = Image.open(path).convert("L" if channels == 1 else "RGB")
        if picture.size != (width, height):
            picture = picture.resize((width, height), Image.BILINEAR)
        pixels = np.asarray(picture)
        images[i] = _like(pixels[..., None] if channels == 1 else pixels, dtype)
    return dataclasses.replace(records, paths=None, images=images)


def _like(pixels: np.ndarray, dtype) -> np.ndarray:
    """uint8 pixels on the scale of `dtype` (uint8, uint16, or floats in [0, 1])."""
    if np.issubdtype(dtype, np.floating):
        return (pixels / 255.0).astype(dtype)
    return (pixels.astype(np.float64) * (np.iinfo(dtype).max / 255)).round().astype(dtype)


def with_soft_labels(
    mixed: Records, prior_workdir: str, data: ml_collections.ConfigDict, batch_size: int = 64
) -> Records:
    """Real rows keep their labels as one-hot targets; synthetic rows get the prior
    classifier's probabilities (all labels unmasked, for multi-label data)."""
    if not prior_workdir:
        raise ValueError("config.synthetic.labels='soft' needs config.synthetic.prior_classifier.")
    class_names = list(runs.load(prior_workdir, kind="classifier").class_names)
    if tuple(class_names) != tuple(mixed.class_names):
        raise DataError(
            f"The prior classifier {prior_workdir} knows classes {class_names}; the data has "
            f"{list(mixed.class_names)}."
        )
    synthetic = is_synthetic(mixed)
    images = pipeline.decode_all(mixed.take(np.flatnonzero(synthetic)), data)
    probs = predict.probabilities(prior_workdir, images, batch_size)
    if mixed.multi_label:
        labels = mixed.labels.copy()
        mask = np.ones_like(labels) if mixed.label_mask is None else mixed.label_mask.copy()
        labels[synthetic], mask[synthetic] = probs, 1.0
        return dataclasses.replace(mixed, labels=labels, label_mask=mask)
    soft = np.eye(mixed.num_classes, dtype=np.float32)[mixed.labels]
    soft[synthetic] = probs
    return dataclasses.replace(mixed, soft_labels=soft)
