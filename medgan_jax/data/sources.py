"""Catalogue of datasets: folder trees, CheXpert CSVs, TFDS builders and the synthetic sets.

Every record-based source returns `Records` for a split name ('train', 'val',
'test'; CheXpert also 'valid', the official validation CSV). TFDS datasets stream
and come back as a `tf.data.Dataset` from `tfds_dataset`.
"""

from __future__ import annotations

import csv
import functools
import itertools
import os
import re
from collections.abc import Sequence
from pathlib import Path

import ml_collections
import numpy as np
from absl import logging

from medgan_jax.data import subsets, synthetic
from medgan_jax.data.chexpert_schema import CHEXPERT_DIRS, CHEXPERT_LABELS, CHEXPERT_META_COLUMNS
from medgan_jax.data.records import DataError, Records

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".dcm", ".dicom")
SPLITS = ("train", "val", "test")
UNCERTAINTY_POLICIES = ("ones", "zeros", "ignore")
BLANK_POLICIES = ("zeros", "ignore")
_PATIENT_RE = re.compile(r"(patient\d+)")


# --------------------------------------------------------------------------- folder


def folder_records(root: str | os.PathLike, split: str, classes: Sequence[str] | None) -> Records:
    """Reads `root/split/<class>/**/*.{jpg,png,...}`; class ids follow `classes` order."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise DataError(
            f"Folder dataset: {split_dir} is not a directory; expected the layout "
            f"root/{split}/<class>/*.jpg (e.g. train/benign/1.jpg)."
        )
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    if not found:
        raise DataError(f"Folder dataset: {split_dir} has no class sub-folders.")
    class_names = tuple(classes) if classes else tuple(found)
    missing = [c for c in class_names if c not in found]
    if missing:
        raise DataError(
            f"config.data.classes names {missing}, which are not folders of {split_dir}; "
            f"found classes {found}."
        )
    ids, labels = [], []
    for label, name in enumerate(class_names):
        images, others = _list_images(split_dir / name, root)
        if not images:
            example = f"; other files there, e.g. {others[0].name}" if others else ""
            raise DataError(
                f"Folder dataset: class folder {split_dir / name} has no images with "
                f"extensions {IMAGE_EXTENSIONS} ({len(others)} other files{example})."
            )
        if others:
            logging.warning(
                "Ignoring %d non-image files in %s (e.g. %s).",
                len(others),
                split_dir / name,
                others[0].name,
            )
        ids += images
        labels += [label] * len(images)
    ids = np.asarray(ids)
    return Records(
        ids=ids,
        paths=np.asarray([os.path.join(root, i) for i in ids]),
        labels=np.asarray(labels, np.int32),
        class_names=class_names,
        description=f"folder {split_dir}",
    )


def _list_images(folder: Path, root: str | os.PathLike) -> tuple[list[str], list[Path]]:
    """Image paths under `folder` relative to `root` (recursive, sorted), and other files.

    Plain strings rather than pathlib: listing 224k files stays well under a second.
    """
    images, others = [], []
    for dirpath, _, filenames in os.walk(folder):
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                images.append(os.path.join(rel_dir, name))
            else:
                others.append(Path(dirpath) / name)
    return sorted(images), sorted(others)


# ------------------------------------------------------------------------- CheXpert


def find_chexpert_dir(root: str | os.PathLike) -> Path:
    """The CheXpert-v1.0[-small] folder: `root` itself or its child of that name."""
    root = Path(root)
    if (root / "train.csv").is_file():
        return root
    for name in CHEXPERT_DIRS:
        if (root / name / "train.csv").is_file():
            return root / name
    raise DataError(
        f"CheXpert: no train.csv in {root} or {root}/CheXpert-v1.0[-small]; set "
        "config.data.chexpert.root to the folder holding CheXpert-v1.0-small/."
    )


def parse_uncertainty(default: str, overrides: str, labels: Sequence[str]) -> dict[str, str]:
    """Per-label policy from a default and overrides like 'Atelectasis:ones,Edema:zeros'."""
    policies = {label: default for label in labels}
    for item in filter(None, (s.strip() for s in overrides.split(","))):
        label, _, policy = item.rpartition(":")
        policies[label.strip()] = policy.strip()
    for label, policy in policies.items():
        if label not in labels:
            raise DataError(
                f"config.data.chexpert.uncertainty_overrides names '{label}', which is "
                f"not one of the selected labels {list(labels)}."
            )
        if policy not in UNCERTAINTY_POLICIES:
            raise DataError(
                f"config.data.chexpert uncertainty policy for '{label}' is '{policy}'; "
                f"expected one of {UNCERTAINTY_POLICIES}."
            )
    return policies


def chexpert_targets(
    raw: np.ndarray,
    labels: Sequence[str],
    policies: dict[str, str],
    blank: str,
    where: str = "CheXpert labels",
    first_line: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw CSV cells [N, L] ('1.0', '0.0', '-1.0', '') -> float32 targets and loss mask."""
    values = label_values(raw, labels, where, first_line)
    return targets_from_values(values, labels, policies, blank)


