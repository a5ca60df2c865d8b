"""Timing shared by the throughput benchmarks: each side (ours, PyTorch's) in a process of
its own (`Worker`), warmed up, then timed in rounds that alternate between the sides."""

from __future__ import annotations

import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from medgan_jax import launch


def time_steps(step: Callable[[], object], n: int) -> float:
    """Seconds of n calls of `step`, one after another."""
    start = time.perf_counter()
    for _ in range(n):
        step()
    return time.perf_counter() - start


def torch_build() -> dict:
    """This process's torch version and thread count, for a torch worker's `info`."""
    import torch

    return {"version": torch.__version__, "threads": torch.get_num_threads()}


def print_ratio(rates: dict[str, float], torch_info: dict) -> float:
    """medgan_jax / pytorch, printed with the torch worker's build and thread count
    (`torch_info`: {"version", "threads"}, from torch_build)."""
    ratio = rates["medgan_jax"] / rates["pytorch"]
    print(
        f"ratio medgan_jax / pytorch: {ratio:.2f}x (torch {torch_info['version']}, "
        f"{torch_info['threads']} thr.)"
    )
    return ratio


# ------------------------------------------------- each side in a process of its own
#
# In one process the two frameworks slow each other down: after a PyTorch step, our next
# DenseNet-121 step took 7.7-9.3 s and the ones after it 6.3-6.9 s, against 5.2-5.9 s
# before PyTorch ran (their allocators and thread pools share the process), and PyTorch's
# step ran 4.9-5.7 s there against 3.9-4.8 s alone (classifier_throughput.py's
# docstring). So the throughput benchmarks run each side as a worker process of the same
# script and alternate timed rounds between the two (only one computes at a time). Each
# side runs with the allocator settings its users get: ours with medgan_jax's (launch.py),
# PyTorch's with glibc's defaults.


