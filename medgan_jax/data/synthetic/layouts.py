"""The synthetic datasets written to disk in the real datasets' layouts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from medgan_jax.data.chexpert_schema import CHEXPERT_CSV_HEADER, CHEXPERT_DIR, CHEXPERT_LABELS
from medgan_jax.data.synthetic.cxr import cxr_images
from medgan_jax.data.synthetic.cxr_findings import CxrTable
from medgan_jax.data.synthetic.lesions import LESION_CLASSES, lesion_images
from medgan_jax.data.synthetic.raster import _check_count

JPEG_QUALITY = 95


def _save_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
        path, quality=JPEG_QUALITY
    )


def _stratified_test_mask(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 7919])
    test = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        test[rng.permutation(idx)[: int(round(test_fraction * len(idx)))]] = True
    return test


def _write_folder_layout(
    out: str | Path, num: int, size: int, seed: int, test_fraction: float, **lesion_kwargs
) -> str:
    if not (isinstance(test_fraction, (int, float)) and 0.0 <= test_fraction < 1.0):
        raise ValueError(f"test_fraction must be a float in [0, 1), got {test_fraction!r}")
    images, labels = lesion_images(num, size, seed, **lesion_kwargs)
    test = _stratified_test_mask(labels, test_fraction, seed)
    out = Path(out)
    counts = {}
    for i in range(num):
        split = "test" if test[i] else "train"
        name = LESION_CLASSES[labels[i]]
        _save_jpeg(out / split / name / f"{i:06d}.jpg", images[i])
        counts[(split, name)] = counts.get((split, name), 0) + 1
    parts = [
        f"{split} " + " ".join(f"{c}={counts.get((split, c), 0)}" for c in LESION_CLASSES)
        for split in ("train", "test")
    ]
    return f"wrote {num} synthetic lesion images ({size}x{size}) to {out}: " + ", ".join(parts)


def write_folder_layout(
    out: str | Path,
    num: int,
    size: int = 64,
    seed: int = 0,
    *,
    test_fraction: float = 0.2,
    **lesion_kwargs,
) -> None:
    """Writes out/{train,test}/{benign,malignant}/*.jpg like Kaggle's skin-cancer download.

    The layout of 'Skin Cancer: Malignant vs. Benign'; RGB JPEGs, stratified test split.
    """
    _write_folder_layout(out, num, size, seed, test_fraction, **lesion_kwargs)


def _write_chexpert_csv(path: Path, table: CxrTable) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CHEXPERT_CSV_HEADER)
        writer.writerows(table.csv_rows())


def _write_chexpert_layout(
    out: str | Path, num_patients: int, size: int, seed: int, valid_patients: int | None
) -> str:
    _check_count("num_patients", num_patients, 1)
    if valid_patients is None:
        valid_patients = max(1, num_patients // 10)
    _check_count("valid_patients", valid_patients)
    out = Path(out)
    data_dir = out / CHEXPERT_DIR
    tables = {
        "train": cxr_images(num_patients, size, seed, split="train", first_patient=1),
        "valid": cxr_images(
            valid_patients, size, seed, split="valid", first_patient=num_patients + 1
        ),
    }
    for split, table in tables.items():
        for i in range(len(table)):
            _save_jpeg(out / str(table.paths[i]), table.images[i])
        _write_chexpert_csv(data_dir / f"{split}.csv", table)
    train = tables["train"]
    prev = " ".join(
        f"{name}={train.findings[:, k].mean():.3f}" for k, name in enumerate(CHEXPERT_LABELS)
    )
    return (
        f"wrote {len(train)} train images ({num_patients} patients) + {len(tables['valid'])} "
        f"valid images ({valid_patients} patients), {size}x{size}, to {data_dir}; "
        f"train prevalence: {prev}"
    )


def write_chexpert_layout(
    out: str | Path,
    num_patients: int,
    size: int = 64,
    seed: int = 0,
    *,
    valid_patients: int | None = None,
) -> None:
    """Writes out/CheXpert-v1.0-small/{train,valid}.csv + JPEGs exactly like the real download.

    Valid patients (default max(1, num_patients // 10)) are numbered after the train patients;
    CSV paths are relative to `out`, the folder that contains CheXpert-v1.0-small/.
    """
    _write_chexpert_layout(out, num_patients, size, seed, valid_patients)
