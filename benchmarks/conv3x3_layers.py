"""The classifiers' 3x3 convolutions, XLA:CPU against PyTorch's, and two JAX rewrites.

  python benchmarks/conv3x3_layers.py [--repeats 5]

For the stride-1 3x3 convolutions of ResNet-50 (56x56x64 -> 64 ... 7x7x512 -> 512),
DenseNet-121 (128 -> 32 at 56, 28 and 14) and the diffusion U-Net (32x32x64, 16x16x128),
batch 32, NHWC, fp32, best of `--repeats` in ms: the forward pass and the forward plus
backward pass (gradients to the input and the kernel) of
  xla       lax.conv_general_dilated (what layers.conv runs for these shapes),
  torch     PyTorch's Conv2d in channels_last (oneDNN),
  winograd  Winograd F(2x2, 3x3) in JAX: input tiles transformed, 16 batched GEMMs, the
            output transformed (2.25x fewer multiplications),
  im2col    the 9 shifted copies concatenated on channels, one GEMM (a custom VJP whose
            input gradient is the same construction on dy with the flipped kernel),
and each rewrite's largest difference from xla (relative to xla's largest value).

What it showed on a 2-core AMD EPYC (Zen 4, AVX-512; 2026-12-04 18:19, quiet), ms
forward / forward+backward, xla against torch: 56x56 64->64 41.7 / 109.7 against
32.6 / 103.6 (1.06x), 28x28 128->128 41.2 / 87.1 against 32.0 / 101.2 (0.86x), 7x7
512->512 0.82x, DenseNet's 56x56 128->32 50.0 / 123.2 against 35.1 / 123.1 (1.00x), the
U-Net's 32x32 64->64 0.83x. XLA's forward pass alone is 1.2-1.4x PyTorch's; with the
backward pass it is as fast or faster, so ResNet-50's and DenseNet-121's remaining gap
(classifier_throughput.py) lies outside these convolutions. Neither rewrite is faster
with its backward pass (Winograd's forward is, at 16x16x128: 10.3 against 12.8 ms):
their transforms' passes through memory cost more than the arithmetic they save. The
same convolutions measured without app.configure(), i.e. with XLA:CPU's default YNNPACK
fusions, took 1.5-2x longer (56x56 128->32 forward 113 against 53 ms): the package's
opt-out (app.set_xla_cpu_flags) matters on this CPU. XLA's XNNPACK and oneDNN paths
(`--xla_cpu_experimental_{xnn,onednn}_fusion_type=individual_convolution`) gave no
consistent gain over the default. Later that day, passed per compilation
(`compiler_options`), those flags rejected 'individual_convolution' ("not a valid enum
value") and with the enum's name, LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION, left the
convolutions' outputs bit-identical to the default's: these two paths likely do not apply
in this jaxlib at all (benchmarks/diffusion_throughput.py's docstring).
Winograd F(4x4, 3x3) (6x6 tiles, 36 batched GEMMs, 4x fewer multiplications; the output
transform as one [16, 36] matmul over the products; max error 1e-5 of the largest output)
was tried one-off on 2026-12-04 at 22:17 (same machine, quiet), forward ms against xla's:
16x16 128->128 6.2 vs 11.5, 8x8 128->128 2.1 vs 2.9, 14x14 256->256 22.0 vs 36.5, but
slower at every other shape here (32x32 64->64 20.2 vs 13.8, 16x16 256->128 30.8 vs 25.8,
28x28 128->128 42.9 vs 37.5, 7x7 512->512 65.6 vs 37.1, 56x56 ~2x). Put into layers.conv
for those three shapes (forward and input gradient; the kernel gradient XLA's), the
diffusion U-Net's step and 18-step sampler, alternating in one process, showed no gain
beyond the noise (train 2193/2356/2271 ms without, 2327/2534/2167 with; sampling
22.2/25.9/22.4 s vs 23.9/24.8/22.1 s): not adopted.
PyTorch is a benchmark-only dependency: pip install torch==2.13.0.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.dcgan_layers import run_times_ms  # noqa: E402

SHAPES = (  # (batch, size, c_in, c_out)
    (32, 56, 64, 64),
    (32, 28, 128, 128),
    (32, 14, 256, 256),
    (32, 7, 512, 512),
    (32, 56, 128, 32),
    (32, 28, 128, 32),
    (32, 14, 128, 32),
    (32, 32, 64, 64),
    (32, 16, 128, 128),
)


def best_ms(fn, repeats: int) -> float:
    return float(run_times_ms(fn, repeats).min())


def jax_convs():
    import jax
    import jax.numpy as jnp

    def xla(x, k):
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=dims)

    def transform_rows(r):  # B^T of F(2x2, 3x3) over 4 rows or columns
        return [r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]]

    def winograd(x, k):
        n, h, w, c = x.shape
        th, tw = -(-h // 2), -(-w // 2)
        xp = jnp.pad(x, ((0, 0), (1, 2 * th + 1 - h), (1, 2 * tw + 1 - w), (0, 0)))
        rows = transform_rows([xp[:, a : a + 2 * th : 2] for a in range(4)])
        tiles = [
            t for r in rows for t in transform_rows([r[:, :, b : b + 2 * tw : 2] for b in range(4)])
        ]
        v = jnp.stack(tiles).reshape(16, n * th * tw, c)
        g = jnp.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], k.dtype)
        u = jnp.einsum("ai,ijco,bj->abco", g, k, g).reshape(16, c, -1)
        m = jax.lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,)))).reshape(4, 4, n, th, tw, -1)

        def out_rows(r):  # A^T
            return [r[0] + r[1] + r[2], r[1] - r[2] - r[3]]

        by_col = [out_rows([m[a, b] for b in range(4)]) for a in range(4)]
        o = [out_rows([by_col[a][j] for a in range(4)]) for j in range(2)]  # o[j][i]
        y = jnp.stack([jnp.stack([o[j][i] for j in range(2)], axis=3) for i in range(2)], 2)
        return y.reshape(n, 2 * th, 2 * tw, -1)[:, :h, :w]

    def patches(x):
        h, w = x.shape[1:3]
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return jnp.concatenate(
            [xp[:, i : i + h, j : j + w] for i in range(3) for j in range(3)], -1
        )

    def matmul(a, b):
        return (a.reshape(-1, a.shape[-1]) @ b).reshape(*a.shape[:-1], b.shape[-1])

    @jax.custom_vjp
    def im2col(x, k):
        return matmul(patches(x), k.reshape(-1, k.shape[-1]))

    def im2col_backward(residuals, dy):
        x, k = residuals
        p = patches(x)
        dk = (p.reshape(-1, p.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])).reshape(k.shape)
        flipped = jnp.transpose(k[::-1, ::-1], (0, 1, 3, 2))
        return matmul(patches(dy), flipped.reshape(-1, flipped.shape[-1])), dk

    im2col.defvjp(lambda x, k: (im2col(x, k), (x, k)), im2col_backward)
    return {"xla": xla, "winograd": winograd, "im2col": im2col}


def jax_row(shape, repeats: int) -> dict[str, tuple[float, float, float]]:
    import jax

    n, size, c_in, c_out = shape
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(keys[0], (n, size, size, c_in))
    k = jax.random.normal(keys[1], (3, 3, c_in, c_out)) / np.sqrt(9 * c_in)
    dy = jax.random.normal(keys[2], (n, size, size, c_out))
    row, reference = {}, None
    for name, conv in jax_convs().items():
        forward = jax.jit(conv)
        both = jax.jit(lambda x, k, dy, conv=conv: jax.vjp(conv, x, k)[1](dy))
        outputs = [forward(x, k), *both(x, k, dy)]
        reference = reference or outputs
        error = max(
            float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(a)).max())
            for a, b in zip(reference, outputs)
        )
        row[name] = (
            best_ms(lambda f=forward: jax.block_until_ready(f(x, k)), repeats),
            best_ms(lambda f=both: jax.block_until_ready(f(x, k, dy)), repeats),
            error,
        )
    return row


def torch_row(shape, repeats: int) -> tuple[float, float]:
    import torch

    n, size, c_in, c_out = shape
    conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    conv = conv.to(memory_format=torch.channels_last)
    x = torch.randn(n, c_in, size, size).to(memory_format=torch.channels_last)
    x.requires_grad_()
    dy = torch.randn(n, c_out, size, size).to(memory_format=torch.channels_last)

    def forward():
        with torch.no_grad():
            conv(x)

    def both():
        torch.autograd.grad(conv(x), (x, conv.weight), dy)

    return best_ms(forward, repeats), best_ms(both, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch

    from medgan_jax import app

    app.configure(compilation_cache="", distributed=False)
    torch.set_num_threads(os.cpu_count() or 1)
    names = ("xla", "torch", "winograd", "im2col")
    print(f"batch 32, ms: forward / forward+backward (best of {args.repeats}); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'size c_in->c_out':18s}" + "".join(f"{n:>16s}" for n in names) + "  xla/torch f+b")
    for shape in SHAPES:
        row = jax_row(shape, args.repeats)
        row["torch"] = (*torch_row(shape, args.repeats), 0.0)
        cells = "".join(f"{row[n][0]:7.1f} /{row[n][1]:7.1f}" for n in names)
        errors = ", ".join(f"{n} err {row[n][2]:.0e}" for n in ("winograd", "im2col"))
        label = f"{shape[1]}x{shape[1]} {shape[2]}->{shape[3]}"
        print(f"{label:18s}{cells}  {row['xla'][1] / row['torch'][1]:5.2f}x  ({errors})")


if __name__ == "__main__":
    main()
