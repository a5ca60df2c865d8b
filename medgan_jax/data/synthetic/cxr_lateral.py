"""Lateral chest radiographs (anterior to the image left): anatomy, findings and devices."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from medgan_jax.data.synthetic.cxr_findings import _VESSEL_BINS
from medgan_jax.data.synthetic.cxr_render import _draw_findings, _Overlay, _view_coords, _window
from medgan_jax.data.synthetic.raster import (
    _col,
    _frac,
    _line,
    _lookup,
    _polyline_dist,
    _seg_dist,
    _select,
    _smoothstep,
)


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


def _fixed(m: int, x: float, y: float) -> np.ndarray:
    """The same point (x, y) for each of m images [m, 2]."""
    return np.tile([[x, y]], (m, 1))


@dataclasses.dataclass(frozen=True)
class _Lateral:
    """A chunk of lateral views: parameters, smooth fields, patient coordinates and the lungs.

    Per-pixel arrays are [B, H, W], per-image ones [B, 1, 1].
    """

    q: dict[str, np.ndarray]
    f: np.ndarray  # 4 coarse + 1 fine smooth fields [B, 5, H, W]
    X: np.ndarray
    Y: np.ndarray
    px: np.ndarray  # one pixel in patient units
    xc: float  # lung centre x
    lw: np.ndarray  # lung half depth
    top: np.ndarray
    bot: np.ndarray
    yc: np.ndarray
    hh: np.ndarray  # lung half height
    rq: np.ndarray  # normalised lung radius, 1 on the pleura
    u: np.ndarray  # lung-relative coordinates
    v: np.ndarray
    e: np.ndarray  # soft edge of the lung in rq units
    lung: np.ndarray
    depth: np.ndarray


def _lateral_view(q: dict[str, np.ndarray], f: np.ndarray, size: int) -> _Lateral:
    """Patient coordinates, then both lungs superimposed in one silhouette."""
    X, Y, px = _view_coords(q, size)
    xc, lw = -0.02, np.full_like(_col(q["chest_depth"]), 0.6)
    top, bot = _col(q["lung_top"]) - 0.08, _col(q["bot_r"]) + 0.12
    rq, u, v = _lat_lung_r(X, Y, xc, lw, top, bot)
    e = np.maximum(0.02, px) / lw
    lung = _smoothstep(1 + e, 1 - e, rq)
    depth = np.sqrt(np.clip(1.0 - rq * rq, 0.0, 1.0))
    yc, hh = 0.5 * (top + bot), 0.5 * (bot - top)
    return _Lateral(q, f, X, Y, px, xc, lw, top, bot, yc, hh, rq, u, v, e, lung, depth)


def _lateral_body(s: _Lateral) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Body outline (narrower toward the neck), its thickness, and the raised arms."""
    X, Y = s.X, s.Y
    cd = _col(s.q["chest_depth"])
    half = cd * (1.0 - 0.25 * _smoothstep(-0.7, -1.0, Y))
    body = _smoothstep(0.03, -0.03, np.abs(X - 0.06) - half)
    thick = np.sqrt(np.clip(1.0 - ((X - 0.06) / (cd + 0.05)) ** 2, 0.0, 1.0))
    arms = _smoothstep(0.1, -0.1, Y + 0.62) * _smoothstep(0.05, -0.05, np.abs(X - 0.05) - 0.7)
    return body, thick, arms


