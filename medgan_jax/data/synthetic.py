"""Embedded synthetic datasets: dermoscopy-like lesions and chest X-rays."""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

LESION_CLASSES = ("benign", "malignant")
CHEXPERT_LABELS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
CHEXPERT_DIR = "CheXpert-v1.0-small"
CHEXPERT_CSV_HEADER = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CHEXPERT_LABELS)
CXR_SPLITS = ("train", "valid")

# Default class-overlap knob of lesion_images, tuned so that a tiny CNN on 32x32
# images goes from ~0.65-0.7 accuracy (10-20 images per class) to ~0.85 (2,000 images).
DEFAULT_LESION_OVERLAP = 0.5

_SIZE_RANGE = (32, 256)
# Pixels rendered per vectorised chunk: large enough to amortise numpy call
# overhead, small enough to stay in cache.
_CHUNK_PIXELS = 1 << 18

# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or not (_SIZE_RANGE[0] <= size <= _SIZE_RANGE[1]):
        raise ValueError(
            f"size must be an int in [{_SIZE_RANGE[0]}, {_SIZE_RANGE[1]}], got {size!r}"
        )


def _check_count(name: str, value: int, minimum: int = 0) -> None:
    if not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_unit(name: str, value: float) -> None:
    if not (isinstance(value, (int, float, np.floating)) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a float in [0, 1], got {value!r}")


def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]: (x [1,1,W], y [1,H,1]) for broadcasting."""
    c = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0).astype(np.float32)
    return c[None, None, :], c[None, :, None]


def _smoothstep(e0: float | np.ndarray, e1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _line(dist: np.ndarray, half_width: float | np.ndarray, soft: float | np.ndarray) -> np.ndarray:
    """Antialiased band of given half width around dist == 0."""
    return 1.0 - _smoothstep(half_width, half_width + soft, np.abs(dist))


_FIELD_GRID = 7


def _field_matrix(size: int, grid: int = _FIELD_GRID) -> np.ndarray:
    """Gaussian interpolation weights [size, grid] turning a coarse grid into a smooth field."""
    x = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    g = np.linspace(-1.25, 1.25, grid)
    w = np.exp(-0.5 * ((x[:, None] - g[None, :]) / (0.65 * (g[1] - g[0]))) ** 2)
    w /= np.sqrt((w**2).sum(axis=1, keepdims=True))  # unit variance for iid N(0,1) grids
    return w.astype(np.float32)


def _smooth_fields(rng: np.random.Generator, mat: np.ndarray, count: int) -> np.ndarray:
    """`count` smooth unit-variance random fields [count, H, W] for one image."""
    z = rng.standard_normal((count, mat.shape[1], mat.shape[1]), dtype=np.float32)
    return mat @ z @ mat.T


def _chunks(num: int, size: int) -> list[tuple[int, int]]:
    step = max(1, _CHUNK_PIXELS // (size * size))
    return [(s, min(num, s + step)) for s in range(0, num, step)]


def _workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _run_chunks(work: Callable[[int, int], None], chunks: list[tuple[int, int]]) -> None:
    """Run work(start, stop) over chunks; threads overlap since numpy releases the GIL."""
    workers = min(_workers(), len(chunks))
    if workers <= 1:
        for start, stop in chunks:
            work(start, stop)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for fut in [pool.submit(work, start, stop) for start, stop in chunks]:
            fut.result()


def _stack(params: Sequence[dict[str, object]]) -> dict[str, np.ndarray]:
    """List of per-image parameter dicts -> dict of stacked float32 arrays [B, ...]."""
    out = {}
    for key in params[0]:
        arr = np.stack([np.asarray(p[key]) for p in params])
        out[key] = arr.astype(np.float32) if arr.dtype.kind == "f" else arr
    return out


def _col(a: np.ndarray) -> np.ndarray:
    """Per-image scalar [B] -> [B, 1, 1] for broadcasting against images."""
    return a.reshape(-1, 1, 1)


def _select(cond: np.ndarray, a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """np.where for finite values; arithmetic is ~20x faster than np.where on float32."""
    return b + cond * (np.float32(a) - b) if np.isscalar(a) else b + cond * (a - b)


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)


# --------------------------------------------------------------------------------------
# Lesions (dermoscopy, ABCD rule)
# --------------------------------------------------------------------------------------

# Per-class feature distributions at overlap=0: (benign, malignant). Ranges are
# uniform (lo, hi); scalars are probabilities. `overlap` moves both toward the mean.
_LESION_FEATURES: dict[str, tuple[object, object]] = {
    "radius": ((0.18, 0.36), (0.4, 0.64)),  # D: diameter
    "asymmetry": ((0.0, 0.05), (0.12, 0.26)),  # A: low-frequency radial harmonics
    "irregularity": ((0.0, 0.02), (0.05, 0.11)),  # B: high-frequency radial harmonics
    "sharp_fraction": ((0.0, 0.1), (0.35, 0.8)),  # B: share of border with abrupt cut-off
    "blotch_offset": ((0.0, 0.12), (0.35, 0.75)),  # A: off-centre dark mass (x radius)
    "blotch_density": ((0.0, 0.35), (0.7, 1.6)),  # C: black/dark-brown blotch
    "colour_variation": ((0.04, 0.16), (0.35, 0.7)),  # C: pigment heterogeneity
    "p_blue": (0.03, 0.65),  # C: blue-grey veil
    "p_red": (0.04, 0.35),  # C: red (vascular) areas
    "p_white": (0.02, 0.35),  # C: white regression areas
}
_HARMONICS_LOW = np.arange(1, 4)
_HARMONICS_HIGH = np.arange(4, 17)
_ANGLE_BINS = 256
_ANGLES = np.linspace(0.0, 2.0 * np.pi, _ANGLE_BINS, endpoint=False) - np.pi


def _lesion_feature_params(overlap: float) -> tuple[dict[str, object], dict[str, object]]:
    """Class-conditional feature parameters (benign, malignant) at a given overlap."""
    per_class: tuple[dict[str, object], dict[str, object]] = ({}, {})
    for name, (b, m) in _LESION_FEATURES.items():
        b_arr, m_arr = np.asarray(b, dtype=np.float64), np.asarray(m, dtype=np.float64)
        mid = 0.5 * (b_arr + m_arr)
        for c, v in enumerate((b_arr, m_arr)):
            per_class[c][name] = v + overlap * (mid - v)
    return per_class


def _angular_table(rng: np.random.Generator, amp: float, harmonics: np.ndarray) -> np.ndarray:
    """Random periodic function over _ANGLES with total harmonic amplitude `amp`."""
    weights = rng.random(len(harmonics)) / harmonics**0.5
    weights *= amp / max(weights.sum(), 1e-6)
    phases = rng.uniform(0, 2 * np.pi, len(harmonics))
    return (weights[:, None] * np.cos(harmonics[:, None] * _ANGLES[None, :] + phases[:, None])).sum(
        0
    )


def _lesion_params(
    seed: int, i: int, feats: tuple[dict, dict], malignant_fraction: float, hair_probability: float
) -> dict[str, object]:
    rng = np.random.default_rng([seed, i])
    label = int(rng.random() < malignant_fraction)
    f = feats[label]
    u = lambda key: rng.uniform(*f[key])
    p = {"label": label}
    # Skin: tone from light to dark (skewed light as in public dermoscopy sets), pinkness.
    tone = rng.beta(1.3, 2.6)
    light = np.array([0.93, 0.74, 0.67]) + rng.normal(0, 0.025, 3)
    dark = np.array([0.48, 0.31, 0.22])
    p["skin"] = light + (dark - light) * tone
    p["grad_dir"] = rng.uniform(0, 2 * np.pi)
    p["grad_amp"] = rng.uniform(0.0, 0.25)
    p["tex_amp"] = rng.uniform(0.015, 0.05)
    p["noise_amp"] = rng.uniform(0.006, 0.02)
    p["vignette"] = float(rng.random() < 0.5)
    p["vig_radius"] = rng.uniform(0.95, 1.35)
    # Lesion geometry.
    p["cx"], p["cy"] = np.clip(rng.normal(0, 0.07, 2), -0.2, 0.2)
    radius = u("radius")
    ellip = rng.uniform(0.0, 0.18)
    ell_dir = rng.uniform(0, np.pi)
    shape = (
        1.0
        + ellip * np.cos(2 * (_ANGLES - ell_dir))
        + _angular_table(rng, u("asymmetry"), _HARMONICS_LOW)
        + _angular_table(rng, u("irregularity"), _HARMONICS_HIGH)
    )
    p["r_tab"] = radius * np.maximum(shape, 0.3)
    # Edge softness per angle; the sharp fraction of the border gets an abrupt cut-off.
    soft = rng.uniform(0.05, 0.1) * (0.5 + radius)
    sharp = np.clip(u("sharp_fraction"), 0, 1)
    start = rng.uniform(-np.pi, np.pi)
    d_ang = np.angle(np.exp(1j * (_ANGLES - start)))  # wrapped to [-pi, pi]
    in_sharp = _smoothstep(0.0, 0.4, np.pi * sharp - np.abs(d_ang)) if sharp > 0 else 0.0
    p["w_tab"] = soft * (1.0 - 0.85 * in_sharp)
    # Pigment: base melanin density, heterogeneity, off-centre blotch.
    p["density"] = rng.uniform(0.55, 1.35)
    p["cvar"] = u("colour_variation")
    ang = rng.uniform(0, 2 * np.pi)
    off = u("blotch_offset") * radius
    p["bx"], p["by"] = p["cx"] + off * np.cos(ang), p["cy"] + off * np.sin(ang)
    p["b_sigma"] = radius * rng.uniform(0.25, 0.45)
    p["b_amp"] = u("blotch_density")
    p["centre_amp"] = rng.uniform(-0.25, 0.35)  # benign two-tone: darker or lighter centre
    p["blue"] = float(rng.random() < f["p_blue"])
    p["red"] = float(rng.random() < f["p_red"])
    p["white"] = float(rng.random() < f["p_white"])
    p["absorb"] = np.array([0.72, 1.0, 1.3]) * rng.uniform(0.9, 1.1, 3)
    # Pigment network: a warped reticular grid; atypical (thick, irregular) when malignant.
    p["net_amp"] = rng.uniform(0.0, 0.4)
    p["net_period"] = rng.uniform(0.07, 0.12)
    p["net_warp"] = rng.uniform(0.03, 0.06) + 0.5 * u("irregularity")
    p["net_dir"] = rng.uniform(0, np.pi)
    # Hair: arcs of large circles crossing the image.
    n_hair = int(rng.integers(1, 9)) if rng.random() < hair_probability else 0
    hair = np.zeros((8, 5))
    for h in range(n_hair):
        a = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(2.0, 8.0)
        hair[h] = (
            dist * np.cos(a),
            dist * np.sin(a),
            dist + rng.uniform(-0.9, 0.9),
            rng.uniform(0.006, 0.016),
            rng.uniform(0.45, 0.9),
        )
    p["hair"] = hair
    p["n_hair"] = n_hair
    p["_rng"] = rng
    return p


def _render_lesions(params: list[dict], size: int, fmat: np.ndarray) -> np.ndarray:
    """Render a chunk of lesion parameter dicts to float RGB [B, 3, H, W] in [0, 1]."""
    fields, noise = [], []
    for p in params:  # per-image randomness that is not a scalar
        rng = p.pop("_rng")
        fields.append(_smooth_fields(rng, fmat, 7))
        noise.append(rng.standard_normal((3, size, size), dtype=np.float32))
    f = np.stack(fields)  # [B, 7, H, W]
    q = _stack(params)
    x, y = _coords(size)
    px = 2.0 / size  # one pixel in normalised units

    def rgb(v: np.ndarray) -> np.ndarray:  # per-image colour [B, 3] -> [B, 3, 1, 1]
        return v[:, :, None, None]

    # Background skin: tone, illumination gradient, low-frequency texture.
    grad = 1.0 + _col(q["grad_amp"]) * (
        x * _col(np.cos(q["grad_dir"])) + y * _col(np.sin(q["grad_dir"]))
    )
    shade = grad * (1.0 + _col(q["tex_amp"]) * f[:, 0])
    redness = 0.5 * _col(q["tex_amp"]) * f[:, 1]
    skin = rgb(q["skin"]) * shade[:, None] + np.stack([redness, -0.5 * redness, -0.5 * redness], 1)

    # Lesion shape from the per-angle radius/softness tables.
    dx, dy = x - _col(q["cx"]), y - _col(q["cy"])
    rho = np.sqrt(dx * dx + dy * dy)
    t = (np.arctan2(dy, dx) + np.pi) * (_ANGLE_BINS / (2 * np.pi))
    off = (np.arange(len(params), dtype=np.int32) * _ANGLE_BINS)[:, None, None]
    r = _lookup(q["r_tab"].ravel(), t, off, _ANGLE_BINS)
    w = np.maximum(_lookup(q["w_tab"].ravel(), t, off, _ANGLE_BINS), 0.75 * px)
    m = _smoothstep(-0.5, 0.5, (r - rho) / w)

    # Melanin density: base, heterogeneity, central tone, off-centre blotch.
    rel = rho / r
    bd2 = (x - _col(q["bx"])) ** 2 + (y - _col(q["by"])) ** 2
    blotch = _col(q["b_amp"]) * np.exp(-0.5 * bd2 / _col(q["b_sigma"]) ** 2)
    dens = _col(q["density"]) * (
        1.0 + _col(q["cvar"]) * f[:, 2] + _col(q["centre_amp"]) * (1 - rel * rel)
    )
    # Pigment network: hexagonal reticulum from three plane waves, warped by a smooth
    # field; faded when the period would fall under ~3 pixels instead of aliasing.
    period = _col(q["net_period"])
    k = 2 * np.pi / np.maximum(period, 3 * px)
    amp = _col(q["net_amp"]) * np.minimum(1.0, period / (3 * px))
    wx = x + _col(q["net_warp"]) * f[:, 5]
    wy = y + _col(q["net_warp"]) * f[:, 6]
    hexa = 0.0
    for j in range(3):
        a = q["net_dir"] + j * (2 * np.pi / 3)
        hexa = hexa + np.cos(k * (wx * _col(np.cos(a)) + wy * _col(np.sin(a))))
    net = _smoothstep(0.2, -1.2, hexa) * (0.4 + 0.6 * _smoothstep(1.0, 0.3, rel))
    dens = dens + amp * (net - 0.3)
    dens = m * np.maximum(dens + blotch * 1.6, 0.05) * (0.55 + 0.45 * _smoothstep(0, 0.6, 1 - rel))
    col = skin * np.exp(-dens[:, None] * rgb(q["absorb"]))

    # Extra colours of the ABCD rule: blue-grey veil, red and white areas.
    extra = [
        ("blue", lambda fi: _smoothstep(-0.2, 0.9, fi[:, 3]) * 0.6, (0.4, 0.45, 0.55)),
        ("red", lambda fi: _smoothstep(0.2, 1.2, fi[:, 4]) * 0.45, (0.7, 0.32, 0.33)),
        ("white", lambda fi: _smoothstep(0.7, 1.5, -fi[:, 3]) * 0.5, (0.85, 0.8, 0.78)),
    ]
    for key, mask_fn, colour in extra:
        idx = np.nonzero(q[key] > 0)[0]
        if len(idx):
            mask = (m[idx] * mask_fn(f[idx]))[:, None]
            target = np.asarray(colour, np.float32)[None, :, None, None]
            col[idx] = col[idx] + mask * (target - col[idx])

    # Hair: thin dark arcs, closed-form distance to a circle.
    idx = np.nonzero(q["n_hair"] > 0)[0]
    if len(idx):
        keep = np.ones((len(idx), size, size), np.float32)
        for h in range(q["hair"].shape[1]):
            hp = q["hair"][idx, h]
            on = np.nonzero(hp[:, 4] > 0)[0]
            if not len(on):
                break
            hx, hy, hr, hw, ha = (_col(hp[on, j]) for j in range(5))
            d = np.abs(np.sqrt((x - hx) ** 2 + (y - hy) ** 2) - hr)
            hw_eff = np.maximum(hw, 0.6 * px)
            keep[on] *= 1.0 - ha * (hw / hw_eff) * _line(d, hw_eff, 0.8 * px)
        col[idx] = col[idx] * keep[:, None] + (1 - keep[:, None]) * np.float32(0.09)

    # Dermoscope vignette and sensor noise.
    vig = 1.0 - _col(q["vignette"]) * _smoothstep(
        _col(q["vig_radius"]), _col(q["vig_radius"]) + 0.12, np.sqrt(x * x + y * y)
    )
    return col * vig[:, None] + _col(q["noise_amp"])[:, None] * np.stack(noise)


def lesion_images(
    num: int,
    size: int = 64,
    seed: int = 0,
    *,
    overlap: float = DEFAULT_LESION_OVERLAP,
    malignant_fraction: float = 0.45,
    hair_probability: float = 0.3,
    first: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [num,size,size,3], int32 labels [num]; 0=benign, 1=malignant).

    These are images first .. first+num-1 of the seed's endless sequence.
    """
    _check_count("num", num)
    _check_count("first", first)
    _check_size(size)
    _check_count("seed", seed)
    _check_unit("overlap", overlap)
    _check_unit("malignant_fraction", malignant_fraction)
    _check_unit("hair_probability", hair_probability)
    feats = _lesion_feature_params(float(overlap))
    fmat = _field_matrix(size)
    images = np.empty((num, size, size, 3), np.uint8)
    labels = np.empty((num,), np.int32)

    def work(start: int, stop: int) -> None:
        params = [
            _lesion_params(seed, first + i, feats, malignant_fraction, hair_probability)
            for i in range(start, stop)
        ]
        labels[start:stop] = [p["label"] for p in params]
        images[start:stop] = _to_uint8(_render_lesions(params, size, fmat)).transpose(0, 2, 3, 1)

    _run_chunks(work, _chunks(num, size))
    return images, labels


