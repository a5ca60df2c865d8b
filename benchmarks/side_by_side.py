"""Timing shared by the GAN throughput benchmarks: warm up, then alternating rounds."""

from __future__ import annotations

import time
from collections.abc import Callable


def time_steps(step: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return time.perf_counter() - start


def compare(
    sides: dict[str, Callable[[], object]], steps: int, rounds: int, batch: int
) -> dict[str, float]:
    """Images/s of each side; rounds alternate so machine noise hits both alike."""
    for step in sides.values():  # compile / warm up
        step(), step()
    seconds = {name: 0.0 for name in sides}
    for _ in range(rounds):
        for name, step in sides.items():
            seconds[name] += time_steps(step, steps)
    rates = {name: steps * rounds * batch / s for name, s in seconds.items()}
    for name, rate in rates.items():
        print(f"{name:10s} {rate:7.1f} images/s  ({1000 * batch / rate:.0f} ms/step)")
    return rates


def print_ratio(rates: dict[str, float]) -> float:
    """medgan_jax / pytorch, printed with the torch build and thread count."""
    import torch

    ratio = rates["medgan_jax"] / rates["pytorch"]
    threads = torch.get_num_threads()
    print(f"ratio medgan_jax / pytorch: {ratio:.2f}x (torch {torch.__version__}, {threads} thr.)")
    return ratio
