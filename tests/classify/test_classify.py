"""Classifier training: losses, synthetic mixing, early stopping, resume, 8 devices = 1."""

from __future__ import annotations

import csv
import functools
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from configs.classifier import get_config
from medgan_jax import parallel, runs, training
from medgan_jax.augment import registry as augment_registry
from medgan_jax.classify import mixing, predict, state, steps, train
from medgan_jax.data import load_split
from medgan_jax.models.classifiers import build_classifier
from medgan_jax.writers import read_metrics
from tests.conftest import all_closed
from tests.legacy_runs import as_legacy_run


def smoke(**overrides):
    config = get_config("smoke")
    config.update(overrides)
    return config


# --- losses ----------------------------------------------------------------------------


def test_multilabel_loss_ignores_masked_labels():
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
    labels = rng.integers(0, 2, (6, 4)).astype(np.float32)
    mask = rng.integers(0, 2, (6, 4)).astype(np.float32)
    ones = jnp.ones(4)
    loss = state.loss_fn("multilabel", logits, {"label": labels, "label_mask": mask}, ones)
    flipped = np.where(mask > 0, labels, 1 - labels)  # change only the masked labels
    same = state.loss_fn("multilabel", logits, {"label": flipped, "label_mask": mask}, ones)
    p = 1 / (1 + np.exp(-np.asarray(logits, np.float64)))
    bce = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert float(loss) == pytest.approx(float(same), rel=1e-6)
    assert float(loss) == pytest.approx(np.sum(bce * mask) / np.sum(mask), rel=1e-5)


def test_weighted_multiclass_and_binary_losses_match_closed_forms():
    logits = jnp.asarray([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    labels = jnp.asarray([0, 2])
    weights = jnp.asarray([1.0, 1.0, 3.0])
    log_p = jax.nn.log_softmax(logits)
    expected = -(1.0 * log_p[0, 0] + 3.0 * log_p[1, 2]) / 4.0
    got = state.loss_fn("multiclass", logits, {"label": labels}, weights)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    one_hot = {"label": labels, "soft_label": jax.nn.one_hot(labels, 3)}
    assert float(state.loss_fn("multiclass", logits, one_hot, weights)) == pytest.approx(
        float(expected), rel=1e-6
    )
    binary = state.loss_fn("binary", jnp.asarray([[0.0]]), {"label": jnp.asarray([1])}, weights)
    assert float(binary) == pytest.approx(np.log(2), rel=1e-6)


def test_balanced_class_weights_follow_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0] * 30 + [1] * 5 + [2] * 15)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    np.testing.assert_allclose(state.class_weights("balanced", labels, None, 3), expected, 1e-6)


# --- mixing ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generated")
    rng = np.random.default_rng(0)
    files = []
    for i in range(40):
        name = f"malignant_{i:06d}.png"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / name)
        files.append(name)
    (folder / "manifest.json").write_text(json.dumps({"files": files}))
    return folder


def test_synthetic_amounts():
    real = load_split(get_config("smoke").data, "train")
    counts = real.class_counts()
    assert mixing.synthetic_count("25", real, "malignant") == 25
    assert mixing.synthetic_count("10%", real, "malignant") == round(0.1 * len(real))
    assert (
        mixing.synthetic_count("balance", real, "malignant")
        == max(counts.values()) - counts["malignant"]
    )
    with pytest.raises(ValueError, match="config.synthetic.amount='lots'"):
        mixing.synthetic_count("lots", real, "malignant")


def test_mixing_puts_exactly_the_requested_images_in_training_only(synthetic_folder, tmp_path):
    config = smoke()
    config.synthetic.update(amount="25", class_name="malignant", folder=str(synthetic_folder))
    splits = train.load_splits(config, str(tmp_path))
    real = load_split(config.data, "train")
    is_synth = mixing.is_synthetic(splits["train"])
    assert is_synth.sum() == 25 and len(splits["train"]) == len(real) + 25
    malignant = real.class_names.index("malignant")
    assert np.all(splits["train"].labels[is_synth] == malignant)
    for split in ("val", "test"):
        assert not mixing.is_synthetic(splits[split]).any()
        with open(tmp_path / f"manifest_{split}.csv") as f:
            assert not any(row["id"].startswith("synthetic:") for row in csv.DictReader(f))
    with open(tmp_path / "manifest_train.csv") as f:
        assert sum(row["id"].startswith("synthetic:") for row in csv.DictReader(f)) == 25
    too_many = smoke()
    too_many.synthetic.update(amount="41", class_name="malignant", folder=str(synthetic_folder))
    with pytest.raises(ValueError, match="holds 40"):
        train.load_splits(too_many, str(tmp_path))


