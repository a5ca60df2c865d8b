"""The study's controls and ceiling: oversample, weighted and real_topup cells, manifest-
checked, and the comparisons against them (two-level bootstrap, Holm, ceiling share)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from configs.study import get_config
from medgan_jax.classify import mixing
from medgan_jax.data import load_split
from medgan_jax.study import comparisons, grid, runner

METHODS = ("base", "oversample", "weighted", "dcgan", "real_topup")


def everything_of(config):
    """config.data without the grid's subset: the whole training split."""
    data = config.data.copy_and_resolve_references()
    data.subset.class_counts = ""
    return data


def _manifest_ids(path) -> list[str]:
    with open(path) as f:
        return [row[0] for row in csv.reader(f)][1:]


def _controls_config():
    config = get_config("smoke")
    config.methods = METHODS
    config.size_unit = "minority"
    config.data.subset.class_counts = "benign=24"
    config.sizes = ("6",)
    config.synthetic_amount = "balance"
    config.metrics = ("roc_auc", "sensitivity")
    config.bootstrap.n_resamples = 200
    config.gan_eval.enabled = False
    return config


@pytest.fixture(scope="module")
def controls_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("controls")
    config = _controls_config()
    return config, root, runner.main(config, str(root))


def test_oversample_and_real_topup_reach_the_generator_arms_class_counts(controls_study):
    config, root, results = controls_study
    assert not results["failed_cells"] and not results["no_ceiling"]
    train = load_split(everything_of(config), "train")
    label_of = dict(zip(train.ids.tolist(), train.labels.tolist()))
    held_out = {i for split in ("val", "test") for i in load_split(config.data, split).ids}
    for seed in config.seeds:
        cell = root / "size=6" / f"seed={seed}"
        subset = _manifest_ids(cell / "manifest_train.csv")
        counts = {}
        for name in ("oversample", "real_topup", "dcgan"):
            metrics = json.loads((cell / f"method={name}" / "metrics.json").read_text())
            counts[name] = metrics["train_images"]
        assert counts["oversample"] == counts["real_topup"] == counts["dcgan"] == 48
        repeated = _manifest_ids(cell / "method=oversample" / "manifest_train.csv")
        assert set(repeated) == set(subset)  # only the cell's real files, repeated
        assert sum(label_of[i] for i in repeated) == 24  # malignant topped up to 24
        topped = _manifest_ids(cell / "method=real_topup" / "manifest_train.csv")
        extra = [i for i in topped if i not in set(subset)]
        assert len(extra) == 18 and len(set(extra)) == 18
        assert all(label_of[i] == 1 for i in extra)  # real malignant training images
        assert not set(extra) & held_out


def test_real_topup_is_deterministic_per_seed_and_renders_when_the_split_runs_short():
    config = _controls_config()
    data = config.data.copy_and_resolve_references()
    data.subset.update(class_counts="benign=24,malignant=6", seed=0)
    real = load_split(data, "train")
    first = mixing.unused_real_records(real, data, "malignant", 18, seed=0)
    again = mixing.unused_real_records(real, data, "malignant", 18, seed=0)
    other = mixing.unused_real_records(real, data, "malignant", 18, seed=1)
    assert first.ids.tolist() == again.ids.tolist() != other.ids.tolist()
    pool = load_split(everything_of(config), "train")
    shortfall = int((pool.labels == 1).sum())  # more than the split holds
    many = mixing.unused_real_records(real, data, "malignant", shortfall, seed=0)
    assert len(set(many.ids.tolist())) == shortfall and (many.labels == 1).all()
    split_ids = {
        i for s in ("train", "val", "test") for i in load_split(everything_of(config), s).ids
    }
    fresh = [i for i in many.ids if i not in split_ids]
    assert len(fresh) == 6  # the subset's own 6 are excluded, so 6 are rendered anew
    np.testing.assert_array_equal(many.images[-1].shape, real.images[0].shape)


def test_no_ceiling_is_reported_not_failed(monkeypatch, tmp_path):
    config = _controls_config()
    config.methods = ("base", "real_topup")

    def short(*args, **kwargs):
        raise mixing.NoCeilingError("only 3 unused images (no ceiling available)")

    monkeypatch.setattr(mixing, "unused_real_records", short)
    results = runner.main(config, str(tmp_path))
    assert not results["failed_cells"]
    assert "size=6/seed=0/method=real_topup" in results["no_ceiling"]
    assert "## No ceiling available" in (tmp_path / "report.md").read_text()


def _write_run(root, name, seed, labels, scores):
    path = grid.method_workdir(grid.cell_root(str(root), "10", seed), name)
    os.makedirs(path)
    np.savez(
        os.path.join(path, "test_predictions.npz"),
        task="binary",
        class_names=np.asarray(["benign", "malignant"]),
        labels=labels,
        scores=scores,
        threshold=np.float32(0.5),
    )


