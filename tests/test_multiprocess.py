"""Several real JAX processes on this machine (gloo collectives, a coordinator on
127.0.0.1, 2 CPU devices each) give the run one process gives: a GAN, a classifier and
BAGAN's autoencoder stage; each process opens only its files; checkpoints move between
process counts; a killed run resumes exactly; a dead process stops the others, named."""

from __future__ import annotations

import csv
import json
import re
import shutil
import time
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from PIL import Image

from configs.bagan import get_config as bagan_config
from configs.classifier import get_config as classifier_config
from configs.data import data_config
from configs.dcgan import get_config as dcgan_config
from medgan_jax import checkpoint
from medgan_jax.classify import predict
from medgan_jax.classify import train as classifier_train
from medgan_jax.data import load_split, pipeline
from medgan_jax.gan import sample
from medgan_jax.gan import train as gan_train
from tests.processes import STRACE, launch, log_tail, run_processes

pytestmark = pytest.mark.slow


def _flags(overrides: dict) -> list[str]:
    return [f"--config.{key}={value}" for key, value in overrides.items()]


def _apply(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
    for key, value in overrides.items():
        *parents, name = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node[name] = value
    return config


def _write_folder(root: Path, num_train: int, classes: tuple[str, ...]) -> Path:
    """root/{train,test}/<class>/NNNN.png from the smoke preset's synthetic lesions."""
    cfg = data_config("smoke")
    cfg.synthetic.num_train = num_train
    for split in ("train", "test"):
        records = load_split(cfg, split)
        for i, (image, label) in enumerate(zip(records.images, records.labels)):
            name = records.class_names[label]
            if name in classes:
                (root / split / name).mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(root / split / name / f"{i:04d}.png")
    return root


def _in_one_process(train, config, overrides: dict, workdir: Path, devices: int):
    """The same run in this test process on its first `devices` devices."""
    config = _apply(config, {**overrides, "num_devices": devices})
    train(config, str(workdir))
    return workdir


def _series(workdir: Path, key: str, name: str = "metrics.jsonl") -> dict[int, float]:
    rows = [json.loads(line) for line in (workdir / name).read_text().splitlines() if line]
    return {row["step"]: row[key] for row in rows if key in row}


def _assert_same_series(ours: dict, expected: dict, steps: list[int], rtol: float = 1e-5):
    assert sorted(ours) == sorted(expected) == steps
    np.testing.assert_allclose([ours[s] for s in steps], [expected[s] for s in steps], rtol=rtol)


# --------------------------------------------------------------------------- a GAN


@pytest.fixture(scope="module")
def gan_runs(tmp_path_factory):
    """The DCGAN smoke run on a folder of 380 malignant lesions, unshuffled (so each
    global batch's files are known): 2 processes x 2 devices (each under strace), and
    in this process on 4 devices and on 1."""
    root = tmp_path_factory.mktemp("multiprocess_gan")
    folder = _write_folder(root / "lesions", 800, ("malignant",))
    overrides = {"data.source": "folder", "data.folder.root": str(folder)}
    overrides.update({"data.shuffle": False, "data.folder.val_fraction": 0.0})
    two = root / "two"
    command = ["train_gan.py", "--config=configs/dcgan.py:smoke", f"--workdir={two}"]
    run_processes(2, command + _flags(overrides), root / "logs", trace=STRACE is not None)
    runs = {"2x2": two, "logs": root / "logs", "folder": folder}
    for devices in (4, 1):
        workdir = root / f"one_x{devices}"
        runs[f"1x{devices}"] = workdir
        _in_one_process(gan_train.train, dcgan_config("smoke"), overrides, workdir, devices)
    return runs


def test_two_processes_give_the_gan_losses_of_one_process_on_four_and_on_one_device(gan_runs):
    for key in ("d_loss", "g_loss"):
        ours = _series(gan_runs["2x2"], key)
        for reference in ("1x4", "1x1"):
            _assert_same_series(ours, _series(gan_runs[reference], key), [2, 4, 6])


@pytest.mark.skipif(STRACE is None, reason="counts file opens with strace")
def test_each_process_opens_only_its_half_of_every_global_batch(gan_runs):
    """Unshuffled, global batch s holds rows 16s..16s+15 of the run's manifest; process
    k's half is rows 16s + 8k .. 16s + 8k + 7. Read-ahead may open later batches' rows,
    never the other process's."""
    folder = gan_runs["folder"]
    with open(gan_runs["2x2"] / "manifest_gan_train.csv") as f:
        rows = [str(folder / row["id"]) for row in csv.DictReader(f)]
    opened = [_opened_images(gan_runs["logs"] / f"opens_{k}", folder) for k in (0, 1)]
    trained = [{rows[p] for p in range(6 * 16) if (p % 16) // 8 == k} for k in (0, 1)]
    read_ahead = [{rows[p] for p in range(len(rows)) if (p % 16) // 8 == k} for k in (0, 1)]
    for k in (0, 1):
        print(f"process {k} opened {len(opened[k])} training images, trained on 48 of them")
        assert trained[k] <= opened[k] <= read_ahead[k]
    assert not opened[0] & opened[1]
    assert len(opened[0] | opened[1]) < len(rows)  # the 6 steps did not wrap an epoch


def _opened_images(trace: Path, folder: Path) -> set[str]:
    opens = re.findall(r'openat\(AT_FDCWD, "([^"]+\.png)"', trace.read_text())
    return {path for path in opens if path.startswith(str(folder / "train"))}


def test_a_checkpoint_written_by_two_processes_samples_in_one(gan_runs, tmp_path):
    two, one = gan_runs["2x2"], gan_runs["1x4"]
    assert checkpoint.manager(str(two), 1, None).latest_step() == 6
    ours = sample.generate_images(str(two), 10, str(tmp_path / "two"), seed=2, batch_size=4)
    expected = sample.generate_images(str(one), 10, str(tmp_path / "one"), seed=2, batch_size=4)
    assert ours["files"] == expected["files"]
    for name in ours["files"]:
        a, b = (np.asarray(Image.open(tmp_path / d / name), np.int16) for d in ("two", "one"))
        assert np.abs(a - b).max() <= 1  # float tolerance, rounded to 8 bits


def test_a_checkpoint_written_by_one_process_samples_in_two(gan_runs, tmp_path):
    """Each process writes its share of the batches; together the images of one process."""
    one = gan_runs["1x1"]
    command = ["-m", "medgan_jax.gan.sample", f"--workdir={one}", "--num=10", "--seed=2"]
    run_processes(2, command + ["--batch_size=4", f"--out={tmp_path / 'two'}"], tmp_path / "logs")
    expected = sample.generate_images(str(one), 10, str(tmp_path / "one"), seed=2, batch_size=4)
    ours = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert ours == expected and len(ours["files"]) == 10
    for name in ours["files"]:
        a, b = (np.asarray(Image.open(tmp_path / d / name), np.int16) for d in ("two", "one"))
        assert np.abs(a - b).max() <= 1
    written = [log_tail(tmp_path / "logs" / f"process_{k}.log") for k in (0, 1)]
    assert all("Wrote 10 images from step 6" in text for text in written)


# ------------------------------------------------------- a classifier, an autoencoder


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    """The smoke preset's 64 training and 32 test lesions as a folder of PNGs."""
    root = tmp_path_factory.mktemp("multiprocess_folder")
    return _write_folder(root, 64, ("benign", "malignant"))


def _folder(folder: Path) -> dict:
    return {"data.source": "folder", "data.folder.root": str(folder)}


def test_two_processes_train_and_evaluate_the_classifier_of_one(small_folder, tmp_path):
    overrides = _folder(small_folder)
    command = ["train_classifier.py", "--config=configs/classifier.py:smoke"]
    two = tmp_path / "two"
    run_processes(2, command + [f"--workdir={two}", *_flags(overrides)], tmp_path / "logs")
    for devices in (4, 1):
        one = tmp_path / f"one_x{devices}"
        _in_one_process(
            classifier_train.train_and_evaluate, classifier_config("smoke"), overrides, one, devices
        )
        steps = sorted(_series(one, "train/loss"))
        assert steps[-1] == json.loads((one / "metrics.json").read_text())["steps"]
        _assert_same_series(_series(two, "train/loss"), _series(one, "train/loss"), steps)
        epochs = sorted(_series(one, "val/roc_auc"))
        _assert_same_series(_series(two, "val/roc_auc"), _series(one, "val/roc_auc"), epochs)
        ours, expected = (json.loads((run / "metrics.json").read_text()) for run in (two, one))
        for key in ("roc_auc", "average_precision", "accuracy", "sensitivity", "specificity"):
            assert ours["test"][key] == pytest.approx(expected["test"][key], rel=1e-5), key
        assert ours["test"]["n_samples"] == expected["test"]["n_samples"] == 32
    # The 2-process run's best checkpoint evaluates in this one process to its test scores.
    data = _apply(classifier_config("smoke"), overrides).data
    images = pipeline.decode_all(load_split(data, "test"), data)
    malignant = predict.probabilities(str(two), images)[:, 1]
    saved = np.load(two / "test_predictions.npz")["scores"]
    np.testing.assert_allclose(malignant, saved, rtol=1e-5, atol=1e-7)
    # ... and the 1-process run's, restored by 2 processes, evaluates to its test scores.
    restored = tmp_path / "one_x1_in_two"
    shutil.copytree(tmp_path / "one_x1", restored)
    for name in ("metrics.json", "val_predictions.npz", "test_predictions.npz"):
        (restored / name).unlink()
    logged = (restored / "metrics.jsonl").read_text()
    run_processes(2, command + [f"--workdir={restored}", *_flags(overrides)], tmp_path / "logs")
    assert (restored / "metrics.jsonl").read_text() == logged  # restored, not trained again
    for name in ("test_predictions.npz", "val_predictions.npz"):
        ours, expected = (np.load(run / name)["scores"] for run in (restored, tmp_path / "one_x1"))
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)


def test_two_processes_train_the_autoencoder_stage_of_one(small_folder, tmp_path):
    """BAGAN's supervised autoencoder (its first stage; num_steps=0 stops before the GAN)."""
    overrides = {**_folder(small_folder), "num_steps": 0}
    command = ["train_gan.py", "--config=configs/bagan.py:smoke", f"--workdir={tmp_path / 'two'}"]
    run_processes(2, command + _flags(overrides), tmp_path / "logs")
    ours = _series(tmp_path / "two", "reconstruction_mae", "autoencoder/metrics.jsonl")
    for devices in (4, 1):
        one = _in_one_process(
            gan_train.train, bagan_config("smoke"), overrides, tmp_path / f"one_x{devices}", devices
        )
        expected = _series(one, "reconstruction_mae", "autoencoder/metrics.jsonl")
        _assert_same_series(ours, expected, [2, 4])


# ----------------------------------------------------------------- killed processes


def test_a_killed_process_stops_the_other_naming_it_and_the_run_resumes_exactly(tmp_path):
    """Process 1 is killed mid-run: process 0 stops within a minute naming it. Restarted
    on 2 processes, the run continues from its last checkpoint with the losses of an
    uninterrupted run."""
    workdir = tmp_path / "run"
    overrides = {"num_steps": 100_000, "log_every": 1, "checkpoint_every": 2}
    command = ["train_gan.py", "--config=configs/dcgan.py:smoke", f"--workdir={workdir}"]
    # 10 s: a shorter timeout can fire while a loaded machine starves the processes.
    procs = launch(2, command + _flags(overrides), tmp_path, MEDGAN_JAX_HEARTBEAT_TIMEOUT="10")
    log = tmp_path / "process_0.log"
    deadline = time.monotonic() + 300
    while "step 5/" not in log.read_text():  # both are training, a checkpoint is written
        running = time.monotonic() < deadline and procs[0].poll() is None
        assert running, log_tail(log)
        time.sleep(0.2)
    procs[1].kill()
    killed = time.monotonic()
    code = procs[0].wait(timeout=120)
    stopped_after = time.monotonic() - killed
    assert code != 0 and stopped_after < 60
    text = log.read_text()
    assert "Task 1 heartbeat timeout" in text or "stopped sending heartbeats" in text, text[-3000:]

    saved = checkpoint.manager(str(workdir), 1, None).latest_step()
    assert saved is not None and saved >= 2
    end = {**overrides, "num_steps": saved + 3}
    run_processes(2, command + _flags(end), tmp_path / "restart")
    reference = _in_one_process(gan_train.train, dcgan_config("smoke"), end, tmp_path / "one", 4)
    steps = list(range(1, saved + 4))
    for key in ("d_loss", "g_loss"):
        # The killed run may have logged a few steps past saved + 3 before it stopped.
        ours = {step: loss for step, loss in _series(workdir, key).items() if step in steps}
        _assert_same_series(ours, _series(reference, key), steps)
