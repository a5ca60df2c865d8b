"""Each source reads a fixture written in its real on-disk layout; bad input raises clearly."""

from __future__ import annotations

import numpy as np
import pytest

from medgan_jax.data import DataError, load_split, sources
from medgan_jax.data.chexpert_schema import CHEXPERT_LABELS
from tests.data.conftest import CHEXPERT_ROWS, HEADER, write_chexpert


def test_folder_classes_from_folder_names(folder_root):
    records = sources.folder_records(folder_root, "train", classes=None)
    assert records.class_names == ("benign", "malignant")
    assert records.class_counts() == {"benign": 4, "malignant": 3}
    assert {p.rsplit("/", 1)[-1] for p in records.ids} >= {"b2.jpg", "B3.JPEG", "m1.png"}
    assert not any(i.endswith("notes.txt") for i in records.ids)


def test_folder_class_subset_sets_order(folder_root):
    records = sources.folder_records(folder_root, "train", classes=("malignant",))
    assert records.class_names == ("malignant",)
    assert set(records.labels.tolist()) == {0} and len(records) == 3
    swapped = sources.folder_records(folder_root, "test", classes=("malignant", "benign"))
    assert swapped.labels[swapped.ids == "test/malignant/t0.jpg"][0] == 0


def test_folder_errors_name_the_folder(folder_root):
    with pytest.raises(DataError, match="NORMAL.*not folders of .*train"):
        sources.folder_records(folder_root, "train", classes=("NORMAL",))
    (folder_root / "train" / "empty").mkdir()
    (folder_root / "train" / "empty" / "scan.tif").write_bytes(b"II*\0")
    with pytest.raises(DataError, match=r"empty has no images.*1 other files.*scan.tif"):
        sources.folder_records(folder_root, "train", classes=None)
    with pytest.raises(DataError, match="validation is not a directory"):
        sources.folder_records(folder_root, "validation", classes=None)


def test_folder_val_split_is_stratified_and_disjoint(folder_config):
    folder_config.folder.val_fraction = 0.3
    train = load_split(folder_config, "train")
    val = load_split(folder_config, "val")
    assert not set(train.ids) & set(val.ids)
    assert len(train) + len(val) == 7
    assert set(val.labels.tolist()) == {0, 1}  # one of each class at least


@pytest.mark.parametrize(
    "policy, blank, edema_target, edema_mask",
    [("ones", "zeros", 1.0, 1.0), ("zeros", "zeros", 0.0, 1.0), ("ignore", "zeros", 0.0, 0.0)],
)
def test_chexpert_uncertainty_policies(chexpert_config, policy, blank, edema_target, edema_mask):
    chexpert_config.chexpert.uncertainty = policy
    chexpert_config.chexpert.blank = blank
    chexpert_config.chexpert.frontal_only = False
    chexpert_config.chexpert.val_fraction = chexpert_config.chexpert.test_fraction = 0.0
    records = load_split(chexpert_config, "train")
    row = list(records.ids).index("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg")
    col = {name: i for i, name in enumerate(records.class_names)}
    assert records.labels[row, col["Cardiomegaly"]] == 1.0
    assert records.labels[row, col["Edema"]] == edema_target  # -1.0
    assert records.label_mask[row, col["Edema"]] == edema_mask
    assert (
        records.labels[row, col["Fracture"]] == 0.0
        and records.label_mask[row, col["Fracture"]] == 1
    )
    assert records.labels[row, col["Atelectasis"]] == 0.0  # blank -> 0
    assert records.patient_ids[row] == "patient00001"


def test_chexpert_blank_ignore_and_overrides(chexpert_config):
    cc = chexpert_config.chexpert
    cc.blank, cc.uncertainty, cc.uncertainty_overrides = "ignore", "zeros", "Edema:ones"
    cc.val_fraction = cc.test_fraction = 0.0
    records = load_split(chexpert_config, "train")
    col = {name: i for i, name in enumerate(records.class_names)}
    first = 0  # patient00001 study1 frontal
    assert records.label_mask[first, col["Atelectasis"]] == 0.0  # blank ignored
    assert records.labels[first, col["Edema"]] == 1.0  # overridden to U-Ones
    pe_row = list(records.patient_ids).index("patient00002")
    assert records.labels[pe_row, col["Pleural Effusion"]] == 0.0  # U-Zeros default


