"""The run-directory contract: one schema written by every job, read by every reader."""

from __future__ import annotations

import json

import ml_collections
import pytest

from medgan_jax import runs


def test_write_then_load_round_trips(tmp_path):
    config = ml_collections.ConfigDict(dict(seed=3, gan=dict(family="dcgan", conditional="")))
    runs.write(str(tmp_path), "gan", config, ("benign", "malignant"), family="dcgan")
    run = runs.load(str(tmp_path), kind="gan")
    assert run.class_names == ("benign", "malignant") and run.config.seed == 3
    assert (run.family, run.conditional, run.task) == ("dcgan", False, "")
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["schema"] == runs.SCHEMA and "jax" in meta["versions"]


def test_errors_name_the_run_and_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a medgan_jax run directory"):
        runs.load(str(tmp_path))
    config = ml_collections.ConfigDict(dict(seed=0))
    runs.write(str(tmp_path), "classifier", config, ("a", "b"), task="binary")
    meta = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**meta, "schema": runs.SCHEMA + 1}))
    with pytest.raises(ValueError, match="Update medgan_jax"):
        runs.load(str(tmp_path))
    with pytest.raises(ValueError, match="Run kind 'study'"):
        runs.write(str(tmp_path), "study", config, ())


def test_legacy_bagan_runs_are_conditional(tmp_path):
    config = ml_collections.ConfigDict(dict(gan=dict(family="bagan", conditional="")))
    (tmp_path / "config.json").write_text(config.to_json_best_effort())
    (tmp_path / "classes.json").write_text(json.dumps(["benign", "malignant"]))
    run = runs.load(str(tmp_path))
    assert (run.kind, run.family, run.conditional) == ("gan", "bagan", True)