def _heart_centre(s: _Lateral) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heart growth factor and centre: anterior-inferior; enlarges posteriorly with cardiomegaly."""
    grow = _col(s.q["ctr_drawn"]) / 0.43
    return grow, s.xc - 0.5 * s.lw + 0.08 * (grow - 1), s.yc + 0.62 * s.hh


def _lateral_heart(s: _Lateral) -> tuple[np.ndarray, ...]:
    """Heart, great vessels, anterior mediastinum, trachea: (heart, vessels_bg, ant, trachea)."""
    q, X, Y, n = s.q, s.X, s.Y, len(s.q["scale"])
    grow, hxc, hyc = _heart_centre(s)
    dxh, dyh = X - hxc, Y - hyc
    th = -0.6
    du = (dxh * math.cos(th) + dyh * math.sin(th)) / (0.32 * grow)
    dv = (dyh * math.cos(th) - dxh * math.sin(th)) / (0.24 * grow)
    heart = _smoothstep(1.06, 0.94, np.sqrt(du * du + dv * dv))
    # Great vessels: aortic arch and descending aorta; anterior mediastinum for EC.
    arch = _line(np.sqrt((X - 0.12) ** 2 + (Y + 0.22) ** 2) - 0.18, 0.03, 0.02) * _smoothstep(
        -0.14, -0.24, Y
    )
    desc = _line(_seg_dist(X, Y, _fixed(n, 0.3, -0.22), _fixed(n, 0.36, 0.6)), 0.035, 0.02)
    ant = (
        _col(q["ec_f"] - 1.0)
        * 1.6
        * np.exp(-0.5 * (((X - (s.xc - 0.55 * s.lw)) / 0.14) ** 2 + ((Y + 0.25) / 0.2) ** 2))
    )
    vessels_bg = np.maximum(arch, desc) * 0.35
    trachea = _line(_seg_dist(X, Y, _fixed(n, -0.02, -1.2), _fixed(n, 0.1, -0.12)), 0.03, 0.012)
    return heart, vessels_bg, ant, trachea


def _fracture_x(s: _Lateral, idx: np.ndarray) -> np.ndarray:
    """Where the broken posterior rib is interrupted (images idx)."""
    return s.xc + 0.25 * s.lw[idx] + _col(s.q["fx_u"][idx]) * 0.4 * s.lw[idx]


def _lateral_bones(s: _Lateral) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spine posterior with kyphosis; sternum anterior; posterior ribs as faint bands."""
    q, X, Y, xc = s.q, s.X, s.Y, s.xc
    xsp = xc + s.lw + 0.08 + 0.05 * (1.0 - Y * Y)
    vfr = _frac((Y + 3.0) / _col(q["vert_h"]))
    spine = _smoothstep(0.012, -0.012, np.abs(X - xsp) - 0.075) * (
        0.65 + 0.35 * _smoothstep(0.0, 0.2, vfr) * _smoothstep(1.0, 0.8, vfr)
    )
    sternum = (
        _line(X - (xc - s.lw - 0.04), 0.018, 0.01)
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
        gap = np.maximum(_col(q["fx_gap"][idx]), 1.5 * s.px[idx])
        cut = (k[idx] == _col(q["fx_rib"][idx])) & (np.abs(X[idx] - _fracture_x(s, idx)) < gap)
        ribs[idx] = ribs[idx] * ~cut
    return spine, sternum, ribs * post


def _lateral_markings(s: _Lateral) -> np.ndarray:
    """Lung markings: vessel spokes from the superimposed hila, modulated by fine texture."""
    q, f, n = s.q, s.f, len(s.q["scale"])
    dxv, dyv = s.X - 0.08, s.Y + 0.05
    rv = np.sqrt(dxv * dxv + dyv * dyv)
    tv = _frac((np.arctan2(dyv, dxv) + 0.25 * f[:, 3]) / (2 * np.pi) + 0.5) * _VESSEL_BINS
    off = (np.arange(n, dtype=np.int32) * 2 * _VESSEL_BINS)[:, None, None]
    vessels = _lookup(q["vtab"].ravel(), tv, off, _VESSEL_BINS) * np.exp(-2.2 * rv)
    return vessels * _smoothstep(-0.8, 0.8, f[:, 4]) + 1.4 * np.exp(-((rv / 0.1) ** 2))


# Findings; `idx` are the images of the chunk that have the finding.


def _at(s: _Lateral, idx: np.ndarray, uk: str, vk: str, r) -> np.ndarray:
    """Gaussian blob of radius r at lung-relative position (q[uk], q[vk])."""
    cx = s.xc + _col(s.q[uk][idx]) * 0.7 * s.lw[idx]
    cy = s.yc[idx] + _col(s.q[vk][idx]) * s.hh[idx]
    return np.exp(-0.5 * ((s.X[idx] - cx) ** 2 + (s.Y[idx] - cy) ** 2) / r**2)


def _effusion(s: _Lateral, o: _Overlay, idx: np.ndarray) -> None:
    """Pleural Effusion: posterior sulcus blunting."""
    q, u = s.q, s.u
    level = (
        s.bot[idx]
        - 2 * s.hh[idx] * _col(q["eff_h"][idx])
        - _col(q["eff_men"][idx]) * np.clip(u[idx], 0, 1.3) ** 2
    )
    o.add_opacity(
        idx, 0.92 * _smoothstep(-0.03, 0.04, s.Y[idx] - level) * _smoothstep(-0.5, 0.0, u[idx])
    )


def _nodule(s: _Lateral, o: _Overlay, idx: np.ndarray) -> None:
    """Lung Lesion."""
    q = s.q
    r = _col(q["nod_r"][idx])
    cx = s.xc + _col(q["nod_u"][idx]) * 0.7 * s.lw[idx]
    cy = s.yc[idx] + _col(q["nod_v"][idx]) * s.hh[idx]
    nod = _smoothstep(r + 0.01, r - 0.01, np.sqrt((s.X[idx] - cx) ** 2 + (s.Y[idx] - cy) ** 2))
    o.add_opacity(idx, 0.85 * nod)
    o.extra[idx] += 0.05 * nod


def _opacity(s: _Lateral, o: _Overlay, idx: np.ndarray) -> None:
    """Lung Opacity."""
    env = _at(s, idx, "op_u", "op_v", _col(s.q["op_r"][idx]))
    o.add_opacity(idx, 0.75 * _smoothstep(0.15, 0.6, env * (0.6 + 0.5 * s.f[idx, 1])))


def _consolidation(s: _Lateral, o: _Overlay, idx: np.ndarray) -> None:
    """Consolidation."""
    env = _at(s, idx, "cons_u", "cons_v", _col(s.q["cons_r"][idx]))
    o.add_opacity(idx, 0.9 * _smoothstep(0.3, 0.5, env * (0.9 + 0.2 * s.f[idx, 1])))


def _pneumonia(s: _Lateral, o: _Overlay, idx: np.ndarray) -> None:
    """Pneumonia."""
    env = _at(s, idx, "pneu_u", "pneu_v", _col(s.q["cons_r"][idx]))
    o.add_opacity(idx, 0.85 * _smoothstep(0.25, 0.55, env * (0.75 + 0.35 * s.f[idx, 2])))


def _edema(s: _Lateral, o: _Overlay, idx: np.ndarray) -> None:
    """Edema: perihilar haze."""
    env = np.exp(-0.5 * (((s.X[idx] - 0.05) / 0.25) ** 2 + ((s.Y[idx] + 0.02) / 0.3) ** 2))
    o.add_opacity(idx, _col(s.q["edema"][idx]) * env * (0.7 + 0.3 * s.f[idx, 2]))
    o.vessels[idx] *= 1.4


def _callus(s: _Lateral, o: _Overlay, idx: np.ndarray) -> None:
    """Fracture: healing callus at the gap in the posterior rib."""
    q = s.q
    xg = _fracture_x(s, idx)
    sp = _col(q["rib_sp"]) * 1.1
    yg = _col(q["rib_y0"][idx]) + sp[idx] * (_col(q["fx_rib"][idx]) + 0.22) + 0.45 * (xg - 0.3)
    d2 = ((s.X[idx] - xg) / 1.5) ** 2 + (s.Y[idx] - yg) ** 2
    o.extra[idx] += 0.18 * np.exp(-0.5 * d2 / np.maximum(0.028, s.px[idx]) ** 2)


def _atelectasis(s: _Lateral, o: _Overlay, idx: np.ndarray) -> None:
    """Atelectasis: plate-like band, posterior lower lung."""
    q, X, Y = s.q, s.X, s.Y
    cx = s.xc + (0.2 + 0.3 * _col(q["atel_u"][idx])) * s.lw[idx]
    cy = s.yc[idx] + (_col(q["atel_v"][idx]) - 0.15) * s.hh[idx]
    half = _col(q["atel_len"][idx]) * 0.6
    d = _select(np.abs(X[idx] - cx) < half, np.abs(Y[idx] - cy - 0.25 * (X[idx] - cx)), 9.0)
    o.add_opacity(idx, 0.9 * _line(d, _col(q["atel_w"][idx]), np.maximum(0.008, s.px[idx])))


def _pleural_other(s: _Lateral, o: _Overlay, idx: np.ndarray) -> None:
    """Pleural Other: posterior pleural thickening."""
    t_rel = _col(s.q["po_t"][idx]) / s.lw[idx]
    band = _smoothstep(1 - t_rel - 0.04, 1 - t_rel + 0.02, s.rq[idx] + 0.03 * s.f[idx, 2])
    band = band * _smoothstep(0.2, 0.5, s.u[idx]) * _smoothstep(0.7, 0.5, s.v[idx])
    o.add_opacity(idx, 0.9 * band)


def _pneumothorax(s: _Lateral, o: _Overlay, idx: np.ndarray) -> None:
    """Pneumothorax: apical, no markings, pleural line."""
    xc, lw, lung = s.xc, s.lw, s.lung
    kx = 1.0 - _col(s.q["ptx"][idx])
    ay_a = s.bot[idx]
    rq2, _, _ = _lat_lung_r(
        xc + (s.X[idx] - xc) / kx, ay_a + (s.Y[idx] - ay_a) / kx, xc, lw[idx], s.top[idx], ay_a
    )
    region = lung[idx] * _smoothstep(1 - s.e[idx], 1 + s.e[idx], rq2)
    o.clear[idx] = 1.0 - region
    o.air_extra[idx] = 0.2 * region
    hw = np.maximum(0.005, 0.6 * s.px[idx]) / (lw[idx] * kx)
    o.extra[idx] += 0.1 * lung[idx] * _line(rq2 - 1.0, hw, hw)


# Drawing order matters: opacities combine and brightness adds up in this order.
_FINDINGS = (
    ("Pleural Effusion", _effusion),
    ("Lung Lesion", _nodule),
    ("Lung Opacity", _opacity),
    ("Consolidation", _consolidation),
    ("Pneumonia", _pneumonia),
    ("Edema", _edema),
    ("Fracture", _callus),
    ("Atelectasis", _atelectasis),
    ("Pleural Other", _pleural_other),
    ("Pneumothorax", _pneumothorax),
)


def _devices_lateral(s: _Lateral, idx: np.ndarray) -> np.ndarray:
    """Brightness of radio-opaque devices on a lateral view (images idx)."""
    q, Xi, Yi, pxi, m = s.q, s.X[idx], s.Y[idx], s.px[idx], len(idx)
    soft = np.maximum(0.006, 0.7 * pxi)
    ett_end = np.stack([np.full(m, 0.07), q["ett_tip"][idx] + 0.1], axis=1)
    d = _seg_dist(Xi, Yi, _fixed(m, -0.03, -1.3), ett_end)
    dev = 0.3 * _col(q["ett"][idx]) * _line(d, 0.011, soft)
    d = _seg_dist(Xi, Yi, _fixed(m, 0.14, -1.3), _fixed(m, 0.24, 0.75))
    dev += 0.3 * _col(q["ngt"][idx]) * _line(d, 0.007, soft)
    cvc_tip = np.stack([np.full(m, -0.02), q["cvc_tip"][idx]], axis=1)
    cvc = np.stack([_fixed(m, -0.3, -0.75), _fixed(m, -0.05, -0.45), cvc_tip], axis=1)
    dev += 0.32 * _col(q["cvc"][idx]) * _line(_polyline_dist(Xi, Yi, cvc), 0.006, soft)
    bx = np.maximum(np.abs(Xi + 0.55) - 0.03, 0.0)
    by = np.maximum(np.abs(Yi + 0.55) - 0.06, 0.0)
    pacer = _col(q["pacer"][idx])
    dev += 0.6 * pacer * _smoothstep(0.02 + soft, 0.02, np.sqrt(bx * bx + by * by))
    _, hxc, hyc = _heart_centre(s)
    lead_end = np.stack([hxc[idx].ravel() - 0.1, hyc[idx].ravel() + 0.15], axis=1)
    lead = np.stack([_fixed(m, -0.55, -0.55), _fixed(m, -0.1, -0.4), lead_end], axis=1)
    dev += 0.35 * pacer * _line(_polyline_dist(Xi, Yi, lead), 0.005, soft)
    pts = q["ecg_pts"][idx]
    cd = _col(q["chest_depth"][idx])
    for j in range(pts.shape[1]):
        d = np.sqrt((Xi + cd * 0.95) ** 2 + (Yi - _col(pts[:, j, 1])) ** 2)
        dev += 0.3 * _col(pts[:, j, 2]) * _smoothstep(0.03, 0.02, d)
    return dev


def _render_cxr_lateral(
    q: dict[str, np.ndarray], f: np.ndarray, noise: np.ndarray, size: int
) -> np.ndarray:
    """Lateral chest radiographs (anterior to the image left) [B, H, W] in [0, 1]."""
    s = _lateral_view(q, f, size)
    lung = s.lung
    body, thick, arms = _lateral_body(s)
    heart, vessels_bg, ant, trachea = _lateral_heart(s)
    spine, sternum, ribs = _lateral_bones(s)
    o = _Overlay.start(s.X, _lateral_markings(s))
    _draw_findings(s, o, _FINDINGS)

    # Lungs flank the heart on a lateral view, so it only partly replaces aerated lung.
    occl = (1.0 - 0.6 * heart) * (1.0 - vessels_bg) * (1.0 - np.clip(ant, 0.0, 0.9))
    aer = lung * occl * (1.0 - o.opac)
    b = 0.03 + body * (0.4 + 0.2 * thick + 0.03 * f[:, 0]) + 0.15 * arms * body
    b = b - _col(q["air"]) * 0.85 * (aer * (0.5 + 0.5 * s.depth) + o.air_extra * lung * occl)
    b = b + _col(q["mark"]) * o.vessels * aer * o.clear + 0.05 * o.opac * lung * occl
    b = b - 0.1 * trachea * body + 0.14 * spine + 0.08 * sternum + 0.5 * _col(q["rib_amp"]) * ribs
    b = b + o.extra
    idx = np.nonzero(q["f13"] > 0)[0]  # Support Devices: tubes, lines, pacemaker, ECG pads
    if len(idx):
        b[idx] += _devices_lateral(s, idx)
    return _window(q, b, noise)
