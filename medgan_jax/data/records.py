"""The table every source produces: one row per image, indexable by integer arrays."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np


class DataError(ValueError):
    """Bad data on disk or in a config, with a message naming the file or field."""


@dataclasses.dataclass(frozen=True)
class Records:
    """Examples of one split: image files (or in-memory images) and their targets.

    `labels` are int32 class ids [N] for single-label data, or float32 multi-hot
    [N, L] with a float32 `label_mask` [N, L] (0 where a label is to be ignored,
    e.g. CheXpert's uncertain labels under the U-Ignore policy). Single-label data may
    carry float32 `soft_labels` [N, K] (class probabilities) that training uses as targets.
    """

    ids: np.ndarray  # str [N]: stable id written to manifests (relative path)
    labels: np.ndarray
    class_names: tuple[str, ...]
    paths: np.ndarray | None = None  # str [N]: absolute file paths
    images: np.ndarray | None = None  # uint8/uint16 [N, H, W, C] held in memory
    label_mask: np.ndarray | None = None
    patient_ids: np.ndarray | None = None  # str [N]
    soft_labels: np.ndarray | None = None
    description: str = ""

    def __post_init__(self):
        if (self.paths is None) == (self.images is None):
            raise ValueError("Records need exactly one of `paths` or `images`.")
        n = len(self.ids)
        for name in ("labels", "paths", "images", "label_mask", "patient_ids", "soft_labels"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"Records.{name} has {len(value)} rows, ids has {n}.")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def multi_label(self) -> bool:
        return self.labels.ndim == 2

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def take(self, index: np.ndarray) -> Records:
        """The rows at `index` (an int array), in that order."""
        index = np.asarray(index, dtype=np.int64)
        fields = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            fields[field.name] = value[index] if isinstance(value, np.ndarray) else value
        return Records(**fields)

    def class_counts(self) -> dict[str, int]:
        """Images per class (positives per label for multi-label data)."""
        if self.multi_label:
            mask = np.ones_like(self.labels) if self.label_mask is None else self.label_mask
            positives = (self.labels * mask).sum(axis=0)
            return {name: int(c) for name, c in zip(self.class_names, positives)}
        counts = Counter(self.labels.tolist())
        return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}

    def summary(self) -> str:
        """One line: size, per-class counts and where the data came from."""
        counts = ", ".join(f"{k}={v}" for k, v in self.class_counts().items())
        patients = (
            f", {len(np.unique(self.patient_ids))} patients" if self.patient_ids is not None else ""
        )
        return f"{len(self)} images{patients} ({counts}) from {self.description}"

    def replace_labels(
        self, labels: np.ndarray, class_names: tuple[str, ...] | None = None
    ) -> Records:
        """The same images with other targets (e.g. all zeros for unconditional GANs)."""
        return dataclasses.replace(
            self,
            labels=labels,
            label_mask=None,
            soft_labels=None,
            class_names=class_names or self.class_names,
        )


def select_classes(records: Records, classes, field: str = "config.gan.classes") -> Records:
    """The records of the GAN's training classes (multi-label: positive for any of them)."""
    if not classes:
        return records
    unknown = [c for c in classes if c not in records.class_names]
    if unknown:
        raise DataError(
            f"{field} names {unknown}; the data has classes {list(records.class_names)}."
        )
    ids = [records.class_names.index(c) for c in classes]
    if records.multi_label:
        keep = (records.labels[:, ids] > 0).any(axis=1)
    else:
        keep = np.isin(records.labels, ids)
    return records.take(np.flatnonzero(keep))