def label_values(
    raw: np.ndarray, labels: Sequence[str], where: str = "CheXpert labels", first_line: int = 2
) -> np.ndarray:
    """Raw CSV cells [N, L] -> float32 1.0 / 0.0 / -1.0, NaN for blank; an invalid cell
    raises naming its line and column."""
    cells = np.char.strip(np.asarray(raw, dtype=str))
    values = np.full(cells.shape, np.nan, np.float32)
    known = cells == ""
    for text, value in (("1.0", 1.0), ("0.0", 0.0), ("-1.0", -1.0)):  # CheXpert's spellings
        where_text = cells == text
        values[where_text], known = value, known | where_text
    others = cells[~known]  # any other spelling ('1', '-1.00'), parsed once per value
    for cell in np.unique(others):
        value = _parse_cell(cell)
        if value is None:
            row, col = np.argwhere(cells == cell)[0]
            raise DataError(
                f"{where}, line {row + first_line}, column '{labels[col]}': value "
                f"'{cell}' is not one of 1.0, 0.0, -1.0 or blank."
            )
        values[cells == cell] = value
    return values


def targets_from_values(
    values: np.ndarray, labels: Sequence[str], policies: dict[str, str], blank: str
) -> tuple[np.ndarray, np.ndarray]:
    """label_values -> float32 targets and loss mask under the blank and uncertainty
    policies."""
    if blank not in BLANK_POLICIES:
        raise DataError(
            f"config.data.chexpert.blank is '{blank}'; expected one of {BLANK_POLICIES}."
        )
    targets = np.where(values == 1.0, 1.0, 0.0).astype(np.float32)
    mask = np.ones_like(targets)
    mask[np.isnan(values) & (blank == "ignore")] = 0.0
    for col, label in enumerate(labels):
        uncertain = values[:, col] == -1.0
        if policies[label] == "ones":
            targets[uncertain, col] = 1.0
        elif policies[label] == "ignore":
            mask[uncertain, col] = 0.0
    return targets, mask


def _parse_cell(cell: str) -> float | None:
    """CSV cell -> 1.0, 0.0, -1.0, NaN for blank, or None when invalid."""
    if cell == "":
        return float("nan")
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if value in (1.0, 0.0, -1.0) else None


