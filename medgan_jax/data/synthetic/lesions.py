"""Dermoscopy-like lesion images, benign or malignant by the ABCD rule."""

from __future__ import annotations

import numpy as np

from medgan_jax.data.synthetic.raster import (
    _check_count,
    _check_size,
    _check_unit,
    _chunks,
    _col,
    _coords,
    _field_matrix,
    _line,
    _lookup,
    _run_chunks,
    _smooth_fields,
    _smoothstep,
    _stack,
    _to_uint8,
)

LESION_CLASSES = ("benign", "malignant")
# Default class-overlap knob of lesion_images: tuned so that a tiny CNN on 32x32 images
# clearly gains from 10 images per class to 2,000, the regime where more data should help
# (tests/data/test_synthetic.py::test_default_overlap_gives_a_fair_task measures it).
DEFAULT_LESION_OVERLAP = 0.5

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
