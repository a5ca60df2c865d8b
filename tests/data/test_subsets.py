"""Subsets are deterministic, nested, patient-disjoint, and pinned by manifests."""

from __future__ import annotations

import numpy as np
import pytest

from configs.data import base_data_config
from medgan_jax.data import load_split, subsets
from medgan_jax.data.records import Records


def make_records(counts=(300, 40), patients_per_image=1) -> Records:
    labels = np.concatenate([np.full(n, c, np.int32) for c, n in enumerate(counts)])
    ids = np.asarray([f"img{i:04d}.png" for i in range(len(labels))])
    return Records(
        ids=ids,
        paths=ids,
        labels=labels,
        class_names=("benign", "malignant"),
        patient_ids=np.asarray(
            [f"patient{i // patients_per_image:05d}" for i in range(len(labels))]
        ),
        description="test records",
    )


def subset_cfg(**kwargs):
    cfg = base_data_config().subset
    cfg.update(kwargs)
    return cfg


@pytest.mark.parametrize("n", [10, 100, 200, 250])
def test_per_class_counts(n):
    chosen = subsets.select(make_records(), subset_cfg(per_class=n))
    assert chosen.class_counts() == {"benign": n, "malignant": min(n, 40)}


def test_subsets_are_deterministic_and_nested():
    records = make_records()
    small = subsets.select(records, subset_cfg(per_class=10))
    again = subsets.select(records, subset_cfg(per_class=10))
    large = subsets.select(records, subset_cfg(per_class=100))
    other_seed = subsets.select(records, subset_cfg(per_class=10, seed=1))
    assert list(small.ids) == list(again.ids)
    assert set(small.ids) <= set(large.ids)
    assert set(small.ids) != set(other_seed.ids)


def test_class_counts_and_errors():
    records = make_records()
    chosen = subsets.select(records, subset_cfg(class_counts="malignant=25"))
    assert chosen.class_counts() == {"benign": 300, "malignant": 25}
    with pytest.raises(
        subsets.SubsetError, match="asks for 50 'malignant' images but test records has 40"
    ):
        subsets.select(records, subset_cfg(class_counts="malignant=50"))
    with pytest.raises(subsets.SubsetError, match="item 'melanoma=5'"):
        subsets.select(records, subset_cfg(class_counts="melanoma=5"))


@pytest.mark.parametrize(
    "fraction, expected", [(0.01, (3, 1)), (0.05, (15, 2)), (0.5, (150, 20)), (1.0, (300, 40))]
)
def test_fractions_are_per_class(fraction, expected):
    chosen = subsets.select(make_records(), subset_cfg(fraction=fraction))
    assert tuple(chosen.class_counts().values()) == expected


def test_imbalance_ratio():
    chosen = subsets.select(
        make_records(), subset_cfg(imbalance_ratio=20.0, minority_class="malignant")
    )
    assert chosen.class_counts() == {"benign": 300, "malignant": 15}
    with pytest.raises(subsets.SubsetError, match="minority_class='' must name one of"):
        subsets.select(make_records(), subset_cfg(imbalance_ratio=2.0))


def test_patient_split_is_disjoint_exact_and_deterministic():
    patient_ids = np.asarray([f"p{i // 3}" for i in range(300)])  # 100 patients x 3 images
    split = subsets.patient_split(patient_ids, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=3)
    for name, n_patients in (("train", 70), ("val", 10), ("test", 20)):
        assert len(set(patient_ids[split == name])) == n_patients
    for p in np.unique(patient_ids):
        assert len(set(split[patient_ids == p])) == 1
    again = subsets.patient_split(patient_ids, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=3)
    np.testing.assert_array_equal(split, again)


def test_multilabel_subsets_sample_whole_patients():
    cfg = base_data_config()
    cfg.synthetic.update(kind="cxr", size=32, num_train=120, num_val=5, num_test=5)
    cfg.chexpert.frontal_only = False
    records = load_split(cfg, "train")
    cfg.subset.fraction = 0.25
    chosen = load_split(cfg, "train")
    patients = set(chosen.patient_ids)
    assert len(patients) == int(np.ceil(0.25 * len(set(records.patient_ids))))
    in_records = records.patient_ids[np.isin(records.patient_ids, list(patients))]
    assert len(chosen) == len(in_records)  # every image of a chosen patient is kept
    cfg.subset.update(fraction=1.0, per_class=10)
    with pytest.raises(subsets.SubsetError, match="multi-label"):
        load_split(cfg, "train")


def test_manifest_round_trip_and_checks(tmp_path):
    cfg = base_data_config()
    cfg.synthetic.update(size=32, num_train=200, num_val=10, num_test=10)
    cfg.subset.update(per_class=20, seed=5)
    chosen = load_split(cfg, "train", manifest_dir=tmp_path)
    manifest = tmp_path / "manifest_train.csv"
    assert manifest.read_text().splitlines()[0] == "id,label,patient_id"
    pinned_cfg = base_data_config()
    pinned_cfg.synthetic.update(size=32, num_train=200, num_val=10, num_test=10)
    pinned_cfg.subset.manifest = str(manifest)
    pinned = load_split(pinned_cfg, "train")
    assert list(pinned.ids) == list(chosen.ids)
    np.testing.assert_array_equal(pinned.images, chosen.images)
    pinned_cfg.subset.manifest = ""
    full = load_split(pinned_cfg, "train")
    bad = tmp_path / "bad.csv"
    text = manifest.read_text().splitlines()
    first_id, first_label, _ = text[1].split(",")
    flipped = "malignant" if first_label == "benign" else "benign"
    bad.write_text("\n".join([text[0], text[1], "missing.png,benign,"]) + "\n")
    with pytest.raises(subsets.SubsetError, match=r"1 image\(s\) not in .*missing.png"):
        subsets.apply_manifest(full, bad)
    bad.write_text("\n".join([text[0], f"{first_id},{flipped},"]) + "\n")
    with pytest.raises(subsets.SubsetError, match=f"{first_id} is labelled '{flipped}' there"):
        subsets.apply_manifest(full, bad)
