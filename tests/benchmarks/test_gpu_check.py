"""benchmarks/gpu_check.py keeps working (without TensorFlow) and its PyTorch nets match ours."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from medgan_jax.models.classifiers import build_classifier

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_run_without_tensorflow(tmp_path):
    """The CPU smoke run of the check (a bf16 classifier row, a bf16 PGGAN sampling row and
    MS-SSIM, each with its PyTorch side) in a process where `import tensorflow` fails."""
    pytest.importorskip("torch")
    cache = os.path.join(tempfile.gettempdir(), "medgan_jax_test_xla_cache")
    argv = ["--quick", "--only", "resnet50,sample_pggan,ms_ssim", "--steps", "1"]
    argv += ["--out", str(tmp_path), "--cache-dir", cache, "--budget-s", "120"]
    code = (
        "import sys, runpy; sys.modules['tensorflow'] = None; "  # poisons the import
        f"sys.argv = ['gpu_check.py', *{argv!r}]; "
        f"runpy.run_path({str(ROOT / 'benchmarks' / 'gpu_check.py')!r}, run_name='__main__')"
    )
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["finished"] and not result["tensorflow_imported"]
    rows = {row["name"]: row for row in result["rows"]}
    assert set(rows) == {
        "resnet50(simple_cnn) bfloat16",
        "sample_pggan bfloat16",
        "ms_ssim float32",
    }
    for row in rows.values():
        assert not any(key.endswith("_error") for key in row), row
        assert row["jax_items_per_s"] > 0 and row["jax_flops"] > 0
        assert row["peak"].startswith("bf16" if row["precision"] == "bfloat16" else "tf32")
    clf = rows["resnet50(simple_cnn) bfloat16"]
    assert clf["jax_params"] == clf["torch_params"]  # the same network on both sides
    assert clf["jax_param_dtypes"] == ["float32"]  # mixed precision keeps float32 weights
    assert clf["ratio"] == pytest.approx(clf["jax_items_per_s"] / clf["torch_items_per_s"])
    assert "ms_ssim float32" in proc.stdout and "ratio" in proc.stdout  # the table


@pytest.mark.parametrize("name", ["resnet50", "densenet121"])
def test_torch_networks_have_our_parameter_count(name):
    pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT))
    from benchmarks import torch_nets

    torch_net = {"resnet50": torch_nets.resnet50, "densenet121": torch_nets.densenet121}[name](3)
    model = build_classifier(name, 1)
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))))
    ours = sum(leaf.size for leaf in jax.tree.leaves(shapes["params"]))
    assert torch_nets.num_params(torch_net) == ours
