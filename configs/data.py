"""Dataset presets shared by every job, and the data-preview job's config.

Run (builds the embedded dataset, prints a few pipeline batches, writes a grid):
  python -m medgan_jax.data.preview --config=configs/data.py:synthetic_lesions \
      --workdir=runs/preview
It prints the split sizes per class and, per batch, shape/dtype/range/sharding,
and writes runs/preview/samples_train.png (a grid of training images).

Presets: synthetic_lesions (default), synthetic_cxr, skin_cancer, covid_xray,
chexpert, chexpert_tfds, nih_chestxray14, siim_isic, siim_isic_dicom, rsna_pneumonia,
smoke. Real datasets are never downloaded: point `data.folder.root` /
`data.chexpert.root` / `data.csv.root` / `data.tfds.manual_dir` at the local copy,
e.g. --config.data.folder.root=/data/skin-cancer-malignant-vs-benign.
"""

import ml_collections

from medgan_jax.data.chexpert_schema import CHEXPERT_LABELS
from medgan_jax.data.synthetic import DEFAULT_LESION_OVERLAP

PRESETS = (
    "synthetic_lesions",
    "synthetic_cxr",
    "skin_cancer",
    "covid_xray",
    "chexpert",
    "chexpert_tfds",
    "nih_chestxray14",
    "siim_isic",
    "siim_isic_dicom",
    "rsna_pneumonia",
    "smoke",
)
# NIH ChestX-ray14's 14 findings, in the order of Wang et al. 2017's tables.
NIH_LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)


def base_data_config() -> ml_collections.ConfigDict:
    """Every data knob with its default; presets change a few of them."""
    return ml_collections.ConfigDict(
        dict(
            source="synthetic",  # synthetic | folder | chexpert | csv | tfds
            image_size=64,
            channels=3,
            resize_mode="stretch",  # stretch | crop (centre square) | pad
            resize_method="auto",  # auto (area to shrink, bilinear to enlarge) or a tf.image method
            classes=(),  # folder class subset and order; () = all folders, sorted
            seed=0,  # shuffle order
            split_seed=0,  # val/test carving (fixed across experiments)
            shuffle=True,
            shuffle_buffer=10_000,  # TFDS streaming only; record sources shuffle exactly
            cache=False,  # decode once into RAM (small datasets)
            skip_corrupt=False,  # skip and count unreadable files instead of failing
            # DICOM files (.dcm/.dicom, or the DICM magic) anywhere an image path is read;
            # window: auto | none | 'center,width' | 'percentile,p_low,p_high'
            # (medgan_jax/data/dicom.py); frame: the frame of multi-frame files (-1: refuse).
            dicom=dict(window="auto", frame=-1),
            prefetch=-1,  # tf.data batches ahead; -1 = autotune
            prefetch_to_device=2,
            synthetic=dict(
                kind="lesions",  # lesions | cxr
                size=64,  # rendered resolution (32..256)
                seed=0,
                num_train=2000,
                num_val=250,
                num_test=500,
                overlap=DEFAULT_LESION_OVERLAP,  # lesions: 0 = separable, 1 = identical classes
                malignant_fraction=0.45,
                hair_probability=0.3,
            ),
            folder=dict(root="", train_split="train", test_split="test", val_fraction=0.1),
            chexpert=dict(
                root="",  # folder holding CheXpert-v1.0-small/ (or that folder itself)
                labels=CHEXPERT_LABELS,
                uncertainty="ones",  # ones | zeros | ignore (U-Ones, U-Zeros, U-Ignore)
                uncertainty_overrides="",  # e.g. "Cardiomegaly:zeros,Edema:ignore"
                blank="zeros",  # zeros | ignore
                frontal_only=True,
                val_fraction=0.1,  # patient-level, from train.csv
                test_fraction=0.1,
                check_paths=True,
            ),
            # A CSV of labels beside a folder of images (medgan_jax/data/csv_source.py).
            csv=dict(
                root="",  # image paths are relative to it
                file="",  # the CSV, relative to root or absolute
                path_column="",
                path_template="{}",  # e.g. 'jpeg/train/{}.jpg' or 'train/{image_name}.dcm'
                search=False,  # find each image by name anywhere under root
                label_columns=(),  # one (names/ids, or joined by label_separator) or 0/1 columns
                label_separator="",  # e.g. '|': one column of several labels (multi-label)
                classes=(),  # class names in order; () = the CSV's, sorted
                negative_label="",  # a label meaning none of the classes ('No Finding')
                patient_column="",  # splits never share a patient
                split_column="",  # a column naming each row's split (train | val | test)
                split_lists=dict(train="", test=""),  # official lists of image names
                duplicates="error",  # several rows of one image: error | any | first
                val_fraction=0.1,  # patient-level, where no split column or lists are given
                test_fraction=0.1,  # (with lists: val is val_fraction of the train list)
            ),
            tfds=dict(
                name="",
                data_dir="",
                manual_dir="",
                download=False,
                train_split="train",
                val_split="validation",
                test_split="test",
                image_key="image",
                label_key="label",
            ),
            subset=dict(
                per_class=0,  # N images of every class; 0 = all
                class_counts="",  # e.g. "benign=500,malignant=100"
                fraction=1.0,  # of each class (single-label) or of patients (multi-label)
                num_patients=0,  # multi-label: N patients; 0 = all
                imbalance_ratio=0.0,  # majority/minority; 0 = as is
                minority_class="",
                seed=0,
                manifest="",  # a manifest.csv from an earlier run: use exactly those files
            ),
        )
    )