# --------------------------------------------------------------------------------------
# Chest X-rays (CheXpert-like)
# --------------------------------------------------------------------------------------

_L = {name: k for k, name in enumerate(CHEXPERT_LABELS)}
_PATHOLOGIES = tuple(range(1, 13))  # every label except No Finding and Support Devices

# Share of studies with each finding drawn (about CheXpert's training positives).
CXR_PREVALENCE = {
    "Enlarged Cardiomediastinum": 0.045,
    "Cardiomegaly": 0.12,
    "Lung Opacity": 0.41,
    "Lung Lesion": 0.03,
    "Edema": 0.22,
    "Consolidation": 0.06,
    "Pneumonia": 0.025,
    "Atelectasis": 0.13,
    "Pneumothorax": 0.08,
    "Pleural Effusion": 0.34,
    "Pleural Other": 0.015,
    "Fracture": 0.03,
    "Support Devices": 0.47,
}
_P_NORMAL = 0.11  # No Finding
_P_SD_NORMAL = 0.22  # support devices on studies without pathology
_P_PNEUMONIA_CONSOLIDATION = 0.35
_P_REPEAT_STUDY = 0.4  # a follow-up study keeps the previous study's findings
_STUDIES_P = (0.45, 0.28, 0.16, 0.11)  # 1..4 studies per patient
_P_AP = (0.62, 0.9)  # P(AP) without / with support devices
_P_LATERAL = (0.6, 0.2)  # P(lateral view) for PA / AP studies
# Raw CSV cells: P("-1.0" | drawn), P("-1.0" | absent, abnormal study), P("0.0" | absent).
_RAW_UNCERTAIN = {
    "Enlarged Cardiomediastinum": (0.45, 0.03, 0.1),
    "Cardiomegaly": (0.2, 0.01, 0.06),
    "Lung Opacity": (0.05, 0.01, 0.04),
    "Lung Lesion": (0.12, 0.005, 0.01),
    "Edema": (0.2, 0.03, 0.12),
    "Consolidation": (0.5, 0.06, 0.15),
    "Pneumonia": (0.6, 0.06, 0.01),
    "Atelectasis": (0.45, 0.06, 0.01),
    "Pneumothorax": (0.1, 0.01, 0.3),
    "Pleural Effusion": (0.1, 0.03, 0.18),
    "Pleural Other": (0.3, 0.005, 0.005),
    "Fracture": (0.07, 0.003, 0.04),
    "Support Devices": (0.01, 0.0, 0.05),
}
_SPLIT_CODES = {"train": 0, "valid": 1}