# --- training --------------------------------------------------------------------------


def test_step_on_eight_devices_matches_one():
    config = smoke()
    config.optimizer.update(warmup_steps=0, schedule="constant")
    model = build_classifier("simple_cnn", 1, widths=(8,), hidden=8, dropout_rate=0.0)
    optimizer = functools.partial(state.make_optimizer, config.optimizer)
    tx = optimizer(10)
    step = steps.make_train_step(model, optimizer, "binary")
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 2, 16).astype(np.int32),
    }
    losses = []
    for devices in (1, 8):
        mesh = parallel.make_mesh(devices)
        s = state.create_state(model, tx, (32, 32, 3), 0, True, parallel.replicated(mesh))
        fn = training.jit_step(step, mesh, num_extra_args=2)
        s, m1 = fn(s, parallel.host_to_global(batch, mesh), np.ones(2, np.float32), 10)
        _, m2 = fn(s, parallel.host_to_global(batch, mesh), np.ones(2, np.float32), 10)
        losses.append([float(m1["loss"]), float(m2["loss"])])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    assert losses[0][1] != losses[0][0]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("clf_full")
    config = smoke(num_epochs=3, steps_per_epoch=2)
    config.early_stopping.patience = 0
    return workdir, train.train_and_evaluate(config, str(workdir))


def test_smoke_run_writes_test_metrics_and_predictions(full_run):
    workdir, results = full_run
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["test"]["task"] == "binary" and metrics["test"]["n_samples"] == 32
    assert 0 <= metrics["test_summary"]["roc_auc"] <= 1
    with np.load(workdir / "test_predictions.npz") as p:
        assert p["scores"].shape == (32,) and str(p["task"]) == "binary"
        assert ((p["scores"] >= 0) & (p["scores"] <= 1)).all()
    epochs = [row for row in read_metrics(workdir) if "epoch" in row]
    assert [row["epoch"] for row in epochs] == [1, 2, 3]
    train_losses = [row["train/loss"] for row in read_metrics(workdir) if "train/loss" in row]
    assert len(set(train_losses)) == len(train_losses) == 3  # one per 2 steps, and they move


def test_resume_continues_where_it_stopped(full_run, tmp_path):
    workdir, results = full_run
    # An interruption after epoch 2: the copy has no trace of epoch 3.
    shutil.copytree(workdir, tmp_path / "run")
    run = tmp_path / "run"
    for folder in ("checkpoints", "best"):
        shutil.rmtree(run / folder / "6", ignore_errors=True)
    rows = read_metrics(run)
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= 4)
    )
    config = smoke(num_epochs=3, steps_per_epoch=2)
    config.early_stopping.patience = 0
    resumed = train.train_and_evaluate(config, str(run))
    rows = [row for row in read_metrics(run) if "epoch" in row]
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    full_rows = [row for row in read_metrics(workdir) if "epoch" in row]
    assert rows[-1]["val/loss"] == pytest.approx(full_rows[-1]["val/loss"], rel=1e-5)
    assert resumed["test_summary"] == pytest.approx(results["test_summary"], rel=1e-5)


def _predictions(workdir, split="test"):
    with np.load(workdir / f"{split}_predictions.npz") as p:
        return p["scores"]


def test_best_weights_kept_in_memory_give_the_checkpointed_run(full_run, tmp_path):
    workdir, results = full_run
    config = smoke(num_epochs=3, steps_per_epoch=2, checkpoints="at_end")
    config.early_stopping.patience = 0
    at_end = train.train_and_evaluate(config, str(tmp_path))
    assert at_end["test_summary"] == results["test_summary"]
    np.testing.assert_array_equal(_predictions(tmp_path), _predictions(workdir))
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == ["6"]
    assert not list((tmp_path / "checkpoints").iterdir())  # nothing saved per epoch
    variables = predict.load_variables(str(tmp_path))  # the run still loads
    assert jax.tree.structure(variables["params"]) is not None