class Worker:
    """One side of a benchmark: `python <script> <args>` answering requests on a pipe."""

    def __init__(self, script: str, args: list[str], env: dict[str, str] | None = None):
        self.process = subprocess.Popen(
            [sys.executable, script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
        self.info = self._reply()  # what the worker's set-up reported

    def request(self, op: str, **arguments) -> dict:
        self.process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker {self.process.args} exited")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def start_workers(script: str, argv: list[str]) -> dict[str, Worker]:
    """`script argv --worker jax` with this process's environment (medgan_jax's malloc
    settings, which the caller has applied: launch.reexec_with_malloc_tunables) and
    `script argv --worker torch` with glibc's defaults."""
    return {
        "medgan_jax": Worker(script, [*argv, "--worker", "jax"]),
        "pytorch": Worker(script, [*argv, "--worker", "torch"], stock_malloc_environment()),
    }


def stock_malloc_environment() -> dict[str, str]:
    """This process's environment without the allocator settings medgan_jax's entry points
    add (medgan_jax/launch.py): what a PyTorch user runs with. PyTorch's steps ran 5-10%
    slower with the huge-page tunable (DenseNet-121 4.1-4.5 against 3.9-4.0 s, ResNet-50
    5.5-5.8 against 4.9-5.4 s, each alone; one-off, 2026-12-05)."""
    return launch.stock_environment(dict(os.environ))


def keeps_freed_memory() -> bool:
    """True where jemalloc is this process's allocator (medgan_jax's entry points preload
    it set to keep every freed page until `release_idle_memory`)."""
    return hasattr(ctypes.CDLL(None), "mallctl")


def release_idle_memory() -> None:
    """Hands back to the kernel the free memory jemalloc keeps, where it is this process's
    allocator (medgan_jax's entry points preload it set to keep every freed page); glibc
    returns its large blocks when they are freed, so a glibc process is left as it is."""
    if keeps_freed_memory():  # 4096 = MALLCTL_ARENAS_ALL
        ctypes.CDLL(None).mallctl(b"arena.4096.purge", None, None, None, ctypes.c_size_t(0))


def serve(setup: Callable[[], tuple[dict, dict[str, Callable[..., dict]]]]) -> None:
    """The worker's side: runs `setup()` -> (info, handlers), sends info, then answers
    each request {"op": name, **arguments} with handlers[name](**arguments). Replies use
    the original stdout; anything else the process prints goes to stderr."""
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    info, handlers = setup()
    send(info)
    for line in sys.stdin:
        request = json.loads(line)
        send(handlers[request.pop("op")](**request))


def page_faults_during(step: Callable[[], object]) -> int:
    """Minor page faults this process took during one call of `step`."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def resident_bytes() -> int:
    """This process's resident memory."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


REFILL_SLACK = 256 << 20  # what a re-filled process may still lack of its held memory
SETTLE_STEPS = 4


def timed(
    step: Callable[[], object], warm: int = 1, settle: bool | None = None
) -> Callable[..., dict]:
    """A handler timing `steps` calls of `step` after `warm` untimed ones (the request may
    override it): wall and process CPU seconds and minor page faults per step.

    Untimed steps first: the first steps after the other side's round ran slower on this
    project's VMs (the guest's free-page reporting hands memory freed while the other side
    ran back to the host, and the host backs it again on first touch, time that shows as
    CPU time but not as guest page faults), which a training run, one step after
    another, never pays. (`warm=0` for long calls such as a sampler.) After its round a
    jemalloc side gives the memory it keeps back (`release_idle_memory`), as glibc does at
    each free, so that the other side runs as it would alone: with our jemalloc keeping its
    pages between rounds, PyTorch's ResNet-50 step took 7.1 s against 5.4-5.6 s
    (2026-12-05, one run each).

    Where the hand-back gave memory back (`settle`, default: this process keeps freed
    memory), untimed steps go on until the process holds again what it held before the
    hand-back (within REFILL_SLACK, at most SETTLE_STEPS more): XLA:CPU now and then
    starts a step's temporary buffer before the previous step's is freed, so a process
    holds several regions of it that its steps use in no fixed order, and the rounds
    after a hand-back faulted one in during a timed step (DenseNet-121: 1.0 million
    faults, 8.3 s against 2.3 s; classifier_throughput.py's docstring). A training run
    pays that once, not every step. A glibc side (PyTorch's) takes its faults at every
    step of training too, so they stay in its timed steps.
    """
    if settle is None:
        settle = keeps_freed_memory()
    held = [0]  # resident bytes before the last hand-back

    def handler(steps: int, warm: int = warm) -> dict:
        for _ in range(warm):
            step()
        settle_steps = 0
        while (
            settle
            and warm
            and resident_bytes() < held[0] - REFILL_SLACK
            and settle_steps < SETTLE_STEPS
        ):
            step()
            settle_steps += 1
        cpu, walls, faults = time.process_time(), [], []
        for _ in range(steps):
            start = time.perf_counter()
            faults.append(page_faults_during(step))
            walls.append(time.perf_counter() - start)
        cpu = (time.process_time() - cpu) / steps
        held[0] = resident_bytes()
        release_idle_memory()
        return {
            "walls": walls,
            "wall": sum(walls) / steps,
            "cpu": cpu,
            "page_faults": sum(faults) / steps,
            "step_page_faults": faults,
            "settle_steps": settle_steps,
        }

    return handler


def alternate(
    workers: dict[str, Worker], op: str, steps: int, rounds: int, **arguments
) -> dict[str, list]:
    """Each side's per-round replies to `op`, the sides taking turns round by round."""
    replies = {name: [] for name in workers}
    for _ in range(rounds):
        for name, worker in workers.items():
            replies[name].append(worker.request(op, steps=steps, **arguments))
    return replies


def step_walls(rounds: list[dict]) -> list[float]:
    """The wall seconds of every timed step of a side's rounds (`timed` replies)."""
    return [wall for reply in rounds for wall in reply["walls"]]


def print_rates(replies: dict[str, list], batch: int, torch_info: dict) -> tuple[dict, float]:
    """Images/s of each side (its median step over all rounds) and medgan_jax / pytorch,
    printed."""
    rates = {}
    for name, rounds in replies.items():
        seconds = statistics.median(step_walls(rounds))
        rates[name] = batch / seconds
        print(f"{name:10s} {rates[name]:7.1f} images/s  ({1000 * seconds:.0f} ms/step)")
    return rates, print_ratio(rates, torch_info)


def serve_step(make_step: Callable[[], tuple[Callable[[], object], dict]]) -> None:
    """A worker timing one side's training step: `make_step()` -> (step, info); the step
    is called twice (compile, warm-up), then answers "step" requests (`timed`)."""

    def setup():
        step, info = make_step()
        step(), step()
        return info, {"step": timed(step)}

    serve(setup)


def compare_workers(script: str, argv: list[str], steps: int, rounds: int, batch: int):
    """Starts both sides (`start_workers`), alternates `rounds` rounds of `steps` steps and
    prints images/s of both and the ratio. Returns (images/s by side, ratio, the torch
    worker's info)."""
    workers = start_workers(script, argv)
    try:
        replies = alternate(workers, "step", steps, rounds)
        rates, ratio = print_rates(replies, batch, workers["pytorch"].info)
    finally:
        for worker in workers.values():
            worker.close()
    return rates, ratio, workers["pytorch"].info
