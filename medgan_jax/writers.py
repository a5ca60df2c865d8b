"""Metric writers (TensorBoard + JSON lines) and periodic progress lines."""

from __future__ import annotations

import json
import os
import time


class MetricWriter:
    """Scalars to TensorBoard (workdir/tensorboard) and a JSON-lines copy (metrics.jsonl).

    Only process 0 writes; other processes get a writer that does nothing.
    """

    def __init__(self, workdir: str | os.PathLike, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        import tensorflow as tf

        os.makedirs(workdir, exist_ok=True)
        self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
        self._tf = tf

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self._tb.as_default(step=step):
            for name, value in scalars.items():
                self._tf.summary.scalar(name, value)
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    """The rows of workdir/metrics.jsonl."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


class Progress:
    """A periodic progress line: step, images/s over the last interval, ETA."""

    def __init__(self, total_steps: int, images_per_step: int, start_step: int = 0):
        self.total, self.images_per_step = total_steps, images_per_step
        self._last_step, self._last_time = start_step, time.perf_counter()

    def line(self, step: int, scalars: dict[str, float]) -> str:
        now = time.perf_counter()
        rate = (step - self._last_step) * self.images_per_step / max(now - self._last_time, 1e-9)
        eta = (self.total - step) * self.images_per_step / max(rate, 1e-9)
        self._last_step, self._last_time = step, now
        values = "  ".join(f"{k} {v:.4g}" for k, v in scalars.items())
        return f"step {step}/{self.total}  {rate:.1f} img/s  ETA {_duration(eta)}  {values}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