def read_chexpert_csv(csv_path: Path, labels: Sequence[str]) -> dict[str, np.ndarray]:
    """What a split needs of a CheXpert CSV: 'path' (UTF-8 bytes), 'patient' (the
    patientNNNNN part), 'frontal' (bool) and 'labels' (label_values, [rows, len(labels)]);
    raises on missing columns and invalid cells, naming the line.

    Chunk by chunk into arrays: Python strings of every cell, or one fixed-width array of
    every column, would hold hundreds of MiB (gigabytes) at CheXpert's 224,316 rows."""
    if not csv_path.is_file():
        raise DataError(f"CheXpert: {csv_path} does not exist.")
    expected = list(CHEXPERT_META_COLUMNS) + list(labels)
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        missing = [c for c in expected if header is None or c not in header]
        if missing:
            raise DataError(
                f"CheXpert CSV {csv_path} is missing column(s) {missing}; expected the "
                f"header {','.join(CHEXPERT_META_COLUMNS + CHEXPERT_LABELS)}."
            )
        label_positions = [header.index(name) for name in labels]
        path_position, view_position = header.index("Path"), header.index("Frontal/Lateral")
        chunks: dict[str, list[np.ndarray]] = {"path": [], "patient": [], "frontal": []}
        chunks["labels"] = []
        line = 2
        while chunk := list(itertools.islice(reader, 5_000)):  # columns by C-level zip
            bad = next((i for i, row in enumerate(chunk) if len(row) != len(header)), None)
            if bad is not None:
                raise DataError(
                    f"CheXpert CSV {csv_path}, line {line + bad}: {len(chunk[bad])} cells, "
                    f"expected {len(header)} (one per header column)."
                )
            cells = list(zip(*chunk))
            paths = cells[path_position]
            chunks["path"].append(np.char.encode(np.asarray(paths, dtype=str), "utf-8"))
            patients = [_patient_id(p, csv_path, line - 2 + i) for i, p in enumerate(paths)]
            chunks["patient"].append(np.asarray(patients, dtype=str))
            views = np.char.lower(np.asarray(cells[view_position], dtype=str))
            chunks["frontal"].append(views == "frontal")
            label_cells = [cells[position] for position in label_positions]
            raw = np.asarray(label_cells, dtype=str).reshape(len(labels), -1).T
            chunks["labels"].append(label_values(raw, labels, str(csv_path), first_line=line))
            line += len(chunk)
    empty = {"path": np.zeros(0, bytes), "patient": np.zeros(0, str), "frontal": np.zeros(0, bool)}
    empty["labels"] = np.zeros((0, len(labels)), np.float32)
    return {name: np.concatenate(parts) if parts else empty[name] for name, parts in chunks.items()}


def chexpert_split_records(cfg: ml_collections.ConfigDict, split: str, *, seed: int) -> Records:
    """CheXpert records of a patient-disjoint split of train.csv, or 'valid' (valid.csv)."""
    ccfg = cfg.chexpert
    data_dir = find_chexpert_dir(ccfg.root)
    labels = tuple(ccfg.labels)
    unknown = [label for label in labels if label not in CHEXPERT_LABELS]
    if unknown:
        raise DataError(
            f"config.data.chexpert.labels has {unknown}; expected names from "
            f"{list(CHEXPERT_LABELS)}."
        )
    csv_path = data_dir / ("valid.csv" if split == "valid" else "train.csv")
    columns = _read_chexpert_once(csv_path, labels)
    policies = parse_uncertainty(ccfg.uncertainty, ccfg.uncertainty_overrides, labels)
    targets, mask = targets_from_values(columns["labels"], labels, policies, ccfg.blank)
    patient_ids = columns["patient"]
    keep = np.ones(len(patient_ids), bool)
    if ccfg.frontal_only:
        keep = columns["frontal"].copy()
        logging.info("CheXpert %s: kept %d frontal of %d images.", csv_path, keep.sum(), len(keep))
    if split != "valid":
        fractions = {"train": 1.0 - ccfg.val_fraction - ccfg.test_fraction}
        fractions.update(val=ccfg.val_fraction, test=ccfg.test_fraction)
        assignment = subsets.patient_split(patient_ids, fractions, seed=seed)
        keep &= assignment == split
    index = np.flatnonzero(keep)
    rel_paths = np.char.decode(columns["path"][index], "utf-8")
    # Paths in the CSV start with the dataset folder's own name.
    paths = np.char.add(str(data_dir.parent) + os.sep, rel_paths)
    if ccfg.check_paths:
        _check_paths_exist(paths, csv_path, index)
    return Records(
        ids=rel_paths,
        paths=paths,
        labels=targets[index],
        label_mask=mask[index],
        patient_ids=patient_ids[index],
        class_names=labels,
        description=f"CheXpert {csv_path} ({split})",
    )