def test_chexpert_frontal_only_and_label_subset(chexpert_config):
    cc = chexpert_config.chexpert
    cc.labels = ("Cardiomegaly", "Pneumothorax")
    cc.val_fraction = cc.test_fraction = 0.0
    records = load_split(chexpert_config, "train")
    assert len(records) == sum(r[3] == "Frontal" for r in CHEXPERT_ROWS)
    assert records.labels.shape == (len(records), 2)
    assert len(load_split(chexpert_config, "valid")) == 2  # the official valid.csv, frontal
    cc.frontal_only = False
    assert len(load_split(chexpert_config, "train")) == len(CHEXPERT_ROWS)


def test_chexpert_splits_are_patient_disjoint(chexpert_config):
    cc = chexpert_config.chexpert
    cc.frontal_only, cc.val_fraction, cc.test_fraction = False, 0.25, 0.25
    splits = {s: load_split(chexpert_config, s) for s in ("train", "val", "test")}
    patients = {s: set(r.patient_ids) for s, r in splits.items()}
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    assert sum(len(r) for r in splits.values()) == len(CHEXPERT_ROWS)
    assert sum(map(len, patients.values())) == 9
    # Deterministic: the same seed gives the same assignment.
    again = load_split(chexpert_config, "val")
    assert list(again.ids) == list(splits["val"].ids)


def test_chexpert_missing_column(tmp_path):
    header = [h for h in HEADER if h != "Edema"]
    write_chexpert(tmp_path, header=header)
    with pytest.raises(DataError, match=r"train.csv is missing column\(s\) \['Edema'\]"):
        sources.read_chexpert_csv(tmp_path / "CheXpert-v1.0-small" / "train.csv", CHEXPERT_LABELS)


def test_chexpert_bad_label_value_names_line_and_column(chexpert_config, chexpert_root):
    rows = list(CHEXPERT_ROWS)
    rows[3] = rows[3][:5] + ({"Pneumonia": "2.0"},)
    write_chexpert(chexpert_root, rows=rows)
    with pytest.raises(DataError, match=r"train.csv, line 5, column 'Pneumonia': value '2.0'"):
        load_split(chexpert_config, "train")


def test_chexpert_missing_image_path(chexpert_config, chexpert_root):
    chexpert_config.chexpert.val_fraction = chexpert_config.chexpert.test_fraction = 0.0
    (chexpert_root / "CheXpert-v1.0-small/train/patient00003/study1/view1_frontal.jpg").unlink()
    with pytest.raises(DataError, match=r"1 image path\(s\) do not exist.*line 6:.*patient00003"):
        load_split(chexpert_config, "train")


def test_chexpert_root_errors(tmp_path, chexpert_config):
    chexpert_config.chexpert.root = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no train.csv in .*nowhere"):
        load_split(chexpert_config, "train")


def test_synthetic_sources_have_disjoint_splits():
    from configs.data import data_config

    cfg = data_config("smoke")
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert len(train) == 64 and len(test) == 32
    assert not set(train.ids) & set(test.ids)
    assert train.images.shape == (64, 32, 32, 3) and train.images.dtype == np.uint8
    cfg = data_config("synthetic_cxr")
    cfg.synthetic.update(size=32, num_train=40, num_val=10, num_test=10)
    train, val = load_split(cfg, "train"), load_split(cfg, "val")
    assert train.multi_label and train.labels.shape[1] == 14
    assert not set(train.patient_ids) & set(val.patient_ids)


def test_synthetic_splits_render_only_their_own_images():
    from medgan_jax.data import synthetic

    images, labels = synthetic.lesion_images(3, size=32, seed=4, first=5)
    all_images, all_labels = synthetic.lesion_images(8, size=32, seed=4)
    np.testing.assert_array_equal(images, all_images[5:])
    np.testing.assert_array_equal(labels, all_labels[5:])
