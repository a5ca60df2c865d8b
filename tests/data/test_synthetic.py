"""Tests for the embedded synthetic datasets (medgan_jax.data.synthetic)."""

from __future__ import annotations

import copy
import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medgan_jax.data import synthetic
from medgan_jax.data.chexpert_schema import CHEXPERT_LABELS
from medgan_jax.data.synthetic import (
    LESION_CLASSES,
    cxr,
    cxr_findings,
    cxr_images,
    lesion_images,
    lesions,
    raster,
    write_chexpert_layout,
    write_folder_layout,
)

REPO = Path(__file__).resolve().parents[2]
RAW_VALUES = {"1.0", "0.0", "-1.0", ""}
RARE = ("Lung Lesion", "Pleural Other", "Fracture")
PATH_RE = re.compile(
    r"^CheXpert-v1\.0-small/(train|valid)/patient(\d{5})/study(\d+)/view(\d)_(frontal|lateral)\.jpg$"
)


@pytest.fixture(scope="module")
def cxr_2000() -> synthetic.CxrTable:
    """About 2,000 images (800 patients) at 32x32."""
    return cxr_images(800, 32, seed=0)


# ------------------------------------------------------------------------------ lesions


@pytest.mark.parametrize("size,num", [(32, 24), (64, 12), (256, 4)])
def test_lesion_shapes_dtypes_ranges(size, num):
    images, labels = lesion_images(num, size, seed=1)
    assert images.shape == (num, size, size, 3) and images.dtype == np.uint8
    assert labels.shape == (num,) and labels.dtype == np.int32
    assert set(np.unique(labels)) <= {0, 1}
    per_image_std = images.reshape(num, -1).std(axis=1)
    assert per_image_std.min() > 5  # lesion and skin, not a flat image
    assert images.max() > 150 and images.min() < 60  # bright skin, dark pigment


