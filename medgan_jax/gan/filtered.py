"""Filtering-augmented GAN training data: the minority set plus one filtered copy per filter.

The CheXpert PGGAN study enlarged its rare-class images with Gaussian-blurred, unsharp-
masked and minimum-filtered copies before GAN training. Each filter is a switch in
`config.gan.filter_copies` with its parameters; the filters are those of
`medgan_jax.augment.filtering`, applied once to the decoded images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from medgan_jax import app
from medgan_jax.augment import filtering
from medgan_jax.data import Records, pipeline

_CHUNK = 256  # images filtered per device call


def enabled_filters(cfg: ml_collections.ConfigDict) -> dict[str, Callable[[jax.Array], jax.Array]]:
    """{name: images -> filtered images} for the switches that are on in `cfg`."""
    filters = {}
    if cfg.gaussian_blur:
        filters["gaussian_blur"] = lambda x: filtering.gaussian_blur(x, cfg.blur_sigma)
    if cfg.unsharp_mask:
        filters["unsharp_mask"] = lambda x: filtering.unsharp_mask(
            x, cfg.unsharp_sigma, cfg.unsharp_amount
        )
    if cfg.minimum_filter:
        filters["minimum_filter"] = lambda x: filtering.minimum_filter(x, int(cfg.minimum_size))
    return filters


def _decoded(records: Records, cfg: ml_collections.ConfigDict) -> Records:
    """The records with their images decoded, resized and held in memory (float16, [0, 1])."""
    if records.images is None:
        return pipeline.cache_in_memory(records, cfg)
    import tensorflow as tf

    app.hide_accelerators_from_tf()
    ds = tf.data.Dataset.from_tensor_slices(records.images).map(
        lambda image: pipeline.preprocess(pipeline.to_float01(image), cfg)
    )
    images = np.concatenate([b for b in ds.batch(_CHUNK).as_numpy_iterator()])
    return dataclasses.replace(records, images=((images + 1.0) / 2.0).astype(np.float16))


def add_filtered_copies(records: Records, config: ml_collections.ConfigDict) -> Records:
    """`records` followed by one copy per enabled filter of `config.gan.filter_copies`.

    The images are decoded and resized once (`config.data`), so the result holds them in
    memory; copies keep their labels and patients, and their ids get a '#filter' suffix.
    """
    filters = enabled_filters(config.gan.filter_copies)
    if not filters:
        return records
    cached = _decoded(records, config.data)
    images = cached.images  # float16 in [0, 1], data.image_size, data.channels
    copies = [images]
    for fn in filters.values():
        jitted = jax.jit(lambda x, fn=fn: (fn(x * 2.0 - 1.0) + 1.0) / 2.0)
        out = [
            np.asarray(jitted(jnp.asarray(images[i : i + _CHUNK], jnp.float32)), np.float16)
            for i in range(0, len(images), _CHUNK)
        ]
        copies.append(np.concatenate(out))
    k = len(copies)
    tile = lambda v: None if v is None else np.concatenate([v] * k)
    ids = np.concatenate(
        [cached.ids] + [np.char.add(cached.ids.astype(str), f"#{n}") for n in filters]
    )
    enlarged = dataclasses.replace(
        cached,
        ids=ids,
        labels=tile(cached.labels),
        images=np.concatenate(copies),
        label_mask=tile(cached.label_mask),
        patient_ids=tile(cached.patient_ids),
        description=f"{cached.description} + {', '.join(filters)} copies",
    )
    logging.info(
        "GAN training data enlarged from %d to %d images with %s copies.",
        len(cached),
        len(enlarged),
        ", ".join(filters),
    )
    return enlarged
