"""Where DenseNet-121's step loses to PyTorch: each op of a dense layer, side by side.

  python benchmarks/densenet_layers.py [--repeats 5] [--stages 56,28,14,7]

A dense layer is BN-ReLU over its running concatenation (c_in channels), a 1x1 conv to
128, BN-ReLU, a 3x3 conv to 32 and the concatenation of that onto its input. For one
layer in the middle of each dense block (batch 32; 56x56 with c_in 160, 28x28 with 320,
14x14 with 640, 7x7 with 768), this times each op with this project's code
(medgan_jax.models.layers: batch_norm_train, conv, jnp.concatenate; device-resident
inputs, jitted) and with PyTorch's eager modules in channels_last (BatchNorm2d, ReLU,
Conv2d, torch.cat): the forward alone, then forward + backward (the BN and the convs to
their input and weights). Sides alternate per op; the best of `--repeats` is printed
(ms) with the ratio ours / PyTorch (above 1: ours slower), and per op the sum over the
block's layers at these shapes (6, 12, 24 and 16 layers), an estimate of what each op
costs the whole step. Also this machine's f32 GEMM rate, XLA against torch.mm, at
4096^2: PyTorch's oneDNN/MKL kernels against XLA:CPU's Eigen ones.

What it showed (2026-12-03 19:05, this 2-core Intel Xeon, a noisy hour): the 3x3 conv
to 32 channels is the one op whose forward pass is slower in ours at every stage
(1.28-1.55x: 56x56 61 vs 43 ms, 28x28 17 vs 11.5; the same in an earlier run, whose
PyTorch backward passes accumulated into .grad and are not compared); with its backward
pass it is not (0.59-0.90x). Summed over the blocks' layers, forward + backward, ours
against PyTorch: BN+ReLU 2.10 vs 1.83 s, 1x1 conv 1.57 vs 1.95, 3x3 conv 1.31 vs 1.61,
concatenation 0.29 vs 0.47. So alone these ops take no longer in ours than in PyTorch
(5.3 vs 5.9 s), while the whole step does (9.5 vs 7.2 s in classifier_throughput.py at
17:40): the gap is in how XLA composes them in the step (its fusions, layouts and
buffers), which the next attempt should profile as a whole. XLA's 4096^2 GEMM ran at
150-170 GFLOP/s against torch.mm's 190-235.
Tried that day, none faster: XLA:CPU's oneDNN, XNNPACK and YNNPACK paths
(`xla_cpu_use_onednn`, `..._onednn_custom_call`, `..._onednn_fusion_type`,
`..._xnn_fusion_type`, `..._ynn_fusion_type` as individual_convolution,individual_dot):
the 3x3 conv at 56x56 took 52-66 ms (56 without), 127 ms under YNNPACK, and DenseNet's
step 8.8-10.7 s with the oneDNN flags against 9.3-10.5 s without; the 3x3 conv as one
GEMM to 9 x 32 outputs plus shifted sums (exact to 5e-6): 180 against 70 ms forward at
56x56; glibc malloc told to keep freed memory (mallopt M_MMAP_MAX=0,
M_TRIM_THRESHOLD=-1): ResNet-50's step still took about 612,000 page faults (XLA's
worker threads allocate from other arenas), and a demo study cell in fresh processes,
3 alternating rounds each, took 41.6 against 39.2 s wall and 80.0 against 81.4 s CPU
(an earlier pair of rounds had shown 1.4x: noise).
PyTorch is a benchmark-only dependency: pip install torch==2.13.0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.dcgan_layers import run_times_ms  # noqa: E402

BATCH, GROWTH, BOTTLENECK = 32, 32, 128
# spatial size -> (c_in of the timed layer, layers in that dense block)
STAGES = {56: (160, 6), 28: (320, 12), 14: (640, 24), 7: (768, 16)}
OPS = ("bn_relu", "conv1x1", "conv3x3", "concat")


def jax_ops(size: int, c_in: int) -> dict:
    """op -> (forward, forward + backward) zero-argument callables, this project's code."""
    import jax
    import jax.numpy as jnp

    from medgan_jax.models import layers

    rng = np.random.default_rng(0)
    put = lambda *shape: jax.device_put(rng.standard_normal(shape).astype(np.float32))  # noqa: E731
    x, h = put(BATCH, size, size, c_in), put(BATCH, size, size, BOTTLENECK)
    new = put(BATCH, size, size, GROWTH)
    scale, bias = jnp.ones(c_in), jnp.zeros(c_in)
    w1, w3 = put(1, 1, c_in, BOTTLENECK) * 0.05, put(3, 3, BOTTLENECK, GROWTH) * 0.05
    fns = {
        "bn_relu": (lambda x, s, b: jax.nn.relu(layers.batch_norm_train(x, s, b, 1e-5)[0]),
                    (x, scale, bias)),
        "conv1x1": (lambda x, w: layers.conv(x, w, 1, "SAME"), (x, w1)),
        "conv3x3": (lambda x, w: layers.conv(x, w, 1, "SAME"), (h, w3)),
        "concat": (lambda x, y: jnp.concatenate([x, y], -1), (x, new)),
    }  # fmt: skip
    ops = {}
    for op, (fn, args) in fns.items():
        forward = jax.jit(fn)
        cotangent = forward(*args)

        def both(*args, fn=fn, cotangent=cotangent):
            return jax.vjp(fn, *args)[1](cotangent)

        both = jax.jit(both)
        ops[op] = (
            lambda f=forward, a=args: jax.block_until_ready(f(*a)),
            lambda f=both, a=args: jax.block_until_ready(f(*a)),
        )
    return ops


