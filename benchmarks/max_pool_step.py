"""SimpleCNN training step with flax's nn.max_pool vs medgan_jax.models.layers.max_pool.

  python benchmarks/max_pool_step.py [--batch 64] [--size 64] [--rounds 10]

The same three-block SimpleCNN (conv-ReLU-maxpool 16/32/64, global average pool, dense
64, one logit, Adam) in one process, once per pooling, jit-compiled and warmed up, timed
in alternating rounds so machine noise hits both alike. Prints the median images/s of
each and the ratio, and checks that both give the same loss. nn.max_pool's gradient is a
select-and-scatter, slow on XLA:CPU; max_pool's is elementwise selects.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from medgan_jax.models.layers import max_pool  # noqa: E402


class Net(nn.Module):
    flax_pool: bool

    @nn.compact
    def __call__(self, x):
        for width in (16, 32, 64):
            x = nn.relu(nn.Conv(width, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), (2, 2)) if self.flax_pool else max_pool(x, 2, 2)
        x = nn.relu(nn.Dense(64)(x.mean(axis=(1, 2))))
        return nn.Dense(1)(x)[:, 0]


def make_step(net, images, labels):
    tx = optax.adam(1e-3)

    @jax.jit
    def step(params, opt):
        loss_fn = lambda p: optax.sigmoid_binary_cross_entropy(net.apply(p, images), labels).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    params = net.init(jax.random.PRNGKey(1), images)
    return step, params, tx.init(params)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    args = parser.parse_args()
    images = jax.random.normal(jax.random.PRNGKey(0), (args.batch, args.size, args.size, 3))
    labels = (jnp.arange(args.batch) % 2).astype(jnp.float32)
    sides = {}
    for name, flax_pool in (("nn.max_pool", True), ("layers.max_pool", False)):
        step, params, opt = make_step(Net(flax_pool), images, labels)
        params, opt, loss = step(params, opt)
        sides[name] = {"step": step, "state": (params, opt), "loss": float(loss), "rates": []}
    assert abs(sides["nn.max_pool"]["loss"] - sides["layers.max_pool"]["loss"]) < 1e-5
    for _ in range(args.rounds):
        for side in sides.values():
            params, opt = side["state"]
            start = time.perf_counter()
            for _ in range(args.steps):
                params, opt, loss = side["step"](params, opt)
            loss.block_until_ready()
            side["rates"].append(args.steps * args.batch / (time.perf_counter() - start))
            side["state"] = (params, opt)
    rates = {name: statistics.median(side["rates"]) for name, side in sides.items()}
    for name, rate in rates.items():
        print(f"{name:16s} {rate:8.1f} images/s")
    ratio = rates["layers.max_pool"] / rates["nn.max_pool"]
    print(f"ratio layers.max_pool / nn.max_pool: {ratio:.2f}x")


if __name__ == "__main__":
    from medgan_jax import app  # XLA flags must precede jax's backend start-up

    app.configure(compilation_cache="", distributed=False)
    main()
