"""Frontal (PA/AP) chest radiographs: anatomy, findings and devices, one section each."""

from __future__ import annotations

import dataclasses

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


@dataclasses.dataclass(frozen=True)
class _Frontal:
    """A chunk of frontal views: parameters, smooth fields, patient coordinates and the lungs.

    Per-pixel arrays are [B, H, W], per-image ones [B, 1, 1]; side-dependent lung geometry
    (w, bot) is per pixel.
    """

    q: dict[str, np.ndarray]
    f: np.ndarray  # 4 coarse + 1 fine smooth fields [B, 5, H, W]
    X: np.ndarray
    Y: np.ndarray
    px: np.ndarray  # one pixel in patient units
    ax: np.ndarray  # |X|
    right: np.ndarray  # image right = patient's left
    xc: np.ndarray  # lung centre |x|
    dome: np.ndarray
    top: np.ndarray
    w: np.ndarray  # lung half width
    bot: np.ndarray
    rq: np.ndarray  # normalised lung radius, 1 on the pleura
    u: np.ndarray  # lung-relative coordinates
    v: np.ndarray
    e: np.ndarray  # soft edge of the lung in rq units
    lung: np.ndarray
    depth: np.ndarray
    y_dia: np.ndarray  # diaphragm height


def _frontal_view(q: dict[str, np.ndarray], f: np.ndarray, size: int) -> _Frontal:
    """Patient coordinates, then the lungs (per side) and the diaphragm."""
    X, Y, px = _view_coords(q, size)
    ax = np.abs(X)
    right = X >= 0  # image right = patient's left

    def side(left: np.ndarray, right_: np.ndarray) -> np.ndarray:
        return _col(left) + right * _col(right_ - left)

    xc, dome, top = _col(q["lung_xc"]), _col(q["dome"]), _col(q["lung_top"])
    w, bot = side(q["w_l"], q["w_r"]), side(q["bot_l"], q["bot_r"])
    rq, u, v = _lung_r(ax, Y, xc, w, top, bot, dome)
    e = np.maximum(0.02, px) / w
    lung = _smoothstep(1 + e, 1 - e, rq)
    depth = np.sqrt(np.clip(1.0 - rq * rq, 0.0, 1.0))
    uc = np.clip(u, -1.0, 1.0)
    y_dia = 0.5 * (top + bot) + 0.5 * (bot - top) / (1.0 + dome * (1.0 - uc * uc))
    return _Frontal(
        q, f, X, Y, px, ax, right, xc, dome, top, w, bot, rq, u, v, e, lung, depth, y_dia
    )


def _frontal_body(s: _Frontal) -> tuple[np.ndarray, ...]:
    """Body outline: torso with sloping shoulders, neck, arms, humeral heads; and abdomen.

    Returns (body, thick, arm, hum, abdomen, bw).
    """
    q, X, Y, ax = s.q, s.X, s.Y, s.ax
    bw = _col(q["bw"]) * (0.93 + 0.07 * _smoothstep(-0.7, 0.3, Y))  # flares toward the base
    y_top = -0.8 + 0.24 * (ax / bw) ** 2 - 0.5 * _smoothstep(0.36, 0.2, ax)  # neck, shoulders
    body = _smoothstep(0.025, -0.025, ax - bw) * _smoothstep(-0.06, 0.06, Y - y_top)
    thick = np.sqrt(np.clip(1.0 - (X / (bw + 0.05)) ** 2, 0.0, 1.0))
    arm = _smoothstep(0.025, -0.025, np.abs(ax - bw - 0.17) - 0.11) * _smoothstep(
        -0.05, 0.05, Y + 0.64
    )
    hum = _smoothstep(0.015, -0.015, np.sqrt((ax - bw + 0.01) ** 2 + (Y + 0.6) ** 2) - 0.12)
    abdomen = _smoothstep(-0.02, 0.08, Y - s.y_dia) * body
    return body, thick, arm, hum, abdomen, bw


