"""Deterministic subsets for learning curves: per-class counts, fractions, imbalance,
patient-level splits and sampling, and manifests that pin the exact files used.

Subsets are nested: with the same seed, the 10-image subset of a class is contained
in its 100-image subset, so a learning curve adds data rather than redrawing it.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping

import ml_collections
import numpy as np
from absl import logging

from medgan_jax.data.records import Records


class SubsetError(ValueError):
    """A subset request that the data cannot satisfy, naming the config field."""


def _permutation(n: int, seed: int, stream: int) -> np.ndarray:
    return np.random.default_rng([seed, stream]).permutation(n)


def patient_split(patient_ids: np.ndarray, fractions: Mapping[str, float], seed: int) -> np.ndarray:
    """Assigns each row the split of its patient; every patient lands in exactly one split.

    Patients (sorted, then permuted by `seed`) are cut into consecutive blocks with
    sizes proportional to `fractions`, so no patient crosses splits.
    """
    if any(f < 0 for f in fractions.values()) or not math.isclose(sum(fractions.values()), 1.0):
        raise SubsetError(f"Split fractions {dict(fractions)} must be >= 0 and sum to 1.")
    patients, inverse = np.unique(patient_ids, return_inverse=True)
    order = _permutation(len(patients), seed, stream=0)
    bounds = np.round(np.cumsum(list(fractions.values())) * len(patients)).astype(int)
    block = np.searchsorted(bounds, np.arange(len(patients)), side="right")
    names = np.asarray(list(fractions.keys()))
    patient_split_of = np.empty(len(patients), dtype=names.dtype)
    patient_split_of[order] = names[block]
    return patient_split_of[inverse.reshape(-1)]


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask holding out `fraction` of each class (at least one per class)."""
    held = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        n = max(1, round(fraction * len(rows))) if len(rows) > 1 else 0
        held[rows[_permutation(len(rows), seed, stream=1000 + int(c))[:n]]] = True
    return held


def parse_class_counts(spec: str, class_names: tuple[str, ...]) -> dict[str, int]:
    """'benign=500,malignant=100' -> {'benign': 500, 'malignant': 100}."""
    counts = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, value = item.rpartition("=")
        name = name.strip()
        if name not in class_names or not value.strip().isdigit():
            raise SubsetError(
                f"config.data.subset.class_counts item '{item}' must be <class>=<count> "
                f"with a class from {list(class_names)}."
            )
        counts[name] = int(value)
    return counts


def select(records: Records, cfg: ml_collections.ConfigDict) -> Records:
    """Applies `config.data.subset` (counts, fraction, imbalance) to one split."""
    if records.multi_label:
        return _select_patients(records, cfg)
    available = records.class_counts()
    targets = dict(available)
    if cfg.per_class:
        targets = {k: min(v, cfg.per_class) for k, v in available.items()}
        short = {k: v for k, v in available.items() if v < cfg.per_class}
        if short:
            logging.warning("subset.per_class=%d but only %s available.", cfg.per_class, short)
    for name, n in parse_class_counts(cfg.class_counts, records.class_names).items():
        if n > available[name]:
            raise SubsetError(
                f"config.data.subset.class_counts asks for {n} '{name}' images but "
                f"{records.description} has {available[name]}."
            )
        targets[name] = n
    if cfg.fraction < 1.0:
        if not 0.0 < cfg.fraction <= 1.0:
            raise SubsetError(f"config.data.subset.fraction={cfg.fraction}; expected (0, 1].")
        targets = {k: max(1, math.ceil(cfg.fraction * v)) for k, v in targets.items()}
    if cfg.imbalance_ratio:
        targets = _imbalance(targets, cfg.imbalance_ratio, cfg.minority_class)
    rows = []
    for label, name in enumerate(records.class_names):
        members = np.flatnonzero(records.labels == label)
        order = _permutation(len(members), cfg.seed, stream=label)
        rows.append(members[np.sort(order[: targets[name]])])
    return records.take(np.sort(np.concatenate(rows)))


def _imbalance(targets: dict[str, int], ratio: float, minority: str) -> dict[str, int]:
    """Shrinks the minority class to (largest other class) / ratio images."""
    if minority not in targets:
        raise SubsetError(
            f"config.data.subset.minority_class='{minority}' must name one of "
            f"{list(targets)} when imbalance_ratio is set."
        )
    if ratio < 1:
        raise SubsetError(f"config.data.subset.imbalance_ratio={ratio}; expected >= 1.")
    majority = max(v for k, v in targets.items() if k != minority)
    return {**targets, minority: min(targets[minority], max(1, round(majority / ratio)))}


def _select_patients(records: Records, cfg: ml_collections.ConfigDict) -> Records:
    """Multi-label data is subsampled by patient, keeping all of a patient's images."""
    if cfg.per_class or cfg.class_counts or cfg.imbalance_ratio:
        raise SubsetError(
            "config.data.subset.per_class/class_counts/imbalance_ratio apply to "
            "single-label data; for multi-label (CheXpert) data use subset.fraction or "
            "subset.num_patients."
        )
    if records.patient_ids is None or (cfg.fraction >= 1.0 and not cfg.num_patients):
        return records
    patients = np.unique(records.patient_ids)
    n = cfg.num_patients or max(1, math.ceil(cfg.fraction * len(patients)))
    chosen = patients[_permutation(len(patients), cfg.seed, stream=0)[:n]]
    return records.take(np.flatnonzero(np.isin(records.patient_ids, chosen)))


# ------------------------------------------------------------------------ manifests


def _label_text(records: Records, row: int) -> str:
    if records.multi_label:
        on = records.labels[row] > 0
        return "|".join(n for n, o in zip(records.class_names, on) if o)
    return records.class_names[records.labels[row]]


def write_manifest(records: Records, path: str | os.PathLike) -> None:
    """Writes the exact list of images (id, label, patient) used by an experiment."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "label", "patient_id"])
        for row in range(len(records)):
            patient = "" if records.patient_ids is None else records.patient_ids[row]
            writer.writerow([records.ids[row], _label_text(records, row), patient])
    logging.info("Wrote manifest of %d images to %s.", len(records), path)


def apply_manifest(records: Records, path: str | os.PathLike) -> Records:
    """The rows of `records` listed in a manifest, checking that their labels still match."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"id", "label"} <= set(reader.fieldnames):
            raise SubsetError(f"Manifest {path} must have a header with columns id,label.")
        entries = list(reader)
    position = {image_id: i for i, image_id in enumerate(records.ids)}
    missing = [e["id"] for e in entries if e["id"] not in position]
    if missing:
        raise SubsetError(
            f"Manifest {path} lists {len(missing)} image(s) not in {records.description}, "
            f"e.g. {missing[:3]}."
        )
    rows = np.asarray([position[e["id"]] for e in entries], np.int64)
    for entry, row in zip(entries, rows):
        if _label_text(records, row) != entry["label"]:
            raise SubsetError(
                f"Manifest {path}: image {entry['id']} is labelled '{entry['label']}' there "
                f"but '{_label_text(records, row)}' in the data now."
            )
    return records.take(rows)
