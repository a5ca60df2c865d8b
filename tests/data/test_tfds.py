"""TFDS sources: the built-in `chexpert` builder prepared from a CheXpert-layout fixture,
and an arbitrary image builder by name."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs.data import data_config
from medgan_jax.data import DataError, pipeline, sources
from tests.data.conftest import CHEXPERT_ROWS


class TinyShapes(tfds.core.GeneratorBasedBuilder):
    """A 2-class RGB image builder standing in for any TFDS image dataset."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(12, 10, 3)),
                    "label": tfds.features.ClassLabel(names=["round", "square"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(20), "test": self._generate_examples(6)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"image": np.full((12, 10, 3), 10 * i, np.uint8), "label": i % 2}


@pytest.fixture
def tfds_config(tmp_path):
    cfg = data_config("smoke")
    cfg.source = "tfds"
    cfg.tfds.update(name="tiny_shapes", data_dir=str(tmp_path / "tfds"), download=True)
    return cfg


def test_any_tfds_image_dataset_by_name(tfds_config):
    batches = pipeline.tfds_batches(tfds_config, "train", global_batch_size=8, train=True)
    batch = next(batches.as_numpy_iterator())
    assert batch["image"].shape == (8, 32, 32, 3) and batch["label"].dtype == np.int32
    assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    test = list(pipeline.tfds_batches(tfds_config, "test", global_batch_size=8, train=False))
    assert sum(len(b["label"]) for b in test) == 6


def test_tfds_errors_name_the_field(tfds_config, tmp_path):
    tfds_config.tfds.image_key = "picture"
    with pytest.raises(DataError, match="'picture' is not a feature of tiny_shapes"):
        sources.tfds_dataset(tfds_config, "train")
    cfg = data_config("chexpert_tfds")
    cfg.tfds.update(data_dir=str(tmp_path / "empty"), manual_dir="")
    with pytest.raises(DataError, match="'chexpert' is not prepared.*manual_dir"):
        sources.tfds_dataset(cfg, "train")


def test_tfds_chexpert_builder_from_chexpert_layout(chexpert_root, tmp_path):
    cfg = data_config("chexpert_tfds")
    cfg.tfds.update(data_dir=str(tmp_path / "tfds"), manual_dir=str(chexpert_root))
    cfg.chexpert.update(uncertainty="ignore", blank="zeros")
    cfg.image_size = 16
    ds, info = sources.tfds_dataset(cfg, "train")
    assert info.splits["train"].num_examples == len(CHEXPERT_ROWS)
    assert info.splits["validation"].num_examples == 3
    examples = list(ds.as_numpy_iterator())
    assert len(examples) == sum(r[3] == "Frontal" for r in CHEXPERT_ROWS)  # frontal only
    col = {name: i for i, name in enumerate(cfg.chexpert.labels)}
    by_value = {}
    for ex in examples:
        assert ex["label"].shape == (14,) and ex["label_mask"].shape == (14,)
        by_value[tuple(ex["label"][[col["Cardiomegaly"], col["Edema"]]])] = ex
    # patient00001 study1: Cardiomegaly 1.0, Edema -1.0 (U-Ignore -> target 0, mask 0).
    first = by_value[(1.0, 0.0)]
    assert (
        first["label_mask"][col["Edema"]] == 0.0 and first["label_mask"][col["Cardiomegaly"]] == 1.0
    )
    batch = next(
        pipeline.tfds_batches(cfg, "train", global_batch_size=4, train=True).as_numpy_iterator()
    )
    assert batch["image"].shape == (4, 16, 16, 1) and batch["label_mask"].shape == (4, 14)
