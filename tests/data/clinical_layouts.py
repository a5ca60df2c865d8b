"""Small copies of real datasets' download layouts (CSV headers and quirks as shipped),
with tiny images: NIH ChestX-ray14, SIIM-ISIC Melanoma 2020 (JPEG and DICOM) and RSNA
Pneumonia Detection (stage 2)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import tensorflow as tf

from tests.data.test_dicom import write_dicom

# Data_Entry_2017.csv: the header's last two fields hold a comma inside brackets, so they
# read as four columns, and the header (not the rows) ends in a comma.
NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
NIH_FINDINGS = [
    "No Finding",
    "Cardiomegaly|Effusion",
    "Hernia",
    "Effusion",
    "No Finding",
    "Pneumonia|Infiltration|Hernia",
    "Mass",
    "No Finding",
]


def _png(path: Path, value: int, channels: int = 1, size: int = 24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((size, size, channels), value, np.uint8)
    image[: size // 2] = 255 - value  # some structure, so images differ
    path.write_bytes(tf.io.encode_png(image).numpy())


def nih(root: Path, patients: int = 12) -> Path:
    """Patients with 1-3 follow-ups each; images split over images_001/ and images_002/."""
    rows, names = [], []
    for patient in range(1, patients + 1):
        for follow_up in range(1 + patient % 3):
            name = f"{patient:08d}_{follow_up:03d}.png"
            findings = NIH_FINDINGS[(patient + follow_up) % len(NIH_FINDINGS)]
            rows.append(
                f"{name},{findings},{follow_up},{patient},{40 + patient},M,PA,2500,2048,0.171,0.171"
            )
            folder = "images_001" if patient <= patients // 2 else "images_002"
            _png(root / folder / "images" / name, 10 * patient + follow_up)
            names.append((name, patient))
    root.mkdir(parents=True, exist_ok=True)
    (root / "Data_Entry_2017.csv").write_text(NIH_HEADER + "\n" + "\n".join(rows) + "\n")
    test_patients = {p for p in range(1, patients + 1) if p % 4 == 0}
    (root / "test_list.txt").write_text("\n".join(n for n, p in names if p in test_patients) + "\n")
    (root / "train_val_list.txt").write_text(
        "\n".join(n for n, p in names if p not in test_patients) + "\n"
    )
    return root


SIIM_HEADER = [
    "image_name",
    "patient_id",
    "sex",
    "age_approx",
    "anatom_site_general_challenge",
    "diagnosis",
    "benign_malignant",
    "target",
]


def siim_isic(root: Path, images: int = 30, dicom: bool = False) -> Path:
    """train.csv; images at jpeg/train/<name>.jpg, or train/<name>.dcm (the DICOM copy)."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SIIM_HEADER)
        for i in range(images):
            name, malignant = f"ISIC_{1000000 + 7 * i:07d}", int(i % 5 == 0)
            site = "" if i % 7 == 0 else "torso"  # the real CSV has empty sites
            writer.writerow(
                [
                    name,
                    f"IP_{i // 2:07d}",
                    "male",
                    "45.0",
                    site,
                    "melanoma" if malignant else "nevus",
                    "malignant" if malignant else "benign",
                    malignant,
                ]
            )
            pixels = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
            if dicom:
                (root / "train").mkdir(exist_ok=True)
                write_dicom(root / "train" / f"{name}.dcm", pixels, "RGB")
            else:
                path = root / "jpeg" / "train" / f"{name}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(tf.io.encode_jpeg(pixels).numpy())
    return root


def rsna(root: Path, patients: int = 24) -> Path:
    """stage_2_train_labels.csv: one row per box (1-3 for a positive), one empty row for a
    negative; MONOCHROME2 DICOM images in stage_2_train_images/."""
    rng = np.random.default_rng(2)
    rows = []
    for i in range(patients):
        patient = f"{i:08x}-{i * 7919 % 10000:04x}-4c2b-9a3f-0c1d2e3f{i:04x}"
        if i % 3 == 0:
            for box in range(1 + i % 4 % 3):
                rows.append([patient, 100.0 + box, 200.0, 300.0, 400.0, 1])
        else:
            rows.append([patient, "", "", "", "", 0])
        pixels = rng.integers(0, 256, (24, 24), dtype=np.uint8)
        (root / "stage_2_train_images").mkdir(parents=True, exist_ok=True)
        write_dicom(
            root / "stage_2_train_images" / f"{patient}.dcm",
            pixels,
            WindowCenter=128,
            WindowWidth=256,
        )
    with open(root / "stage_2_train_labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["patientId", "x", "y", "width", "height", "Target"])
        writer.writerows(rows)
    return root
