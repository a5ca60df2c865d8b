"""GAN image quality of one generated set: IS, FID, KID, MS-SSIM diversity and the
memorisation audit, streamed batch by batch.

Every generated set is compared with the real images of its class that the GAN was
trained on (the run's own manifest), so the memorisation audit searches exactly the
images the generator saw.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import jax
import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from medgan_jax import runs
from medgan_jax.data import load_split, pipeline, subsets
from medgan_jax.data.records import DataError, select_classes
from medgan_jax.evaluation import report
from medgan_jax.evaluation.features import FeatureNetwork
from medgan_jax.gan import sample
from medgan_jax.metrics import fid as fid_lib
from medgan_jax.metrics import memorization, ms_ssim
from medgan_jax.metrics.inception_score import inception_score


@dataclass
class Closest:
    """The k generated images nearest to a training image, nearest first."""

    distance: np.ndarray  # pixel RMS distance to the nearest training image
    images: np.ndarray  # the generated images
    index: np.ndarray  # index of that nearest training image


@dataclass
class Accumulator:
    """Per-image results of one image set, gathered batch by batch."""

    features: list = field(default_factory=list)
    logits: list = field(default_factory=list)
    ms_ssim: list = field(default_factory=list)
    nn_pixel: list = field(default_factory=list)
    preview: list = field(default_factory=list)
    closest: Closest | None = None

    def keep_closest(self, distance, images, index, k: int) -> None:
        """Keeps the k generated images nearest to a training image, seen so far."""
        if self.closest is not None:
            distance = np.concatenate([self.closest.distance, distance])
            images = np.concatenate([self.closest.images, images])
            index = np.concatenate([self.closest.index, index])
        order = np.argsort(distance, kind="stable")[:k]
        self.closest = Closest(distance[order], images[order], index[order])

    def cat(self, name: str) -> np.ndarray:
        return np.concatenate(getattr(self, name)) if getattr(self, name) else np.zeros(0)


def evaluate_generated(
    name: str,
    spec: ml_collections.ConfigDict,
    network: FeatureNetwork,
    config: ml_collections.ConfigDict,
    workdir: str,
    mesh: jax.sharding.Mesh,
) -> dict:
    """IS, FID, KID, MS-SSIM diversity and the memorisation audit of one generated set."""
    training = real_images(spec.gan_workdir, spec.class_name, "train", config.max_real)
    reference = (
        training
        if config.reference_split == "train"
        else real_images(spec.gan_workdir, spec.class_name, config.reference_split, config.max_real)
    )
    real = accumulate(_batches(reference, config.batch_size), network, None, config, mesh)
    started = time.perf_counter()
    fake = accumulate(
        generated_batches(spec, config.batch_size, training.shape[1:]),
        network,
        training,
        config,
        mesh,
    )
    seconds = time.perf_counter() - started
    logits = {"generated": fake.cat("logits"), "real": real.cat("logits")}
    features = {"generated": fake.cat("features"), "real": real.cat("features")}
    num_splits = min(config.is_splits, len(logits["generated"]), len(logits["real"]))
    result = {
        "class_name": spec.class_name,
        "num_generated": int(len(features["generated"])),
        "num_real": int(len(features["real"])),
        "reference_split": config.reference_split,
        "inception_score": {  # None without a classifier head (Inception 'notop' file)
            k: inception_score(logits=v, num_splits=num_splits) if len(v) else None
            for k, v in logits.items()
        },
        "fid": fid_lib.fid(features["generated"], features["real"]),
        "kid": fid_lib.kid(
            features["generated"], features["real"], config.kid_subsets, config.kid_subset_size
        ),
        "ms_ssim_diversity": {
            "generated": _mean_std(fake.cat("ms_ssim")),
            "real": _mean_std(real.cat("ms_ssim")),
        },
        "memorization": audit(
            fake,
            training,
            # The reference images are the training images: reuse their features.
            features["real"] if config.reference_split == "train" else None,
            network,
            config,
            mesh,
        ),
        # Sampling (or reading), features, MS-SSIM and the nearest-neighbour search.
        "generated_images_per_s": len(features["generated"]) / seconds,
    }
    folder = os.path.join(workdir, name)
    report.save_pairs_grid(
        os.path.join(folder, "sample_grid.png"), fake.preview[0], real.preview[0]
    )
    report.save_pairs_grid(
        os.path.join(folder, "closest_pairs.png"),
        fake.closest.images,
        training[fake.closest.index],
    )
    result["plots"] = {
        "samples": f"{name}/sample_grid.png",
        "closest_pairs": f"{name}/closest_pairs.png",
    }
    return result


def accumulate(
    batches: Iterator[np.ndarray],
    network: FeatureNetwork,
    training: np.ndarray | None,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
    preview: int = 32,
) -> Accumulator:
    """Streams image batches through the network, MS-SSIM and the pixel NN search; only
    per-image numbers (and a few images to show) are kept."""
    acc = Accumulator()
    training_rows = None if training is None else training.reshape(len(training), -1)
    for images in batches:
        out = network(images)
        acc.features.append(out["features"])
        if "logits" in out:  # an Inception file without its top has features only
            acc.logits.append(out["logits"])
        pairs = len(images) // 2 * 2  # consecutive pairs (0,1), (2,3), ... as in PGGAN
        if pairs:
            acc.ms_ssim.append(
                np.asarray(ms_ssim.ms_ssim(images[0:pairs:2], images[1:pairs:2], max_val=2.0))
            )
        if training_rows is not None:
            distance, index = memorization.nearest_neighbours(
                images.reshape(len(images), -1), training_rows, mesh=mesh
            )
            distance = distance / np.sqrt(training_rows.shape[1])
            acc.nn_pixel.append(distance)
            acc.keep_closest(distance, images, index, config.memorization.num_pairs)
        if not acc.preview:
            acc.preview.append(images[:preview])
    return acc


def audit(
    fake: Accumulator,
    training: np.ndarray,
    training_features: np.ndarray | None,
    network: FeatureNetwork,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
) -> dict:
    """Memorisation in pixel space (RMS in [-1, 1] units) and in feature space."""
    cfg = config.memorization
    training_rows = training.reshape(len(training), -1)
    pixel_reference = memorization.training_reference_distances(
        training_rows, reference_sample=cfg.reference_sample, seed=config.seed, mesh=mesh
    ) / np.sqrt(training_rows.shape[1])
    if training_features is None:
        training_features = np.concatenate(
            [network(images)["features"] for images in _batches(training, network.batch_size)]
        )
    feature_distance, _ = memorization.nearest_neighbours(
        fake.cat("features"), training_features, mesh=mesh
    )
    feature_reference = memorization.training_reference_distances(
        training_features, reference_sample=cfg.reference_sample, seed=config.seed, mesh=mesh
    )
    kwargs = dict(quantile=cfg.quantile, copy_tolerance=cfg.copy_tolerance)
    return {
        "pixel": memorization.audit_summary(fake.cat("nn_pixel"), pixel_reference, **kwargs),
        "feature": memorization.audit_summary(feature_distance, feature_reference, **kwargs),
    }


def _mean_std(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {"mean": None, "std": None, "num_pairs": 0}
    return {"mean": float(values.mean()), "std": float(values.std()), "num_pairs": len(values)}


def _batches(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]


# --------------------------------------------------------------------- image sources


def real_images(gan_workdir: str, class_name: str, split: str, max_images: int) -> np.ndarray:
    """Real images in [-1, 1] of `class_name` from a GAN run's data: for 'train', exactly
    the images of its manifest; at most `max_images`, a seeded random sample beyond."""
    data = runs.load(gan_workdir, kind="gan").config.data
    if split == "train":
        records = subsets.apply_manifest(
            load_split(data, "train"), os.path.join(gan_workdir, "manifest_train.csv")
        )
    else:
        records = load_split(data, split)
    records = select_classes(records, (class_name,) if class_name else ())
    if len(records) == 0:
        raise DataError(f"No '{class_name}' images in the {split} split of {gan_workdir}'s data.")
    if len(records) > max_images:
        logging.info("Using %d of %d real images (config.max_real).", max_images, len(records))
        keep = np.sort(np.random.default_rng(0).permutation(len(records))[:max_images])
        records = records.take(keep)
    return pipeline.decode_all(records, data)


def generated_batches(
    spec: ml_collections.ConfigDict, batch_size: int, image_shape: tuple[int, ...]
) -> Iterator[np.ndarray]:
    """Generated images, from a GAN checkpoint (sampled now) or a folder of PNGs."""
    if spec.folder:
        yield from folder_batches(spec.folder, batch_size, image_shape)
        return
    for images in sample.sample_batches(
        spec.gan_workdir, spec.num, spec.class_name, spec.seed, spec.step, batch_size
    ):
        if images.shape[1:] != tuple(image_shape):
            raise DataError(
                f"{spec.gan_workdir} generates {images.shape[1:]} images; its real images are "
                f"{tuple(image_shape)}."
            )
        yield images


def folder_batches(
    folder: str, batch_size: int, image_shape: tuple[int, ...]
) -> Iterator[np.ndarray]:
    """PNG/JPEG images of a folder (its manifest.json order when there is one) in [-1, 1]."""
    manifest = os.path.join(folder, "manifest.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            names = json.load(f)["files"]
    else:
        names = sorted(
            n for n in os.listdir(folder) if n.lower().endswith((".png", ".jpg", ".jpeg"))
        )
    if not names:
        raise DataError(f"No images in {folder} (expected .png/.jpg files or a manifest.json).")
    for start in range(0, len(names), batch_size):
        yield np.stack(
            [_read_image(folder, n, image_shape) for n in names[start : start + batch_size]]
        )


def _read_image(folder: str, name: str, image_shape: tuple[int, ...]) -> np.ndarray:
    path = os.path.join(folder, name)
    pixels = np.asarray(Image.open(path), np.float32)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    if pixels.shape != tuple(image_shape):
        raise DataError(f"{path} is {pixels.shape}; the real images are {tuple(image_shape)}.")
    return pixels / 127.5 - 1.0
