"""Image grids, metric writers (TensorBoard + JSON lines) and progress lines."""

from __future__ import annotations

import json
import os
import time

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Images in [-1, 1] -> uint8 pixels."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(
        np.uint8
    )


def image_grid(images: np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
    """[N, H, W, C] images in [-1, 1] -> one uint8 [rows*H, columns*W, C] grid."""
    images = np.asarray(images, np.float32)
    n, h, w, c = images.shape
    rows = -(-n // columns)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, np.uint8)
    pixels = to_uint8(images)
    for i in range(n):  # A few dozen thumbnails, once per save: not a hot path.
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = pixels[i]
    return grid


def save_image_grid(
    path: str | os.PathLike, images: np.ndarray, columns: int, scale: int = 1
) -> None:
    """Writes `images` (in [-1, 1]) as a PNG grid, optionally upscaled for viewing."""
    grid = image_grid(images, columns)
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    picture.save(path)


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