_CHEXPERT_READ: dict = {}


def _read_chexpert_once(csv_path: Path, labels: tuple[str, ...]) -> dict[str, np.ndarray]:
    """read_chexpert_csv, once per process for every split (a study asks in every cell)."""
    stat = csv_path.stat() if csv_path.is_file() else None
    key = (str(csv_path), labels, stat and (stat.st_mtime_ns, stat.st_size))
    if key not in _CHEXPERT_READ:
        columns = read_chexpert_csv(csv_path, labels)
        _CHEXPERT_READ.clear()  # one CSV at a time
        _CHEXPERT_READ[key] = columns
    return _CHEXPERT_READ[key]


def _patient_id(path: str, csv_path: Path, row: int) -> str:
    match = _PATIENT_RE.search(path)
    if not match:
        raise DataError(
            f"CheXpert CSV {csv_path}, line {row + 2}: Path '{path}' has no "
            "'patientNNNNN' part to take the patient id from."
        )
    return match.group(1)


def _check_paths_exist(paths: np.ndarray, csv_path: Path, rows: np.ndarray) -> None:
    missing = [(r, p) for r, p in zip(rows, paths) if not os.path.isfile(p)]
    if missing:
        shown = "; ".join(f"line {r + 2}: {p}" for r, p in missing[:3])
        raise DataError(
            f"CheXpert CSV {csv_path}: {len(missing)} image path(s) do not exist, e.g. "
            f"{shown}. Paths are read relative to the folder containing "
            f"{csv_path.parent.name}/."
        )


# ------------------------------------------------------------------------ synthetic


@functools.lru_cache(maxsize=6)
def _lesion_images(num, size, seed, overlap, malignant_fraction, hair_probability, first):
    """Rendered once per process (a study loads the same splits for every cell); the
    arrays are read-only because every caller shares them."""
    images, labels = synthetic.lesion_images(
        num,
        size=size,
        seed=seed,
        overlap=overlap,
        malignant_fraction=malignant_fraction,
        hair_probability=hair_probability,
        first=first,
    )
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


# Fresh renders for seed k start at k + 1 of these past the splits: disjoint ranges.
_FRESH_RANGE = 1_000_000
_FRESH_MAX_CHUNKS = 20


def synthetic_split_records(cfg: ml_collections.ConfigDict, split: str) -> Records:
    """In-memory synthetic lesions or chest X-rays; splits are disjoint index ranges."""
    scfg = cfg.synthetic
    sizes = {"train": scfg.num_train, "val": scfg.num_val, "test": scfg.num_test}
    start = {"train": 0, "val": sizes["train"], "test": sizes["train"] + sizes["val"]}[split]
    if scfg.kind == "lesions":
        images, labels = _lesion_images(
            sizes[split],
            scfg.size,
            scfg.seed,
            scfg.overlap,
            scfg.malignant_fraction,
            scfg.hair_probability,
            start,
        )
        rows = range(start, start + sizes[split])
        return Records(
            ids=np.asarray([f"synthetic-lesions/seed{scfg.seed}/{i:06d}" for i in rows]),
            images=images,
            labels=labels,
            class_names=synthetic.LESION_CLASSES,
            description=f"synthetic lesions (seed {scfg.seed}, {split})",
        )
    if scfg.kind == "cxr":
        return _synthetic_cxr_records(cfg, split, sizes, start)
    raise DataError(f"config.data.synthetic.kind is '{scfg.kind}'; expected 'lesions' or 'cxr'.")


