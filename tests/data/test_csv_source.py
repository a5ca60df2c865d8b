"""data.source='csv' on copies of the NIH ChestX-ray14, SIIM-ISIC and RSNA layouts: labels
equal the CSV's, patients never cross splits, every image lands in exactly one split, bad
rows are named (or skipped and counted), and a smoke classifier and GAN train on each."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest

from configs.classifier import get_config as classifier_config
from configs.data import NIH_LABELS, data_config
from configs.dcgan import get_config as dcgan_config
from medgan_jax.classify import train as classify_train
from medgan_jax.data import load_split
from medgan_jax.data.records import DataError, select_classes
from medgan_jax.gan import train as gan_train
from tests.data import clinical_layouts

SPLITS = ("train", "val", "test")


def _data(preset: str, root, **csv_overrides):
    cfg = data_config(preset)
    cfg.csv.root = str(root)
    cfg.csv.update(csv_overrides)
    cfg.image_size = 16
    return cfg


def _all_splits(cfg) -> dict:
    return {split: load_split(cfg, split) for split in SPLITS}


def _csv_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_patients_and_coverage(splits, expected_images: set[str]) -> None:
    patients = {s: set(r.patient_ids.tolist()) for s, r in splits.items()}
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    ids = [i for r in splits.values() for i in r.ids.tolist()]
    assert len(ids) == len(set(ids)) and set(ids) == expected_images


@pytest.fixture(scope="module")
def nih_root(tmp_path_factory):
    return clinical_layouts.nih(tmp_path_factory.mktemp("nih"))


@pytest.fixture(scope="module")
def siim_root(tmp_path_factory):
    return clinical_layouts.siim_isic(tmp_path_factory.mktemp("siim"))


@pytest.fixture(scope="module")
def siim_dicom_root(tmp_path_factory):
    return clinical_layouts.siim_isic(tmp_path_factory.mktemp("siim_dcm"), dicom=True)


@pytest.fixture(scope="module")
def rsna_root(tmp_path_factory):
    return clinical_layouts.rsna(tmp_path_factory.mktemp("rsna"))


def test_nih_multi_hot_labels_official_test_list_and_patient_splits(nih_root):
    splits = _all_splits(_data("nih_chestxray14", nih_root))
    rows = {r["Image Index"]: r for r in _csv_rows(nih_root / "Data_Entry_2017.csv")}
    found = {}
    for records in splits.values():
        assert records.class_names == NIH_LABELS and records.multi_label
        for image_id, path, labels in zip(records.ids, records.paths, records.labels):
            name = path.rsplit("/", 1)[1]
            assert "/images_00" in path and image_id.endswith(name)  # found in the tarballs
            findings = rows[name]["Finding Labels"].split("|")
            expected = [float(label in findings) for label in NIH_LABELS]
            np.testing.assert_array_equal(labels, expected)  # 'No Finding': all zeros
            found[name] = True
    assert len(found) == len(rows)
    test_list = set((nih_root / "test_list.txt").read_text().split())
    assert {p.rsplit("/", 1)[1] for p in splits["test"].paths} == test_list
    _check_patients_and_coverage(splits, {i for r in splits.values() for i in r.ids})
    assert len(splits["val"]) > 0


@pytest.mark.parametrize("dicom", [False, True])
def test_siim_isic_labels_and_patient_level_splits(siim_root, siim_dicom_root, dicom):
    root = siim_dicom_root if dicom else siim_root
    preset = "siim_isic_dicom" if dicom else "siim_isic"
    splits = _all_splits(_data(preset, root))
    target = {r["image_name"]: int(r["target"]) for r in _csv_rows(root / "train.csv")}
    for records in splits.values():
        assert records.class_names == ("benign", "malignant")
        for path, label in zip(records.paths, records.labels):
            name = path.rsplit("/", 1)[1].split(".")[0]
            assert label == target[name]
            assert path.endswith(".dcm" if dicom else ".jpg")
    _check_patients_and_coverage(splits, {i for r in splits.values() for i in r.ids})
    assert sum(len(r) for r in splits.values()) == len(target)


def test_rsna_merges_an_images_box_rows_positive_if_any(rsna_root):
    splits = _all_splits(_data("rsna_pneumonia", rsna_root))
    rows = _csv_rows(rsna_root / "stage_2_train_labels.csv")
    target = {}
    for row in rows:
        target[row["patientId"]] = max(target.get(row["patientId"], 0), int(row["Target"]))
    assert len(rows) > len(target)  # several rows for the positives
    got = {}
    for records in splits.values():
        for path, label in zip(records.paths, records.labels):
            got[path.rsplit("/", 1)[1][:-4]] = int(label)
    assert got == target
    _check_patients_and_coverage(splits, {i for r in splits.values() for i in r.ids})


def test_duplicate_rows_are_an_error_naming_both_lines_by_default(rsna_root):
    cfg = _data("rsna_pneumonia", rsna_root, duplicates="error")
    with pytest.raises(DataError, match=r"stage_2_train_labels.csv, lines \d+ and \d+: both name"):
        load_split(cfg, "train")


def _bad_copy(root, tmp_path, edit) -> object:
    rows = _csv_rows(root / "train.csv")
    edit(rows)
    copy = tmp_path / "train_bad.csv"
    with open(copy, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return copy


@pytest.mark.parametrize(
    "edit,match",
    [
        (
            lambda rows: rows[3].update(benign_malignant="unsure"),
            r"train_bad.csv, line 5, column 'benign_malignant': unknown label 'unsure'",
        ),
        (
            lambda rows: rows[0].update(image_name=""),
            r"train_bad.csv, line 2, column 'image_name': empty image path",
        ),
        (
            lambda rows: rows[6].update(image_name="ISIC_missing"),
            r"1 image\(s\) named in .*train_bad.csv do not exist, e.g. .*line 8, column "
            r"'image_name': .*ISIC_missing.jpg",
        ),
    ],
)
def test_a_bad_row_is_named_or_skipped_and_counted(siim_root, tmp_path, caplog, edit, match):
    bad = _bad_copy(siim_root, tmp_path, edit)
    cfg = _data("siim_isic", siim_root, file=str(bad))
    with pytest.raises(DataError, match=match):
        load_split(cfg, "train")
    cfg.skip_corrupt = True
    with caplog.at_level(logging.WARNING):
        total = sum(len(load_split(cfg, s)) for s in SPLITS)
    assert total == len(_csv_rows(siim_root / "train.csv")) - 1
    assert "Skipped 1" in caplog.text


def test_several_binary_columns_are_multi_label_and_must_be_0_or_1(siim_root, tmp_path):
    names = [r["image_name"] for r in _csv_rows(siim_root / "train.csv")]
    table = tmp_path / "labels.csv"
    flags = [(i % 2, int(i % 3 == 0)) for i in range(len(names))]
    table.write_text(
        "image_name,Edema,Mass\n" + "".join(f"{n},{a}.0,{b}\n" for n, (a, b) in zip(names, flags))
    )
    cfg = _data("siim_isic", siim_root, file=str(table), label_columns=("Edema", "Mass"))
    cfg.csv.update(classes=(), patient_column="")
    splits = _all_splits(cfg)
    expected = dict(zip(names, flags))
    for records in splits.values():
        assert records.class_names == ("Edema", "Mass") and records.multi_label
        for path, labels in zip(records.paths, records.labels):
            assert tuple(labels) == expected[path.rsplit("/", 1)[1][:-4]]
    table.write_text(table.read_text().replace(f"{names[2]},0.0,", f"{names[2]},2,"))
    with pytest.raises(DataError, match=r"labels.csv, line 4, column 'Edema': '2' is not 0 or 1"):
        load_split(cfg, "train")


def test_one_label_column_of_ids_maps_onto_the_classes(siim_root):
    cfg = _data("siim_isic", siim_root, label_columns=("target",))
    names = load_split(cfg, "train")
    by_name = load_split(_data("siim_isic", siim_root), "train")
    np.testing.assert_array_equal(names.labels, by_name.labels)
    cfg.csv.classes = ()
    assert load_split(cfg, "train").class_names == ("0", "1")  # the CSV's values, sorted


def test_a_missing_column_is_named_with_the_columns_there(siim_root):
    cfg = _data("siim_isic", siim_root, patient_column="patient")
    with pytest.raises(DataError, match=r"patient_column names \['patient'\].*'patient_id'"):
        load_split(cfg, "train")


def _smoke_classifier(data, workdir):
    config = classifier_config("smoke")
    config.data = data
    config.update(num_epochs=1, steps_per_epoch=2, batch_size=8, eval_batch_size=8)
    return classify_train.train_and_evaluate(config, str(workdir))


def _smoke_gan(data, classes, workdir):
    config = dcgan_config("smoke")
    config.data = data
    config.gan.classes = classes
    config.update(num_steps=2, batch_size=8, log_every=1, sample_every=2, checkpoint_every=2)
    return gan_train.train(config, str(workdir))


@pytest.mark.parametrize(
    "preset,root_fixture,rare",
    [
        ("nih_chestxray14", "nih_root", ("Hernia",)),
        ("siim_isic_dicom", "siim_dicom_root", ("malignant",)),
        ("rsna_pneumonia", "rsna_root", ("pneumonia",)),
    ],
)
def test_a_smoke_classifier_and_gan_train_on_each_layout(
    preset, root_fixture, rare, request, tmp_path
):
    data = _data(preset, request.getfixturevalue(root_fixture))
    metrics = _smoke_classifier(data, tmp_path / "clf")
    test = load_split(data, "test")
    assert metrics["test"]["n_samples"] == len(test)
    assert np.isfinite(metrics["test_summary"]["loss"])
    state = _smoke_gan(data, rare, tmp_path / "gan")
    assert int(state.step) == 2
    rare_train = select_classes(load_split(data, "train"), rare)
    trained = (tmp_path / "gan" / "manifest_gan_train.csv").read_text()
    assert len(trained.strip().splitlines()) - 1 == len(rare_train)
    assert all(i in trained for i in rare_train.ids)


@pytest.mark.parametrize(
    "preset", ["nih_chestxray14", "siim_isic", "siim_isic_dicom", "rsna_pneumonia"]
)
def test_every_job_has_the_clinical_presets(preset):
    from configs import bagan, pggan, study

    assert classifier_config(preset).data.source == "csv"
    assert dcgan_config(preset).gan.classes
    assert pggan.get_config(preset).data.csv.root
    config = study.get_config(preset)
    assert config.minority_class in (config.gans.dcgan.gan.classes or ())
    if preset != "nih_chestxray14":  # BAGAN is single-label
        assert bagan.get_config(preset).data.subset.minority_class == config.minority_class


def test_an_image_in_neither_official_list_is_named(nih_root, tmp_path):
    names = (nih_root / "test_list.txt").read_text().split()
    short = tmp_path / "test_list.txt"
    short.write_text("\n".join(names[1:]) + "\n")
    cfg = _data("nih_chestxray14", nih_root)
    cfg.csv.split_lists.test = str(short)
    with pytest.raises(DataError, match=rf"1 image\(s\) .* neither split list .*{names[0]}"):
        load_split(cfg, "train")