def test_splits_held_on_device_score_as_the_streamed_pipeline(full_run, tmp_path):
    workdir, results = full_run
    config = smoke(num_epochs=3, steps_per_epoch=2, eval_resident_mb=0)  # always streamed
    config.early_stopping.patience = 0
    streamed = train.train_and_evaluate(config, str(tmp_path))
    assert streamed["test_summary"] == pytest.approx(results["test_summary"], rel=1e-6)
    np.testing.assert_allclose(_predictions(tmp_path), _predictions(workdir), rtol=1e-6)
    np.testing.assert_allclose(
        _predictions(tmp_path, "val"), _predictions(workdir, "val"), rtol=1e-6
    )


def test_runs_reuse_compiled_programs_and_get_the_numbers_of_a_fresh_process(full_run, tmp_path):
    workdir, results = full_run
    config = smoke(num_epochs=3, steps_per_epoch=2)
    config.early_stopping.patience = 0
    n_built = len(training.built_once)
    again = train.train_and_evaluate(config, str(tmp_path / "again"))
    assert len(training.built_once) == n_built  # nothing new was built
    training.built_once.clear()
    train.RESIDENT_SPLITS.clear()
    fresh = train.train_and_evaluate(config, str(tmp_path / "fresh"))
    assert again["test_summary"] == fresh["test_summary"] == results["test_summary"]
    np.testing.assert_array_equal(
        _predictions(tmp_path / "again"), _predictions(tmp_path / "fresh")
    )


def test_the_run_closes_its_batch_iterator(tmp_path, batch_iterators):
    train.train_and_evaluate(smoke(num_epochs=1, steps_per_epoch=2), str(tmp_path))
    assert all_closed(batch_iterators)


def test_cells_with_other_training_subsets_share_the_resident_val_split():
    mesh = parallel.make_mesh(1)
    config = smoke()
    val = load_split(config.data, "val")
    train.RESIDENT_SPLITS.clear()
    held = train.resident_split(val, config, mesh)
    other_cell = smoke()
    other_cell.data.subset.update(fraction=0.5, seed=3)  # a study cell's training subset
    assert train.resident_split(val, other_cell, mesh) is held
    assert len(train.RESIDENT_SPLITS) == 1
    resized = smoke()
    resized.data.image_size = config.data.image_size // 2  # read differently: its own copy
    assert train.resident_split(val, resized, mesh).shape[2] == config.data.image_size // 2
    assert len(train.RESIDENT_SPLITS) == 2


def test_config_precision_reaches_the_trained_model():
    config = smoke(precision="bfloat16")
    programs = train.classifier_programs(config, "binary", 2, 2, parallel.make_mesh(1))
    assert programs.model.dtype == jnp.bfloat16
    programs = train.classifier_programs(smoke(), "binary", 2, 2, parallel.make_mesh(1))
    assert programs.model.dtype == jnp.float32


def test_bad_checkpoint_policy_names_the_field(tmp_path):
    with pytest.raises(ValueError, match="config.checkpoints='sometimes'"):
        train.train_and_evaluate(smoke(checkpoints="sometimes"), str(tmp_path))


def test_early_stopping_stops_after_patience(tmp_path):
    config = smoke(num_epochs=6, steps_per_epoch=1)
    config.optimizer.update(lr=0.0, warmup_steps=0, schedule="constant")  # nothing improves
    config.early_stopping.update(metric="loss", patience=2)
    results = train.train_and_evaluate(config, str(tmp_path))
    epochs = [row["epoch"] for row in read_metrics(tmp_path) if "epoch" in row]
    assert epochs == [1, 2, 3] and results["best_epoch"] == 1