def data_config(preset: str) -> ml_collections.ConfigDict:
    """The data config of a dataset preset."""
    cfg = base_data_config()
    if preset == "synthetic_lesions":
        pass
    elif preset == "synthetic_cxr":
        cfg.channels = 1
        cfg.synthetic.kind = "cxr"
        cfg.synthetic.num_train = 3000
    elif preset == "skin_cancer":  # Kaggle "Skin Cancer: Malignant vs. Benign", 224x224
        cfg.source = "folder"
        cfg.folder.root = "data/skin-cancer"
        cfg.classes = ("benign", "malignant")
        cfg.cache = True
    elif preset == "covid_xray":  # Kaggle "Chest X-ray (Covid-19 & Pneumonia)"
        cfg.source = "folder"
        cfg.folder.root = "data/covid-xray/Data"
        cfg.classes = ("NORMAL", "COVID19")
        cfg.channels = 1
        cfg.image_size = 128
    elif preset == "chexpert":
        cfg.source = "chexpert"
        cfg.chexpert.root = "data/chexpert"
        cfg.channels = 1
        cfg.image_size = 128
    elif preset == "chexpert_tfds":
        cfg.source = "tfds"
        cfg.tfds.name = "chexpert"
        cfg.tfds.manual_dir = "data/chexpert"
        cfg.tfds.test_split = "validation"
        cfg.channels = 1
        cfg.image_size = 128
    elif preset == "nih_chestxray14":  # Data_Entry_2017.csv and the images_0NN tarballs
        cfg.source = "csv"
        cfg.csv.update(
            root="data/nih-chestxray14",
            file="Data_Entry_2017.csv",
            path_column="Image Index",
            search=True,  # images_001/images/... or one images/ folder alike
            label_columns=("Finding Labels",),
            label_separator="|",
            classes=NIH_LABELS,
            negative_label="No Finding",
            patient_column="Patient ID",
        )
        cfg.csv.split_lists.update(train="train_val_list.txt", test="test_list.txt")
        cfg.channels = 1
        cfg.image_size = 128
    elif preset in ("siim_isic", "siim_isic_dicom"):  # SIIM-ISIC Melanoma 2020 (Kaggle)
        cfg.source = "csv"
        cfg.csv.update(
            root="data/siim-isic-melanoma",
            file="train.csv",  # the official test.csv has no labels: test is carved here
            path_column="image_name",
            path_template="jpeg/train/{}.jpg" if preset == "siim_isic" else "train/{}.dcm",
            label_columns=("benign_malignant",),
            classes=("benign", "malignant"),
            patient_column="patient_id",
        )
        cfg.image_size = 128
    elif preset == "rsna_pneumonia":  # RSNA Pneumonia Detection, stage 2 (one row per box)
        cfg.source = "csv"
        cfg.csv.update(
            root="data/rsna-pneumonia",
            file="stage_2_train_labels.csv",
            path_column="patientId",
            path_template="stage_2_train_images/{}.dcm",
            label_columns=("Target",),
            classes=("normal", "pneumonia"),  # Target 0 / 1
            duplicates="any",
            patient_column="patientId",
        )
        cfg.channels = 1
        cfg.image_size = 128
    elif preset == "smoke":
        cfg.image_size = 32
        cfg.synthetic.size = 32
        cfg.synthetic.num_train = 64
        cfg.synthetic.num_val = 16
        cfg.synthetic.num_test = 32
    else:
        raise ValueError(f"Unknown data preset '{preset}'; expected one of {PRESETS}.")
    return cfg


def get_config(preset: str = "synthetic_lesions") -> ml_collections.ConfigDict:
    """Config of the data-preview job (the project's main job until the study lands)."""
    return ml_collections.ConfigDict(
        dict(
            data=data_config(preset),
            batch_size=64,
            num_batches=3,
            num_devices=0,  # 0 = all
            grid_rows=8,
        )
    )
