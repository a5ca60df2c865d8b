"""Several real JAX processes on this machine (gloo collectives, a coordinator on
127.0.0.1) give the run one process gives; a dead process stops the others, named."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from configs.dcgan import get_config
from medgan_jax import checkpoint
from medgan_jax.gan import sample
from medgan_jax.gan import train as gan_train
from medgan_jax.writers import read_metrics

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(num: int, args: list[str], log_dir: Path, **env) -> list[subprocess.Popen]:
    """`num` processes of `python train_gan.py args`, 2 CPU devices each."""
    port = _free_port()
    procs = []
    for pid in range(num):
        process_env = {
            **os.environ,
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "MEDGAN_JAX_NUM_PROCESSES": str(num),
            "MEDGAN_JAX_PROCESS_ID": str(pid),
            "MEDGAN_JAX_CPU_DEVICES": "2",
            "MEDGAN_JAX_XLA_CACHE": "",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            # jax_num_cpu_devices, not the device-count flag (its mix with gloo crashes)
            "XLA_FLAGS": "",
            **env,
        }
        log = open(log_dir / f"process_{pid}.log", "w")
        procs.append(
            subprocess.Popen(
                [sys.executable, "train_gan.py", *args],
                cwd=ROOT,
                env=process_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return procs


def _losses(workdir) -> dict:
    return {r["step"]: (r["d_loss"], r["g_loss"]) for r in read_metrics(workdir) if "d_loss" in r}


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """The DCGAN smoke run on 2 processes x 2 devices, and the same run in this process."""
    root = tmp_path_factory.mktemp("multiprocess")
    workdir = root / "two"
    procs = _launch(2, ["--config=configs/dcgan.py:smoke", f"--workdir={workdir}"], root)
    codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0, 0], (root / "process_0.log").read_text()[-3000:]
    reference = root / "one"
    gan_train.train(get_config("smoke"), str(reference))
    return workdir, reference


def test_two_processes_give_the_losses_of_one(two_process_run):
    workdir, reference = two_process_run
    ours, expected = _losses(workdir), _losses(reference)
    assert sorted(ours) == sorted(expected) == [2, 4, 6]
    np.testing.assert_allclose([ours[s] for s in ours], [expected[s] for s in ours], rtol=1e-5)


def test_a_checkpoint_written_by_two_processes_restores_in_one(two_process_run):
    workdir, reference = two_process_run
    assert checkpoint.manager(str(workdir), 1, None).latest_step() == 6
    ours, expected = (sample.load_generator(str(run)) for run in (workdir, reference))
    assert ours.step == expected.step == 6
    for a, b in zip(jax.tree.leaves(ours.params), jax.tree.leaves(expected.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_a_killed_process_stops_the_other_naming_it(tmp_path):
    args = [
        "--config=configs/dcgan.py:smoke",
        f"--workdir={tmp_path / 'run'}",
        "--config.num_steps=100000",
        "--config.log_every=2",
    ]
    # 10 s: a shorter timeout can fire while a loaded machine starves the processes.
    procs = _launch(2, args, tmp_path, MEDGAN_JAX_HEARTBEAT_TIMEOUT="10")
    log = tmp_path / "process_0.log"
    deadline = time.monotonic() + 300
    while "step 4/" not in log.read_text():  # both are training
        running = time.monotonic() < deadline and procs[0].poll() is None
        assert running, log.read_text().split("Extension modules")[0][-3000:]
        time.sleep(0.5)
    procs[1].kill()
    killed = time.monotonic()
    code = procs[0].wait(timeout=120)
    stopped_after = time.monotonic() - killed
    assert code != 0 and stopped_after < 60
    text = log.read_text()
    assert "Task 1 heartbeat timeout" in text or "stopped sending heartbeats" in text, text[-3000:]