def test_lesions_deterministic_and_prefix_stable():
    a, la = lesion_images(70, 64, seed=3)  # 64 images per render chunk at 64x64
    b, lb = lesion_images(70, 64, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    for k in (1, 10, 65):
        c, lc = lesion_images(k, 64, seed=3)
        np.testing.assert_array_equal(c, a[:k])
        np.testing.assert_array_equal(lc, la[:k])
    d, _ = lesion_images(10, 64, seed=4)
    assert np.abs(d.astype(int) - a[:10]).mean() > 10


def test_lesion_resolution_independent():
    small, l_small = lesion_images(8, 32, seed=5)
    big, l_big = lesion_images(8, 128, seed=5)
    np.testing.assert_array_equal(l_small, l_big)
    down = big.reshape(8, 32, 4, 32, 4, 3).mean(axis=(2, 4))
    # Same scene at another resolution: block means agree up to noise and edges.
    assert np.abs(down - small).mean() < 12


def _lesion_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image lesion area fraction and chromaticity spread (number of colours) in the lesion."""
    img = images.astype(np.float32) / 255.0
    n, s = img.shape[:2]
    yy, xx = np.mgrid[:s, :s]
    r = np.hypot((xx + 0.5) / s * 2 - 1, (yy + 0.5) / s * 2 - 1)
    lum = img.mean(-1)
    ring = (r > 0.75) & (r < 0.9)
    skin = np.median(lum[:, ring], axis=1)[:, None, None]
    lesion = (lum < 0.75 * skin) & (r < 0.9)
    area = lesion.mean(axis=(1, 2))
    chroma = img / (img.sum(axis=-1, keepdims=True) + 1e-3)
    spread = np.array(
        [chroma[i][lesion[i]].std(axis=0).sum() if lesion[i].sum() > 3 else 0.0 for i in range(n)]
    )
    return area, spread


def test_lesion_abcd_statistics_follow_class_and_overlap():
    images, labels = lesion_images(300, 64, seed=2, overlap=0.0, hair_probability=0.0)
    area, spread = _lesion_stats(images)
    ben, mal = labels == 0, labels == 1
    assert area[mal].mean() > 2.0 * area[ben].mean()  # D: larger diameter
    assert spread[mal].mean() > 1.5 * spread[ben].mean()  # C: several colours
    # Separable at overlap=0: the area alone nearly classifies.
    thr = 0.5 * (np.median(area[mal]) + np.median(area[ben]))
    assert np.mean((area > thr) == mal) > 0.9
    # overlap=1: identical class distributions, so the class means agree.
    images, labels = lesion_images(300, 64, seed=2, overlap=1.0, hair_probability=0.0)
    area, spread = _lesion_stats(images)
    ratio = area[labels == 1].mean() / area[labels == 0].mean()
    assert 0.8 < ratio < 1.25


def test_lesion_feature_interpolation():
    ben, mal = lesions._lesion_feature_params(0.0)
    assert ben["radius"][1] < mal["radius"][0]  # disjoint diameter ranges
    ben, mal = lesions._lesion_feature_params(1.0)
    for key in ben:
        np.testing.assert_allclose(ben[key], mal[key])


def test_lesion_label_fraction_and_hair():
    _, labels = lesion_images(1000, 32, seed=0, malignant_fraction=0.3)
    assert abs(labels.mean() - 0.3) < 0.04
    a, _ = lesion_images(20, 64, seed=0, hair_probability=0.0)
    b, _ = lesion_images(20, 64, seed=0, hair_probability=1.0)
    assert (np.abs(a.astype(int) - b).max(axis=(1, 2, 3)) > 40).all()  # dark hairs everywhere


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(overlap=1.5), "overlap"),
        (dict(malignant_fraction=-0.1), "malignant_fraction"),
        (dict(size=16), "size"),
        (dict(size=300), "size"),
        (dict(num=-1), "num"),
        (dict(seed=-1), "seed"),
    ],
)
def test_lesion_bad_arguments_name_the_field(kwargs, field):
    args = dict(num=4, size=32)
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        lesion_images(**args)


# ----------------------------------------------------------------------------- chest X-ray


@pytest.mark.parametrize("size,patients", [(32, 6), (64, 4), (256, 1)])
def test_cxr_shapes_and_metadata(size, patients):
    t = cxr_images(patients, size, seed=0)
    n = len(t)
    assert n >= patients
    assert t.images.shape == (n, size, size, 1) and t.images.dtype == np.uint8
    assert (
        t.raw_labels.shape == (n, 14) and t.findings.shape == (n, 14) and t.findings.dtype == bool
    )
    assert set(np.unique(t.raw_labels)) <= RAW_VALUES
    assert set(t.sex) <= {"Male", "Female"} and set(t.view) <= {"Frontal", "Lateral"}
    assert t.age.dtype.kind == "i" and t.age.min() >= 18 and t.age.max() <= 90
    for i in range(n):
        m = PATH_RE.match(t.paths[i])
        assert m, t.paths[i]
        assert m.group(1) == "train" and t.patient_ids[i] == f"patient{m.group(2)}"
        assert (m.group(5) == "frontal") == (t.view[i] == "Frontal")
        assert t.ap_pa[i] in (("AP", "PA") if t.view[i] == "Frontal" else ("",))
    assert (t.images.reshape(n, -1).std(axis=1) > 20).all()


def test_cxr_deterministic_and_prefix_stable():
    big = cxr_images(12, 32, seed=7)
    again = cxr_images(12, 32, seed=7)
    np.testing.assert_array_equal(big.images, again.images)
    small = cxr_images(5, 32, seed=7)
    k = len(small)
    np.testing.assert_array_equal(small.images, big.images[:k])
    np.testing.assert_array_equal(small.raw_labels, big.raw_labels[:k])
    np.testing.assert_array_equal(small.paths, big.paths[:k])
    # Patients depend only on their number: patients 4..6 alone equal their rows in `big`.
    part = cxr_images(3, 32, seed=7, first_patient=4)
    rows = np.isin(big.patient_ids, ["patient00004", "patient00005", "patient00006"])
    np.testing.assert_array_equal(part.images, big.images[rows])
    np.testing.assert_array_equal(part.paths, big.paths[rows])
    other = cxr_images(1, 32, seed=8)
    assert np.abs(other.images[0].astype(int) - small.images[0]).mean() > 2


def test_cxr_prevalences_close_to_chexpert(cxr_2000):
    t = cxr_2000
    assert 1800 <= len(t) <= 2300
    prev = t.findings.mean(axis=0)
    for name, target in synthetic.CXR_PREVALENCE.items():
        got = prev[CHEXPERT_LABELS.index(name)]
        assert abs(got - target) < max(0.025, 0.3 * target), (name, got, target)
    for name in RARE:
        assert prev[CHEXPERT_LABELS.index(name)] < 0.05
        assert np.mean(t.raw_labels[:, CHEXPERT_LABELS.index(name)] == "1.0") < 0.05
    assert 0.08 <= prev[0] <= 0.15
    frontal = t.view == "Frontal"
    assert 0.6 < np.mean(t.ap_pa[frontal] == "AP") < 0.9
    assert 0.15 < np.mean(~frontal) < 0.35


def test_cxr_label_logic_and_raw_values(cxr_2000):
    t = cxr_2000
    f, raw = t.findings, t.raw_labels
    pathology = f[:, 1:13].any(axis=1)
    np.testing.assert_array_equal(f[:, 0], ~pathology)  # No Finding; Support Devices allowed
    assert (f[:, 0] & f[:, 13]).any()
    cons, pneu, opacity = (
        CHEXPERT_LABELS.index(n) for n in ("Consolidation", "Pneumonia", "Lung Opacity")
    )
    assert (f[f[:, cons], opacity]).all() and (f[f[:, pneu], opacity]).all()
    assert f[f[:, pneu], cons].mean() > f[:, cons].mean()  # pneumonia correlates with consolidation
    assert set(raw[:, 0]) == {"1.0", ""}
    np.testing.assert_array_equal(raw[:, 0] == "1.0", f[:, 0])
    assert set(raw[:, 1:][f[:, 1:]]) == {"1.0", "-1.0"}  # drawn: positive or uncertain
    assert set(raw[:, 1:][~f[:, 1:]]) == {
        "",
        "0.0",
        "-1.0",
    }  # absent: blank, negative, rarely uncertain
    assert np.mean(raw[:, 1:][~f[:, 1:]] == "") > 0.7
    normal = f[:, 0]
    assert not np.isin(raw[normal, 1:13], ["1.0", "-1.0"]).any()

    def uncertain_share(name):
        k = CHEXPERT_LABELS.index(name)
        return np.mean(raw[f[:, k], k] == "-1.0")

    for name in ("Consolidation", "Pneumonia", "Atelectasis", "Enlarged Cardiomediastinum"):
        assert uncertain_share(name) > 0.25, name
    assert uncertain_share("Support Devices") < 0.05


def test_cxr_patients_and_studies_are_consistent(cxr_2000):
    t = cxr_2000
    studies: dict[str, list[int]] = {}
    for i, path in enumerate(t.paths):
        studies.setdefault(path.rsplit("/", 1)[0], []).append(i)
    for folder, rows in studies.items():
        views = sorted(t.paths[i].rsplit("/", 1)[1] for i in rows)
        assert views[0] == "view1_frontal.jpg" and len(views) <= 2, folder
        assert len({tuple(t.raw_labels[i]) for i in rows}) == 1  # labels belong to the study
        assert len({tuple(t.findings[i]) for i in rows}) == 1
    for pid in np.unique(t.patient_ids):
        rows = np.nonzero(t.patient_ids == pid)[0]
        assert all(t.paths[i].startswith(f"CheXpert-v1.0-small/train/{pid}/") for i in rows)
        assert len(set(t.sex[rows])) == 1 and len(set(t.age[rows])) == 1
        assert (t.view[rows] == "Frontal").any()
        nums = sorted({int(PATH_RE.match(t.paths[i]).group(3)) for i in rows})
        assert nums == list(range(1, len(nums) + 1)) and len(nums) <= 4
    assert len(t) / len(np.unique(t.patient_ids)) == pytest.approx(
        synthetic.CXR_IMAGES_PER_PATIENT, rel=0.1
    )


def test_cxr_valid_split_is_clean():
    t = cxr_images(30, 32, seed=0, split="valid", first_patient=101)
    assert set(np.unique(t.raw_labels)) <= {"1.0", "0.0"}
    np.testing.assert_array_equal(t.raw_labels == "1.0", t.findings)
    assert all(p.startswith("CheXpert-v1.0-small/valid/patient00") for p in t.paths)
    assert {p.split("/")[3] for p in t.paths} == {"study1"}
    assert (
        sorted(t.patient_ids)[0] == "patient00101" and sorted(t.patient_ids)[-1] == "patient00130"
    )
    with pytest.raises(ValueError, match="split"):
        cxr_images(2, 32, split="test")
    with pytest.raises(ValueError, match="first_patient"):
        cxr_images(2, 32, first_patient=0)


def _render_with_and_without(
    label: str, size: int = 64, lateral: bool = False, max_patients: int = 2000
):
    """Render the first image (of a view) with `label` drawn, and the same image without it."""
    k = CHEXPERT_LABELS.index(label)
    for pid in range(1, max_patients):
        for p in cxr_findings._cxr_image_params(0, "train", pid):
            if p["findings"][k] and p["lateral"] == lateral:
                variants = []
                for on in (True, False):
                    q = copy.deepcopy(p)
                    q["findings"] = q["findings"].copy()
                    q["findings"][k] = on
                    cxr_findings._cxr_derived(q)
                    fmat = raster._field_matrix(size)
                    fine = raster._field_matrix(size, cxr._FINE_GRID)
                    variants.append(cxr._render_cxr([q], size, fmat, fine)[0])
                return p, variants
    raise AssertionError(f"no frontal image with {label}")


@pytest.mark.parametrize("lateral", [False, True], ids=["frontal", "lateral"])
@pytest.mark.parametrize("label", [n for n in CHEXPERT_LABELS if n != "No Finding"])
def test_cxr_each_finding_is_visibly_drawn(label, lateral):
    p, (with_, without) = _render_with_and_without(label, lateral=lateral)
    diff = np.abs(with_ - without)
    # A visible change: several pixels differ by a clearly visible amount.
    assert (diff > 0.08).sum() >= 4, (label, diff.max())
    if label == "Cardiomegaly" and not lateral:
        assert p["ctr_drawn"] > 0.5
        q = copy.deepcopy(p)
        q["findings"] = q["findings"].copy()
        q["findings"][CHEXPERT_LABELS.index(label)] = False
        cxr_findings._cxr_derived(q)
        assert q["ctr_drawn"] < 0.5


# --------------------------------------------------------------------------------- layouts


def test_write_chexpert_layout(tmp_path):
    write_chexpert_layout(tmp_path, 12, 32, seed=0, valid_patients=3)
    data = tmp_path / "CheXpert-v1.0-small"
    header = (data / "train.csv").read_text().splitlines()[0]
    assert header == "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS)
    train = cxr_images(12, 32, seed=0)
    valid = cxr_images(3, 32, seed=0, split="valid", first_patient=13)
    for split, table in (("train", train), ("valid", valid)):
        with open(data / f"{split}.csv", newline="") as fh:
            rows = list(csv.reader(fh))[1:]
        assert rows == table.csv_rows()
        for row, img in zip(rows, table.images):
            assert row[0].startswith(f"CheXpert-v1.0-small/{split}/")
            with Image.open(tmp_path / row[0]) as im:
                assert im.format == "JPEG" and im.mode == "L" and im.size == (32, 32)
                assert np.abs(np.asarray(im, np.float32) - img[..., 0]).mean() < 6
    assert {r.split("/")[2] for r in valid.paths} == {
        "patient00013",
        "patient00014",
        "patient00015",
    }


def test_tfds_chexpert_builder_prepares_written_layout(tmp_path):
    tf = pytest.importorskip("tensorflow")
    tfds = pytest.importorskip("tensorflow_datasets")
    tf.config.set_visible_devices([], "GPU")
    manual = tmp_path / "manual"
    write_chexpert_layout(manual, 12, 32, seed=0, valid_patients=3)
    builder = tfds.builder("chexpert", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
    )
    train = cxr_images(12, 32, seed=0)
    valid = cxr_images(3, 32, seed=0, split="valid", first_patient=13)
    assert builder.info.splits["train"].num_examples == len(train)
    assert builder.info.splits["validation"].num_examples == len(valid)
    names = builder.info.features[
        "label"
    ].feature.names  # uncertain, positive, negative, unmentioned
    cell = {"-1.0": "uncertain", "1.0": "positive", "0.0": "negative", "": "unmentioned"}
    examples = {ex["name"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split="train"))}
    for i in (0, len(train) - 1):
        ex = examples[train.paths[i]]
        assert [names[j] for j in ex["label"]] == [cell[c] for c in train.raw_labels[i]]
        assert ex["image"].shape == (32, 32, 3)
        assert ex["image_view"] == (0 if train.view[i] == "Frontal" else 1)


def test_write_folder_layout(tmp_path):
    write_folder_layout(tmp_path, 60, 32, seed=0, test_fraction=0.25)
    _, labels = lesion_images(60, 32, seed=0)
    total = 0
    for c, name in enumerate(LESION_CLASSES):
        n_train = len(list((tmp_path / "train" / name).glob("*.jpg")))
        n_test = len(list((tmp_path / "test" / name).glob("*.jpg")))
        assert n_train + n_test == (labels == c).sum()
        assert n_test == round(0.25 * (labels == c).sum())  # stratified
        total += n_train + n_test
    assert total == 60
    first = sorted((tmp_path / "train" / "benign").glob("*.jpg"))[0]
    with Image.open(first) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (32, 32)
    with pytest.raises(ValueError, match="test_fraction"):
        write_folder_layout(tmp_path / "bad", 4, 32, test_fraction=1.0)


def test_cli_lesions_subprocess(tmp_path):
    out = tmp_path / "skin"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [
        sys.executable,
        "-m",
        "medgan_jax.data.synthetic",
        "--kind",
        "lesions",
        "--layout",
        "folder",
    ]
    cmd += ["--num", "40", "--size", "32", "--seed", "0", "--out", str(out)]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "benign=" in res.stdout and "malignant=" in res.stdout
    assert len(list(out.glob("*/*/*.jpg"))) == 40


def test_cli_cxr_and_bad_combinations(tmp_path, capsys):
    assert (
        synthetic.main(
            [
                "--kind",
                "cxr",
                "--layout",
                "chexpert",
                "--num",
                "25",
                "--size",
                "32",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    summary = capsys.readouterr().out
    assert "train images" in summary and "Support Devices=" in summary
    rows = (tmp_path / "CheXpert-v1.0-small" / "train.csv").read_text().splitlines()
    assert 10 <= len(rows) - 1 <= 45  # about 25 images
    for args in (
        ["--kind", "cxr", "--layout", "folder"],
        ["--kind", "lesions", "--layout", "chexpert"],
    ):
        with pytest.raises(SystemExit) as exc:
            synthetic.main([*args, "--num", "5", "--out", str(tmp_path / "x")])
        assert exc.value.code == 2
        assert "not supported" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        synthetic.main(
            [
                "--kind",
                "lesions",
                "--layout",
                "folder",
                "--num",
                "5",
                "--size",
                "8",
                "--out",
                str(tmp_path),
            ]
        )
    assert "size" in capsys.readouterr().err


# ------------------------------------------------------------------------------ speed, task


def test_generation_speed():
    t0 = time.perf_counter()
    lesion_images(2000, 64, seed=0)
    t_lesions = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = cxr_images(800, 64, seed=0)
    t_cxr = time.perf_counter() - t0
    assert len(table) > 1800
    assert t_lesions < 15 and t_cxr < 15, (t_lesions, t_cxr)


def test_default_overlap_gives_a_fair_task():
    """A tiny CNN clearly gains from 20 -> 2,000 training images at the default overlap."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    nn = pytest.importorskip("flax.linen")
    optax = pytest.importorskip("optax")

    class TinyCNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            for ch in (16, 32):
                x = nn.avg_pool(nn.relu(nn.Conv(ch, (3, 3))(x)), (2, 2), (2, 2))
            x = nn.relu(nn.Conv(32, (3, 3))(x))
            return nn.Dense(2)(jnp.concatenate([x.mean((1, 2)), x.max((1, 2))], -1))

    model, tx = TinyCNN(), optax.adam(3e-3)

    @jax.jit
    def step(params, opt, x, y):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

        grads = jax.grad(loss_fn)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt

    predict = jax.jit(lambda params, x: model.apply(params, x).argmax(-1))

    def accuracy_after_training(x, y, steps, batch, seed):
        rng = np.random.default_rng(seed)
        params = model.init(jax.random.key(seed), x[:1])
        opt = tx.init(params)
        for _ in range(steps):
            idx = rng.choice(len(x), batch, replace=False)
            params, opt = step(params, opt, x[idx], y[idx])
        return float(np.mean(np.asarray(predict(params, x_test)) == y_test))

    images, labels = lesion_images(3000, 32, seed=0)
    x = images.astype(np.float32) / 127.5 - 1.0
    x_train, y_train, x_test, y_test = x[:2000], labels[:2000], x[2000:], labels[2000:]
    full = accuracy_after_training(x_train, y_train, 600, 64, seed=0)
    small = []
    for rep in range(3):
        rng = np.random.default_rng(100 + rep)
        idx = np.concatenate(
            [rng.choice(np.nonzero(y_train == c)[0], 10, replace=False) for c in (0, 1)]
        )
        small.append(accuracy_after_training(x_train[idx], y_train[idx], 150, 20, seed=rep))
    print(f"tiny CNN test accuracy: 2000 images {full:.3f}, 10 per class {np.mean(small):.3f}")
    assert full > 0.75
    assert full > np.mean(small) + 0.1
