"""Chest X-ray parameters: CheXpert-like findings and report labels, and the patient,
study and view parameters the renderers draw from (all numpy, seeded per image)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from medgan_jax.data.chexpert_schema import CHEXPERT_DIR, CHEXPERT_LABELS

CXR_SPLITS = ("train", "valid")  # like CheXpert's train.csv and valid.csv

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