def fresh_synthetic_records(
    cfg: ml_collections.ConfigDict, class_name: str, count: int, seed: int
) -> Records:
    """`count` embedded lesions of `class_name` rendered from indices past every split
    (so disjoint from train, val and test), a separate range per `seed`."""
    scfg = cfg.synthetic
    if scfg.kind != "lesions" or class_name not in synthetic.LESION_CLASSES:
        raise DataError(
            f"Fresh embedded images of '{class_name}' can be rendered for synthetic lesions "
            f"(classes {synthetic.LESION_CLASSES}); config.data.synthetic.kind is '{scfg.kind}'."
        )
    label = synthetic.LESION_CLASSES.index(class_name)
    first = scfg.num_train + scfg.num_val + scfg.num_test + _FRESH_RANGE * (seed + 1)
    images, indices, chunk = [], [], max(64, 3 * count)
    for _ in range(_FRESH_MAX_CHUNKS):
        if sum(len(i) for i in indices) >= count:
            break
        batch, labels = synthetic.lesion_images(
            chunk,
            size=scfg.size,
            seed=scfg.seed,
            overlap=scfg.overlap,
            malignant_fraction=scfg.malignant_fraction,
            hair_probability=scfg.hair_probability,
            first=first,
        )
        keep = np.flatnonzero(labels == label)
        images.append(batch[keep])
        indices.append(first + keep)
        first += chunk
    if sum(len(i) for i in indices) < count:
        raise DataError(
            f"Rendering {count} fresh '{class_name}' lesions found only "
            f"{sum(len(i) for i in indices)} in {_FRESH_MAX_CHUNKS * chunk} renders "
            f"(config.data.synthetic.malignant_fraction={scfg.malignant_fraction})."
        )
    rows = np.concatenate(indices)[:count]
    return Records(
        ids=np.asarray([f"synthetic-lesions/seed{scfg.seed}/{i:06d}" for i in rows]),
        images=np.concatenate(images)[:count],
        labels=np.full(count, label, np.int32),
        class_names=synthetic.LESION_CLASSES,
        description=f"{count} freshly rendered synthetic '{class_name}' lesions",
    )


def _synthetic_cxr_records(cfg, split: str, sizes: dict, start: int) -> Records:
    """Patients are drawn in split order so the splits are patient-disjoint by design."""
    scfg, ccfg = cfg.synthetic, cfg.chexpert
    # Patients are numbered contiguously, split after split.
    patients = {k: max(1, round(v / synthetic.CXR_IMAGES_PER_PATIENT)) for k, v in sizes.items()}
    first = 1 + sum(patients[s] for s in SPLITS[: SPLITS.index(split)])
    table = synthetic.cxr_images(
        patients[split], size=scfg.size, seed=scfg.seed, split="train", first_patient=first
    )
    labels = tuple(ccfg.labels)
    cols = [CHEXPERT_LABELS.index(label) for label in labels]
    policies = parse_uncertainty(ccfg.uncertainty, ccfg.uncertainty_overrides, labels)
    targets, mask = chexpert_targets(table.raw_labels[:, cols], labels, policies, ccfg.blank)
    keep = (table.view == "Frontal") if ccfg.frontal_only else np.ones(len(targets), bool)
    return Records(
        ids=table.paths[keep],
        images=table.images[keep],
        labels=targets[keep],
        label_mask=mask[keep],
        patient_ids=table.patient_ids[keep],
        class_names=labels,
        description=f"synthetic chest X-rays (seed {scfg.seed}, {split})",
    )


# --------------------------------------------------------------------------- TFDS