def test_soft_labels_are_prior_probabilities_and_train(full_run, synthetic_folder, tmp_path):
    prior, _ = full_run
    config = smoke(num_epochs=1, steps_per_epoch=2)
    config.synthetic.update(
        amount="10",
        class_name="malignant",
        folder=str(synthetic_folder),
        labels="soft",
        prior_classifier=str(prior),
    )
    splits = train.load_splits(config, str(tmp_path))
    soft, synthetic = splits["train"].soft_labels, mixing.is_synthetic(splits["train"])
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    assert (soft >= 0).all() and synthetic.sum() == 10
    real_rows = soft[~synthetic]
    np.testing.assert_array_equal(real_rows.argmax(1), splits["train"].labels[~synthetic])
    assert (real_rows.max(1) == 1).all() and (soft[synthetic].max(1) < 1).all()
    results = train.train_and_evaluate(config, str(tmp_path))
    assert results["synthetic_images"] == 10


def test_one_compiled_step_takes_any_class_weights():
    """The study's weighted runs share one program: the weights are an argument, and the
    step's loss is the weighted mean of the per-image losses with the weights given."""
    config = smoke()
    model = build_classifier("simple_cnn", 1, widths=(8,), hidden=8, dropout_rate=0.0)
    optimizer = functools.partial(state.make_optimizer, config.optimizer)
    tx = optimizer(10)
    step = jax.jit(steps.make_train_step(model, optimizer, "binary"))
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32),
        "label": np.asarray([0, 1, 1, 0, 0, 0, 1, 0], np.int32),
    }
    s0 = state.create_state(model, tx, (32, 32, 3), 0, True)
    logits, _ = model.apply(
        {"params": s0.params, "batch_stats": s0.batch_stats},
        batch["image"],
        train=True,
        mutable=["batch_stats"],
    )
    per_image = optax.losses.sigmoid_binary_cross_entropy(logits[:, 0], batch["label"])
    for weights in ([1.0, 1.0], [1.0, 3.0], [0.5, 2.0]):
        w = np.asarray(weights, np.float32)[batch["label"]]
        _, metrics = step(s0, batch, jnp.asarray(weights), 10)
        expected = float(np.sum(per_image * w) / np.sum(w))
        assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-5)
    assert step._cache_size() == 1


def optax_schedule(cfg, total_steps: int):
    """The learning rate as optax's schedules build it for a known length (the reference
    for state.learning_rate, whose length may be traced)."""
    warmup = min(int(cfg.warmup_steps), total_steps // 5)
    if cfg.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, cfg.lr, max(warmup, 1), max(total_steps, warmup + 1), cfg.lr * cfg.end_lr_factor
        )
    if not warmup:
        return optax.constant_schedule(cfg.lr)
    ramp = optax.linear_schedule(0.0, cfg.lr, warmup)
    return optax.join_schedules([ramp, optax.constant_schedule(cfg.lr)], [warmup])


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
@pytest.mark.parametrize("warmup", [100, 0])
def test_learning_rate_of_a_traced_length_equals_optax(schedule, warmup):
    """One compiled program serves every length, with optax's rates bit for bit (in
    programs over all steps at once and over one step, as the train step has it)."""
    cfg = smoke().optimizer
    cfg.update(schedule=schedule, warmup_steps=warmup)
    ours_all = jax.jit(lambda steps, total: jax.vmap(state.learning_rate(cfg, total))(steps))
    ours_one = jax.jit(lambda step, total: state.learning_rate(cfg, total)(step))
    for total in (3, 12, 80, 95, 125, 1000):
        reference = optax_schedule(cfg, total)
        steps_ = jnp.arange(total + 2, dtype=jnp.int32)
        expected = np.asarray(jax.jit(jax.vmap(reference))(steps_))
        np.testing.assert_array_equal(np.asarray(ours_all(steps_, jnp.int32(total))), expected)
        one = jax.jit(reference)
        for step in range(0, total + 2, max(1, total // 40)):
            got, want = ours_one(jnp.int32(step), jnp.int32(total)), one(jnp.int32(step))
            assert float(got) == float(want), (total, step)
    assert ours_one._cache_size() == 1


def test_train_step_with_the_length_as_argument_equals_optax_adam():
    """Twelve steps through warm-up and cosine decay: the same weights as a step with
    optax's adam built for that length."""
    config = smoke()
    config.optimizer.update(warmup_steps=100, schedule="cosine")
    model = build_classifier("simple_cnn", 1, widths=(8,), hidden=8, dropout_rate=0.0)
    optimizer = functools.partial(state.make_optimizer, config.optimizer)
    betas = config.optimizer.betas
    reference = optax.adam(optax_schedule(config.optimizer, 12), b1=betas[0], b2=betas[1])
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 2, 8).astype(np.int32),
    }
    finals = []
    for make_tx in (optimizer, lambda total: reference):
        step = jax.jit(steps.make_train_step(model, make_tx, "binary"))
        s = state.create_state(model, optimizer(12), (32, 32, 3), 0, True)
        for _ in range(12):
            s, _ = step(s, batch, jnp.ones(2), 12)
        finals.append(jax.tree.leaves(s.params))
    for ours, theirs in zip(*finals):
        np.testing.assert_array_equal(ours, theirs)


