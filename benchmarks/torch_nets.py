"""PyTorch references of this project's networks and training iterations, for the benchmarks.

Every builder takes a `device` and the steps an optional autocast dtype (bfloat16 on a GPU:
mixed precision as `config.precision='bfloat16'`), so the same reference runs on a CPU
(dcgan_throughput.py, pggan_throughput.py) and on a GPU (gpu_check.py). No torchvision:
DenseNet-121 is written out in keras.applications' layout, as medgan_jax's. PyTorch is a
benchmark-only dependency: pip install torch==2.13.0 (CPU build).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
import torch.nn as tnn
import torch.nn.functional as F


def autocast(device: str, dtype: torch.dtype | None):
    """torch.autocast to `dtype` on `device`'s type, or no autocast for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def num_params(*nets: tnn.Module) -> int:
    return sum(p.numel() for net in nets for p in net.parameters())


def sync(device: str) -> None:
    """Waits for the device's queued work (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------------- classifiers


def densenet121(channels: int, num_outputs: int = 1, growth: int = 32, blocks=(6, 12, 24, 16)):
    """keras.applications.DenseNet121 (BN eps 1.001e-5, momentum 0.99, bias-free convs,
    compression 0.5) + a `num_outputs` head, as medgan_jax's DenseNet121."""

    def bn(c):
        return tnn.BatchNorm2d(c, eps=1.001e-5, momentum=0.01)

    class Layer(tnn.Module):
        def __init__(self, c_in):
            super().__init__()
            self.body = tnn.Sequential(
                bn(c_in), tnn.ReLU(True), tnn.Conv2d(c_in, 4 * growth, 1, bias=False),
                bn(4 * growth), tnn.ReLU(True), tnn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False),
            )  # fmt: skip

        def forward(self, x):
            return torch.cat([x, self.body(x)], 1)

    layers = [
        tnn.Conv2d(channels, 64, 7, 2, 3, bias=False), bn(64), tnn.ReLU(True),
        tnn.MaxPool2d(3, 2, 1),
    ]  # fmt: skip
    c = 64
    for stage, count in enumerate(blocks):
        for _ in range(count):
            layers.append(Layer(c))
            c += growth
        if stage < len(blocks) - 1:  # transition
            conv = tnn.Conv2d(c, c // 2, 1, bias=False)
            layers += [bn(c), tnn.ReLU(True), conv, tnn.AvgPool2d(2)]
            c //= 2
    layers += [bn(c), tnn.ReLU(True), tnn.AdaptiveAvgPool2d(1), tnn.Flatten()]
    return tnn.Sequential(*layers, tnn.Linear(c, num_outputs))


def resnet50(channels: int) -> tnn.Module:
    """keras.applications.ResNet50 + one logit (benchmarks/classifier_throughput.py's)."""
    from benchmarks.classifier_throughput import torch_resnet50

    return torch_resnet50(channels)


def classifier_step(
    net: tnn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    amp: torch.dtype | None = None,
    channels_last: bool = True,
) -> Callable[[], torch.Tensor]:
    """One Adam step of sigmoid BCE on one logit (train mode), as classifier_throughput's;
    images NCHW on the net's device. Returns the loss without a host sync."""
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999))
    device = str(images.device)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(device, amp):
            logits = net(images)[:, 0]
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


# ----------------------------------------------------------------------------- DCGAN


def dcgan_networks(
    nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 3, sigmoid: bool = True
) -> tuple[tnn.Module, tnn.Module]:
    """pytorch/examples/dcgan/main.py's 64x64 generator and discriminator; `sigmoid=False`
    leaves D's output as a logit (for BCE-with-logits, which autocast allows)."""

    def up(c_in, c_out, stride=2, pad=1, last=False):
        conv = tnn.ConvTranspose2d(c_in, c_out, 4, stride, pad, bias=False)
        return [conv, tnn.Tanh()] if last else [conv, tnn.BatchNorm2d(c_out), tnn.ReLU(True)]

    def down(c_in, c_out, bn=True):
        layers = [tnn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)]
        return layers + ([tnn.BatchNorm2d(c_out)] if bn else []) + [tnn.LeakyReLU(0.2, True)]

    net_g = tnn.Sequential(
        *up(nz, ngf * 8, 1, 0), *up(ngf * 8, ngf * 4), *up(ngf * 4, ngf * 2),
        *up(ngf * 2, ngf), *up(ngf, nc, last=True),
    )  # fmt: skip
    net_d = tnn.Sequential(
        *down(nc, ndf, bn=False), *down(ndf, ndf * 2), *down(ndf * 2, ndf * 4),
        *down(ndf * 4, ndf * 8), tnn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
        *([tnn.Sigmoid()] if sigmoid else []),
    )  # fmt: skip
    return net_g, net_d


