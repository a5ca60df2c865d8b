"""The augmentation study on the smoke preset: report, resume, extension, failure."""

from __future__ import annotations

import copy
import json
import os
import re

import numpy as np
import pytest

from configs.study import get_config
from medgan_jax import training
from medgan_jax.classify import train as classify_train
from medgan_jax.data import load_split
from medgan_jax.study import grid, runner
from tests.processes import run_processes


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    config = get_config("smoke")
    return config, root, runner.main(config, str(root))


def test_study_writes_tables_tests_quality_and_plots(study):
    config, root, results = study
    assert not results["failed_cells"]
    assert (len(config.sizes), len(config.methods), len(config.seeds)) == (2, 2, 2)
    for metric in config.metrics:
        for name in config.methods:
            for size in ("8", "all"):
                cell = results["table"][metric][name][size]
                assert cell["n"] == 2 and np.isfinite([cell["mean"], cell["std"]]).all()
    assert results["table"]["roc_auc"]["dcgan"]["8"]["delta_vs_base"]["n"] == 2
    assert "p_value" in results["delong"]["dcgan"]["8"][0]
    quality = results["gan_quality"]["dcgan"]["8"]
    assert quality["fid"]["n"] == 2 and quality["copies"]["mean"] == 0
    report = (root / "report.md").read_text()
    assert "| method | 8 | all |" in report and "| base |" in report
    assert "| dcgan − base |" in report and "## Verdicts" in report and "DeLong p" in report
    # Each GAN's samples above real minority images, per size, linked from the report.
    shown = quality["samples"]
    assert shown["seed"] == config.seeds[0] and (root / shown["path"]).stat().st_size > 0
    assert f"![dcgan at 8]({shown['path']})" in report
    for metric in config.metrics:
        assert (root / f"plot_{metric}.png").stat().st_size > 0
    saved = json.loads((root / "results.json").read_text())
    assert saved["sizes"] == ["8", "all"]
    # The GAN trained on exactly the cell's real subset: its manifest is the cell's.
    for size in config.sizes:
        for seed in config.seeds:
            cell = root / f"size={size}" / f"seed={seed}"
            gan_manifest = (cell / "gan=dcgan" / "manifest_train.csv").read_text()
            assert gan_manifest == (cell / "manifest_train.csv").read_text()


@pytest.mark.slow
def test_two_processes_run_the_study_of_one(study, tmp_path):
    """The smoke study on 2 processes x 2 devices: every table, test and GAN-quality number
    of the one-process run (8 devices) to float tolerance."""
    config, _, results = study
    two = tmp_path / "two"
    command = ["evaluate.py", "--config=configs/study.py:smoke", f"--workdir={two}"]
    run_processes(2, command, tmp_path / "logs")
    ours = json.loads((two / "results.json").read_text())
    assert ours["failed_cells"] == results["failed_cells"] == {}
    _assert_same_numbers(ours, json.loads(json.dumps(results)), "results")


