"""Mesh, shardings and host -> global batches on 8 simulated CPU devices."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from medgan_jax import app, parallel


def test_mesh_and_shardings():
    mesh = parallel.make_mesh()
    assert mesh.axis_names == ("data",) and mesh.devices.size == 8
    assert parallel.make_mesh(2).devices.size == 2
    with pytest.raises(ValueError, match="num_devices=9 but this run sees 8"):
        parallel.make_mesh(9)
    params = jax.device_put(np.ones(3), parallel.replicated(mesh))
    assert all(s.data.shape == (3,) for s in params.addressable_shards)


def test_batch_size_must_divide_over_devices():
    mesh = parallel.make_mesh()
    assert parallel.check_batch_size(64, mesh) == 64  # one process holds it all
    with pytest.raises(ValueError, match=r"config.eval_batch_size=20 must be a positive multiple"):
        parallel.check_batch_size(20, mesh, field="eval_batch_size")


def test_device_batches_keep_order_and_shard():
    mesh = parallel.make_mesh()
    host = ({"x": np.full((16, 2), i, np.float32)} for i in range(5))
    out = list(parallel.device_batches(host, mesh, prefetch=2))
    assert [float(b["x"][0, 0]) for b in out] == [0, 1, 2, 3, 4]
    assert out[0]["x"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert [s.data.shape for s in out[0]["x"].addressable_shards] == [(2, 2)] * 8


def test_single_process_needs_no_distributed_start(monkeypatch):
    for key in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(key, raising=False)
    called = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: called.append(kw))
    app.initialize_distributed()
    assert not called
    app.initialize_distributed("10.0.0.1:1234")
    assert called == [{"coordinator_address": "10.0.0.1:1234"}]


def test_a_one_task_slurm_job_is_one_process(monkeypatch):
    for key in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(key, raising=False)
    called = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: called.append(kw))
    monkeypatch.setenv("SLURM_NTASKS", "1")
    app.initialize_distributed()
    assert not called
    monkeypatch.setenv("SLURM_NTASKS", "4")
    app.initialize_distributed()
    assert called == [{"coordinator_address": None}]