def dcgan_step(
    batch: int,
    nz: int = 100,
    nc: int = 3,
    ngf: int = 64,
    ndf: int = 64,
    device: str = "cpu",
    amp: torch.dtype | None = None,
    sigmoid: bool = True,
    channels_last: bool = False,
) -> tuple[Callable[[], torch.Tensor], tuple[tnn.Module, tnn.Module]]:
    """(step, (G, D)): pytorch/examples/dcgan's iteration (Adam 2e-4, betas 0.5/0.999, one D
    and one G update) on a fixed random "real" batch. `sigmoid=False` (needed with `amp`)
    uses BCE with logits, the same loss."""
    net_g, net_d = dcgan_networks(nz, ngf, ndf, nc, sigmoid)
    net_g, net_d = net_g.to(device), net_d.to(device)
    real = torch.rand(batch, nc, 64, 64, device=device) * 2 - 1
    if channels_last:
        net_g = net_g.to(memory_format=torch.channels_last)
        net_d = net_d.to(memory_format=torch.channels_last)
        real = real.contiguous(memory_format=torch.channels_last)
    criterion = tnn.BCELoss() if sigmoid else tnn.BCEWithLogitsLoss()
    opt_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    ones = torch.ones(batch, device=device)
    zeros = torch.zeros(batch, device=device)

    def d_out(x):
        with autocast(device, amp):
            return net_d(x).view(-1).float()

    def step():
        net_d.zero_grad()
        err_real = criterion(d_out(real), ones)
        err_real.backward()
        with autocast(device, amp):
            fake = net_g(torch.randn(batch, nz, 1, 1, device=device))
        err_fake = criterion(d_out(fake.detach()), zeros)
        err_fake.backward()
        opt_d.step()
        net_g.zero_grad()
        err_g = criterion(d_out(fake), ones)
        err_g.backward()
        opt_g.step()
        return err_g.detach()

    return step, (net_g, net_d)


# ----------------------------------------------------------------------------- PGGAN


def pggan_networks(config) -> tuple[tnn.Module, tnn.Module]:
    """The paper's PGGAN generator and discriminator at config's final resolution (fully
    grown, alpha 1), as medgan_jax.models.pggan with config.pggan's feature maps."""
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
            y = x.view(-1, g, *x.shape[1:]).float()
            y = torch.sqrt(y.var(dim=1, unbiased=False) + 1e-8).mean(dim=(1, 2, 3)).to(x.dtype)
            y = y.view(-1, 1, 1, 1, 1).expand(-1, g, 1, *x.shape[2:]).reshape(-1, 1, *x.shape[2:])
            x = act(self.conv4(torch.cat([x, y], dim=1)))
            # Flatten in NHWC order, as the JAX model does (same parameter count either way).
            x = act(self.dense0(x.permute(0, 2, 3, 1).flatten(1)))
            return self.dense1(x)[:, 0]

    return Generator(), Discriminator()


def pggan_step(
    config, batch: int, device: str = "cpu", amp: torch.dtype | None = None
) -> tuple[Callable[[], torch.Tensor], tuple[tnn.Module, tnn.Module, tnn.Module]]:
    """(step, (G, D, EMA G)): WGAN-GP (lambda 10) with drift 0.001, Adam(config's lr, betas,
    eps), one D and one G update on a fixed random "real" batch, then the EMA update."""
    net_g, net_d = pggan_networks(config)
    net_g, net_d = net_g.to(device), net_d.to(device)
    ema = pggan_networks(config)[0].to(device)
    ema.load_state_dict(net_g.state_dict())
    for q in ema.parameters():
        q.requires_grad_(False)
    adam = dict(lr=config.gan.g_lr, betas=tuple(config.gan.g_betas), eps=config.gan.adam_eps)
    opt_g = torch.optim.Adam(net_g.parameters(), **adam)
    opt_d = torch.optim.Adam(net_d.parameters(), **adam)
    res, channels, latent = config.data.image_size, config.data.channels, config.gan.latent_dim
    real = torch.rand(batch, channels, res, res, device=device) * 2 - 1

    def d_out(x):
        with autocast(device, amp):
            return net_d(x).float()

    def step():
        with autocast(device, amp):
            fake = net_g(torch.randn(batch, latent, device=device)).float()
        opt_d.zero_grad()
        real_out, fake_out = d_out(real), d_out(fake.detach())
        a = torch.rand(batch, 1, 1, 1, device=device)
        mixed = (a * real + (1 - a) * fake.detach()).requires_grad_(True)
        (grads,) = torch.autograd.grad(d_out(mixed).sum(), mixed, create_graph=True)
        gp = (grads.flatten(1).norm(dim=1) - 1).square().mean()
        loss_d = fake_out.mean() - real_out.mean() + 10.0 * gp + 0.001 * real_out.square().mean()
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad()
        loss_g = -d_out(fake).mean()
        loss_g.backward()
        opt_g.step()
        with torch.no_grad():
            for e, q in zip(ema.parameters(), net_g.parameters()):
                e.lerp_(q, 1.0 - config.gan.ema_decay)
        return loss_g.detach()

    return step, (net_g, net_d, ema)


def sampler(
    generator: tnn.Module, batch: int, latent: int, device: str, amp: torch.dtype | None = None
) -> Callable[[], torch.Tensor]:
    """Inference-mode images of `generator` (eval mode, no gradients) for fresh latents;
    DCGAN's generator takes latents [N, nz, 1, 1]."""
    generator.eval()
    shape = (batch, latent, 1, 1) if isinstance(generator, tnn.Sequential) else (batch, latent)

    @torch.no_grad()
    def sample():
        with autocast(device, amp):
            return generator(torch.randn(*shape, device=device)).float()

    return sample