def tfds_dataset(cfg: ml_collections.ConfigDict, split: str):
    """A TFDS split as a tf.data.Dataset of {'image', 'label'[, 'label_mask']} and its info."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    tcfg = cfg.tfds
    split_name = {"train": tcfg.train_split, "val": tcfg.val_split, "test": tcfg.test_split}[split]
    builder = tfds.builder(tcfg.name, data_dir=tcfg.data_dir or None)
    if not builder.is_prepared():
        if not (tcfg.manual_dir or tcfg.download):
            raise DataError(
                f"TFDS dataset '{tcfg.name}' is not prepared in "
                f"{builder.data_dir}; set config.data.tfds.manual_dir (datasets like "
                "chexpert that are downloaded by hand) or config.data.tfds.download=True."
            )
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=tcfg.manual_dir or None)
        )
    read_config = tfds.ReadConfig(
        shuffle_seed=cfg.seed,
        input_context=tf.distribute.InputContext(
            num_input_pipelines=_process_count(), input_pipeline_id=_process_index()
        ),
    )
    ds = builder.as_dataset(split=split_name, shuffle_files=True, read_config=read_config)
    if tcfg.name.split(":")[0] == "chexpert":
        ds = ds.map(_tfds_chexpert_converter(cfg))
        if cfg.chexpert.frontal_only:
            ds = ds.filter(lambda ex: ex["frontal"])
        return ds.map(lambda ex: {k: v for k, v in ex.items() if k != "frontal"}), builder.info
    image_key, label_key = tcfg.image_key, tcfg.label_key
    features = builder.info.features
    for key in (image_key, label_key):
        if key not in features:
            raise DataError(
                f"config.data.tfds: '{key}' is not a feature of {tcfg.name}; it has "
                f"{list(features.keys())}."
            )
    return ds.map(
        lambda ex: {"image": ex[image_key], "label": tf.cast(ex[label_key], tf.int32)}
    ), builder.info


def _tfds_chexpert_converter(cfg):
    """Maps TFDS chexpert's per-label ClassLabel (uncertain/positive/negative/unmentioned)."""
    import tensorflow as tf

    ccfg = cfg.chexpert
    labels = tuple(ccfg.labels)
    cols = [CHEXPERT_LABELS.index(label) for label in labels]
    policies = parse_uncertainty(ccfg.uncertainty, ccfg.uncertainty_overrides, labels)
    # Rows: TFDS class ids 0..3 = uncertain, positive, negative, unmentioned.
    raw = np.asarray([["-1.0", "1.0", "0.0", ""]] * len(labels)).T
    targets, mask = chexpert_targets(raw, labels, policies, ccfg.blank)
    target_table, mask_table = tf.constant(targets), tf.constant(mask)

    def convert(example):
        ids = tf.gather(tf.cast(example["label"], tf.int32), cols)
        pick = tf.stack([ids, tf.range(len(labels))], axis=1)
        return {
            "image": example["image"],
            "label": tf.gather_nd(target_table, pick),
            "label_mask": tf.gather_nd(mask_table, pick),
            "frontal": tf.equal(example["image_view"], 0),
        }

    return convert


def _process_index() -> int:
    import jax

    return jax.process_index()


def _process_count() -> int:
    import jax

    return jax.process_count()


# ------------------------------------------------------------------------ dispatch


def load_records(cfg: ml_collections.ConfigDict, split: str) -> Records:
    """Records of `split` ('train', 'val', 'test'; CheXpert also 'valid') for `config.data`."""
    if split not in SPLITS + ("valid",):
        raise DataError(f"Unknown split '{split}'; expected one of {SPLITS + ('valid',)}.")
    if cfg.source == "synthetic":
        return synthetic_split_records(cfg, split)
    if cfg.source == "chexpert":
        return chexpert_split_records(cfg, split, seed=cfg.split_seed)
    if cfg.source == "folder":
        return _folder_split(cfg, split)
    if cfg.source == "csv":
        from medgan_jax.data import csv_source

        return csv_source.csv_split_records(cfg, split)
    if cfg.source == "tfds":
        raise DataError("config.data.source='tfds' streams; use pipeline.tfds_batches.")
    raise DataError(
        f"config.data.source is '{cfg.source}'; expected synthetic, folder, chexpert, csv or tfds."
    )


def _folder_split(cfg, split: str) -> Records:
    """'test' is the test folder; 'val' is a stratified slice of the train folder."""
    fcfg = cfg.folder
    classes = tuple(cfg.classes) if cfg.classes else None
    if split == "test":
        return folder_records(fcfg.root, fcfg.test_split, classes)
    records = folder_records(fcfg.root, fcfg.train_split, classes)
    if fcfg.val_fraction <= 0:
        if split == "val":
            raise DataError("config.data.folder.val_fraction is 0, so there is no 'val' split.")
        return records
    val = subsets.stratified_holdout(records.labels, fcfg.val_fraction, seed=cfg.split_seed)
    return records.take(np.flatnonzero(val if split == "val" else ~val))
