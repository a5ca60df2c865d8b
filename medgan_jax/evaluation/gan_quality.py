"""GAN image quality of one generated set: IS, FID, KID, precision/recall/density/coverage,
MS-SSIM diversity and the memorisation audit, streamed batch by batch.

Every generated set is compared with the real images of its class that the GAN was
trained on (the run's own manifest), so the memorisation audit searches exactly the
images the generator saw.

A metric whose set is below its minimum sample size (config.min_samples, see
`MINIMUM_SAMPLES`) is not computed: its value is None and the key `<key>_na_reason`
beside it, in the same dict, says why ("N = 10 < 50: ...").
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
from medgan_jax.metrics.prdc import prdc

# The minimum sample size of each metric: (its config.min_samples key, why it exists).
MINIMUM_SAMPLES = {
    # IS averages config.is_splits splits, each with its own marginal p(y): with one image
    # per split KL(p(y|x) || p(y)) = 0 and IS is exactly 1, whatever the images.
    "inception_score": ("is_per_split", "each IS split needs images for its marginal p(y)"),
    # A covariance needs N >= 2; below ~50 FID's upward bias (of order D/N) swamps the
    # differences between generators.
    "fid": ("fid", "FID from so few images is dominated by its small-sample bias"),
    # KID is unbiased, but below ~50 its spread over subsets is as large as typical values.
    "kid": ("kid", "KID's variance is too large to compare at this size"),
    # Balls reach the k-th nearest other point (N > k); from few points they are few and
    # wide, and precision/recall drift to 1.
    "prdc": ("prdc", "k-NN balls from so few points do not describe the distribution"),
}


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


def _recognised(network: FeatureNetwork, logits: dict, class_name: str) -> dict:
    """The fraction of generated (and real) images the feature classifier assigns to their
    class (P >= 0.5): samples that copy another class's look score low."""
    out = {}
    for which, values in logits.items():
        p = network.class_probability(values, class_name) if len(values) else None
        out[which] = None if p is None else float(np.mean(p >= 0.5))
    if out.get("generated") is None:
        out["generated_na_reason"] = f"the feature network has no class '{class_name}'"
    return out


def evaluate_generated(
    name: str,
    spec: ml_collections.ConfigDict,
    network: FeatureNetwork,
    config: ml_collections.ConfigDict,
    workdir: str,
    mesh: jax.sharding.Mesh,
) -> dict:
    """IS, FID, KID, precision/recall/density/coverage, MS-SSIM diversity and the
    memorisation audit of one generated set."""
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
    counts = {k: len(v) for k, v in features.items()}
    result = {
        "class_name": spec.class_name,
        "num_generated": int(counts["generated"]),
        "num_real": int(counts["real"]),
        "reference_split": config.reference_split,
        "min_samples": minimum_sample_sizes(config),
        "inception_score": inception_scores(logits, config),
        **_unless_too_few(
            "fid", counts, config, lambda: fid_lib.fid(features["generated"], features["real"])
        ),
        **_unless_too_few(
            "kid",
            counts,
            config,
            lambda: fid_lib.kid(
                features["generated"],
                features["real"],
                config.kid_subsets,
                config.kid_subset_size,
            ),
        ),
        **precision_recall_density_coverage(features["real"], features["generated"], config),
        "recognised_as_class": _recognised(network, logits, spec.class_name),
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


def minimum_sample_sizes(config: ml_collections.ConfigDict) -> dict[str, int]:
    """The fewest images per set (generated and real) each metric is reported from."""
    m = config.min_samples
    return {
        "inception_score": config.is_splits * m.is_per_split,
        "fid": max(m.fid, 2),  # a covariance needs two rows
        "kid": max(m.kid, 2),  # an unbiased MMD^2 needs two rows
        "prdc": max(m.prdc, config.prdc_k + 1),  # k nearest *other* points
    }


def too_few_reason(metric: str, n: int, which: str, config: ml_collections.ConfigDict) -> str:
    """Why `metric` is n/a for a set of n `which` images ("N = 10 < 50: ..."), or ''."""
    minimum = minimum_sample_sizes(config)[metric]
    if n >= minimum:
        return ""
    knob, why = MINIMUM_SAMPLES[metric]
    knob = f"min_samples.{knob}"
    if metric == "inception_score":
        why = (
            f"each of the {config.is_splits} IS splits needs {config.min_samples.is_per_split} "
            "for its marginal p(y)"
        )
    elif metric == "prdc" and minimum == config.prdc_k + 1:
        knob, why = "prdc_k", f"k = {config.prdc_k} needs more than k points"
    return f"N = {n} < {minimum}: too few {which} images; {why} (config.{knob})"


def inception_scores(logits: dict[str, np.ndarray], config: ml_collections.ConfigDict) -> dict:
    """IS of each set over config.is_splits splits; None with a reason where it is n/a."""
    out: dict = {}
    for which, values in logits.items():
        if len(values):
            reason = too_few_reason("inception_score", len(values), which, config)
        else:
            reason = "the feature network has no classifier head (e.g. an Inception 'notop' file)"
        out[which] = None if reason else inception_score(logits=values, num_splits=config.is_splits)
        if reason:
            out[f"{which}_na_reason"] = reason
    return out


def precision_recall_density_coverage(
    real: np.ndarray, generated: np.ndarray, config: ml_collections.ConfigDict
) -> dict:
    """Precision/recall (Kynkäänniemi et al.) and density/coverage (Naeem et al.) with k =
    config.prdc_k, or None with a reason for each below the minimum sample size."""
    keys = ("precision", "recall", "density", "coverage")
    reason = _reason_for_both("prdc", {"generated": len(generated), "real": len(real)}, config)
    if reason:
        out = {k: None for k in keys} | {f"{k}_na_reason": reason for k in keys}
    else:
        values = prdc(real, generated, nearest_k=config.prdc_k)
        out = {k: values[k] for k in keys}
    return {"prdc_k": config.prdc_k, **out}


def _reason_for_both(metric: str, counts: dict, config: ml_collections.ConfigDict) -> str:
    """The reason of the smaller set (generated first on a tie), or ''."""
    which = min(counts, key=lambda k: (counts[k], k != "generated"))
    return too_few_reason(metric, counts[which], which, config)


def _unless_too_few(metric: str, counts: dict, config: ml_collections.ConfigDict, compute):
    """{metric: compute()} or {metric: None, metric_na_reason: why}."""
    reason = _reason_for_both(metric, counts, config)
    return {metric: None, f"{metric}_na_reason": reason} if reason else {metric: compute()}


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