def _frontal_heart(s: _Frontal) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heart (rotated ellipse), mediastinum (+ aortic knob), trachea."""
    q, X, Y = s.q, s.X, s.Y
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
    return heart, medi, trachea


def _rib_band(fr: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """Soft-edged rib over the first half of each rib period (fr in [0, 1))."""
    return _smoothstep(0.0, soft, fr) * _smoothstep(0.5, 0.5 - soft, fr)


def _frontal_bones(s: _Frontal) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bones: spine with vertebral bodies, ribs, clavicles."""
    q, Y, ax, px = s.q, s.Y, s.ax, s.px
    vfr = _frac((Y + 3.0) / _col(q["vert_h"]))
    spine = _smoothstep(0.012, -0.012, ax - _col(q["spine_w"])) * (
        0.75 + 0.25 * _smoothstep(0.0, 0.2, vfr) * _smoothstep(1.0, 0.8, vfr)
    )
    ribs = _frontal_ribs(s)
    cx_ = ax - 0.05
    clav_y = _col(q["clav_y"]) - 0.07 * _col(q["ap"]) - _col(q["clav_rise"]) * cx_
    clav_y = clav_y + 0.03 * np.sin(np.pi * cx_ / 0.3)
    clav = _line(Y - clav_y, 0.026, np.maximum(0.01, px)) * _smoothstep(0.0, 0.03, cx_)
    clav = clav * _smoothstep(0.62, 0.56, cx_)
    return spine, ribs, clav


def _frontal_ribs(s: _Frontal) -> np.ndarray:
    """Posterior ribs (one broken on a Fracture), anterior ribs, within the thorax."""
    q, Y, ax, px, right = s.q, s.Y, s.ax, s.px, s.right
    thorax = s.xc + _col(q["lung_w"])
    ru = ax / thorax
    rise = _col(q["rib_rise"])
    sp = _col(q["rib_sp"])
    t = (Y - _col(q["rib_y0"]) - sp * (-rise * ru + (rise + 1.8) * ru * ru * ru)) / sp
    psi = t - 0.015 * t * t
    k = np.floor(psi)
    soft = np.minimum(0.12, 0.5 * px / sp + 0.05)
    ribs = _rib_band(psi - k, soft) * ((k >= 0) & (k <= 9))
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
            ks == kf, _rib_band(ps - ks, soft[idx]), _select(k_i == kf, 0.0, ribs[idx])
        )
        new = _select(same & (r_i > uf + gap), shifted, ribs[idx])
        in_gap = same & (r_i > uf) & (r_i <= uf + gap) & ((k_i == kf) | (ks == kf))
        ribs[idx] = new * ~in_gap
    # Anterior ribs: fainter bands running down toward the midline, ending at cartilage.
    ra = np.clip(1.0 - ru, 0.0, 1.0)
    ta = (Y - _col(q["rib_y0"]) - 0.15 - 0.9 * ra * np.sqrt(ra)) / (1.25 * sp)
    ka = np.floor(ta)
    ribs = ribs + 0.4 * _rib_band(ta - ka, soft) * ((ka >= 0) & (ka <= 5)) * _smoothstep(
        0.3, 0.55, ru
    )
    ribs = ribs * _smoothstep(0.05, 0.11, ax) * _smoothstep(thorax + 0.08, thorax, ax)
    return ribs * _smoothstep(0.06, -0.02, Y - s.y_dia)


def _frontal_markings(s: _Frontal) -> np.ndarray:
    """Lung markings: vessel spokes from each hilum, modulated by fine texture."""
    q, f, Y, ax = s.q, s.f, s.Y, s.ax
    dxv, dyv = ax - 0.16, Y + 0.04
    rv = np.sqrt(dxv * dxv + dyv * dyv)
    tv = _frac((np.arctan2(dyv, dxv) + 0.25 * f[:, 3]) / (2 * np.pi) + 0.5) * _VESSEL_BINS
    n = len(q["scale"])
    off = (np.arange(n, dtype=np.int32) * 2 * _VESSEL_BINS)[:, None, None] + s.right * _VESSEL_BINS
    vessels = _lookup(q["vtab"].ravel(), tv, off, _VESSEL_BINS) * np.exp(-2.4 * rv)
    return vessels * _smoothstep(-0.8, 0.8, f[:, 4]) + 1.2 * np.exp(-((rv / 0.075) ** 2))


# Findings; `idx` are the images of the chunk that have the finding.


def _blob(s: _Frontal, idx: np.ndarray, cx: str, cy: str, r: np.ndarray) -> np.ndarray:
    """Gaussian blob of radius r at (q[cx], q[cy])."""
    d2 = (s.X[idx] - _col(s.q[cx][idx])) ** 2 + (s.Y[idx] - _col(s.q[cy][idx])) ** 2
    return np.exp(-0.5 * d2 / r**2)