def _abnormal_probs() -> tuple[np.ndarray, float]:
    """Per-pathology draw probabilities in abnormal studies so marginals hit CXR_PREVALENCE."""
    p = np.array([CXR_PREVALENCE[CHEXPERT_LABELS[k]] for k in _PATHOLOGIES]) / (1 - _P_NORMAL)
    lo, cons, pneu = (
        _PATHOLOGIES.index(_L[n]) for n in ("Lung Opacity", "Consolidation", "Pneumonia")
    )
    q = p.copy()
    for _ in range(200):  # fixed point; rejection of empty draws rescales by 1 - P(empty)
        keep = 1.0 - np.prod(1.0 - q)
        q = p * keep
        q[cons] = 1 - (1 - p[cons] * keep) / (1 - _P_PNEUMONIA_CONSOLIDATION * q[pneu])
        q[lo] = 1 - (1 - p[lo] * keep) / ((1 - q[cons]) * (1 - q[pneu]))
    sd = (CXR_PREVALENCE["Support Devices"] - _P_NORMAL * _P_SD_NORMAL) / (1 - _P_NORMAL)
    return np.clip(q, 0.0, 1.0), sd


_Q_ABNORMAL, _P_SD_ABNORMAL = _abnormal_probs()
_SHARE_AP = _P_AP[1] * CXR_PREVALENCE["Support Devices"] + _P_AP[0] * (
    1 - CXR_PREVALENCE["Support Devices"]
)
# Expected images per train patient (studies x views), about 2.5.
CXR_IMAGES_PER_PATIENT = float(
    np.dot(np.arange(1, 5), _STUDIES_P)
    * (1 + _SHARE_AP * _P_LATERAL[1] + (1 - _SHARE_AP) * _P_LATERAL[0])
)


@dataclasses.dataclass(frozen=True)
class CxrTable:
    """Synthetic chest X-rays with CheXpert-style metadata; one row per image."""

    images: np.ndarray  # uint8 [N, size, size, 1]
    paths: np.ndarray  # str, "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"
    patient_ids: np.ndarray  # str "patient00001"
    sex: np.ndarray  # "Male"/"Female"
    age: np.ndarray  # int
    view: np.ndarray  # "Frontal"/"Lateral"
    ap_pa: np.ndarray  # "AP"/"PA" for frontal, "" for lateral
    raw_labels: np.ndarray  # str [N, 14] in {"1.0", "0.0", "-1.0", ""}, the CSV cells
    findings: np.ndarray  # bool [N, 14], what was actually drawn (ground truth)

    def __len__(self) -> int:
        """Number of images."""
        return len(self.paths)

    def csv_rows(self) -> list[list[str]]:
        """Rows of a CheXpert CSV (without header), in table order."""
        return [
            [
                str(self.paths[i]),
                str(self.sex[i]),
                str(int(self.age[i])),
                str(self.view[i]),
                str(self.ap_pa[i]),
                *map(str, self.raw_labels[i]),
            ]
            for i in range(len(self))
        ]


def _study_findings(rng: np.random.Generator, previous: np.ndarray | None) -> np.ndarray:
    if previous is not None and rng.random() < _P_REPEAT_STUDY:
        return previous.copy()
    f = np.zeros(len(CHEXPERT_LABELS), bool)
    if rng.random() < _P_NORMAL:
        f[_L["Support Devices"]] = rng.random() < _P_SD_NORMAL
    else:
        for _ in range(1000):
            draw = rng.random(len(_PATHOLOGIES)) < _Q_ABNORMAL
            if draw.any():
                break
        f[list(_PATHOLOGIES)] = draw
        if f[_L["Pneumonia"]] and rng.random() < _P_PNEUMONIA_CONSOLIDATION:
            f[_L["Consolidation"]] = True
        if f[_L["Consolidation"]] or f[_L["Pneumonia"]]:
            f[_L["Lung Opacity"]] = True
        f[_L["Support Devices"]] = rng.random() < _P_SD_ABNORMAL
    f[_L["No Finding"]] = not f[list(_PATHOLOGIES)].any()
    return f


def _raw_labels(rng: np.random.Generator, f: np.ndarray, split: str) -> list[str]:
    """CSV cells for one study: noisy report labels (train) or clean ground truth (valid)."""
    if split == "valid":
        return ["1.0" if v else "0.0" for v in f]
    cells = ["1.0" if f[0] else ""]
    u = rng.random(len(CHEXPERT_LABELS))
    for k, name in enumerate(CHEXPERT_LABELS[1:], start=1):
        p_unc_pos, p_unc_neg, p_neg = _RAW_UNCERTAIN[name]
        if f[k]:
            cells.append("-1.0" if u[k] < p_unc_pos else "1.0")
        elif not f[0] and u[k] < p_unc_neg:
            cells.append("-1.0")
        elif u[k] > 1.0 - p_neg:
            cells.append("0.0")
        else:
            cells.append("")
    return cells


def _uniforms(rng: np.random.Generator, spec: dict[str, tuple[float, float]]) -> dict[str, float]:
    """One vectorised draw of named uniform parameters {name: (lo, hi)}."""
    lo, hi = np.array(list(spec.values())).T
    return dict(zip(spec, (lo + (hi - lo) * rng.random(len(spec))).tolist()))


_PATIENT_SPEC = {
    "thorax_margin": (0.06, 0.1),  # body edge to inner rib cage
    "medial": (0.05, 0.07),  # lung medial edge |x|
    "lung_top": (-0.64, -0.56),
    "lung_bottom": (0.46, 0.58),
    "dome": (0.12, 0.26),
    "ctr": (0.38, 0.46),  # cardiothoracic ratio without cardiomegaly
    "heart_h": (0.2, 0.25),
    "heart_tilt": (0.35, 0.65),
    "med_w": (0.1, 0.13),
    "knob": (0.04, 0.06),
    "rib_sp": (0.1, 0.12),
    "rib_y0": (-0.72, -0.66),
    "rib_rise": (1.1, 1.7),
    "clav_y": (-0.6, -0.54),
    "clav_rise": (0.05, 0.2),
    "spine_w": (0.055, 0.07),
    "vert_h": (0.085, 0.1),
    "chest_depth": (0.84, 0.96),  # lateral view: anteroposterior half depth
    # Where persistent findings sit: (side, u, v) in lung-relative coordinates.
    "nod_u": (-0.4, 0.6),
    "nod_v": (-0.55, 0.45),
    "nod_r": (0.035, 0.065),
    "fx_rib": (3.0, 8.0),
    "fx_u": (0.55, 0.85),
    "side_draws": (0.0, 1.0),
}


def _cxr_patient(rng: np.random.Generator) -> dict[str, float]:
    """Anatomy that stays fixed across one patient's studies."""
    a = _uniforms(rng, _PATIENT_SPEC)
    male = rng.random() < 0.59
    a["male"] = float(male)
    a["age"] = int(np.clip(rng.normal(61, 17), 18, 90))
    a["bw"] = rng.uniform(0.84, 0.96) if male else rng.uniform(0.78, 0.9)  # body half width
    a["breast"] = 0.0 if male else rng.uniform(0.3, 1.0)
    thorax = a["bw"] - a["thorax_margin"]
    a["lung_w"] = 0.5 * (thorax - a["medial"])  # lung half width
    a["lung_xc"] = a["medial"] + a["lung_w"]  # lung centre |x|
    a["knob"] *= 1.0 + 0.004 * (a["age"] - 50)  # the aorta unfolds with age
    a["fx_rib"] = float(int(a["fx_rib"]))
    sides = rng.random(4)
    a["nod_side"], a["fx_side"], a["po_side"] = (float(v < 0.5) for v in sides[:3])
    a["dev_side"] = float(sides[3] < 0.75)  # pacemakers mostly on the patient's left
    return a


_STUDY_SPEC = {
    "eff_h": (0.12, 0.4),
    "eff_men": (0.06, 0.14),
    "card": (0.54, 0.66),
    "ec": (1.55, 1.95),
    "ptx": (0.14, 0.3),
    "op_u": (-0.3, 0.5),
    "op_v": (-0.4, 0.55),
    "op_r": (0.16, 0.3),
    "cons_u": (-0.2, 0.5),
    "cons_v": (0.0, 0.55),
    "cons_r": (0.2, 0.3),
    "pneu_u": (-0.2, 0.5),
    "pneu_v": (-0.2, 0.55),
    "edema": (0.55, 0.9),
    "atel_u": (-0.3, 0.4),
    "atel_v": (0.45, 0.7),
    "atel_len": (0.14, 0.26),
    "atel_tilt": (-0.3, 0.3),
    "atel_w": (0.012, 0.022),
    "po_v0": (-0.5, 0.0),
    "po_len": (0.4, 0.8),
    "po_t": (0.03, 0.05),
    "fx_gap": (0.03, 0.05),
    "fx_step": (0.3, 0.45),
    "ett_tip": (-0.4, -0.28),
    "cvc_tip": (-0.25, -0.08),
}
_DEVICES = ("ett", "cvc", "ngt", "pacer", "ecg")
_DEVICE_P = np.array([0.4, 0.55, 0.3, 0.15, 0.35])