def test_augmentation_runs_before_one_shared_step_as_it_would_inside():
    """Runs with other augmentations share one compiled train step: the augmentation is a
    program of its own with the step's key, and the weights equal those of a step that
    augments inside (bit for bit)."""
    mesh = parallel.make_mesh(1)
    config = smoke(augment="classic")
    programs = train.classifier_programs(config, "binary", 2, 2, mesh)
    plain = train.classifier_programs(smoke(), "binary", 2, 2, mesh)
    assert programs.train_step is plain.train_step and plain.augment is None
    optimizer = functools.partial(state.make_optimizer, config.optimizer)
    step = steps.make_train_step(programs.model, optimizer, "binary")
    augment = augment_registry.make_augment("classic", None)

    def inside(s, batch, weights, total):
        aug_key, _ = steps.step_keys(s.key, s.step)
        return step(s, {**batch, "image": augment(batch["image"], aug_key)}, weights, total)

    rng = np.random.default_rng(0)
    size = config.data.image_size
    batch = parallel.host_to_global(
        {
            "image": rng.uniform(-1, 1, (16, size, size, 3)).astype(np.float32),
            "label": rng.integers(0, 2, 16).astype(np.int32),
        },
        mesh,
    )
    weights = jnp.ones(2)
    fused = training.jit_step(inside, mesh, num_extra_args=2)
    a, b = programs.init(0), programs.init(0)
    for _ in range(3):
        a, _ = programs.train_step(a, train.augmented(programs.augment, batch, a), weights, 6)
        b, _ = fused(b, batch, weights, 6)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(
        programs.augment(batch["image"], a.key, a.step), np.asarray(batch["image"])
    )


def test_frozen_trunk_stays_put_while_the_head_learns():
    config = smoke()
    config.optimizer.update(warmup_steps=0, schedule="constant")
    model = build_classifier("simple_cnn", 1, widths=(8,), hidden=8, dropout_rate=0.0)
    optimizer = functools.partial(state.make_optimizer, config.optimizer)
    tx = optimizer(10)
    step = jax.jit(steps.make_train_step(model, optimizer, "binary", 1))
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.uniform(-1, 1, (8, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 2, 8).astype(np.int32),
    }
    s0 = state.create_state(model, tx, (32, 32, 3), 0, True)
    ones = jnp.ones(2)
    s1, _ = step(s0, batch, ones, 10)  # step 0: trunk frozen
    s2, _ = step(s1, batch, ones, 10)  # step 1: trunk free
    same = lambda a, b: all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )
    assert same(s0.params["trunk"], s1.params["trunk"])
    assert not same(s0.params["head"], s1.params["head"])
    assert not same(s1.params["trunk"], s2.params["trunk"])