def _assert_same_numbers(ours, expected, where: str) -> None:
    """Equal structure and text, numbers to float tolerance (timings and versions aside)."""
    if isinstance(expected, dict):
        keys = set(expected) - {"wall_seconds", "environment"}
        assert keys <= set(ours), (where, keys - set(ours))
        for key in keys:
            _assert_same_numbers(ours[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, list):
        assert len(ours) == len(expected), where
        for i, (a, b) in enumerate(zip(ours, expected)):
            _assert_same_numbers(a, b, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert ours == pytest.approx(expected, rel=1e-4, abs=1e-5, nan_ok=True), where
    else:
        assert ours == expected, where


def test_gans_never_see_validation_or_test_images(study):
    config, root, _ = study
    held_out = {i for split in ("val", "test") for i in load_split(config.data, split).ids}
    for manifest in root.glob("size=*/seed=*/gan=*/manifest_train.csv"):
        ids = {line.split(",")[0] for line in manifest.read_text().splitlines()[1:]}
        assert ids and not ids & held_out, manifest


def test_same_preset_and_seed_give_the_same_table_bit_for_bit(tmp_path):
    config = get_config("smoke")
    config.sizes, config.seeds = ("8",), (0,)
    config.gan_eval.enabled = False
    first = runner.main(config, str(tmp_path / "first"))
    second = runner.main(config, str(tmp_path / "second"))
    assert first["table"] == second["table"] and first["delong"] == second["delong"]
    for name in config.methods:
        cell = f"size=8/seed=0/method={name}/test_predictions.npz"
        a, b = np.load(tmp_path / "first" / cell), np.load(tmp_path / "second" / cell)
        np.testing.assert_array_equal(a["scores"], b["scores"])


def test_a_seed_gets_the_same_numbers_alone_as_beside_other_seeds(tmp_path):
    config = get_config("smoke")
    config.sizes, config.seeds = ("8",), (0, 1)
    config.gan_eval.enabled = False
    runner.main(config, str(tmp_path / "together"))
    training.built_once.clear()  # as a fresh process: nothing compiled, nothing held
    classify_train.RESIDENT_SPLITS.clear()
    config.seeds = (1,)
    runner.main(config, str(tmp_path / "alone"))
    for name in config.methods:
        cell = f"size=8/seed=1/method={name}/test_predictions.npz"
        a, b = np.load(tmp_path / "together" / cell), np.load(tmp_path / "alone" / cell)
        np.testing.assert_array_equal(a["scores"], b["scores"])


def test_worker_processes_give_the_same_numbers_as_one_process(tmp_path):
    """config.workers = 2: each cell a task for two spawned processes (the demo's setting
    on CPUs); every prediction and the GANs' quality equal the in-process run's. Both
    sizes of the seed need the same pretraining run at once: one trains it, the other
    waits for it (the run's lock) and fine-tunes from it."""
    config = get_config("smoke")
    config.sizes, config.seeds = ("4", "6"), (0,)
    config.size_unit, config.data.subset.class_counts = "minority", "benign=24"
    config.methods = ("base", "dcgan_transfer")
    in_process = runner.main(config, str(tmp_path / "one"))
    config.workers = 2
    runner.run_study(config, str(tmp_path / "two"), runner.StudyLog())
    # The GANs' quality is measured by the workers as their groups finish ...
    measured = (tmp_path / "two").glob("size=*/seed=0/gan=dcgan_transfer/quality/quality.json")
    assert len(list(measured)) == 2
    in_workers = runner.main(config, str(tmp_path / "two"))  # ... and main() reads it
    assert in_workers["table"] == in_process["table"]
    without_grids = lambda quality: {  # noqa: E731
        size: {k: v for k, v in stats.items() if k != "samples"}
        for size, stats in quality["dcgan_transfer"].items()
    }
    assert without_grids(in_workers["gan_quality"]) == without_grids(in_process["gan_quality"])
    assert in_workers["gan_quality"]["dcgan_transfer"]["4"]["fid"]["n"] == 1
    assert len(list((tmp_path / "two" / "pretrain").glob("gan=*/checkpoints"))) == 1
    for size in config.sizes:
        for name in config.methods:
            cell = f"size={size}/seed=0/method={name}/test_predictions.npz"
            a, b = np.load(tmp_path / "one" / cell), np.load(tmp_path / "two" / cell)
            np.testing.assert_array_equal(a["scores"], b["scores"])


def test_cells_sharing_a_gan_in_two_worker_processes_train_it_once(tmp_path, capfd):
    """`dcgan` and `dcgan+classic` need their group's DCGAN, and the two worker processes
    start them together: one trains it (under the GAN run's lock), the other waits and
    mixes in its images."""
    config = get_config("smoke")
    config.sizes, config.seeds, config.workers = ("4",), (0, 1), 2
    config.size_unit, config.data.subset.class_counts = "minority", "benign=24"
    config.methods, config.gan_eval.enabled = ("dcgan", "dcgan+classic"), False
    cells = runner.run_study(config, str(tmp_path), runner.StudyLog())
    trained = re.findall(r"training GAN \S+/gan=dcgan\n", capfd.readouterr().out)
    assert len(trained) == len(config.seeds)
    assert len(cells) == 4 and all("error" not in cell for cell in cells.values())
    assert len({cell["synthetic_images"] for cell in cells.values()} - {0}) == 1


def test_workers_are_counted_by_cells_not_by_groups(monkeypatch):
    """Each cell is a worker's task, so one (size, seed) group of several methods still
    spreads over the cores; never more workers than cells, one for a single cell."""
    config = get_config("smoke")
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 8)
    config.workers = 0  # one per core, at most 4
    assert runner.workers_for(config, 3) == 3
    assert runner.workers_for(config, 9) == 4
    assert runner.workers_for(config, 1) == 1
    config.workers = 2
    assert runner.workers_for(config, 1 * len(config.methods)) == 2


def test_rerun_skips_done_cells_and_adding_a_method_runs_only_it(study):
    config, root, _ = study
    done = root / "size=8" / "seed=0" / "method=base" / "metrics.json"
    stamp = os.path.getmtime(done)
    extended = copy.deepcopy(config)
    extended.methods = (*config.methods, "photometric")
    results = runner.main(extended, str(root))
    assert os.path.getmtime(done) == stamp
    assert results["table"]["accuracy"]["photometric"]["all"]["n"] == len(config.seeds)


def test_a_failing_cell_is_reported_and_the_rest_continue(study, tmp_path):
    config, _, _ = study
    broken = copy.deepcopy(config)
    broken.sizes, broken.seeds = ("8",), (0,)
    broken.methods = ("base", "pggan")
    broken.gans.pggan = copy.deepcopy(config.gans.dcgan)
    broken.gans.pggan.gan.family = "no-such-gan"
    broken.gan_eval.enabled = False
    results = runner.main(broken, str(tmp_path))
    assert "no-such-gan" in results["failed_cells"]["size=8/seed=0/method=pggan"]
    assert results["table"]["accuracy"]["base"]["8"]["n"] == 1
    assert "## Failed cells" in (tmp_path / "report.md").read_text()


def test_sizes_are_parsed_or_rejected():
    assert grid.size_subset("100", 3) == dict(per_class=100, fraction=1.0, seed=3)
    assert grid.size_subset("25%", 0)["fraction"] == 0.25
    with pytest.raises(ValueError, match="config.sizes item 'lots'"):
        grid.size_subset("lots", 0)
    with pytest.raises(ValueError, match="size_unit='minority'"):
        grid.size_subset("10%", 0, "minority", "malignant")
    with pytest.raises(ValueError, match="config.size_unit='rows'"):
        grid.size_subset("10", 0, "rows")


def test_minority_sizes_shrink_only_the_rare_class(tmp_path):
    config = get_config("demo")
    assert config.data.image_size == 32 and config.size_unit == "minority"
    # The demo compares the generator with the rebalancing controls and the real ceiling.
    assert config.methods == (
        "base",
        "oversample",
        "weighted",
        "classic",
        "dcgan",
        "dcgan_transfer",
        "real_topup",
    )
    assert len(config.seeds) == 3 and config.sizes == ("10", "50", "200")
    path = runner.write_subset_manifest(config, "10", 1, str(tmp_path))
    counts = {}
    for line in open(path).read().splitlines()[1:]:
        label = line.split(",")[1]
        counts[label] = counts.get(label, 0) + 1
    assert counts == {"benign": 400, "malignant": 10}


@pytest.mark.parametrize("preset", ["synthetic_lesions_full", "synthetic_cxr_rare", "chexpert"])
def test_gpu_presets_name_known_methods_and_metrics(preset):
    config = get_config(preset)
    for name in config.methods:
        assert not grid.method(name).gan or grid.method(name).gan in config.gans
    assert config.metrics


@pytest.mark.slow
def test_a_pggan_cell_trains_its_gan_on_the_cell_subset(tmp_path):
    config = get_config("smoke")
    config.sizes, config.seeds = ("8",), (0,)
    config.methods = ("base", "pggan")
    config.gan_eval.enabled = False
    config.gans.pggan.data.image_size = 16  # the smoke PGGAN grows 4 -> 16
    config.data.image_size = 16
    results = runner.main(config, str(tmp_path))
    assert not results["failed_cells"]
    assert results["table"]["accuracy"]["pggan"]["8"]["n"] == 1
    generated = json.loads(
        (tmp_path / "size=8/seed=0/gan=pggan/generated/manifest.json").read_text()
    )
    assert generated["num"] == 8  # 50% of the 16 real images


@pytest.mark.slow
def test_a_bagan_cell_trains_on_every_class_and_samples_the_minority(tmp_path):
    config = get_config("smoke")
    config.sizes, config.seeds = ("8",), (0,)
    config.methods = ("base", "bagan")
    config.gan_eval.enabled = False
    results = runner.main(config, str(tmp_path))
    assert not results["failed_cells"]
    cell = tmp_path / "size=8/seed=0"
    assert (cell / "gan=bagan/manifest_train.csv").read_text() == (
        cell / "manifest_train.csv"
    ).read_text()  # both classes, exactly the cell's images
    generated = json.loads((cell / "gan=bagan/generated/manifest.json").read_text())
    assert generated["class_name"] == "malignant" and generated["num"] == 8


@pytest.mark.slow
def test_a_diffusion_cell_trains_samples_and_is_scored_like_the_gans(tmp_path):
    config = get_config("smoke")
    config.sizes, config.seeds = ("8",), (0,)
    config.methods = ("base", "diffusion", "diffusion+classic")
    results = runner.main(config, str(tmp_path))
    assert not results["failed_cells"]
    assert results["table"]["roc_auc"]["diffusion+classic"]["8"]["n"] == 1
    quality = results["gan_quality"]["diffusion"]["8"]
    assert quality["fid"]["n"] == 1 and quality["copies"]["mean"] == 0
    cell = tmp_path / "size=8/seed=0"
    generated = json.loads((cell / "gan=diffusion/generated/manifest.json").read_text())
    assert generated["num"] == 8 and generated["sample_steps"] == 3
    assert (cell / "gan=diffusion/manifest_train.csv").exists()
    assert "| diffusion − base |" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
def test_the_rare_label_study_runs_on_tiny_chest_xrays(tmp_path):
    config = get_config("synthetic_cxr_rare")
    config.data.synthetic.update(num_train=160, num_val=40, num_test=80, size=64)
    config.data.image_size = 16
    config.sizes, config.seeds, config.methods = ("50%",), (0,), ("base", "pggan")
    config.classifier.update(num_epochs=1, steps_per_epoch=2, min_train_steps=0)
    pggan = get_config("smoke").gans.pggan  # the tiny 4 -> 16 PGGAN
    pggan.gan.update(conditional="acgan", classes=())
    config.gans.pggan = pggan
    config.gan_eval.enabled = False
    results = runner.main(config, str(tmp_path))
    assert not results["failed_cells"], results["failed_cells"]
    generated = json.loads(
        (tmp_path / "size=50%/seed=0/gan=pggan/generated/manifest.json").read_text()
    )
    assert generated["class_name"] == "Lung Lesion"
    for metric in config.metrics:  # a rare label may lack positives in this tiny test set
        assert results["table"][metric]["pggan"]["50%"]["n"] in (0, 1)
    macro = results["table"]["roc_auc"]["pggan"]["50%"]
    assert macro["n"] == 1 and np.isfinite(macro["mean"])
