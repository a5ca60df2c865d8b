"""evaluate.py end to end on smoke runs: report files, a planted copy is caught, DeLong."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from configs import classifier as classifier_config
from configs import dcgan as dcgan_config
from configs.evaluate import generated_set, get_config
from medgan_jax import parallel
from medgan_jax.classify import train as classify_train
from medgan_jax.evaluation.features import build_feature_network
from medgan_jax.evaluation.gan_quality import minimum_sample_sizes, real_images
from medgan_jax.evaluation.job import evaluate
from medgan_jax.gan import train as gan_train
from medgan_jax.images import to_uint8

# The smoke GAN's class has 24 real training images, below the default minimum sample
# sizes (50): tests that want numbers lower them.
SMOKE_MINIMUMS = dict(is_per_split=2, fid=20, kid=20, prdc=20)


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
    config.min_samples.update(SMOKE_MINIMUMS)
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
    config.min_samples.update(is_per_split=1, fid=2, kid=2, prdc=4)  # 16 images: a smoke test
    result = evaluate(config, str(tmp_path / "eval"))["generated"]["dcgan"]
    assert 1.0 <= result["inception_score"]["generated"]["mean"] <= 1000.0
    assert np.isfinite(result["fid"]) and result["num_generated"] == 16


def test_default_minimum_sample_sizes():
    for preset in ("synthetic_lesions", "balancing", "smoke"):
        config = get_config(preset)
        assert config.prdc_k == 3
        assert minimum_sample_sizes(config) == dict(inception_score=50, fid=50, kid=50, prdc=50)


def test_precision_recall_density_coverage_and_n_a_below_the_minimum(runs, tmp_path):
    training = real_images(str(runs / "gan"), "malignant", "train", 1000)
    folder = tmp_path / "few"
    folder.mkdir()
    for i, image in enumerate(to_uint8(training[:10])):  # 10 images: below every minimum
        Image.fromarray(image).save(folder / f"img_{i:03d}.png")
    config = get_config("smoke")
    config.features.classifier_workdir = str(runs / "clf")
    config.generated.dcgan.gan_workdir = str(runs / "gan")
    config.generated.few = generated_set(str(runs / "gan"), "malignant", folder=str(folder))
    config.min_samples.update(SMOKE_MINIMUMS)
    results = evaluate(config, str(tmp_path / "eval"))
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["generated"] == json.loads(json.dumps(results["generated"]))

    r = saved["generated"]["dcgan"]  # 64 generated vs 24 real images: all computed
    assert r["prdc_k"] == 3
    assert r["min_samples"] == dict(inception_score=20, fid=20, kid=20, prdc=20)
    for key in ("precision", "recall", "coverage"):
        assert 0.0 <= r[key] <= 1.0, key
    assert r["density"] >= 0.0
    assert r["fid"] >= 0 and r["inception_score"]["real"]["num_splits"] == 10
    assert not [key for key in r if key.endswith("_na_reason")]

    few = saved["generated"]["few"]
    assert few["num_generated"] == 10
    for key in ("fid", "kid", "precision", "recall", "density", "coverage"):
        assert few[key] is None, key
        assert few[f"{key}_na_reason"].startswith("N = 10 < 20: too few generated images"), key
    assert few["fid_na_reason"].endswith("small-sample bias (config.min_samples.fid)")
    assert few["precision_na_reason"].endswith(
        "k-NN balls from so few points do not describe the distribution (config.min_samples.prdc)"
    )
    # IS of 10 images in 10 splits would be exactly 1.000 ± 0.000: it is n/a instead.
    assert few["inception_score"]["generated"] is None
    assert few["inception_score"]["generated_na_reason"] == (
        "N = 10 < 20: too few generated images; each of the 10 IS splits needs 2 for its "
        "marginal p(y) (config.min_samples.is_per_split)"
    )
    assert few["inception_score"]["real"] == r["inception_score"]["real"]

    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| precision / recall | density / coverage |" in report
    assert f"{r['precision']:.3f} / {r['recall']:.3f} (k = 3)" in report
    assert f"{r['density']:.3f} / {r['coverage']:.3f}" in report
    row = next(line for line in report.splitlines() if line.startswith("| few |"))
    assert row.count("n/a (N = 10 < 20: too few generated images;") == 5  # IS FID KID P/R D/C
    assert "n/a (N = 10 < 20: too few generated images; each of the 10 IS splits" in row


def test_minimum_sample_sizes_follow_the_config(runs, tmp_path):
    config = get_config("smoke")
    config.features.classifier_workdir = str(runs / "clf")
    config.generated.dcgan.update(gan_workdir=str(runs / "gan"), num=16)
    config.min_samples.update(is_per_split=1, fid=2, kid=2, prdc=0)  # prdc: still k + 1
    config.prdc_k = 16
    r = evaluate(config, str(tmp_path / "eval"))["generated"]["dcgan"]
    assert r["min_samples"] == dict(inception_score=10, fid=2, kid=2, prdc=17)
    assert np.isfinite(r["fid"]) and np.isfinite(r["kid"]["mean"])
    assert r["inception_score"]["generated"]["num_splits"] == 10
    assert r["precision"] is None
    assert r["precision_na_reason"] == (
        "N = 16 < 17: too few generated images; k = 16 needs more than k points (config.prdc_k)"
    )


def test_recognised_is_the_classifiers_vote_for_the_class(runs, tmp_path):
    config = get_config("smoke")
    config.features.classifier_workdir = str(runs / "clf")
    config.generated.dcgan.gan_workdir = str(runs / "gan")
    config.classifiers.baseline = ""
    config.min_samples.update(SMOKE_MINIMUMS)
    result = evaluate(config, str(tmp_path))["generated"]["dcgan"]["recognised_as_class"]
    network = build_feature_network(config.features, config.batch_size, parallel.make_mesh())
    real = real_images(str(runs / "gan"), "malignant", "train", 1000)
    logits = np.concatenate([network(real[i : i + 16])["logits"] for i in range(0, len(real), 16)])
    probability = 1 / (1 + np.exp(-logits[:, 0]))  # binary: P(malignant), class 1
    assert result["real"] == pytest.approx(np.mean(probability >= 0.5))
    assert 0.0 <= result["generated"] <= 1.0