def test_the_ceiling_share_is_its_formula_on_a_hand_made_study(tmp_path):
    rng = np.random.default_rng(0)
    labels = (np.arange(200) < 60).astype(np.int32)
    strength = {"base": 0.5, "oversample": 0.8, "weighted": 0.6, "dcgan": 1.2, "real_topup": 1.6}
    auc = {name: [] for name in strength}
    for seed in (0, 1, 2):
        for name, d in strength.items():
            scores = 1 / (1 + np.exp(-(rng.normal(0, 1, 200) + d * labels)))
            _write_run(tmp_path, name, seed, labels, scores)
            auc[name].append(roc_auc_score(labels, scores))
    config = _controls_config()
    config.update(sizes=("10",), seeds=(0, 1, 2), metrics=("roc_auc",))
    out = comparisons.all_comparisons(config, str(tmp_path))
    mean = {name: np.mean(values) for name, values in auc.items()}
    control = max(("oversample", "weighted"), key=mean.get)
    share = next(s for s in out["ceiling_shares"] if s["method"] == "dcgan")
    assert share["control"] == control
    expected = (mean["dcgan"] - mean[control]) / (mean["real_topup"] - mean[control])
    assert share["estimate"] == pytest.approx(expected, rel=1e-9)
    assert share["ci_low"] < share["estimate"] < share["ci_high"]
    vs_base = comparisons.find(out["tests"], "10", "roc_auc", "dcgan", "base")
    assert vs_base["estimate"] == pytest.approx(mean["dcgan"] - mean["base"], rel=1e-9)
    tested = [t for t in out["tests"] if t["p_value"] is not None]
    assert all(t["p_holm"] >= t["p_value"] for t in tested)
    assert len(tested) == 4 + 2  # four against base; dcgan and real_topup against the control


def test_transfer_pretrains_on_the_cells_majority_images_only(tmp_path):
    config = _controls_config()
    config.update(methods=("base", "dcgan_transfer"), seeds=(0,))
    config.lock()  # as --config flags leave it
    results = runner.main(config, str(tmp_path))
    assert not results["failed_cells"]
    cell = tmp_path / "size=6" / "seed=0"
    subset = set(_manifest_ids(cell / "manifest_train.csv"))
    train = load_split(everything_of(config), "train")
    label_of = dict(zip(train.ids.tolist(), train.labels.tolist()))
    fine = json.loads((cell / "gan=dcgan_transfer" / "config.json").read_text())
    pretrain = Path(fine["gan"]["init"]["from_run"])
    assert pretrain.parent == tmp_path / "pretrain"
    pretrained = _manifest_ids(pretrain / "manifest_gan_train.csv")
    assert len(pretrained) == 24 and set(pretrained) <= subset
    assert all(label_of[i] == 0 for i in pretrained)  # benign: the majority class
    tuned = _manifest_ids(cell / "gan=dcgan_transfer" / "manifest_gan_train.csv")
    assert len(tuned) == 6 and all(label_of[i] == 1 for i in tuned)
    first = json.loads((pretrain / "config.json").read_text())
    assert first["num_steps"] + fine["num_steps"] == config.gans.dcgan.num_steps


def test_cells_with_the_same_majority_images_share_one_pretraining_run(tmp_path):
    config = _controls_config()
    config.update(methods=("dcgan_transfer",), sizes=("4", "6"), seeds=(0, 1))
    results = runner.main(config, str(tmp_path))
    assert not results["failed_cells"]
    used = {}
    for size in config.sizes:
        for seed in config.seeds:
            cell = tmp_path / f"size={size}" / f"seed={seed}"
            fine = json.loads((cell / "gan=dcgan_transfer" / "config.json").read_text())
            pretrain = Path(fine["gan"]["init"]["from_run"])
            train = load_split(everything_of(config), "train")
            label_of = dict(zip(train.ids.tolist(), train.labels.tolist()))
            benign = {i for i in _manifest_ids(cell / "manifest_train.csv") if label_of[i] == 0}
            assert set(_manifest_ids(pretrain / "manifest_gan_train.csv")) == benign
            used.setdefault(seed, set()).add(pretrain)
    assert all(len(runs) == 1 for runs in used.values())  # one per seed, shared by sizes
    assert used[0] != used[1]  # another seed trains its own
    assert len(list((tmp_path / "pretrain").iterdir())) == 2


def test_a_conditional_gan_pretrains_on_every_class_and_fine_tunes_on_the_minority(tmp_path):
    config = _controls_config()
    config.update(methods=("base", "dcgan_transfer"), seeds=(0,))
    config.gans.dcgan_transfer.gan.conditional = "projection"
    results = runner.main(config, str(tmp_path))
    assert not results["failed_cells"]
    cell = tmp_path / "size=6" / "seed=0"
    fine = json.loads((cell / "gan=dcgan_transfer" / "config.json").read_text())
    pretrained = _manifest_ids(Path(fine["gan"]["init"]["from_run"]) / "manifest_gan_train.csv")
    tuned = _manifest_ids(cell / "gan=dcgan_transfer" / "manifest_gan_train.csv")
    assert set(pretrained) == set(_manifest_ids(cell / "manifest_train.csv"))  # 24 + 6
    assert len(tuned) == 6 and set(tuned) < set(pretrained)
    manifest = json.loads((cell / "gan=dcgan_transfer" / "generated" / "manifest.json").read_text())
    assert manifest["class_name"] == "malignant"
