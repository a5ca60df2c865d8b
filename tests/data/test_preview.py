"""The data-preview job (the current main job) runs end to end on the smoke preset."""

from __future__ import annotations

from PIL import Image

from configs.data import get_config
from medgan_jax.data.preview import preview


def test_preview_prints_batches_and_writes_grid_and_manifest(tmp_path, capsys):
    config = get_config("smoke")
    config.batch_size = 16
    config.num_batches = 2
    preview(config, str(tmp_path))
    out = capsys.readouterr().out
    assert "train: 64 images (benign=" in out
    assert "image      (16, 32, 32, 3)" in out and "over 8 device(s)" in out
    grid = Image.open(tmp_path / "samples_train.png")
    assert grid.size[0] > 8 * 32 and grid.mode == "RGB"
    lines = (tmp_path / "manifest_train.csv").read_text().splitlines()
    assert lines[0] == "id,label,patient_id" and len(lines) == 65
