"""The data-preview job: load every split, print pipeline batches, write a sample grid.

  python -m medgan_jax.data.preview --config=configs/data.py:synthetic_lesions \
      --workdir=runs/preview
"""

from __future__ import annotations

import os
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from medgan_jax import app as medgan_app
from medgan_jax import parallel
from medgan_jax.data import DataError, load_split, pipeline
from medgan_jax.images import save_image_grid


def describe_batch(batch: dict[str, jax.Array]) -> str:
    """Shape, dtype, range and sharding of each array in a batch."""
    lines = []
    for key, value in batch.items():
        stats = ""
        if key == "image":
            stats = f" range [{float(value.min()):+.3f}, {float(value.max()):+.3f}]"
        lines.append(
            f"    {key:10s} {str(value.shape):18s} {str(value.dtype):8s}{stats} "
            f"sharding={value.sharding.spec} over {len(value.sharding.device_set)} device(s)"
        )
    return "\n".join(lines)


def class_sorted_grid(images: np.ndarray, labels: np.ndarray, columns: int) -> np.ndarray:
    """Up to `columns` images per class, one class per row (multi-label: as they come)."""
    if labels.ndim == 2:
        return images[: columns * columns]
    rows = [images[labels == c][:columns] for c in np.unique(labels)]
    return np.concatenate(rows)


def preview(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Prints split summaries and a few device batches; writes samples_train.png."""
    mesh = parallel.make_mesh(config.num_devices or None)
    data = config.data
    print(
        f"Devices: {mesh.devices.size} x {jax.devices()[0].platform}, mesh axes {mesh.axis_names}"
    )
    if data.source == "tfds":
        ds = pipeline.tfds_batches(data, "train", global_batch_size=config.batch_size, train=True)
        host = ds.as_numpy_iterator()
    else:
        for split in ("val", "test"):
            try:
                print(f"{split:5s}: {load_split(data, split).summary()}")
            except DataError as error:
                print(f"{split:5s}: not available ({error})")
        records = load_split(data, "train", manifest_dir=workdir)
        print(f"train: {records.summary()}")
        parallel.check_batch_size(config.batch_size, mesh)
        host = pipeline.training_batches(records, data, global_batch_size=config.batch_size)
    batches = parallel.device_batches(host, mesh)
    first = None
    start = time.perf_counter()
    for step in range(config.num_batches):
        batch = next(batches)
        jax.block_until_ready(batch)
        print(f"  batch {step}:\n{describe_batch(batch)}")
        first = first or jax.device_get(batch)
    rate = config.num_batches * config.batch_size / (time.perf_counter() - start)
    print(f"  {rate:.0f} images/s through the pipeline (incl. start-up)")
    grid = class_sorted_grid(first["image"], first["label"], config.grid_rows)
    path = os.path.join(workdir, "samples_train.png")
    save_image_grid(path, grid, columns=config.grid_rows, scale=max(1, 128 // data.image_size))
    print(f"Wrote {path}")


def main() -> None:
    # Flags are defined only when run as a program, so importing this module is free.
    config = config_flags.DEFINE_config_file("config", "configs/data.py", "Data config file.")
    workdir = flags.DEFINE_string("workdir", "runs/preview", "Where the grid and manifests go.")

    def run(argv):
        del argv
        logging.set_verbosity(logging.WARNING)
        medgan_app.configure()
        preview(config.value, workdir.value)

    app.run(run)


if __name__ == "__main__":
    main()
