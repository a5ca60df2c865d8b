"""`data.source='csv'`: a CSV of labels beside a folder of images (JPEG/PNG/DICOM).

It reads the layouts that clinical datasets ship in (NIH ChestX-ray14's
Data_Entry_2017.csv, SIIM-ISIC's train.csv, RSNA Pneumonia's stage_2_train_labels.csv;
configs/data.py has their presets) from `config.data.csv`:

  root              the folder image paths are relative to
  file              the CSV (relative to root, or absolute)
  path_column       the column naming each image; `path_template` builds the path from
                    the row, e.g. '{}' (the column as is), 'jpeg/train/{}.jpg' or
                    'train/{image_name}.dcm' ('{}' is path_column; '{name}' any column)
  search            True: find each image by file name anywhere under root (NIH's
                    images_001/images/... tarballs), instead of the template's folder
  label_columns     one column of class names (or ids, given `classes`); several 0/1
                    columns (multi-label); or one column of several labels joined by
                    `label_separator` (multi-label, e.g. 'Cardiomegaly|Effusion')
  classes           the class names in order; () = the CSV's, sorted
  negative_label    a label meaning 'none of them' (NIH's 'No Finding')
  patient_column    patient ids: splits never share a patient
  split_column      a column naming each row's split (train | val | test)
  split_lists       {train, test}: official lists of image names (NIH's
                    train_val_list.txt, test_list.txt); val is carved from train
  duplicates        several rows for one image: 'error', 'any' (a label is positive if
                    any row says so; RSNA's one row per box) or 'first'
  val_fraction, test_fraction   patient-level fractions where no split is given

A bad row (empty path, unknown label, a value that is not 0/1, a missing file) stops
with an error naming the CSV, its line and column, or, with `data.skip_corrupt`, is
skipped and counted in the log.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import ml_collections
import numpy as np
from absl import logging

from medgan_jax.data import subsets
from medgan_jax.data.records import DataError, Records

DUPLICATE_RULES = ("error", "any", "first")
_SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_TRUE, _FALSE = ("1", "1.0", "true", "yes"), ("0", "0.0", "false", "no", "")


class BadRow(DataError):
    """One row that cannot be used (skipped and counted under skip_corrupt)."""


def csv_split_records(cfg: ml_collections.ConfigDict, split: str) -> Records:
    """The records of `split` ('train', 'val', 'test') of `config.data.csv`; the CSV is
    read once per process for all splits (a study asks for them in every cell)."""
    path = Path(cfg.csv.file)
    path = path if path.is_absolute() else Path(cfg.csv.root) / path
    stat = path.stat() if path.is_file() else None
    changed = stat and (stat.st_mtime_ns, stat.st_size)
    key = (cfg.csv.to_json(), cfg.skip_corrupt, cfg.split_seed, changed)
    if key not in _SPLITS_READ:
        _SPLITS_READ.clear()  # one dataset at a time: no growth over a long process
        _SPLITS_READ[key] = _read_splits(cfg)
    return _SPLITS_READ[key][split]


_SPLITS_READ: dict = {}


def _read_splits(cfg: ml_collections.ConfigDict) -> dict[str, Records]:
    ccfg = cfg.csv
    table = CsvTable.read(ccfg)
    rows = table.usable_rows(cfg.skip_corrupt)
    class_names, labels = table.labels(rows)
    paths = table.image_paths(rows)
    paths, labels, rows = _merged_duplicates(paths, labels, rows, ccfg, table)
    keep = _missing_files_dropped(paths, rows, table, cfg.skip_corrupt)
    paths, labels, rows = paths[keep], labels[keep], rows[keep]
    patients = table.patients(rows, paths)
    assignment = _split_of_rows(table, rows, paths, patients, cfg)
    ids = np.asarray([os.path.relpath(p, ccfg.root) for p in paths])
    splits = {}
    for split in ("train", "val", "test"):
        index = np.flatnonzero(assignment == split)
        splits[split] = Records(
            ids=ids[index],
            paths=paths[index],
            labels=labels[index],
            class_names=class_names,
            patient_ids=patients[index],
            description=f"CSV {table.path} ({split})",
        )
    return splits


class CsvTable:
    """The CSV's cells, with the line of each row, and its config."""

    def __init__(self, path: Path, header: list[str], cells: np.ndarray, lines, ccfg):
        self.path, self.header, self.cells, self.lines, self.ccfg = path, header, cells, lines, ccfg

    @classmethod
    def read(cls, ccfg: ml_collections.ConfigDict) -> CsvTable:
        path = Path(ccfg.file)
        if not path.is_absolute():
            path = Path(ccfg.root) / path
        if not path.is_file():
            raise DataError(f"config.data.csv.file: {path} does not exist.")
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [name.strip() for name in next(reader, [])]
            records = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
        for line, row in records:
            # NIH's rows end in a comma its header also has; shorter rows are padded.
            if len(row) > len(header):
                raise DataError(
                    f"{path}, line {line}: {len(row)} cells, expected at most {len(header)} "
                    "(one per header column)."
                )
        cells = np.full((len(records), len(header)), "", dtype=object)
        for i, (_, row) in enumerate(records):
            cells[i, : len(row)] = [c.strip() for c in row]
        table = cls(path, header, cells.astype(str), np.asarray([n for n, _ in records]), ccfg)
        table.check_columns()
        return table

    def check_columns(self) -> None:
        c = self.ccfg
        named = {"path_column": [c.path_column], "label_columns": list(c.label_columns)}
        for field in ("patient_column", "split_column"):
            if c.get(field):
                named[field] = [c[field]]
        if not c.path_column or not c.label_columns:
            raise DataError("config.data.csv needs path_column and label_columns.")
        for field, names in named.items():
            missing = [n for n in names if n not in self.header]
            if missing:
                raise DataError(
                    f"config.data.csv.{field} names {missing}, which {self.path} does not have; "
                    f"its columns are {self.header}."
                )
        if c.duplicates not in DUPLICATE_RULES:
            raise DataError(
                f"config.data.csv.duplicates={c.duplicates!r}; expected one of {DUPLICATE_RULES}."
            )

    def column(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        values = self.cells[:, self.header.index(name)]
        return values if rows is None else values[rows]

    def where(self, row: int, column: str) -> str:
        return f"{self.path}, line {self.lines[row]}, column '{column}'"

    def usable_rows(self, skip_bad: bool) -> np.ndarray:
        """Rows whose path and labels parse; a bad one raises, or is skipped and counted."""
        good, bad = [], []
        for row in range(len(self.cells)):
            try:
                self.image_name(row)
                self.row_labels(row, self.class_names())
                good.append(row)
            except BadRow as error:
                if not skip_bad:
                    raise
                bad.append(str(error))
        if bad:
            logging.warning("Skipped %d bad row(s) of %s, e.g. %s", len(bad), self.path, bad[0])
        return np.asarray(good, dtype=np.int64)

    def image_name(self, row: int) -> str:
        """The row's image path relative to root (from path_template)."""
        c = self.ccfg
        value = self.column(c.path_column)[row]
        if not value:
            raise BadRow(f"{self.where(row, c.path_column)}: empty image path.")
        named = {name: self.cells[row, i] for i, name in enumerate(self.header) if name}
        try:
            return (c.path_template or "{}").format(value, **named)
        except (KeyError, IndexError) as error:
            raise DataError(
                f"config.data.csv.path_template={c.path_template!r} names {error}, which is "
                f"not a column of {self.path}."
            ) from None

    def image_paths(self, rows: np.ndarray) -> np.ndarray:
        names = [self.image_name(row) for row in rows]
        root = Path(self.ccfg.root)
        if not self.ccfg.get("search"):
            return np.asarray([str(root / name) for name in names])
        found = _files_by_name(root)
        return np.asarray([found.get(os.path.basename(n), str(root / n)) for n in names])

    # ------------------------------------------------------------------ labels

    def class_names(self) -> tuple[str, ...]:
        if not hasattr(self, "_class_names"):
            self._class_names = self._find_class_names()
        return self._class_names

    def _find_class_names(self) -> tuple[str, ...]:
        c = self.ccfg
        if len(c.label_columns) > 1:
            return tuple(c.label_columns)
        if c.classes:
            return tuple(c.classes)
        values = self.column(c.label_columns[0])
        if c.label_separator:
            values = [t.strip() for v in values for t in v.split(c.label_separator)]
        return tuple(sorted({v for v in values if v and v != c.negative_label}))

    @property
    def multi_label(self) -> bool:
        return len(self.ccfg.label_columns) > 1 or bool(self.ccfg.label_separator)

    def row_labels(self, row: int, names: tuple[str, ...]):
        """A row's class id (single-label) or multi-hot vector; BadRow names the cell."""
        c = self.ccfg
        if len(c.label_columns) > 1:
            return np.asarray([self._binary(row, column) for column in c.label_columns])
        column = c.label_columns[0]
        value = self.column(column)[row]
        if c.label_separator:
            tokens = [t.strip() for t in value.split(c.label_separator) if t.strip()]
            hot = np.zeros(len(names), np.float32)
            for token in tokens:
                if token == c.negative_label:
                    continue
                if token not in names:
                    raise BadRow(
                        f"{self.where(row, column)}: unknown label '{token}'; "
                        f"expected one of {list(names)}."
                    )
                hot[names.index(token)] = 1.0
            return hot
        if value in names:
            return names.index(value)
        if c.classes and value.isdigit() and int(value) < len(names):
            return int(value)  # a class id into config.data.csv.classes
        raise BadRow(
            f"{self.where(row, column)}: unknown label '{value}'; expected one of "
            f"{list(names)}" + (" or their ids" if c.classes else "") + "."
        )

    def _binary(self, row: int, column: str) -> float:
        value = self.column(column)[row].lower()
        if value in _TRUE:
            return 1.0
        if value in _FALSE:
            return 0.0
        raise BadRow(f"{self.where(row, column)}: '{value}' is not 0 or 1.")

    def labels(self, rows: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
        names = self.class_names()
        values = [self.row_labels(row, names) for row in rows]
        if self.multi_label:
            return names, np.asarray(values, np.float32).reshape(len(rows), len(names))
        return names, np.asarray(values, np.int32)

    def patients(self, rows: np.ndarray, paths: np.ndarray) -> np.ndarray:
        """Patient ids (the image itself where the CSV has none)."""
        if self.ccfg.patient_column:
            return self.column(self.ccfg.patient_column, rows)
        return np.asarray([os.path.basename(p) for p in paths])


def _merged_duplicates(paths, labels, rows, ccfg, table: CsvTable):
    """One record per image, in the order of their first rows: several rows of one image
    merged by `duplicates` ('any': a multi-hot OR; single-label, the positive class of a
    binary label if any row has it)."""
    first_row = {}
    for i, path in enumerate(paths):
        if path in first_row and ccfg.duplicates == "error":
            raise DataError(
                f"{table.path}, lines {table.lines[rows[first_row[path]]]} and "
                f"{table.lines[rows[i]]}: both name {path}; set config.data.csv.duplicates "
                "to 'any' or 'first' to merge an image's rows."
            )
        first_row.setdefault(path, i)
    keep = np.asarray(sorted(first_row.values()), dtype=np.int64)
    if len(keep) == len(paths) or ccfg.duplicates == "first":
        return paths[keep], labels[keep], rows[keep]
    merged = labels[keep].copy()
    slot = {paths[k]: j for j, k in enumerate(keep)}
    for i, path in enumerate(paths):
        j = slot[path]
        if labels.ndim == 1 and labels[i] != merged[j] and len(table.class_names()) > 2:
            raise DataError(
                f"{table.path}, lines {table.lines[rows[keep[j]]]} and {table.lines[rows[i]]}: "
                f"different classes for {path}; 'any' merges multi-label or binary labels only."
            )
        merged[j] = np.maximum(merged[j], labels[i])
    return paths[keep], merged, rows[keep]


def _missing_files_dropped(paths, rows, table: CsvTable, skip_bad: bool) -> np.ndarray:
    keep = np.fromiter((os.path.isfile(p) for p in paths), bool, len(paths))
    if keep.all():
        return keep
    missing = np.flatnonzero(~keep)
    shown = "; ".join(
        f"{table.where(rows[i], table.ccfg.path_column)}: {paths[i]}" for i in missing[:3]
    )
    if not skip_bad:
        raise DataError(
            f"{len(missing)} image(s) named in {table.path} do not exist, e.g. {shown}."
        )
    logging.warning(
        "Skipped %d row(s) of %s whose image is missing, e.g. %s", len(missing), table.path, shown
    )
    return keep


def _split_of_rows(table: CsvTable, rows, paths, patients, cfg) -> np.ndarray:
    """'train' | 'val' | 'test' per record: a split column, official lists, or patients."""
    ccfg = table.ccfg
    if ccfg.split_column:
        column = table.column(ccfg.split_column, rows)
        out = np.asarray([_SPLIT_NAMES.get(v.lower(), "") for v in column], dtype=object)
        bad = np.flatnonzero(out == "")
        if len(bad):
            raise DataError(
                f"{table.where(rows[bad[0]], ccfg.split_column)}: split "
                f"'{column[bad[0]]}'; expected one of {sorted(_SPLIT_NAMES)}."
            )
        return out.astype(str)
    fractions = {
        "train": 1.0 - ccfg.val_fraction - ccfg.test_fraction,
        "val": ccfg.val_fraction,
        "test": ccfg.test_fraction,
    }
    lists = ccfg.get("split_lists") or {}
    if lists.get("train") or lists.get("test"):
        names = np.asarray([os.path.basename(p) for p in paths])
        test = np.isin(names, _read_list(Path(ccfg.root), lists.get("test", "")))
        train = np.isin(names, _read_list(Path(ccfg.root), lists.get("train", ""))) & ~test
        out = np.where(test, "test", np.where(train, "train", "")).astype(object)
        unlisted = np.flatnonzero(out == "")
        if len(unlisted):
            raise DataError(
                f"{len(unlisted)} image(s) of {table.path} are in neither split list "
                f"({dict(lists)}), e.g. {table.where(rows[unlisted[0]], ccfg.path_column)}: "
                f"{names[unlisted[0]]}."
            )
        val_share = ccfg.val_fraction / max(1e-9, 1.0 - ccfg.test_fraction)
        inner = subsets.patient_split(
            patients[train], {"train": 1 - val_share, "val": val_share}, seed=cfg.split_seed
        )
        out[np.flatnonzero(train)] = inner
        _check_patients_disjoint(patients, out, table)
        return out.astype(str)
    return subsets.patient_split(patients, fractions, seed=cfg.split_seed)


def _read_list(root: Path, name: str) -> np.ndarray:
    if not name:
        return np.asarray([], dtype=str)
    path = Path(name) if Path(name).is_absolute() else root / name
    if not path.is_file():
        raise DataError(f"config.data.csv.split_lists: {path} does not exist.")
    return np.asarray([line.strip() for line in path.read_text().splitlines() if line.strip()])


def _check_patients_disjoint(patients, split, table: CsvTable) -> None:
    """Official lists are patient-disjoint; say so when a given pair of lists is not."""
    test = set(patients[split == "test"])
    shared = test & set(patients[(split == "train") | (split == "val")])
    if shared:
        logging.warning(
            "%d patient(s) of %s appear in both the train and the test list, e.g. %s.",
            len(shared),
            table.path,
            sorted(shared)[:3],
        )


def _files_by_name(root: Path) -> dict[str, str]:
    """Every file under root by its name (one walk)."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            found.setdefault(name, os.path.join(folder, name))
    return found
