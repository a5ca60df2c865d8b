"""Synthetic chest X-rays of numbered patients, rendered into a CxrTable."""

from __future__ import annotations

import numpy as np

from medgan_jax.data.chexpert_schema import CHEXPERT_LABELS
from medgan_jax.data.synthetic.cxr_findings import (
    _SPLIT_CODES,
    CXR_SPLITS,
    CxrTable,
    _cxr_image_params,
)
from medgan_jax.data.synthetic.cxr_frontal import _render_cxr_frontal
from medgan_jax.data.synthetic.cxr_lateral import _render_cxr_lateral
from medgan_jax.data.synthetic.raster import (
    _check_count,
    _check_size,
    _chunks,
    _field_matrix,
    _run_chunks,
    _smooth_fields,
    _stack,
    _to_uint8,
)

_FINE_GRID = 17  # grid of the fine texture field (lung markings)


def _render_cxr(params: list[dict], size: int, fmat: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """Render a chunk of same-view CXR parameter dicts to float [B, H, W]."""
    fields, noise = [], []
    for p in params:
        rng = p.pop("_rng")
        coarse = _smooth_fields(rng, fmat, 4)
        fields.append(np.concatenate([coarse, _smooth_fields(rng, fine, 1)]))
        noise.append(rng.standard_normal((size, size), dtype=np.float32))
    q = _stack([{k: v for k, v in p.items() if k != "_meta"} for p in params])
    render = _render_cxr_lateral if params[0]["lateral"] else _render_cxr_frontal
    return render(q, np.stack(fields), np.stack(noise), size)


def cxr_images(
    num_patients: int,
    size: int = 64,
    seed: int = 0,
    *,
    split: str = "train",
    first_patient: int = 1,
) -> CxrTable:
    """Synthetic chest X-rays, several studies and views per patient.

    Patients are numbered from `first_patient`; each has 1-4 studies ("valid": 1) with a
    frontal view and, for ~30% of studies, a lateral view (about
    CXR_IMAGES_PER_PATIENT images per patient). A patient's images depend only on
    (seed, split, patient number). Findings are drawn at CXR_PREVALENCE rates; raw
    labels are noisy report labels for "train" and clean "1.0"/"0.0" for "valid".
    """
    _check_count("num_patients", num_patients)
    _check_count("first_patient", first_patient, 1)
    _check_size(size)
    _check_count("seed", seed)
    if split not in _SPLIT_CODES:
        raise ValueError(f"split must be one of {CXR_SPLITS}, got {split!r}")
    if first_patient + num_patients - 1 > 99999:
        raise ValueError(
            f"patient numbers must fit 5 digits (<= 99999); first_patient={first_patient} "
            f"with num_patients={num_patients} reaches {first_patient + num_patients - 1}"
        )
    params = [
        p
        for pid in range(first_patient, first_patient + num_patients)
        for p in _cxr_image_params(seed, split, pid)
    ]
    n = len(params)
    images = np.empty((n, size, size, 1), np.uint8)
    fmat, fine = _field_matrix(size), _field_matrix(size, _FINE_GRID)
    for lateral in (0.0, 1.0):
        which = [i for i, p in enumerate(params) if p["lateral"] == lateral]

        def work(start: int, stop: int, which: list[int] = which) -> None:
            ids = which[start:stop]
            images[ids, ..., 0] = _to_uint8(_render_cxr([params[i] for i in ids], size, fmat, fine))

        _run_chunks(work, _chunks(len(which), size))
    meta = [p["_meta"] for p in params]
    col = lambda j, dtype=str: np.array([m[j] for m in meta], dtype=dtype)
    return CxrTable(
        images=images,
        paths=col(0),
        patient_ids=col(1),
        sex=col(2),
        age=col(3, np.int32),
        view=col(4),
        ap_pa=col(5),
        raw_labels=np.array([m[6] for m in meta], dtype=str).reshape(n, len(CHEXPERT_LABELS)),
        findings=np.array([p["findings"] for p in params], dtype=bool).reshape(
            n, len(CHEXPERT_LABELS)
        ),
    )
