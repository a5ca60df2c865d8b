"""Datasets and the input pipeline; `load_split` is what every job calls."""

from __future__ import annotations

import os

import ml_collections

from medgan_jax.data.records import DataError, Records

__all__ = ["DataError", "Records", "load_split"]


def load_split(
    cfg: ml_collections.ConfigDict, split: str, manifest_dir: str | os.PathLike | None = None
) -> Records:
    """Records of one split of `config.data`, with the training subset applied.

    The training split is narrowed by `data.subset` (or pinned by `data.subset.manifest`);
    with `manifest_dir` the exact file list is written there as manifest_<split>.csv.
    """
    # Imported here so that `python -m medgan_jax.data.synthetic` needs no TensorFlow.
    from medgan_jax.data import pipeline, sources, subsets

    records = sources.load_records(cfg, split)
    if split == "train":
        if cfg.subset.manifest:
            records = subsets.apply_manifest(records, cfg.subset.manifest)
        else:
            records = subsets.select(records, cfg.subset)
    if manifest_dir is not None:
        subsets.write_manifest(records, os.path.join(manifest_dir, f"manifest_{split}.csv"))
    if cfg.cache:
        records = pipeline.cache_in_memory(records, cfg)
    return records
