"""Importing the package changes no process-wide setting; app.configure() does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PROBE = """
import json, os, sys
import jax
def snapshot():
    return {"XLA_FLAGS": os.environ.get("XLA_FLAGS"),
            "config": {k: str(v) for k, v in jax.config.values.items()}}
before = snapshot()
import medgan_jax.metrics.fid
after_import = snapshot()
from medgan_jax import app
app.configure(compilation_cache="", distributed=False)
after_configure = snapshot()
print(json.dumps([before, after_import, after_configure]))
"""


def test_importing_changes_nothing_and_configure_applies_the_settings():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    before, after_import, after_configure = json.loads(result.stdout.strip().splitlines()[-1])
    assert after_import == before
    assert "xla_cpu_experimental_ynn_fusion_type" in after_configure["XLA_FLAGS"]
    assert after_configure["config"]["jax_threefry_partitionable"] == "False"
    assert before["config"]["jax_threefry_partitionable"] != "False"
