"""Launching several real JAX processes of this project's entry points on this machine:
gloo collectives, a coordinator on 127.0.0.1 with a free port, 2 CPU devices each."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRACE = shutil.which("strace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(num: int, command: list[str], log_dir: Path, trace: bool = False, **env):
    """`num` processes of `python command`, 2 CPU devices each; with `trace`, each under
    strace, its file opens written to log_dir/opens_<process>."""
    port, procs = free_port(), []
    for pid in range(num):
        process_env = {
            **os.environ,
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "MEDGAN_JAX_NUM_PROCESSES": str(num),
            "MEDGAN_JAX_PROCESS_ID": str(pid),
            "MEDGAN_JAX_CPU_DEVICES": "2",
            # Shared by this session's launches: later ones load what earlier ones compiled.
            "MEDGAN_JAX_XLA_CACHE": str(Path(tempfile.gettempdir()) / "medgan_jax_test_mp_cache"),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            # jax_num_cpu_devices, not the device-count flag (its mix with gloo crashes)
            "XLA_FLAGS": "",
            **env,
        }
        opens = str(log_dir / f"opens_{pid}")
        tracer = [str(STRACE), "-f", "-qq", "-e", "trace=openat", "-o", opens]
        log = open(log_dir / f"process_{pid}.log", "w")
        procs.append(
            subprocess.Popen(
                [*(tracer if trace else []), sys.executable, *command],
                cwd=ROOT,
                env=process_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return procs


def run_processes(num: int, command: list[str], log_dir: Path, trace: bool = False) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = launch(num, command, log_dir, trace)
    codes = [p.wait(timeout=900) for p in procs]
    logs = "\n".join(
        f"--- process {k} (exit {code}) ---\n{log_tail(log_dir / f'process_{k}.log')}"
        for k, code in enumerate(codes)
    )
    assert codes == [0] * num, logs


def log_tail(log: Path) -> str:
    return log.read_text().split("Extension modules")[0][-3000:]
