"""Fixtures written in the real on-disk layouts (folder tree, CheXpert CSV)."""

from __future__ import annotations

import csv
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs.data import data_config
from medgan_jax.data.chexpert_schema import CHEXPERT_LABELS

# Solid colours make decoded values checkable; lossless PNG keeps them exact.
BENIGN_RGB = (200, 100, 50)
MALIGNANT_GRAY = 180


def save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == np.uint16:
        Image.fromarray(array).save(path)  # uint16 -> 16-bit PNG
    else:
        Image.fromarray(array).save(path, **kwargs)
    return path


def solid(h: int, w: int, value, channels: int, dtype=np.uint8) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype), (h, w, channels)).copy()


@pytest.fixture
def folder_root(tmp_path) -> Path:
    """root/{train,test}/{benign,malignant}: JPEG, PNG, grayscale, RGBA, 16-bit, mixed sizes."""
    root = tmp_path / "skin"
    tb, tm = root / "train" / "benign", root / "train" / "malignant"
    save(tb / "b0.png", solid(40, 30, BENIGN_RGB, 3))
    save(tb / "b1.png", solid(32, 32, BENIGN_RGB + (128,), 4))  # RGBA
    save(tb / "sub" / "b2.jpg", solid(50, 64, BENIGN_RGB, 3), quality=100)
    save(tb / "B3.JPEG", solid(24, 24, BENIGN_RGB, 3), quality=100)
    save(tm / "m0.png", solid(30, 30, MALIGNANT_GRAY, 1)[..., 0])  # 8-bit gray
    save(tm / "m1.png", solid(30, 40, MALIGNANT_GRAY * 257, 1, np.uint16)[..., 0])  # 16-bit
    save(tm / "m2.jpg", solid(30, 30, MALIGNANT_GRAY, 1)[..., 0], quality=100)
    (tm / "notes.txt").write_text("not an image")
    for split_dir in (root / "test" / "benign", root / "test" / "malignant"):
        for i in range(2):
            save(split_dir / f"t{i}.jpg", solid(28, 28, BENIGN_RGB, 3), quality=95)
    return root


@pytest.fixture
def folder_config(folder_root) -> ml_collections.ConfigDict:
    cfg = data_config("smoke")
    cfg.source = "folder"
    cfg.folder.root = str(folder_root)
    cfg.folder.val_fraction = 0.0
    cfg.image_size = 16
    return cfg


# Every CheXpert cell value appears: 1.0, 0.0, -1.0 and blank.
CHEXPERT_ROWS = [
    # patient, study, view, frontal/lateral, AP/PA, {label: value}
    (1, 1, 1, "Frontal", "AP", {"Cardiomegaly": "1.0", "Edema": "-1.0", "Fracture": "0.0"}),
    (1, 1, 2, "Lateral", "", {"Cardiomegaly": "1.0"}),
    (1, 2, 1, "Frontal", "PA", {"No Finding": "1.0"}),
    (2, 1, 1, "Frontal", "AP", {"Pleural Effusion": "-1.0", "Support Devices": "1.0"}),
    (3, 1, 1, "Frontal", "PA", {"Lung Lesion": "1.0", "Cardiomegaly": "0.0"}),
    (4, 1, 1, "Frontal", "AP", {"Pneumothorax": "1.0", "Edema": "0.0"}),
    (4, 1, 2, "Lateral", "", {"Pneumothorax": "-1.0"}),
    (5, 1, 1, "Frontal", "AP", {"Consolidation": "-1.0", "Lung Opacity": "1.0"}),
    (6, 1, 1, "Frontal", "PA", {"Fracture": "1.0"}),
    (7, 1, 1, "Frontal", "AP", {}),
    (8, 1, 1, "Frontal", "PA", {"Atelectasis": "-1.0"}),
    (9, 1, 1, "Frontal", "AP", {"Pleural Other": "1.0"}),
]
HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS]


def write_chexpert(root: Path, rows=CHEXPERT_ROWS, split="train", header=HEADER) -> Path:
    """root/CheXpert-v1.0-small/{split}.csv + JPEGs, paths relative to root as in the download."""
    data_dir = root / "CheXpert-v1.0-small"
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / f"{split}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for patient, study, view, fl, appa, labels in rows:
            rel = (
                f"CheXpert-v1.0-small/{split}/patient{patient:05d}/study{study}/"
                f"view{view}_{fl.lower()}.jpg"
            )
            save(root / rel, solid(40, 32, 60 + 10 * patient, 1)[..., 0], quality=95)
            cells = [rel, "Female", "60", fl, appa] + [labels.get(k, "") for k in CHEXPERT_LABELS]
            writer.writerow(cells[: len(header)])
    return data_dir


@pytest.fixture
def chexpert_root(tmp_path) -> Path:
    root = tmp_path / "chexpert"
    write_chexpert(root, split="train")
    write_chexpert(root, rows=CHEXPERT_ROWS[:3], split="valid")
    return root


@pytest.fixture
def chexpert_config(chexpert_root) -> ml_collections.ConfigDict:
    cfg = data_config("chexpert")
    cfg.chexpert.root = str(chexpert_root)
    cfg.image_size = 16
    return cfg
