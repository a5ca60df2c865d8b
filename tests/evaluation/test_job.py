"""evaluate.py end to end on smoke runs: report files, a planted copy is caught, DeLong."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from configs import classifier as classifier_config
from configs import dcgan as dcgan_config
from configs.evaluate import get_config
from medgan_jax.classify import train as classify_train
from medgan_jax.evaluation.gan_quality import real_images
from medgan_jax.evaluation.job import evaluate
from medgan_jax.gan import train as gan_train
from medgan_jax.images import to_uint8


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    gan = dcgan_config.get_config("smoke")
    gan.update(num_steps=2, log_every=2, sample_every=2, checkpoint_every=2)
    gan_train.train(gan, str(root / "gan"))
    clf = classifier_config.get_config("smoke")
    clf.update(num_epochs=1, steps_per_epoch=2)
    classify_train.train_and_evaluate(clf, str(root / "clf"))
    return root


def test_evaluate_writes_report_plots_and_metrics(runs, tmp_path):
    config = get_config("smoke")
    config.features.classifier_workdir = str(runs / "clf")
    config.generated.dcgan.gan_workdir = str(runs / "gan")
    config.classifiers.baseline = str(runs / "clf")
    results = evaluate(config, str(tmp_path))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    r = saved["generated"]["dcgan"]
    assert r["num_generated"] == 64 and r["num_real"] > 0
    assert r["fid"] >= 0 and np.isfinite(r["kid"]["mean"])
    assert 1.0 <= r["inception_score"]["generated"]["mean"] <= 2.0  # binary classifier score
    assert r["memorization"]["pixel"]["num_generated"] == 64
    for png in ("dcgan/sample_grid.png", "dcgan/closest_pairs.png", "roc.png"):
        assert (tmp_path / png).stat().st_size > 0
    report = (tmp_path / "report.md").read_text()
    assert "| dcgan | malignant | 64 /" in report and "| baseline |" in report
    assert results["classification"]["baseline"]["bootstrap"]["roc_auc"]["n_valid"] > 0


def test_a_copied_training_image_is_flagged(runs, tmp_path):
    training = real_images(str(runs / "gan"), "malignant", "train", 1000)
    folder = tmp_path / "generated"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (15, *training.shape[1:]))
    images = np.concatenate([images[:7], training[3:4], images[7:]])  # a copy at index 7
    names = []
    for i, image in enumerate(to_uint8(images)):
        names.append(f"img_{i:03d}.png")
        Image.fromarray(image).save(folder / names[-1])
    config = get_config("smoke")
    config.features.classifier_workdir = str(runs / "clf")
    config.generated.dcgan.update(gan_workdir=str(runs / "gan"), folder=str(folder))
    results = evaluate(config, str(tmp_path / "eval"))
    memorization = results["generated"]["dcgan"]["memorization"]
    assert memorization["pixel"]["num_copies"] == 1
    assert memorization["pixel"]["generated_nn_distance_quantiles"]["0.0"] == 0.0
    assert "reproduce a training image" in (tmp_path / "eval" / "report.md").read_text()


def test_delong_between_two_runs_on_the_same_test_set(runs, tmp_path):
    with np.load(runs / "clf" / "test_predictions.npz") as p:
        data = {k: p[k] for k in p.files}
    better = dict(data, scores=np.clip(data["labels"] * 0.6 + 0.2 * data["scores"], 0, 1))
    np.savez(tmp_path / "better.npz", **better)
    config = get_config("smoke")
    config.generated.dcgan.gan_workdir = ""
    config.classifiers.baseline = str(runs / "clf")
    config.classifiers.other = str(tmp_path / "better.npz")
    results = evaluate(config, str(tmp_path / "eval"))
    test = results["classification"]["other"]["delong_vs_baseline"]
    assert test["auc_a"] == 1.0 and test["difference"] > 0 and 0 <= test["p_value"] < 0.05
    assert "other vs baseline: ΔAUC" in (tmp_path / "eval" / "report.md").read_text()


@pytest.mark.slow
def test_inception_feature_network_from_a_keras_file(runs, tmp_path):
    import keras

    weights = tmp_path / "inception.weights.h5"
    keras.applications.InceptionV3(weights=None).save_weights(str(weights))
    config = get_config("smoke")
    config.features.update(network="inception", inception_weights=str(weights))
    config.generated.dcgan.update(gan_workdir=str(runs / "gan"), num=16)
    config.update(batch_size=8, kid_subsets=2)
    result = evaluate(config, str(tmp_path / "eval"))["generated"]["dcgan"]
    assert 1.0 <= result["inception_score"]["generated"]["mean"] <= 1000.0
    assert np.isfinite(result["fid"]) and result["num_generated"] == 16
