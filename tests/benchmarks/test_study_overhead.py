"""benchmarks/study_overhead.py keeps running: its table on the smoke study's cells."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_cells_give_every_run_kind_its_wall_and_compute(tmp_path):
    out = tmp_path / "study_overhead.json"
    argv = ["--preset", "smoke", "--sizes", "8", "--seeds", "0,1"]
    argv += ["--methods", "base,weighted,dcgan_transfer", "--seeds-together", "2"]
    argv += ["--stream-batches", "20"]
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    script = str(ROOT / "benchmarks" / "study_overhead.py")
    proc = subprocess.run(
        [sys.executable, script, *argv, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    *runs, total = result["runs"]
    names = [run["run"] for run in runs]
    for seed in (0, 1):  # every method's classifier, the GAN with its sampling
        for method in ("base", "weighted", "dcgan_transfer"):
            assert f"8/{seed}/{method}" in names
        assert f"8/{seed}/gan=dcgan_transfer + 8 sampled" in names
    assert sum(name.startswith("pretrain/gan=dcgan_transfer") for name in names) == 2
    for run in runs + [total]:
        assert run["compute"] > 0 and run["wall"] > 0, run
        assert run["ratio"] == pytest.approx(run["wall"] / run["compute"])
        per_run = (run["wall"] - run["compile"] - run["setup"]) / run["compute"]
        assert run["ratio_per_run"] == pytest.approx(per_run)
    for key in ("wall", "compile", "setup", "compute"):
        assert total[key] == pytest.approx(sum(run[key] for run in runs))
    # the process's first classifier renders the embedded val/test splits and holds them on
    # device; the next seed's reuses them
    first, later = (next(r for r in runs if r["run"] == f"8/{s}/base") for s in (0, 1))
    assert first["setup"] > 0 and later["setup"] < first["setup"]
    for kind in ("classifier", "gan"):
        probe = result["seeds_together"][kind]
        assert probe["ratio"] == pytest.approx(probe["one_at_a_time"] / probe["vmapped"])
    stream = result["training_stream"]
    assert stream["ratio"] == pytest.approx(stream["per_image_ms"] / stream["gathered_ms"])
    assert "wall/compute" in proc.stdout and "per run" in proc.stdout
    assert "vmapped is" in proc.stdout
    assert "gathered is" in proc.stdout