def torch_ops(size: int, c_in: int) -> dict:
    """op -> (forward, forward + backward) callables, PyTorch eager in channels_last."""
    import torch

    def put(*shape):
        t = torch.randn(BATCH, shape[-1], *shape[:2]).contiguous(memory_format=torch.channels_last)
        return t.requires_grad_()

    x, h = put(size, size, c_in), put(size, size, BOTTLENECK)
    new = put(size, size, GROWTH)
    cl = dict(memory_format=torch.channels_last)
    modules = {
        "bn_relu": (torch.nn.Sequential(torch.nn.BatchNorm2d(c_in), torch.nn.ReLU()), (x,)),
        "conv1x1": (torch.nn.Conv2d(c_in, BOTTLENECK, 1, bias=False).to(**cl), (x,)),
        "conv3x3": (torch.nn.Conv2d(BOTTLENECK, GROWTH, 3, padding=1, bias=False).to(**cl), (h,)),
        "concat": (lambda x, y: torch.cat([x, y], 1), (x, new)),
    }
    ops = {}
    for op, (module, args) in modules.items():
        with torch.no_grad():
            cotangent = torch.randn_like(module(*args))

        def forward(module=module, args=args):
            with torch.no_grad():
                module(*args)

        wrt = [*args, *(module.parameters() if isinstance(module, torch.nn.Module) else ())]

        def both(module=module, args=args, cotangent=cotangent, wrt=wrt):
            # autograd.grad, not backward(): nothing accumulates into .grad between runs
            torch.autograd.grad(module(*args), wrt, cotangent)

        ops[op] = (forward, both)
    return ops


def gemm_rates(n: int = 4096, repeats: int = 3) -> tuple[float, float]:
    """(XLA, torch.mm) GFLOP/s of an n x n f32 matmul, best of `repeats`."""
    import jax
    import torch

    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    xla_a, torch_a = jax.device_put(a), torch.from_numpy(a)
    dot = jax.jit(lambda a: a @ a)
    xla_ms = run_times_ms(lambda: jax.block_until_ready(dot(xla_a)), repeats).min()
    torch_ms = run_times_ms(lambda: torch_a @ torch_a, repeats).min()
    return 2 * n**3 / xla_ms / 1e6, 2 * n**3 / torch_ms / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stages", default="56,28,14,7", help=f"some of {list(STAGES)}")
    args = parser.parse_args()
    import torch

    from medgan_jax import app

    app.configure(compilation_cache="", distributed=False)
    torch.set_num_threads(2)
    totals = {op: np.zeros(4) for op in OPS}  # ours fwd, torch fwd, ours f+b, torch f+b
    print(f"{'stage':<16} {'op':<8} {'forward ms (ours/torch, ratio)':>32} "
          f"{'forward+backward ms':>28}")  # fmt: skip
    for size in map(int, args.stages.split(",")):
        c_in, count = STAGES[size]
        ours, theirs = jax_ops(size, c_in), torch_ops(size, c_in)
        for op in OPS:
            ms = []
            for which in (0, 1):  # forward, then forward + backward; sides alternate
                for side in (ours, theirs):
                    ms.append(run_times_ms(side[op][which], args.repeats).min())
            totals[op] += count * np.array(ms)
            print(
                f"{size}x{size} c_in {c_in:<4} {op:<8} {ms[0]:10.1f} / {ms[1]:6.1f} "
                f"{ms[0] / ms[1]:5.2f}x {ms[2]:12.1f} / {ms[3]:6.1f} {ms[2] / ms[3]:5.2f}x"
            )
    print("summed over each block's layers at these shapes (ms per step):")
    for op, (of, tf, ob, tb) in totals.items():
        print(f"  {op:<8} forward {of:7.0f} / {tf:7.0f}   forward+backward {ob:7.0f} / {tb:7.0f}"
              f"   difference {ob - tb:+7.0f}")  # fmt: skip
    xla, mm = gemm_rates()
    print(f"4096^2 f32 GEMM: XLA {xla:.0f} GFLOP/s, torch.mm {mm:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