def _callus(s: _Frontal, o: _Overlay, idx: np.ndarray) -> None:
    """Fracture: healing callus, a fusiform swelling."""
    q = s.q
    d2 = ((s.X[idx] - _col(q["fx_x"][idx])) / 1.5) ** 2 + (s.Y[idx] - _col(q["fx_y"][idx])) ** 2
    o.extra[idx] += 0.18 * np.exp(-0.5 * d2 / np.maximum(0.028, s.px[idx]) ** 2)


def _effusion(s: _Frontal, o: _Overlay, idx: np.ndarray) -> None:
    """Pleural Effusion: basal opacity with meniscus."""
    q, bot = s.q, s.bot
    on = _select(s.right[idx], _col(q["eff_r"][idx]), _col(q["eff_l"][idx]))
    hh = 0.5 * (bot[idx] - s.top[idx])
    level = (
        bot[idx]
        - 2 * hh * _col(q["eff_h"][idx])
        - _col(q["eff_men"][idx]) * np.clip(s.u[idx], 0, 1.3) ** 2
    )
    o.add_opacity(idx, 0.92 * on * _smoothstep(-0.03, 0.04, s.Y[idx] - level))


def _nodule(s: _Frontal, o: _Overlay, idx: np.ndarray) -> None:
    """Lung Lesion: small round nodule."""
    q, X, Y = s.q, s.X, s.Y
    r = _col(q["nod_r"][idx])
    d = np.sqrt((X[idx] - _col(q["nod_x"][idx])) ** 2 + (Y[idx] - _col(q["nod_y"][idx])) ** 2)
    nod = _smoothstep(r + 0.01, r - 0.01, d)
    o.add_opacity(idx, 0.85 * nod)
    o.extra[idx] += 0.05 * nod


def _opacity(s: _Frontal, o: _Overlay, idx: np.ndarray) -> None:
    """Lung Opacity: patchy airspace opacity."""
    q = s.q
    r = _col(q["op_r"][idx])
    env = _blob(s, idx, "op_x", "op_y", r)
    mir = (s.X[idx] + _col(q["op_x"][idx])) ** 2 + (s.Y[idx] - _col(q["op_y"][idx])) ** 2
    env = np.maximum(env, _col(q["op_both"][idx]) * np.exp(-0.5 * mir / r**2))
    o.add_opacity(idx, 0.8 * _smoothstep(0.15, 0.6, env * (0.6 + 0.5 * s.f[idx, 1])))


def _consolidation(s: _Frontal, o: _Overlay, idx: np.ndarray) -> None:
    """Consolidation: dense, homogeneous."""
    env = _blob(s, idx, "cons_x", "cons_y", _col(s.q["cons_r"][idx]))
    o.add_opacity(idx, 0.95 * _smoothstep(0.3, 0.5, env * (0.9 + 0.2 * s.f[idx, 1])))


def _pneumonia(s: _Frontal, o: _Overlay, idx: np.ndarray) -> None:
    """Pneumonia: consolidation-like opacity."""
    env = _blob(s, idx, "pneu_x", "pneu_y", _col(s.q["cons_r"][idx]))
    o.add_opacity(idx, 0.9 * _smoothstep(0.25, 0.55, env * (0.75 + 0.35 * s.f[idx, 2])))


def _edema(s: _Frontal, o: _Overlay, idx: np.ndarray) -> None:
    """Edema: bilateral perihilar haze."""
    env = np.exp(-0.5 * (((s.ax[idx] - 0.22) / 0.17) ** 2 + ((s.Y[idx] + 0.02) / 0.3) ** 2))
    o.add_opacity(idx, _col(s.q["edema"][idx]) * env * (0.7 + 0.3 * s.f[idx, 2]))
    o.vessels[idx] *= 1.4


def _atelectasis(s: _Frontal, o: _Overlay, idx: np.ndarray) -> None:
    """Atelectasis: basal plate-like band."""
    pts = s.q["atel_pts"][idx]
    d = _seg_dist(s.X[idx], s.Y[idx], pts[:, 0], pts[:, 1])
    o.add_opacity(idx, 0.9 * _line(d, _col(s.q["atel_w"][idx]), np.maximum(0.008, s.px[idx])))