def _cxr_study(rng: np.random.Generator, findings: np.ndarray) -> dict[str, object]:
    """Per-study geometry of the drawn findings and devices."""
    s: dict[str, object] = _uniforms(rng, _STUDY_SPEC)
    u = rng.random(8)
    s["ap"] = float(u[0] < _P_AP[int(findings[_L["Support Devices"]])])
    s["eff_l"] = float(u[1] < 0.75)  # image left = patient's right
    s["eff_r"] = float(u[1] > 0.45)
    s["ptx_side"], s["op_side"], s["cons_side"] = (
        float(u[2] < 0.5),
        float(u[3] < 0.5),
        float(u[4] < 0.5),
    )
    s["op_both"] = float(u[5] < 0.35)
    s["pneu_same"] = float(u[6] < 0.6)  # pneumonia at the consolidation's site
    s["pneu_side"], s["atel_side"], s["cvc_side"] = (float(v < 0.5) for v in rng.random(3))
    s["po_v1"] = s["po_v0"] + s["po_len"]
    # Devices; at least one when Support Devices is drawn.
    dev = rng.random(len(_DEVICES)) < _DEVICE_P
    if not dev.any():
        dev[int(u[7] * len(_DEVICES))] = True
    s.update(zip(_DEVICES, dev.astype(float).tolist()))
    pads = rng.random((4, 3))
    s["ecg_pts"] = np.stack(
        [-0.65 + 1.3 * pads[:, 0], -0.78 + 0.48 * pads[:, 1], (pads[:, 2] < 0.75) * s["ecg"]],
        axis=1,
    )
    return s


_VESSEL_BINS = 128
_VESSEL_ANGLES = np.linspace(-np.pi, np.pi, _VESSEL_BINS, endpoint=False)
_VESSEL_HARMONICS = np.arange(4, 28)
_FINE_GRID = 17


_VESSEL_BASIS = np.concatenate(
    [
        np.cos(_VESSEL_HARMONICS[:, None] * _VESSEL_ANGLES),
        np.sin(_VESSEL_HARMONICS[:, None] * _VESSEL_ANGLES),
    ]
)


def _vessel_table(rng: np.random.Generator) -> np.ndarray:
    """Peaky angular profile around a hilum: bright spokes read as branching vessels."""
    h = _VESSEL_HARMONICS
    w = rng.standard_normal(len(h)) / h**0.25
    ph = rng.uniform(0, 2 * np.pi, len(h))
    n = np.concatenate([w * np.cos(ph), -w * np.sin(ph)]) @ _VESSEL_BASIS
    n /= n.std() + 1e-6
    return np.maximum(n, 0.0) ** 1.5 / 1.5


_VIEW_SPEC = {  # (PA range, AP range); AP films are portable, lower quality
    "scale": ((0.9, 1.03), (0.92, 1.1)),
    "rot": ((-0.04, 0.04), (-0.08, 0.08)),
    "insp": ((-0.05, 0.05), (-0.12, 0.0)),
    "lo": ((0.0, 0.06), (0.0, 0.06)),
    "hi": ((0.72, 0.88), (0.8, 1.0)),
    "gamma": ((0.8, 1.25), (0.8, 1.25)),
    "noise": ((0.006, 0.016), (0.012, 0.03)),
    "blur": ((0.0, 0.7), (0.3, 1.0)),
    "haze": ((0.0, 0.04), (0.03, 0.1)),
    "mark": ((0.12, 0.2), (0.12, 0.2)),
    "rib_amp": ((0.035, 0.07), (0.035, 0.07)),
    "air": ((0.3, 0.38), (0.3, 0.38)),
}
_VIEW_SPECS = tuple({k: v[j] for k, v in _VIEW_SPEC.items()} for j in range(2))


def _cxr_view(rng: np.random.Generator, ap: bool) -> dict[str, object]:
    """Acquisition parameters of one image: positioning, exposure, noise."""
    v: dict[str, object] = _uniforms(rng, _VIEW_SPECS[int(ap)])
    v["tx"], v["ty"] = (rng.standard_normal(2) * 0.035 + (0.0, 0.02)).tolist()
    v["vtab"] = np.concatenate([_vessel_table(rng), _vessel_table(rng)])
    return v


def _cxr_derived(p: dict[str, object]) -> None:
    """Scalars derived from anatomy, findings and view, shared by both renderers."""
    f = p["findings"]
    has = lambda name: bool(f[_L[name]])
    p["bot_l"] = p["lung_bottom"] + p["insp"]
    p["bot_r"] = p["bot_l"] + 0.03  # left hemidiaphragm (image right) sits lower
    p["w_l"], p["w_r"] = p["lung_w"], p["lung_w"] * 0.95
    thorax = p["lung_xc"] + p["lung_w"]
    mag = 1.0 + 0.1 * p["ap"]  # AP projection magnifies the heart
    ctr = p["card"] if has("Cardiomegaly") else p["ctr"]
    wh = ctr * thorax * mag
    hy = p["heart_h"] * mag
    th = p["heart_tilt"]
    p["hx"] = math.sqrt(max(wh**2 - (hy * math.sin(th)) ** 2, 1e-4)) / math.cos(th)
    p["hy"], p["xh"] = hy, wh / 3.0
    vert = math.sqrt((p["hx"] * math.sin(th)) ** 2 + (hy * math.cos(th)) ** 2)
    p["yh"] = p["bot_r"] - 0.7 * vert
    p["ctr_drawn"] = ctr * mag
    p["ec_f"] = p["ec"] if has("Enlarged Cardiomediastinum") else 1.0

    def lung_point(side: float, u: float, v: float) -> tuple[float, float]:
        w = p["w_r"] if side else p["w_l"]
        bot = p["bot_r"] if side else p["bot_l"]
        yc, hh = 0.5 * (p["lung_top"] + bot), 0.5 * (bot - p["lung_top"])
        return (1.0 if side else -1.0) * (p["lung_xc"] + u * w), yc + v * hh

    p["nod_x"], p["nod_y"] = lung_point(p["nod_side"], p["nod_u"], p["nod_v"])
    p["op_x"], p["op_y"] = lung_point(p["op_side"], p["op_u"], p["op_v"])
    p["cons_x"], p["cons_y"] = lung_point(p["cons_side"], p["cons_u"], p["cons_v"])
    if p["pneu_same"] and has("Consolidation"):
        p["pneu_x"], p["pneu_y"] = p["cons_x"], p["cons_y"]
    else:
        p["pneu_x"], p["pneu_y"] = lung_point(p["pneu_side"], p["pneu_u"], p["pneu_v"])
    ax_, ay_ = lung_point(p["atel_side"], p["atel_u"], p["atel_v"])
    dx, dy = (
        math.cos(p["atel_tilt"]) * p["atel_len"] / 2,
        math.sin(p["atel_tilt"]) * p["atel_len"] / 2,
    )
    p["atel_pts"] = np.array([[ax_ - dx, ay_ - dy], [ax_ + dx, ay_ + dy]])
    # Fracture site: centre of rib fx_rib at lateral position fx_u (inverts the rib map).
    psi = p["fx_rib"] + 0.25
    t = (1.0 - math.sqrt(1.0 - 0.06 * psi)) / 0.03
    ru = p["fx_u"]
    curve = -p["rib_rise"] * ru + (p["rib_rise"] + 1.8) * ru**3
    p["fx_x"] = (1.0 if p["fx_side"] else -1.0) * ru * thorax
    p["fx_y"] = p["rib_y0"] + p["rib_sp"] * (curve + t)
    p["ptx_ax"], p["ptx_ay"] = lung_point(p["ptx_side"], -0.5, 0.85)
    p["ptx_ax"] = abs(p["ptx_ax"])
    for k in range(len(CHEXPERT_LABELS)):
        p[f"f{k}"] = float(f[k])
    # Device paths (polylines) in anatomical coordinates.
    s = 1.0 if p["cvc_side"] else -1.0
    p["cvc_pts"] = np.array(
        [[s * 0.66, -0.68], [s * 0.32, -0.56], [s * 0.09, -0.47], [s * 0.05, p["cvc_tip"]]]
    )
    p["ngt_pts"] = np.array([[-0.01, -1.3], [0.02, -0.2], [0.07, p["bot_r"]], [0.32, 0.74]])
    d = 1.0 if p["dev_side"] else -1.0
    p["pacer_x"], p["pacer_y"] = d * 0.52, -0.58
    p["lead_pts"] = np.array(
        [
            [d * 0.52, -0.58],
            [d * 0.22, -0.5],
            [0.06, -0.3],
            [0.03, 0.02],
            [p["xh"] + 0.25 * wh, p["yh"] + 0.35 * vert],
        ]
    )


def _lung_r(
    ax: np.ndarray, y: np.ndarray, xc, w, top, bot, dome
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised lung radius (1 on the pleura) of a frontal lung, and its (u, v) coords."""
    yc, hh = 0.5 * (top + bot), 0.5 * (bot - top)
    u = (ax - xc) / w
    v = (y - yc) / hh
    ua = u + 0.22 * np.clip(-v, 0.0, 1.0)  # the apex sits medially
    r_top = np.sqrt(ua * ua + v * v)
    vb = v * (1.0 + dome * np.clip(1.0 - u * u, 0.0, 1.0))  # diaphragm dome
    u2, vb2 = u * u, vb * vb
    r_bot = np.sqrt(np.sqrt(u2 * u2 + vb2 * vb2))  # squarer base: sharp costophrenic angles
    return _select(v < 0, r_top, r_bot), u, v


def _seg_dist(x: np.ndarray, y: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Distance from points to segments p0-p1 ([B, 2] endpoints)."""
    p0, p1 = p0.astype(np.float32), p1.astype(np.float32)
    x0, y0 = _col(p0[:, 0]), _col(p0[:, 1])
    dx, dy = _col(p1[:, 0] - p0[:, 0]), _col(p1[:, 1] - p0[:, 1])
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy + 1e-9), 0.0, 1.0)
    ex, ey = x - x0 - t * dx, y - y0 - t * dy
    return np.sqrt(ex * ex + ey * ey)


