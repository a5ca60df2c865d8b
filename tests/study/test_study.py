"""The augmentation study on the smoke preset: report, resume, extension, failure."""

from __future__ import annotations

import copy
import json
import os

import pytest

from configs.study import get_config
from medgan_jax.study import runner


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    config = get_config("smoke")
    return config, root, runner.main(config, str(root))


def test_study_writes_tables_tests_quality_and_plots(study):
    config, root, results = study
    assert not results["failed_cells"]
    table = results["table"]["roc_auc"]
    for name in config.methods:
        for size in ("8", "all"):
            assert table[name][size]["n"] == 1
    assert table["dcgan"]["8"]["delta_vs_base"]["n"] == 1
    assert "p_value" in results["delong"]["dcgan"]["8"][0]
    quality = results["gan_quality"]["dcgan"]["8"]
    assert quality["fid"]["n"] == 1 and quality["copies"]["mean"] == 0
    report = (root / "report.md").read_text()
    assert "| dcgan − base |" in report and "## Verdicts" in report and "DeLong p" in report
    for metric in config.metrics:
        assert (root / f"plot_{metric}.png").stat().st_size > 0
    saved = json.loads((root / "results.json").read_text())
    assert saved["sizes"] == ["8", "all"]
    # The GAN trained on exactly the cell's real subset: its manifest is the cell's.
    cell = root / "size=8" / "seed=0"
    gan_manifest = (cell / "gan=dcgan" / "manifest_train.csv").read_text()
    assert gan_manifest == (cell / "manifest_train.csv").read_text()


def test_rerun_skips_done_cells_and_adding_a_method_runs_only_it(study):
    config, root, _ = study
    done = root / "size=8" / "seed=0" / "method=base" / "metrics.json"
    stamp = os.path.getmtime(done)
    extended = copy.deepcopy(config)
    extended.methods = (*config.methods, "photometric")
    results = runner.main(extended, str(root))
    assert os.path.getmtime(done) == stamp
    assert results["table"]["accuracy"]["photometric"]["all"]["n"] == 1


def test_a_failing_cell_is_reported_and_the_rest_continue(study, tmp_path):
    config, _, _ = study
    broken = copy.deepcopy(config)
    broken.sizes = ("8",)
    broken.methods = ("base", "pggan")
    broken.gans.pggan = copy.deepcopy(config.gans.dcgan)
    broken.gans.pggan.gan.family = "no-such-gan"
    broken.gan_eval.enabled = False
    results = runner.main(broken, str(tmp_path))
    assert "no-such-gan" in results["failed_cells"]["size=8/seed=0/method=pggan"]
    assert results["table"]["accuracy"]["base"]["8"]["n"] == 1
    assert "## Failed cells" in (tmp_path / "report.md").read_text()


def test_sizes_are_parsed_or_rejected():
    assert runner.size_subset("100", 3) == dict(per_class=100, fraction=1.0, seed=3)
    assert runner.size_subset("25%", 0)["fraction"] == 0.25
    with pytest.raises(ValueError, match="config.sizes item 'lots'"):
        runner.size_subset("lots", 0)


@pytest.mark.slow
def test_a_pggan_cell_trains_its_gan_on_the_cell_subset(tmp_path):
    config = get_config("smoke")
    config.sizes = ("8",)
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
