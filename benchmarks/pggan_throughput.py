"""PGGAN training throughput at the final resolution: this project's jit step vs PyTorch eager.

  python benchmarks/pggan_throughput.py [--preset synthetic_lesions] [--steps 10] [--batch 0]

Both sides train the identical network of configs/pggan.py:<preset> at its final resolution
(fully grown, alpha 1): the paper's generator (equalised learning rate, pixel norm,
nearest-neighbour 2x upsampling + 3x3 convs, 1x1 toRGB) and discriminator (1x1 fromRGB,
3x3 convs + 2x2 average pooling, minibatch stddev, 4x4 head), WGAN-GP (lambda 10) with
drift 0.001, Adam(lr 1e-3, betas 0/0.99, eps 1e-8), one D and one G update per step on
the same random "real" batch, then the EMA generator update (0.999), each side in a
process of its own (ours with the entry points' huge-page malloc, PyTorch with glibc's
defaults; side_by_side.py), timed rounds alternating so machine noise hits both alike.
Prints images/s of both (median step) and the ratio; writes
benchmarks/results/pggan_throughput.json. PyTorch (CPU build) is a benchmark-only
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


def torch_reference(config, batch: int):
    """The same PGGAN G/D and training iteration, written directly in PyTorch (torch_nets.py)."""
    from benchmarks import torch_nets

    step, (net_g, net_d, _) = torch_nets.pggan_step(config, batch)
    return lambda: float(step()), (torch_nets.num_params(net_g), torch_nets.num_params(net_d))


def jax_step(config, batch: int):
    """This project's PGGAN stage step at the final resolution on a 1-device mesh."""
    import jax

    from medgan_jax import parallel, training
    from medgan_jax.gan import families, progressive
    from medgan_jax.gan import train as gan_train

    res = config.data.image_size
    mesh = parallel.make_mesh(1)
    generator, discriminator = families.build_models(config, num_classes=1)
    state = gan_train.initial_state(config, generator, discriminator, mesh)
    step = training.jit_step(
        progressive.make_stage_step(generator, discriminator, config.gan, res, False),
        mesh,
        num_extra_args=1,
    )
    shape = (batch, res, res, config.data.channels)
    real = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    batch_arrays = parallel.host_to_global(
        {"image": real, "label": np.zeros(batch, np.int32)}, mesh
    )
    holder = {"state": state}

    def run():
        holder["state"], metrics = step(holder["state"], batch_arrays, np.float32(1.0))
        return float(jax.block_until_ready(metrics["g_loss"]))

    return run


def make_side(side: str, config, batch: int):
    """(step, info) of one side, for side_by_side.serve_step."""
    if side == "torch":
        step, (g_params, d_params) = torch_reference(config, batch)
        return step, {**side_by_side.torch_build(), "g_params": g_params, "d_params": d_params}
    from medgan_jax import app  # XLA flags must precede jax's backend start-up

    app.configure(compilation_cache="", distributed=False)
    return jax_step(config, batch), {}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="synthetic_lesions", help="configs/pggan.py preset")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=0, help="0 = the preset's final batch")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    from configs.pggan import get_config

    config = get_config(args.preset)
    config.gan.update(augment="", conditional="")
    sizes = tuple(config.pggan.batch_sizes) or (config.batch_size,)
    batch = args.batch or sizes[-1]
    if args.worker:
        return side_by_side.serve_step(lambda: make_side(args.worker, config, batch))
    launch.reexec_with_malloc_tunables()  # our side runs as the entry points do
    res = config.data.image_size
    print(f"PGGAN {args.preset} at {res}x{res}, batch {batch}, each side in its own process")
    rates, ratio, torch_info = side_by_side.compare_workers(
        __file__, sys.argv[1:], args.steps, args.rounds, batch
    )
    print(f"G {torch_info['g_params']:,} / D {torch_info['d_params']:,} parameters")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "pggan_throughput.json"), "w") as f:
        result = {
            "images_per_s": rates,
            "ratio": ratio,
            "batch": batch,
            "preset": args.preset,
            "resolution": res,
            **torch_info,
        }
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