def _pleural_other(s: _Frontal, o: _Overlay, idx: np.ndarray) -> None:
    """Pleural Other: thickening along the lateral wall."""
    q, v = s.q, s.v
    on = s.right[idx] == (_col(q["po_side"][idx]) > 0)
    t_rel = _col(q["po_t"][idx]) / s.w[idx]
    band = _smoothstep(1 - t_rel - 0.04, 1 - t_rel + 0.02, s.rq[idx] + 0.03 * s.f[idx, 2])
    band = band * _smoothstep(0.0, 0.3, s.u[idx])
    band = band * _smoothstep(_col(q["po_v0"][idx]), _col(q["po_v0"][idx]) + 0.1, v[idx])
    band = band * _smoothstep(_col(q["po_v1"][idx]), _col(q["po_v1"][idx]) - 0.1, v[idx])
    o.add_opacity(idx, 0.9 * on * band)


def _pneumothorax(s: _Frontal, o: _Overlay, idx: np.ndarray) -> None:
    """Pneumothorax: lung edge retracted toward the base."""
    q, w = s.q, s.w
    kx = 1.0 - _col(q["ptx"][idx])
    ax_a, ay_a = _col(q["ptx_ax"][idx]), _col(q["ptx_ay"][idx])
    rq2, _, _ = _lung_r(
        ax_a + (s.ax[idx] - ax_a) / kx,
        ay_a + (s.Y[idx] - ay_a) / kx,
        s.xc[idx],
        w[idx],
        s.top[idx],
        s.bot[idx],
        s.dome[idx],
    )
    on = (s.right[idx] == (_col(q["ptx_side"][idx]) > 0)) * s.lung[idx]
    region = on * _smoothstep(1 - s.e[idx], 1 + s.e[idx], rq2)
    o.clear[idx] = 1.0 - region
    o.air_extra[idx] = 0.2 * region
    hw = np.maximum(0.005, 0.6 * s.px[idx]) / (w[idx] * kx)
    o.extra[idx] += 0.1 * on * _line(rq2 - 1.0, hw, hw)


# Drawing order matters: opacities combine and brightness adds up in this order.
_FINDINGS = (
    ("Fracture", _callus),
    ("Pleural Effusion", _effusion),
    ("Lung Lesion", _nodule),
    ("Lung Opacity", _opacity),
    ("Consolidation", _consolidation),
    ("Pneumonia", _pneumonia),
    ("Edema", _edema),
    ("Atelectasis", _atelectasis),
    ("Pleural Other", _pleural_other),
    ("Pneumothorax", _pneumothorax),
)


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


def _render_cxr_frontal(
    q: dict[str, np.ndarray], f: np.ndarray, noise: np.ndarray, size: int
) -> np.ndarray:
    """PA/AP chest radiographs [B, H, W] in [0, 1]; f holds 4 coarse + 1 fine fields."""
    s = _frontal_view(q, f, size)
    ax, Y, lung = s.ax, s.Y, s.lung
    body, thick, arm, hum, abdomen, bw = _frontal_body(s)
    heart, medi, trachea = _frontal_heart(s)
    spine, ribs, clav = _frontal_bones(s)
    o = _Overlay.start(s.X, _frontal_markings(s))
    _draw_findings(s, o, _FINDINGS)

    # Compose brightness (bright = dense) from tissue, air, bone and devices.
    occl = (1.0 - heart) * (1.0 - medi)
    aer = lung * occl * (1.0 - o.opac)
    b = 0.03 + body * (0.36 + 0.2 * thick + 0.03 * f[:, 0]) + 0.26 * arm + 0.1 * abdomen
    b = b + 0.04 * heart
    b = b - _col(q["air"]) * (aer * (0.5 + 0.5 * s.depth) + o.air_extra * lung * occl)
    b = b + _col(q["mark"]) * o.vessels * aer * o.clear + 0.05 * o.opac * lung * occl
    ribs = ribs * (0.25 + 0.75 * lung * occl)  # bone contrast is lower over soft tissue
    b = b - 0.1 * trachea + 0.09 * spine + _col(q["rib_amp"]) * ribs + 0.15 * clav + 0.12 * hum
    b = b + 0.07 * _col(q["breast"]) * np.exp(
        -(((ax - 0.45 * bw) / 0.3) ** 2) - ((Y - 0.42) / 0.22) ** 2
    ) * _smoothstep(0.72, 0.55, Y)
    b = b + o.extra
    idx = np.nonzero(q["f13"] > 0)[0]  # Support Devices: tubes, lines, pacemaker, ECG pads
    if len(idx):
        b[idx] += _devices_frontal(q, idx, s.X[idx], Y[idx], s.px[idx])
    return _window(q, b, noise)
