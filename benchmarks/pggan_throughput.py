"""PGGAN training throughput at the final resolution: this project's jit step vs PyTorch eager.

  python benchmarks/pggan_throughput.py [--preset synthetic_lesions] [--steps 10] [--batch 0]

Both sides train the identical network of configs/pggan.py:<preset> at its final resolution
(fully grown, alpha 1): the paper's generator (equalised learning rate, pixel norm,
nearest-neighbour 2x upsampling + 3x3 convs, 1x1 toRGB) and discriminator (1x1 fromRGB,
3x3 convs + 2x2 average pooling, minibatch stddev, 4x4 head), WGAN-GP (lambda 10) with
drift 0.001, Adam(lr 1e-3, betas 0/0.99, eps 1e-8), one D and one G update per step on
the same random "real" batch, then the EMA generator update (0.999), in this one process,
alternating timed rounds so machine noise hits both alike. Prints images/s of both and the
ratio; writes benchmarks/results/pggan_throughput.json. PyTorch (CPU build) is a
benchmark-only dependency: pip install torch==2.13.0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import side_by_side  # noqa: E402


def torch_reference(config, batch: int):
    """The same PGGAN G/D and training iteration, written directly in PyTorch."""
    import torch
    import torch.nn as tnn
    import torch.nn.functional as F

    p, res, channels = config.pggan, config.data.image_size, config.data.channels
    latent, top = config.gan.latent_dim, int(math.log2(res))
    nf = lambda stage: min(p.fmap_base // 2**stage, p.fmap_max)

    class EqConv(tnn.Module):
        def __init__(self, c_in, c_out, k, gain=2.0):
            super().__init__()
            self.weight = tnn.Parameter(torch.randn(c_out, c_in, k, k))
            self.bias = tnn.Parameter(torch.zeros(c_out))
            self.scale, self.pad = math.sqrt(gain / (c_in * k * k)), k // 2

        def forward(self, x):
            return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.pad)

    class EqDense(tnn.Module):
        def __init__(self, c_in, c_out, gain=2.0, bias=True):
            super().__init__()
            self.weight = tnn.Parameter(torch.randn(c_out, c_in))
            self.bias = tnn.Parameter(torch.zeros(c_out)) if bias else None
            self.scale = math.sqrt(gain / c_in)

        def forward(self, x):
            return F.linear(x, self.weight * self.scale, self.bias)

    act = lambda x: F.leaky_relu(x, 0.2)
    pixel_norm = lambda x: x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)

    class Generator(tnn.Module):
        def __init__(self):
            super().__init__()
            self.dense = EqDense(latent, 16 * nf(1), gain=2.0 / 16, bias=False)
            self.bias = tnn.Parameter(torch.zeros(nf(1)))
            self.conv4 = EqConv(nf(1), nf(1), 3)
            self.blocks = tnn.ModuleList(
                tnn.ModuleList([EqConv(nf(r - 2), nf(r - 1), 3), EqConv(nf(r - 1), nf(r - 1), 3)])
                for r in range(3, top + 1)
            )
            self.to_rgb = EqConv(nf(top - 1), channels, 1, gain=1.0)

        def forward(self, z):
            x = self.dense(pixel_norm(z)).view(-1, nf(1), 4, 4) + self.bias.view(1, -1, 1, 1)
            x = pixel_norm(act(self.conv4(pixel_norm(act(x)))))
            for conv0, conv1 in self.blocks:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
                x = pixel_norm(act(conv1(pixel_norm(act(conv0(x))))))
            return self.to_rgb(x)

    class Discriminator(tnn.Module):
        def __init__(self):
            super().__init__()
            self.from_rgb = EqConv(channels, nf(top - 1), 1)
            self.blocks = tnn.ModuleList(
                tnn.ModuleList([EqConv(nf(r - 1), nf(r - 1), 3), EqConv(nf(r - 1), nf(r - 2), 3)])
                for r in range(top, 2, -1)
            )
            self.conv4 = EqConv(nf(1) + 1, nf(1), 3)
            self.dense0 = EqDense(16 * nf(1), nf(0))
            self.dense1 = EqDense(nf(0), 1, gain=1.0)

        def forward(self, x):
            x = act(self.from_rgb(x))
            for conv0, conv1 in self.blocks:
                x = F.avg_pool2d(act(conv1(act(conv0(x)))), 2)
            g = min(p.mbstd_group_size, x.shape[0])  # groups of consecutive examples
            y = x.view(-1, g, *x.shape[1:])
            y = torch.sqrt(y.var(dim=1, unbiased=False) + 1e-8).mean(dim=(1, 2, 3))
            y = y.view(-1, 1, 1, 1, 1).expand(-1, g, 1, *x.shape[2:]).reshape(-1, 1, *x.shape[2:])
            x = act(self.conv4(torch.cat([x, y], dim=1)))
            # Flatten in NHWC order, as the JAX model does (same parameter count either way).
            x = act(self.dense0(x.permute(0, 2, 3, 1).flatten(1)))
            return self.dense1(x)[:, 0]

    netG, netD = Generator(), Discriminator()
    ema = Generator()
    ema.load_state_dict(netG.state_dict())
    for q in ema.parameters():
        q.requires_grad_(False)
    adam = dict(lr=config.gan.g_lr, betas=tuple(config.gan.g_betas), eps=config.gan.adam_eps)
    opt_g = torch.optim.Adam(netG.parameters(), **adam)
    opt_d = torch.optim.Adam(netD.parameters(), **adam)
    real = torch.rand(batch, channels, res, res) * 2 - 1

    def step():
        fake = netG(torch.randn(batch, latent))
        opt_d.zero_grad()
        real_out, fake_out = netD(real), netD(fake.detach())
        a = torch.rand(batch, 1, 1, 1)
        mixed = (a * real + (1 - a) * fake.detach()).requires_grad_(True)
        (grads,) = torch.autograd.grad(netD(mixed).sum(), mixed, create_graph=True)
        gp = (grads.flatten(1).norm(dim=1) - 1).square().mean()
        loss_d = fake_out.mean() - real_out.mean() + 10.0 * gp + 0.001 * real_out.square().mean()
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = -netD(fake).mean()
        loss_g.backward()
        opt_g.step()
        with torch.no_grad():
            for e, q in zip(ema.parameters(), netG.parameters()):
                e.lerp_(q, 1.0 - config.gan.ema_decay)
        return float(loss_g.detach())

    params = sum(q.numel() for q in netG.parameters()), sum(q.numel() for q in netD.parameters())
    return step, params


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="synthetic_lesions", help="configs/pggan.py preset")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=0, help="0 = the preset's final batch")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()

    from configs.pggan import get_config

    config = get_config(args.preset)
    config.gan.update(augment="", conditional="")
    sizes = tuple(config.pggan.batch_sizes) or (config.batch_size,)
    batch = args.batch or sizes[-1]
    torch_step, (g_params, d_params) = torch_reference(config, batch)
    sides = {"medgan_jax": jax_step(config, batch), "pytorch": torch_step}
    res = config.data.image_size
    print(f"PGGAN {args.preset} at {res}x{res}, batch {batch}, G {g_params:,} / D {d_params:,}")
    rates = side_by_side.compare(sides, args.steps, args.rounds, batch)
    ratio = side_by_side.print_ratio(rates)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "pggan_throughput.json"), "w") as f:
        result = {
            "images_per_s": rates,
            "ratio": ratio,
            "batch": batch,
            "preset": args.preset,
            "resolution": res,
        }
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    from medgan_jax import app  # XLA flags must precede jax's backend start-up

    app.configure(compilation_cache="", distributed=False)
    main()
