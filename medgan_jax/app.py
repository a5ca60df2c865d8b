"""Process-wide set-up that every entry point (and the tests) applies once, first.

Importing medgan_jax changes nothing; `configure()` sets JAX/XLA options, the
compilation cache, starts JAX's multi-process runtime where the environment asks for it,
and keeps TensorFlow (the input pipeline only) off the accelerators. `run(job)` is the
one harness of the `--config`/`--workdir` entry points.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

_YNN_FLAG = "xla_cpu_experimental_ynn_fusion_type"


def run(
    job: Callable[[ml_collections.ConfigDict, str], Any], default_config: str, default_workdir: str
) -> None:
    """Parses --config and --workdir, configures the process and runs `job(config, workdir)`."""
    config = config_flags.DEFINE_config_file("config", default_config, "Config file[:preset].")
    workdir = flags.DEFINE_string("workdir", default_workdir, "Where the run writes everything.")

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
        logging.set_verbosity(logging.WARNING)
        configure()
        job(config.value, workdir.value)

    app.run(main)


def configure(compilation_cache: str | None = None, distributed: bool = True) -> None:
    """Applies the package's JAX/XLA settings; call before any computation.

    `compilation_cache` as in `enable_compilation_cache`; `distributed` starts JAX's
    multi-process runtime when the environment describes several processes.
    """
    set_xla_cpu_flags()
    # The partitionable threefry compiles much slower on XLA:CPU (benchmarks/README.md);
    # our random draws (latents, augmentation parameters) are small enough unpartitioned.
    jax.config.update("jax_threefry_partitionable", False)
    enable_compilation_cache(compilation_cache)
    if distributed:
        initialize_distributed()
    hide_accelerators_from_tf()


def set_xla_cpu_flags() -> None:
    """Opts out of XLA:CPU's YNNPACK conv fusions (slower for our conv nets; see
    benchmarks/dcgan_throughput.py), unless the user set that flag. Other backends ignore it;
    it must precede backend start-up."""
    flags = os.environ.get("XLA_FLAGS", "")
    if _YNN_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --{_YNN_FLAG}=".strip()


def enable_compilation_cache(path: str | None = None) -> str:
    """Keeps compiled XLA programs on disk, so re-runs and the study's many cells (same
    networks, new jit objects) load them instead of compiling again.

    `path` defaults to $MEDGAN_JAX_XLA_CACHE or ~/.cache/medgan_jax/xla; '' disables it.
    """
    if path is None:
        default = os.path.join(os.path.expanduser("~"), ".cache", "medgan_jax", "xla")
        path = os.environ.get("MEDGAN_JAX_XLA_CACHE", default)
    if path:
        jax.config.update("jax_compilation_cache_dir", path)
        # Every program, however quick to compile: a study process would otherwise compile
        # its small ones (predictions, copies) afresh, which takes longer than loading them.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path


def initialize_distributed(coordinator_address: str | None = None) -> None:
    """Starts JAX's multi-process runtime when running on several processes.

    On TPU pods and SLURM clusters `jax.distributed.initialize()` finds its peers from the
    environment. Anywhere else (several processes on one machine, or hosts started by
    hand) each process gets JAX_COORDINATOR_ADDRESS=host:port, MEDGAN_JAX_NUM_PROCESSES
    and MEDGAN_JAX_PROCESS_ID. MEDGAN_JAX_CPU_DEVICES=N gives a CPU process N devices
    (their collectives then go through gloo), and MEDGAN_JAX_HEARTBEAT_TIMEOUT=S stops
    the survivors S seconds after a process dies (JAX's coordination service; default
    100). A single process needs no set-up at all.
    """
    env = os.environ
    if env.get("MEDGAN_JAX_CPU_DEVICES"):
        jax.config.update("jax_num_cpu_devices", int(env["MEDGAN_JAX_CPU_DEVICES"]))
    if not (coordinator_address or _several_processes()):
        return
    if jax.config.jax_platforms in (None, "", "cpu") and env.get("MEDGAN_JAX_NUM_PROCESSES"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    options = {}
    if env.get("MEDGAN_JAX_NUM_PROCESSES"):
        options.update(
            num_processes=int(env["MEDGAN_JAX_NUM_PROCESSES"]),
            process_id=int(env["MEDGAN_JAX_PROCESS_ID"]),
        )
    if env.get("MEDGAN_JAX_HEARTBEAT_TIMEOUT"):
        options["heartbeat_timeout_seconds"] = int(env["MEDGAN_JAX_HEARTBEAT_TIMEOUT"])
    jax.distributed.initialize(coordinator_address=coordinator_address, **options)
    logging.info(
        "Process %d of %d, %d local / %d global devices.",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def _several_processes() -> bool:
    """Whether the environment describes more than one process (a 1-task SLURM job or a
    single TPU host needs no distributed start-up)."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
        return True
    return len(os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1


@functools.cache
def hide_accelerators_from_tf() -> None:
    """TF is only the input pipeline: keep it off the GPUs/TPUs that JAX uses."""
    if importlib.util.find_spec("tensorflow") is None:  # GPU checks run without TF
        return
    import tensorflow as tf  # deferred: seconds to import, and only the pipeline needs it

    try:
        tf.config.set_visible_devices([], "GPU")
        tf.config.set_visible_devices([], "TPU")
    except (RuntimeError, ValueError):  # Already initialised or no such device type.
        pass
