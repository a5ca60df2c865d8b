"""DCGAN-64 training throughput: this project's jit step vs the PyTorch eager reference.

  python benchmarks/dcgan_throughput.py [--steps 20] [--batch 64]

Both sides train the identical network of pytorch/examples/dcgan (batch 64, 64x64x3,
nz 100, ngf = ndf = 64, Adam 2e-4, betas 0.5/0.999, BCE/non-saturating loss, one D and
one G update per step) on the same random "real" batch, each side in a process of its
own (ours with the entry points' huge-page malloc, PyTorch with glibc's defaults;
side_by_side.py), timed rounds alternating so machine noise hits both alike. Prints
images/s of both (median step) and the ratio; writes
benchmarks/results/dcgan_throughput.json. PyTorch (CPU build) is a benchmark-only
dependency: pip install torch==2.13.0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import side_by_side  # noqa: E402
from medgan_jax import launch  # noqa: E402


def torch_reference(batch: int, nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 3):
    """pytorch/examples/dcgan/main.py's networks and training iteration (torch_nets.py)."""
    from benchmarks import torch_nets

    step, _ = torch_nets.dcgan_step(batch, nz, nc, ngf, ndf)
    return lambda: float(step())


def jax_step_and_batch(batch: int):
    """This project's DCGAN (state, jitted step, global batch) on a 1-device mesh."""
    from configs.dcgan import get_config
    from medgan_jax import parallel, training
    from medgan_jax.gan import families
    from medgan_jax.gan import train as gan_train
    from medgan_jax.gan.steps import make_train_step

    config = get_config("synthetic_lesions")
    config.batch_size = batch
    config.gan.augment = ""
    mesh = parallel.make_mesh(1)
    generator, discriminator = families.build_models(config, num_classes=2)
    state = gan_train.initial_state(config, generator, discriminator, mesh)
    step = training.jit_step(make_train_step(generator, discriminator, config.gan), mesh)
    real = np.random.default_rng(0).uniform(-1, 1, (batch, 64, 64, 3)).astype(np.float32)
    batch_arrays = parallel.host_to_global(
        {"image": real, "label": np.zeros(batch, np.int32)}, mesh
    )
    return state, step, batch_arrays


def jax_step(batch: int):
    """This project's DCGAN step, compiled once; each call runs one step."""
    import jax

    state, step, batch_arrays = jax_step_and_batch(batch)
    holder = {"state": state}

    def run():
        holder["state"], metrics = step(holder["state"], batch_arrays)
        return float(jax.block_until_ready(metrics["g_loss"]))

    return run


def make_side(side: str, batch: int):
    """(step, info) of one side, for side_by_side.serve_step."""
    if side == "torch":
        return torch_reference(batch), side_by_side.torch_build()
    from medgan_jax import app  # XLA flags must precede jax's backend start-up

    app.configure(compilation_cache="", distributed=False)
    return jax_step(batch), {}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return side_by_side.serve_step(lambda: make_side(args.worker, args.batch))
    launch.reexec_with_malloc_tunables()  # our side runs as the entry points do
    print(f"DCGAN-64, batch {args.batch}, each side in its own process")
    rates, ratio, torch_info = side_by_side.compare_workers(
        __file__, sys.argv[1:], args.steps, args.rounds, args.batch
    )
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "dcgan_throughput.json"), "w") as f:
        result = {"images_per_s": rates, "ratio": ratio, "batch": args.batch, **torch_info}
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