def test_a_run_written_before_run_json_still_predicts(full_run, tmp_path):
    workdir, _ = full_run
    legacy = as_legacy_run(workdir, tmp_path / "legacy")
    run = runs.load(str(legacy), kind="classifier")
    assert (run.task, run.class_names) == ("binary", ("benign", "malignant"))
    images = np.random.default_rng(0).uniform(-1, 1, (5, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        predict.probabilities(str(legacy), images), predict.probabilities(str(workdir), images)
    )
    with pytest.raises(ValueError, match="is a classifier run; expected a gan run"):
        runs.load(str(legacy), kind="gan")


# --- the decision threshold: chosen on val, applied unchanged to test -------------------


def test_threshold_is_chosen_on_val_and_applied_unchanged_to_test(full_run):
    from medgan_jax.metrics import classification as C

    workdir, results = full_run
    metrics = json.loads((workdir / "metrics.json").read_text())
    chosen = metrics["threshold"]
    assert (chosen["rule"], chosen["target"]) == ("youden", 0.0)
    with np.load(workdir / "val_predictions.npz") as v:
        assert v["scores"].shape == (16,) and str(v["task"]) == "binary"
        expected = C.choose_threshold(v["labels"], v["scores"], "youden")
        val_sensitivity = C.sensitivity(v["labels"], v["scores"], expected)
    assert chosen["value"] == expected and "fallback" not in chosen
    assert metrics["val_summary"]["sensitivity"] == val_sensitivity
    assert metrics["test"]["threshold"] == expected
    with np.load(workdir / "test_predictions.npz") as p:
        assert p["threshold"].shape == () and float(p["threshold"]) == expected
        labels, scores, t = p["labels"], p["scores"], float(p["threshold"])
    assert metrics["test"]["sensitivity"] == C.sensitivity(labels, scores, t)
    assert metrics["test"]["specificity"] == C.specificity(labels, scores, t)
    assert metrics["test_summary"]["average_precision"] == C.average_precision(labels, scores)
    assert results["threshold"] == chosen


def test_multilabel_run_gets_one_threshold_per_label(tmp_path, capsys):
    from medgan_jax.metrics import classification as C

    config = smoke(num_epochs=1, steps_per_epoch=1)
    config.data.channels = 1
    config.data.synthetic.kind = "cxr"
    config.optimizer.update(warmup_steps=0, schedule="constant")
    config.threshold.update(rule="target_sensitivity", target=0.8)
    results = train.train_and_evaluate(config, str(tmp_path))
    assert results["task"] == "multilabel"
    printed = capsys.readouterr().out
    assert "thresholds " in printed and "(target_sensitivity 0.8 on val" in printed
    names = results["test"]["label_names"]
    with np.load(tmp_path / "val_predictions.npz") as v:
        val = {k: v[k] for k in v.files}
    try:
        expected = C.choose_threshold(
            val["labels"], val["scores"], "target_sensitivity", 0.8, val["mask"], names
        )
        assert "fallback" not in results["threshold"]
    except C.UndefinedMetricError as e:  # a label without positives in the tiny val split
        assert results["threshold"]["fallback"]["reason"] == str(e)
        expected = C.choose_threshold(
            val["labels"], val["scores"], "target_sensitivity", 0.8, val["mask"], names, 0.5
        )
    assert results["threshold"]["value"] == expected.tolist()
    with np.load(tmp_path / "test_predictions.npz") as p:
        test = {k: p[k] for k in p.files}
    assert test["threshold"].shape == (len(names),)
    np.testing.assert_array_equal(test["threshold"], expected)
    per = C.per_class_metrics(test["labels"], test["scores"], expected, test["mask"])
    for j, name in enumerate(names):
        for key in ("sensitivity", "specificity"):
            got = results["test"]["per_label"][name][key]
            assert (got is None and np.isnan(per[key][j])) or got == per[key][j]


def test_bad_threshold_config_names_the_field(tmp_path):
    config = smoke()
    config.threshold.rule = "youdens"
    with pytest.raises(
        ValueError,
        match=r"config.threshold.rule='youdens'; expected one of \['youden', "
        r"'target_sensitivity', 'target_specificity', 'fixed', '0.5'\]",
    ):
        train.train_and_evaluate(config, str(tmp_path))
    config.threshold.update(rule="target_specificity", target=95.0)
    with pytest.raises(ValueError, match=r"config.threshold.target=95.0; expected a number in"):
        train.train_and_evaluate(config, str(tmp_path))


def test_threshold_text_says_which_threshold_was_used():
    text = train.threshold_text
    assert text({"rule": "youden", "target": 0.0, "value": 0.1374}) == (
        "threshold 0.137 (youden on val)"
    )
    assert text({"rule": "fixed", "target": 0.0, "value": 0.5}) == "threshold 0.5 (fixed)"
    assert text({"rule": "youden", "target": 0.0, "value": None}) == "argmax"
    fallback = {"rule": "youden", "target": 0.0, "value": [0.2, 0.5], "fallback": {}}
    assert text(fallback) == "thresholds 0.2/0.5 (youden on val, 0.5 where undefined)"