def _polyline_dist(x: np.ndarray, y: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Distance to polylines given as points [B, P, 2]."""
    d = _seg_dist(x, y, pts[:, 0], pts[:, 1])
    for j in range(1, pts.shape[1] - 1):
        d = np.minimum(d, _seg_dist(x, y, pts[:, j], pts[:, j + 1]))
    return d


def _lookup(table: np.ndarray, t: np.ndarray, offset: np.ndarray | int, bins: int) -> np.ndarray:
    """Linear interpolation in per-image periodic tables (flattened [B * k * bins])."""
    i0f = np.minimum(np.floor(t), bins - 1)
    fr = t - i0f
    i0 = i0f.astype(np.int32)
    i1 = (i0 + 1) * (i0 < bins - 1)
    return table[offset + i0] * (1 - fr) + table[offset + i1] * fr


def _blur3(img: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """Per-image mix with a [1, 2, 1]/4 separable blur (edges replicated)."""
    p = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
    b = 0.25 * (p[:, :-2] + p[:, 2:]) + 0.5 * p[:, 1:-1]
    b = 0.25 * (b[:, :, :-2] + b[:, :, 2:]) + 0.5 * b[:, :, 1:-1]
    return img + amount * (b - img)


def _window(q: dict[str, np.ndarray], b: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Exposure window, gamma, scatter haze, quantum noise and blur -> [B, H, W] in [0, 1]."""
    b = np.clip((b - _col(q["lo"])) / _col(q["hi"] - q["lo"]), 0.0, 1.0)
    b = b ** _col(q["gamma"])
    b = _col(q["haze"]) + (1 - _col(q["haze"])) * b
    b = b + _col(q["noise"]) * noise * (0.5 + b)
    return _blur3(b, _col(q["blur"]))


def _view_coords(q: dict[str, np.ndarray], size: int) -> tuple[np.ndarray, ...]:
    """Patient coordinates X, Y [B, H, W] after each image's rotation, shift and zoom,
    and the size of one pixel in them."""
    x, y = _coords(size)
    c, s = _col(np.cos(q["rot"])), _col(np.sin(q["rot"]))
    xs, ys = x - _col(q["tx"]), y - _col(q["ty"])
    X = (xs * c + ys * s) / _col(q["scale"])
    Y = (ys * c - xs * s) / _col(q["scale"])
    return X, Y, 2.0 / size / _col(q["scale"])


def _render_cxr_frontal(
    q: dict[str, np.ndarray], f: np.ndarray, noise: np.ndarray, size: int
) -> np.ndarray:
    """PA/AP chest radiographs [B, H, W] in [0, 1]; f holds 4 coarse + 1 fine fields."""
    n = len(q["scale"])
    X, Y, px = _view_coords(q, size)
    ax = np.abs(X)
    right = X >= 0  # image right = patient's left

    def side(left: np.ndarray, right_: np.ndarray) -> np.ndarray:
        return _col(left) + right * _col(right_ - left)

    # Body outline: torso with sloping shoulders, neck, arms, humeral heads.
    bw = _col(q["bw"]) * (0.93 + 0.07 * _smoothstep(-0.7, 0.3, Y))  # flares toward the base
    y_top = -0.8 + 0.24 * (ax / bw) ** 2 - 0.5 * _smoothstep(0.36, 0.2, ax)  # neck, shoulders
    body = _smoothstep(0.025, -0.025, ax - bw) * _smoothstep(-0.06, 0.06, Y - y_top)
    thick = np.sqrt(np.clip(1.0 - (X / (bw + 0.05)) ** 2, 0.0, 1.0))
    arm = _smoothstep(0.025, -0.025, np.abs(ax - bw - 0.17) - 0.11) * _smoothstep(
        -0.05, 0.05, Y + 0.64
    )
    hum = _smoothstep(0.015, -0.015, np.sqrt((ax - bw + 0.01) ** 2 + (Y + 0.6) ** 2) - 0.12)

    # Lungs (per side), diaphragm and abdomen.
    xc, dome, top = _col(q["lung_xc"]), _col(q["dome"]), _col(q["lung_top"])
    w, bot = side(q["w_l"], q["w_r"]), side(q["bot_l"], q["bot_r"])
    rq, u, v = _lung_r(ax, Y, xc, w, top, bot, dome)
    e = np.maximum(0.02, px) / w
    lung = _smoothstep(1 + e, 1 - e, rq)
    depth = np.sqrt(np.clip(1.0 - rq * rq, 0.0, 1.0))
    uc = np.clip(u, -1.0, 1.0)
    y_dia = 0.5 * (top + bot) + 0.5 * (bot - top) / (1.0 + dome * (1.0 - uc * uc))
    abdomen = _smoothstep(-0.02, 0.08, Y - y_dia) * body

    # Heart (rotated ellipse), mediastinum (+ aortic knob), trachea.
    th = _col(q["heart_tilt"])
    dxh, dyh = X - _col(q["xh"]), Y - _col(q["yh"])
    du = (dxh * np.cos(th) + dyh * np.sin(th)) / _col(q["hx"])
    dv = (dyh * np.cos(th) - dxh * np.sin(th)) / _col(q["hy"])
    heart = _smoothstep(1.06, 0.94, np.sqrt(du * du + dv * dv))
    wm = _col(q["med_w"]) * (1.0 + (_col(q["ec_f"]) - 1.0) * _smoothstep(0.15, -0.25, Y))
    medi = _smoothstep(0.02, -0.02, np.abs(X - 0.01) - wm)
    knob_x = _col(q["med_w"] * q["ec_f"]) + 0.02
    knob = _smoothstep(0.015, -0.015, np.sqrt((X - knob_x) ** 2 + (Y + 0.3) ** 2) - _col(q["knob"]))
    medi = np.maximum(medi, knob)
    trachea = _smoothstep(0.012, -0.012, np.abs(X) - 0.028) * _smoothstep(-0.2, -0.3, Y)

    # Bones: spine with vertebral bodies, posterior ribs, clavicles.
    vfr = _frac((Y + 3.0) / _col(q["vert_h"]))
    spine = _smoothstep(0.012, -0.012, ax - _col(q["spine_w"])) * (
        0.75 + 0.25 * _smoothstep(0.0, 0.2, vfr) * _smoothstep(1.0, 0.8, vfr)
    )
    thorax = xc + _col(q["lung_w"])
    ru = ax / thorax
    rise = _col(q["rib_rise"])
    sp = _col(q["rib_sp"])
    t = (Y - _col(q["rib_y0"]) - sp * (-rise * ru + (rise + 1.8) * ru * ru * ru)) / sp
    psi = t - 0.015 * t * t
    k = np.floor(psi)
    soft = np.minimum(0.12, 0.5 * px / sp + 0.05)

    def rib_band(fr: np.ndarray, soft: np.ndarray) -> np.ndarray:
        return _smoothstep(0.0, soft, fr) * _smoothstep(0.5, 0.5 - soft, fr)

    ribs = rib_band(psi - k, soft) * ((k >= 0) & (k <= 9))
    idx = np.nonzero(q["f12"] > 0)[0]  # Fracture: a gap and a step in one rib
    if len(idx):
        kf, side_f = _col(q["fx_rib"][idx]), _col(q["fx_side"][idx]) > 0
        same = right[idx] == side_f
        gap = np.maximum(_col(q["fx_gap"][idx]), 1.5 * px[idx]) / thorax[idx]
        uf = _col(q["fx_u"][idx])
        r_i, k_i, p_i = ru[idx], k[idx], psi[idx]
        ps = p_i - _col(q["fx_step"][idx])
        ks = np.floor(ps)
        shifted = _select(
            ks == kf, rib_band(ps - ks, soft[idx]), _select(k_i == kf, 0.0, ribs[idx])
        )
        new = _select(same & (r_i > uf + gap), shifted, ribs[idx])
        in_gap = same & (r_i > uf) & (r_i <= uf + gap) & ((k_i == kf) | (ks == kf))
        ribs[idx] = new * ~in_gap
    # Anterior ribs: fainter bands running down toward the midline, ending at cartilage.
    ra = np.clip(1.0 - ru, 0.0, 1.0)
    ta = (Y - _col(q["rib_y0"]) - 0.15 - 0.9 * ra * np.sqrt(ra)) / (1.25 * sp)
    ka = np.floor(ta)
    ribs = ribs + 0.4 * rib_band(ta - ka, soft) * ((ka >= 0) & (ka <= 5)) * _smoothstep(
        0.3, 0.55, ru
    )
    ribs = ribs * _smoothstep(0.05, 0.11, ax) * _smoothstep(thorax + 0.08, thorax, ax)
    ribs = ribs * _smoothstep(0.06, -0.02, Y - y_dia)
    cx_ = ax - 0.05
    clav_y = _col(q["clav_y"]) - 0.07 * _col(q["ap"]) - _col(q["clav_rise"]) * cx_
    clav_y = clav_y + 0.03 * np.sin(np.pi * cx_ / 0.3)
    clav = _line(Y - clav_y, 0.026, np.maximum(0.01, px)) * _smoothstep(0.0, 0.03, cx_)
    clav = clav * _smoothstep(0.62, 0.56, cx_)

    # Lung markings: vessel spokes from each hilum, modulated by fine texture.
    dxv, dyv = ax - 0.16, Y + 0.04
    rv = np.sqrt(dxv * dxv + dyv * dyv)
    tv = _frac((np.arctan2(dyv, dxv) + 0.25 * f[:, 3]) / (2 * np.pi) + 0.5) * _VESSEL_BINS
    off = (np.arange(n, dtype=np.int32) * 2 * _VESSEL_BINS)[:, None, None] + right * _VESSEL_BINS
    vessels = _lookup(q["vtab"].ravel(), tv, off, _VESSEL_BINS) * np.exp(-2.4 * rv)
    vessels = vessels * _smoothstep(-0.8, 0.8, f[:, 4]) + 1.2 * np.exp(-((rv / 0.075) ** 2))

    # Findings: `opac` is the share of aerated lung replaced by fluid or tissue.
    opac = np.zeros_like(X)
    extra = np.zeros_like(X)
    clear = np.ones_like(X)  # 0 where a pneumothorax removed lung markings
    air_extra = np.zeros_like(X)

    def add_opacity(idx: np.ndarray, op: np.ndarray) -> None:
        opac[idx] = 1.0 - (1.0 - opac[idx]) * (1.0 - op)

    def blob(idx: np.ndarray, cx: str, cy: str, r: np.ndarray) -> np.ndarray:
        d2 = (X[idx] - _col(q[cx][idx])) ** 2 + (Y[idx] - _col(q[cy][idx])) ** 2
        return np.exp(-0.5 * d2 / r**2)

    idx = np.nonzero(q["f12"] > 0)[0]  # Fracture: healing callus, a fusiform swelling
    if len(idx):
        d2 = ((X[idx] - _col(q["fx_x"][idx])) / 1.5) ** 2 + (Y[idx] - _col(q["fx_y"][idx])) ** 2
        extra[idx] += 0.18 * np.exp(-0.5 * d2 / np.maximum(0.028, px[idx]) ** 2)
    idx = np.nonzero(q["f10"] > 0)[0]  # Pleural Effusion: basal opacity with meniscus
    if len(idx):
        on = _select(right[idx], _col(q["eff_r"][idx]), _col(q["eff_l"][idx]))
        hh = 0.5 * (bot[idx] - top[idx])
        level = (
            bot[idx]
            - 2 * hh * _col(q["eff_h"][idx])
            - _col(q["eff_men"][idx]) * np.clip(u[idx], 0, 1.3) ** 2
        )
        add_opacity(idx, 0.92 * on * _smoothstep(-0.03, 0.04, Y[idx] - level))
    idx = np.nonzero(q["f4"] > 0)[0]  # Lung Lesion: small round nodule
    if len(idx):
        r = _col(q["nod_r"][idx])
        d = np.sqrt((X[idx] - _col(q["nod_x"][idx])) ** 2 + (Y[idx] - _col(q["nod_y"][idx])) ** 2)
        nod = _smoothstep(r + 0.01, r - 0.01, d)
        add_opacity(idx, 0.85 * nod)
        extra[idx] += 0.05 * nod
    idx = np.nonzero(q["f3"] > 0)[0]  # Lung Opacity: patchy airspace opacity
    if len(idx):
        r = _col(q["op_r"][idx])
        env = blob(idx, "op_x", "op_y", r)
        mir = (X[idx] + _col(q["op_x"][idx])) ** 2 + (Y[idx] - _col(q["op_y"][idx])) ** 2
        env = np.maximum(env, _col(q["op_both"][idx]) * np.exp(-0.5 * mir / r**2))
        add_opacity(idx, 0.8 * _smoothstep(0.15, 0.6, env * (0.6 + 0.5 * f[idx, 1])))
    idx = np.nonzero(q["f6"] > 0)[0]  # Consolidation: dense, homogeneous
    if len(idx):
        env = blob(idx, "cons_x", "cons_y", _col(q["cons_r"][idx]))
        add_opacity(idx, 0.95 * _smoothstep(0.3, 0.5, env * (0.9 + 0.2 * f[idx, 1])))
    idx = np.nonzero(q["f7"] > 0)[0]  # Pneumonia: consolidation-like opacity
    if len(idx):
        env = blob(idx, "pneu_x", "pneu_y", _col(q["cons_r"][idx]))
        add_opacity(idx, 0.9 * _smoothstep(0.25, 0.55, env * (0.75 + 0.35 * f[idx, 2])))
    idx = np.nonzero(q["f5"] > 0)[0]  # Edema: bilateral perihilar haze
    if len(idx):
        env = np.exp(-0.5 * (((ax[idx] - 0.22) / 0.17) ** 2 + ((Y[idx] + 0.02) / 0.3) ** 2))
        add_opacity(idx, _col(q["edema"][idx]) * env * (0.7 + 0.3 * f[idx, 2]))
        vessels[idx] *= 1.4
    idx = np.nonzero(q["f8"] > 0)[0]  # Atelectasis: basal plate-like band
    if len(idx):
        pts = q["atel_pts"][idx]
        d = _seg_dist(X[idx], Y[idx], pts[:, 0], pts[:, 1])
        add_opacity(idx, 0.9 * _line(d, _col(q["atel_w"][idx]), np.maximum(0.008, px[idx])))
    idx = np.nonzero(q["f11"] > 0)[0]  # Pleural Other: thickening along the lateral wall
    if len(idx):
        on = right[idx] == (_col(q["po_side"][idx]) > 0)
        t_rel = _col(q["po_t"][idx]) / w[idx]
        band = _smoothstep(1 - t_rel - 0.04, 1 - t_rel + 0.02, rq[idx] + 0.03 * f[idx, 2])
        band = band * _smoothstep(0.0, 0.3, u[idx])
        band = band * _smoothstep(_col(q["po_v0"][idx]), _col(q["po_v0"][idx]) + 0.1, v[idx])
        band = band * _smoothstep(_col(q["po_v1"][idx]), _col(q["po_v1"][idx]) - 0.1, v[idx])
        add_opacity(idx, 0.9 * on * band)
    idx = np.nonzero(q["f9"] > 0)[0]  # Pneumothorax: lung edge retracted toward the base
    if len(idx):
        kx = 1.0 - _col(q["ptx"][idx])
        ax_a, ay_a = _col(q["ptx_ax"][idx]), _col(q["ptx_ay"][idx])
        rq2, _, _ = _lung_r(
            ax_a + (ax[idx] - ax_a) / kx,
            ay_a + (Y[idx] - ay_a) / kx,
            xc[idx],
            w[idx],
            top[idx],
            bot[idx],
            dome[idx],
        )
        on = (right[idx] == (_col(q["ptx_side"][idx]) > 0)) * lung[idx]
        region = on * _smoothstep(1 - e[idx], 1 + e[idx], rq2)
        clear[idx] = 1.0 - region
        air_extra[idx] = 0.2 * region
        hw = np.maximum(0.005, 0.6 * px[idx]) / (w[idx] * kx)
        extra[idx] += 0.1 * on * _line(rq2 - 1.0, hw, hw)

    # Compose brightness (bright = dense) from tissue, air, bone and devices.
    occl = (1.0 - heart) * (1.0 - medi)
    aer = lung * occl * (1.0 - opac)
    b = 0.03 + body * (0.36 + 0.2 * thick + 0.03 * f[:, 0]) + 0.26 * arm + 0.1 * abdomen
    b = b + 0.04 * heart
    b = b - _col(q["air"]) * (aer * (0.5 + 0.5 * depth) + air_extra * lung * occl)
    b = b + _col(q["mark"]) * vessels * aer * clear + 0.05 * opac * lung * occl
    ribs = ribs * (0.25 + 0.75 * lung * occl)  # bone contrast is lower over soft tissue
    b = b - 0.1 * trachea + 0.09 * spine + _col(q["rib_amp"]) * ribs + 0.15 * clav + 0.12 * hum
    b = b + 0.07 * _col(q["breast"]) * np.exp(
        -(((ax - 0.45 * bw) / 0.3) ** 2) - ((Y - 0.42) / 0.22) ** 2
    ) * _smoothstep(0.72, 0.55, Y)
    b = b + extra
    idx = np.nonzero(q["f13"] > 0)[0]  # Support Devices: tubes, lines, pacemaker, ECG pads
    if len(idx):
        b[idx] += _devices_frontal(q, idx, X[idx], Y[idx], px[idx])
    return _window(q, b, noise)


def _devices_frontal(
    q: dict[str, np.ndarray], idx: np.ndarray, X: np.ndarray, Y: np.ndarray, px: np.ndarray
) -> np.ndarray:
    """Brightness of radio-opaque devices on a frontal view."""
    out = np.zeros_like(X)
    soft = np.maximum(0.006, 0.7 * px)
    ett = _col(q["ett"][idx])
    d = _select(Y < _col(q["ett_tip"][idx]), np.abs(X - 0.005), 9.0)
    out += 0.3 * ett * _line(d, 0.011, soft)
    out += 0.32 * _col(q["cvc"][idx]) * _line(_polyline_dist(X, Y, q["cvc_pts"][idx]), 0.006, soft)
    out += 0.3 * _col(q["ngt"][idx]) * _line(_polyline_dist(X, Y, q["ngt_pts"][idx]), 0.007, soft)
    pacer = _col(q["pacer"][idx])
    bx = np.maximum(np.abs(X - _col(q["pacer_x"][idx])) - 0.06, 0.0)
    by = np.maximum(np.abs(Y - _col(q["pacer_y"][idx])) - 0.035, 0.0)
    out += 0.6 * pacer * _smoothstep(0.02 + soft, 0.02, np.sqrt(bx * bx + by * by))
    out += 0.35 * pacer * _line(_polyline_dist(X, Y, q["lead_pts"][idx]), 0.005, soft)
    pts = q["ecg_pts"][idx]
    for j in range(pts.shape[1]):
        d = np.sqrt((X - _col(pts[:, j, 0])) ** 2 + (Y - _col(pts[:, j, 1])) ** 2)
        out += (
            0.3 * _col(pts[:, j, 2]) * (_line(d - 0.03, 0.006, soft) + _smoothstep(0.012, 0.006, d))
        )
    return out


def _lat_lung_r(
    x: np.ndarray, y: np.ndarray, xc, w, top, bot
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised radius of the lateral-view lung silhouette and its (u, v) coords."""
    yc, hh = 0.5 * (top + bot), 0.5 * (bot - top)
    u = (x - xc) / w
    v = (y - yc) / hh
    r_top = np.sqrt(u * u + v * v)
    vb = v / (0.74 + 0.26 * np.clip(u, -1.0, 1.0))  # diaphragm lowest posteriorly
    vb = vb * (1.0 + 0.12 * np.clip(1.0 - u * u, 0.0, 1.0))
    u2, vb2 = u * u, vb * vb
    return _select(v < 0, r_top, np.sqrt(np.sqrt(u2 * u2 + vb2 * vb2))), u, v


def _render_cxr_lateral(
    q: dict[str, np.ndarray], f: np.ndarray, noise: np.ndarray, size: int
) -> np.ndarray:
    """Lateral chest radiographs (anterior to the image left) [B, H, W] in [0, 1]."""
    n = len(q["scale"])
    X, Y, px = _view_coords(q, size)

    cd = _col(q["chest_depth"])
    half = cd * (1.0 - 0.25 * _smoothstep(-0.7, -1.0, Y))
    body = _smoothstep(0.03, -0.03, np.abs(X - 0.06) - half)
    thick = np.sqrt(np.clip(1.0 - ((X - 0.06) / (cd + 0.05)) ** 2, 0.0, 1.0))
    arms = _smoothstep(0.1, -0.1, Y + 0.62) * _smoothstep(0.05, -0.05, np.abs(X - 0.05) - 0.7)

    xc, lw = -0.02, np.full_like(cd, 0.6)
    top, bot = _col(q["lung_top"]) - 0.08, _col(q["bot_r"]) + 0.12
    rq, u, v = _lat_lung_r(X, Y, xc, lw, top, bot)
    e = np.maximum(0.02, px) / lw
    lung = _smoothstep(1 + e, 1 - e, rq)
    depth = np.sqrt(np.clip(1.0 - rq * rq, 0.0, 1.0))
    yc, hh = 0.5 * (top + bot), 0.5 * (bot - top)

    # Heart anterior-inferior; enlarges posteriorly with cardiomegaly.
    grow = _col(q["ctr_drawn"]) / 0.43
    hxc, hyc = xc - 0.5 * lw + 0.08 * (grow - 1), yc + 0.62 * hh
    dxh, dyh = X - hxc, Y - hyc
    th = -0.6
    du = (dxh * math.cos(th) + dyh * math.sin(th)) / (0.32 * grow)
    dv = (dyh * math.cos(th) - dxh * math.sin(th)) / (0.24 * grow)
    heart = _smoothstep(1.06, 0.94, np.sqrt(du * du + dv * dv))
    # Great vessels: aortic arch and descending aorta; anterior mediastinum for EC.
    arch = _line(np.sqrt((X - 0.12) ** 2 + (Y + 0.22) ** 2) - 0.18, 0.03, 0.02) * _smoothstep(
        -0.14, -0.24, Y
    )
    desc = _line(
        _seg_dist(X, Y, np.tile([[0.3, -0.22]], (n, 1)), np.tile([[0.36, 0.6]], (n, 1))),
        0.035,
        0.02,
    )
    ant = (
        _col(q["ec_f"] - 1.0)
        * 1.6
        * np.exp(-0.5 * (((X - (xc - 0.55 * lw)) / 0.14) ** 2 + ((Y + 0.25) / 0.2) ** 2))
    )
    vessels_bg = np.maximum(arch, desc) * 0.35
    trachea = _line(
        _seg_dist(X, Y, np.tile([[-0.02, -1.2]], (n, 1)), np.tile([[0.1, -0.12]], (n, 1))),
        0.03,
        0.012,
    )

    # Spine posterior with kyphosis; sternum anterior; posterior ribs as faint bands.
    xsp = xc + lw + 0.08 + 0.05 * (1.0 - Y * Y)
    vfr = _frac((Y + 3.0) / _col(q["vert_h"]))
    spine = _smoothstep(0.012, -0.012, np.abs(X - xsp) - 0.075) * (
        0.65 + 0.35 * _smoothstep(0.0, 0.2, vfr) * _smoothstep(1.0, 0.8, vfr)
    )
    sternum = (
        _line(X - (xc - lw - 0.04), 0.018, 0.01)
        * _smoothstep(-0.55, -0.45, Y)
        * _smoothstep(0.4, 0.3, Y)
    )
    sp = _col(q["rib_sp"]) * 1.1
    psi = (Y - 0.45 * (X - 0.3) - _col(q["rib_y0"])) / sp
    k = np.floor(psi)
    ribs = (
        _smoothstep(0.0, 0.12, psi - k) * _smoothstep(0.45, 0.33, psi - k) * ((k >= 0) & (k <= 9))
    )
    k2 = np.floor(psi + 0.35)  # the other side's ribs, slightly magnified and offset
    ribs2 = _smoothstep(0.0, 0.12, psi + 0.35 - k2) * _smoothstep(0.45, 0.33, psi + 0.35 - k2)
    ribs = ribs + 0.6 * ribs2 * ((k2 >= 1) & (k2 <= 10))
    post = _smoothstep(xc + 0.05, xc + 0.35, X) * _smoothstep(xsp, xsp - 0.1, X)
    idx = np.nonzero(q["f12"] > 0)[0]  # Fracture: gap in one posterior rib
    if len(idx):
        kf = _col(q["fx_rib"][idx])
        xg = xc + 0.25 * lw[idx] + _col(q["fx_u"][idx]) * 0.4 * lw[idx]
        gap = np.maximum(_col(q["fx_gap"][idx]), 1.5 * px[idx])
        cut = (k[idx] == kf) & (np.abs(X[idx] - xg) < gap)
        ribs[idx] = ribs[idx] * ~cut
        yg = _col(q["rib_y0"][idx]) + sp[idx] * (kf + 0.22) + 0.45 * (xg - 0.3)
        d2 = ((X[idx] - xg) / 1.5) ** 2 + (Y[idx] - yg) ** 2
        fx_callus = (idx, 0.18 * np.exp(-0.5 * d2 / np.maximum(0.028, px[idx]) ** 2))
    ribs = ribs * post

    dxv, dyv = X - 0.08, Y + 0.05
    rv = np.sqrt(dxv * dxv + dyv * dyv)
    tv = _frac((np.arctan2(dyv, dxv) + 0.25 * f[:, 3]) / (2 * np.pi) + 0.5) * _VESSEL_BINS
    off = (np.arange(n, dtype=np.int32) * 2 * _VESSEL_BINS)[:, None, None]
    vessels = _lookup(q["vtab"].ravel(), tv, off, _VESSEL_BINS) * np.exp(-2.2 * rv)
    vessels = vessels * _smoothstep(-0.8, 0.8, f[:, 4]) + 1.4 * np.exp(-((rv / 0.1) ** 2))

    opac = np.zeros_like(X)
    extra = np.zeros_like(X)
    clear = np.ones_like(X)
    air_extra = np.zeros_like(X)

    def add_opacity(idx: np.ndarray, op: np.ndarray) -> None:
        opac[idx] = 1.0 - (1.0 - opac[idx]) * (1.0 - op)

    def at(idx: np.ndarray, uk: str, vk: str, r) -> np.ndarray:
        cx = xc + _col(q[uk][idx]) * 0.7 * lw[idx]
        cy = yc[idx] + _col(q[vk][idx]) * hh[idx]
        return np.exp(-0.5 * ((X[idx] - cx) ** 2 + (Y[idx] - cy) ** 2) / r**2)

    idx = np.nonzero(q["f10"] > 0)[0]  # Pleural Effusion: posterior sulcus blunting
    if len(idx):
        level = (
            bot[idx]
            - 2 * hh[idx] * _col(q["eff_h"][idx])
            - _col(q["eff_men"][idx]) * np.clip(u[idx], 0, 1.3) ** 2
        )
        add_opacity(
            idx, 0.92 * _smoothstep(-0.03, 0.04, Y[idx] - level) * _smoothstep(-0.5, 0.0, u[idx])
        )
    idx = np.nonzero(q["f4"] > 0)[0]  # Lung Lesion
    if len(idx):
        r = _col(q["nod_r"][idx])
        cx = xc + _col(q["nod_u"][idx]) * 0.7 * lw[idx]
        cy = yc[idx] + _col(q["nod_v"][idx]) * hh[idx]
        nod = _smoothstep(r + 0.01, r - 0.01, np.sqrt((X[idx] - cx) ** 2 + (Y[idx] - cy) ** 2))
        add_opacity(idx, 0.85 * nod)
        extra[idx] += 0.05 * nod
    idx = np.nonzero(q["f3"] > 0)[0]  # Lung Opacity
    if len(idx):
        env = at(idx, "op_u", "op_v", _col(q["op_r"][idx]))
        add_opacity(idx, 0.75 * _smoothstep(0.15, 0.6, env * (0.6 + 0.5 * f[idx, 1])))
    idx = np.nonzero(q["f6"] > 0)[0]  # Consolidation
    if len(idx):
        env = at(idx, "cons_u", "cons_v", _col(q["cons_r"][idx]))
        add_opacity(idx, 0.9 * _smoothstep(0.3, 0.5, env * (0.9 + 0.2 * f[idx, 1])))
    idx = np.nonzero(q["f7"] > 0)[0]  # Pneumonia
    if len(idx):
        env = at(idx, "pneu_u", "pneu_v", _col(q["cons_r"][idx]))
        add_opacity(idx, 0.85 * _smoothstep(0.25, 0.55, env * (0.75 + 0.35 * f[idx, 2])))
    idx = np.nonzero(q["f5"] > 0)[0]  # Edema: perihilar haze
    if len(idx):
        env = np.exp(-0.5 * (((X[idx] - 0.05) / 0.25) ** 2 + ((Y[idx] + 0.02) / 0.3) ** 2))
        add_opacity(idx, _col(q["edema"][idx]) * env * (0.7 + 0.3 * f[idx, 2]))
        vessels[idx] *= 1.4
    if len(np.nonzero(q["f12"] > 0)[0]):
        extra[fx_callus[0]] += fx_callus[1]
    idx = np.nonzero(q["f8"] > 0)[0]  # Atelectasis: plate-like band, posterior lower lung
    if len(idx):
        cx = xc + (0.2 + 0.3 * _col(q["atel_u"][idx])) * lw[idx]
        cy = yc[idx] + (_col(q["atel_v"][idx]) - 0.15) * hh[idx]
        half = _col(q["atel_len"][idx]) * 0.6
        d = _select(np.abs(X[idx] - cx) < half, np.abs(Y[idx] - cy - 0.25 * (X[idx] - cx)), 9.0)
        add_opacity(idx, 0.9 * _line(d, _col(q["atel_w"][idx]), np.maximum(0.008, px[idx])))
    idx = np.nonzero(q["f11"] > 0)[0]  # Pleural Other: posterior pleural thickening
    if len(idx):
        t_rel = _col(q["po_t"][idx]) / lw[idx]
        band = _smoothstep(1 - t_rel - 0.04, 1 - t_rel + 0.02, rq[idx] + 0.03 * f[idx, 2])
        band = band * _smoothstep(0.2, 0.5, u[idx]) * _smoothstep(0.7, 0.5, v[idx])
        add_opacity(idx, 0.9 * band)
    idx = np.nonzero(q["f9"] > 0)[0]  # Pneumothorax: apical, no markings, pleural line
    if len(idx):
        kx = 1.0 - _col(q["ptx"][idx])
        ay_a = bot[idx]
        rq2, _, _ = _lat_lung_r(
            xc + (X[idx] - xc) / kx, ay_a + (Y[idx] - ay_a) / kx, xc, lw[idx], top[idx], bot[idx]
        )
        region = lung[idx] * _smoothstep(1 - e[idx], 1 + e[idx], rq2)
        clear[idx] = 1.0 - region
        air_extra[idx] = 0.2 * region
        hw = np.maximum(0.005, 0.6 * px[idx]) / (lw[idx] * kx)
        extra[idx] += 0.1 * lung[idx] * _line(rq2 - 1.0, hw, hw)

    # Lungs flank the heart on a lateral view, so it only partly replaces aerated lung.
    occl = (1.0 - 0.6 * heart) * (1.0 - vessels_bg) * (1.0 - np.clip(ant, 0.0, 0.9))
    aer = lung * occl * (1.0 - opac)
    b = 0.03 + body * (0.4 + 0.2 * thick + 0.03 * f[:, 0]) + 0.15 * arms * body
    b = b - _col(q["air"]) * 0.85 * (aer * (0.5 + 0.5 * depth) + air_extra * lung * occl)
    b = b + _col(q["mark"]) * vessels * aer * clear + 0.05 * opac * lung * occl
    b = b - 0.1 * trachea * body + 0.14 * spine + 0.08 * sternum + 0.5 * _col(q["rib_amp"]) * ribs
    b = b + extra
    idx = np.nonzero(q["f13"] > 0)[0]  # Support Devices
    if len(idx):
        Xi, Yi, pxi = X[idx], Y[idx], px[idx]
        soft = np.maximum(0.006, 0.7 * pxi)
        m = len(idx)
        ett_end = np.stack([np.full(m, 0.07), q["ett_tip"][idx] + 0.1], axis=1)
        d = _seg_dist(Xi, Yi, np.tile([[-0.03, -1.3]], (m, 1)), ett_end)
        dev = 0.3 * _col(q["ett"][idx]) * _line(d, 0.011, soft)
        d = _seg_dist(Xi, Yi, np.tile([[0.14, -1.3]], (m, 1)), np.tile([[0.24, 0.75]], (m, 1)))
        dev += 0.3 * _col(q["ngt"][idx]) * _line(d, 0.007, soft)
        cvc = np.stack(
            [
                np.tile([[-0.3, -0.75]], (m, 1)),
                np.tile([[-0.05, -0.45]], (m, 1)),
                np.stack([np.full(m, -0.02), q["cvc_tip"][idx]], axis=1),
            ],
            axis=1,
        )
        dev += 0.32 * _col(q["cvc"][idx]) * _line(_polyline_dist(Xi, Yi, cvc), 0.006, soft)
        bx = np.maximum(np.abs(Xi + 0.55) - 0.03, 0.0)
        by = np.maximum(np.abs(Yi + 0.55) - 0.06, 0.0)
        pacer = _col(q["pacer"][idx])
        dev += 0.6 * pacer * _smoothstep(0.02 + soft, 0.02, np.sqrt(bx * bx + by * by))
        lead = np.stack(
            [
                np.tile([[-0.55, -0.55]], (m, 1)),
                np.tile([[-0.1, -0.4]], (m, 1)),
                np.stack([hxc[idx].ravel() - 0.1, hyc[idx].ravel() + 0.15], axis=1),
            ],
            axis=1,
        )
        dev += 0.35 * pacer * _line(_polyline_dist(Xi, Yi, lead), 0.005, soft)
        pts = q["ecg_pts"][idx]
        for j in range(pts.shape[1]):
            d = np.sqrt((Xi + _col(cd[idx].ravel()) * 0.95) ** 2 + (Yi - _col(pts[:, j, 1])) ** 2)
            dev += 0.3 * _col(pts[:, j, 2]) * _smoothstep(0.03, 0.02, d)
        b[idx] += dev
    return _window(q, b, noise)


def _cxr_image_params(seed: int, split: str, patient: int) -> list[dict[str, object]]:
    """Parameter dicts of every image of one patient (studies x views), in path order."""
    code = _SPLIT_CODES[split]
    anat = _cxr_patient(np.random.default_rng([seed, code, patient]))
    rng = np.random.default_rng([seed, code, patient, 1 << 20])
    n_studies = 1 if split == "valid" else int(rng.choice(4, p=_STUDIES_P)) + 1
    out: list[dict[str, object]] = []
    previous = None
    for study in range(1, n_studies + 1):
        srng = np.random.default_rng([seed, code, patient, study])
        findings = _study_findings(srng, previous)
        previous = findings
        raw = _raw_labels(srng, findings, split)
        sp = _cxr_study(srng, findings)
        lateral = srng.random() < _P_LATERAL[int(sp["ap"])]
        for view in range(1, 3 if lateral else 2):
            vrng = np.random.default_rng([seed, code, patient, study, view])
            p: dict[str, object] = {**anat, **sp, **_cxr_view(vrng, bool(sp["ap"]))}
            p["findings"] = findings
            p["lateral"] = float(view == 2)
            _cxr_derived(p)
            kind = "lateral" if view == 2 else "frontal"
            p["_meta"] = (
                f"{CHEXPERT_DIR}/{split}/patient{patient:05d}/study{study}/view{view}_{kind}.jpg",
                f"patient{patient:05d}",
                "Male" if anat["male"] else "Female",
                anat["age"],
                "Lateral" if view == 2 else "Frontal",
                "" if view == 2 else ("AP" if sp["ap"] else "PA"),
                raw,
            )
            p["_rng"] = vrng
            out.append(p)
    return out


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


# --------------------------------------------------------------------------------------
# On-disk layouts and CLI
# --------------------------------------------------------------------------------------

JPEG_QUALITY = 95


def _save_jpeg(path: Path, image: np.ndarray) -> None:
    from PIL import Image

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


_LAYOUTS = {"lesions": ("folder",), "cxr": ("chexpert",)}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m medgan_jax.data.synthetic",
        description="Write an embedded synthetic dataset to disk in a real dataset's layout.",
        epilog=(
            "Supported --kind/--layout pairs: lesions/folder (Kaggle 'Skin Cancer: Malignant vs. "
            "Benign' tree out/{train,test}/{benign,malignant}/*.jpg) and cxr/chexpert "
            "(out/CheXpert-v1.0-small/{train,valid}.csv + JPEGs)."
        ),
    )
    p.add_argument(
        "--kind", required=True, choices=sorted(_LAYOUTS), help="which synthetic dataset"
    )
    p.add_argument(
        "--layout", required=True, help="on-disk layout: folder (lesions) or chexpert (cxr)"
    )
    p.add_argument(
        "--num",
        type=int,
        required=True,
        help=(
            "lesions: number of images. cxr: approximate number of train images; patients = "
            f"round(num / {CXR_IMAGES_PER_PATIENT:.2f}) since a patient has 1-4 studies of "
            "1-2 views"
        ),
    )
    p.add_argument("--size", type=int, default=64, help="image side in pixels (32..256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--test-fraction", type=float, default=0.2, help="lesions: stratified test share"
    )
    p.add_argument(
        "--overlap", type=float, default=DEFAULT_LESION_OVERLAP, help="lesions: class overlap 0..1"
    )
    p.add_argument("--malignant-fraction", type=float, default=0.45, help="lesions: P(malignant)")
    p.add_argument("--hair-probability", type=float, default=0.3, help="lesions: P(hair artefacts)")
    p.add_argument("--valid-patients", type=int, default=None, help="cxr: patients in valid.csv")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.layout not in _LAYOUTS[args.kind]:
        parser.error(
            f"--layout {args.layout!r} is not supported for --kind {args.kind!r}; expected one of "
            f"{', '.join(_LAYOUTS[args.kind])} (supported pairs: lesions/folder, cxr/chexpert)"
        )
    if args.num < 1:
        parser.error(f"--num must be >= 1, got {args.num}")
    try:
        if args.kind == "lesions":
            summary = _write_folder_layout(
                args.out,
                args.num,
                args.size,
                args.seed,
                args.test_fraction,
                overlap=args.overlap,
                malignant_fraction=args.malignant_fraction,
                hair_probability=args.hair_probability,
            )
        else:
            patients = max(1, round(args.num / CXR_IMAGES_PER_PATIENT))
            summary = _write_chexpert_layout(
                args.out, patients, args.size, args.seed, args.valid_patients
            )
    except ValueError as err:
        parser.error(str(err))
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
