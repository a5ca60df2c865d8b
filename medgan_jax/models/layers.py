"""Building blocks shared by the GAN families and classifiers."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Which taps of a 4-tap transposed-conv kernel feed output phase 0 / 1 (PyTorch's
# ConvTranspose2d(k=4, s=2, p=1)): y[2m] = x[m-1] w[3] + x[m] w[1] and
# y[2m+1] = x[m] w[2] + x[m+1] w[0].
_PHASE_TAPS = ((3, 1), (2, 0))


def interleave_phases(phases: list[jax.Array]) -> jax.Array:
    """Four [N, H, W, C] phases, in order (0,0), (0,1), (1,0), (1,1) -> [N, 2H, 2W, C]
    with phase (a, b) at pixels (2i + a, 2j + b).

    Written as stacks and a reshape, XLA:CPU makes it one copy, where concatenating
    the phases and then a depth-to-space transpose were two (benchmarks/dcgan_layers.py).
    """
    n, h, w, c = phases[0].shape
    rows = [jnp.stack(phases[2 * a : 2 * a + 2], axis=3) for a in (0, 1)]  # [N, H, W, 2, C]
    return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, c)


def _phase_inputs(x: jax.Array, a: int, b: int) -> jax.Array:
    """x padded so that a VALID 2x2 conv gives output phase (a, b) (`_PHASE_TAPS`)."""
    return jnp.pad(x, ((0, 0), (1 - a, a), (1 - b, b), (0, 0)))


def _phase_taps(kernel: jax.Array, a: int, b: int) -> jax.Array:
    """The 2x2 slice of a 4x4 transposed-conv kernel that feeds output phase (a, b)."""
    # Stacked [C_in, C_out] blocks: contiguous copies. Fancy indexing is a gather, 2x
    # slower on XLA:CPU; reversed slices, fused into their consumers, were slower still.
    rows, cols = _PHASE_TAPS[a], _PHASE_TAPS[b]
    return jnp.stack([jnp.stack([kernel[i, j] for j in cols]) for i in rows])


def _conv(x: jax.Array, kernel: jax.Array, strides=(1, 1), padding="VALID") -> jax.Array:
    """A convolution of NHWC maps with an HWIO kernel."""
    return jax.lax.conv_general_dilated(
        x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _strided_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return _conv(x, kernel, (2, 2), ((1, 1), (1, 1)))


def _strided_conv_kernel_grad(x: jax.Array, kernel: jax.Array, dy: jax.Array) -> jax.Array:
    """XLA's kernel gradient of `_strided_conv(x, kernel)` for the output gradient dy."""
    return jax.vjp(lambda k: _strided_conv(x, k), kernel)[1](dy)[0]


def _subpixel_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
    phases = [
        _conv(_phase_inputs(x, a, b), _phase_taps(kernel, a, b)) for a in (0, 1) for b in (0, 1)
    ]
    return interleave_phases(phases)


def _combined_phases(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The four phases as ONE 2x2 convolution to 4 * C_out channels over x padded by 1.

    Output pixel (i, j) of that conv reads the 2x2 window at rows i-1..i, columns
    j-1..j, which is the window of phase (a, b) at (i - a, j - b): each phase is a shifted
    slice. Slightly more FLOPs ((H+1)(W+1) vs HW outputs), but one wide conv, which on
    XLA:CPU is far faster than four narrow ones for few output channels, and than one 3x3
    conv to 4 * C_out (benchmarks/dcgan_layers.py).
    """
    n, h, w, _ = x.shape
    c_out = kernel.shape[-1]
    taps = [_phase_taps(kernel, a, b) for a in (0, 1) for b in (0, 1)]
    y = _conv(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), jnp.concatenate(taps, axis=-1))
    phases = [
        y[:, a : a + h, b : b + w, (2 * a + b) * c_out : (2 * a + b + 1) * c_out]
        for a in (0, 1)
        for b in (0, 1)
    ]
    return interleave_phases(phases)


def _few_outputs(kernel: jax.Array) -> bool:
    """Whether the RGB/gray-output formulation (`_combined_phases`) is the faster one."""
    return kernel.shape[-1] <= 16


def _phases_kernel_grad(x: jax.Array, dy: jax.Array) -> jax.Array:
    """The kernel gradient of `_subpixel_phases`: four convolutions over the batch axis
    that share ONE transposed copy of x. (Left to XLA:CPU, each phase's kernel gradient
    transposed its own padded copy of x, fused with the recomputation of the layer
    before: 4x the memory traffic.)"""
    n, h, w, _ = x.shape
    d = dy.shape[-1]
    x_t = jnp.transpose(x, (3, 1, 2, 0))  # [C, H, W, N]: the batch becomes the contraction
    dy_t = dy.reshape(n, h, 2, w, 2, d).transpose(2, 4, 1, 3, 0, 5)  # [a, b, H, W, N, D]
    taps = {}
    for a in (0, 1):
        for b in (0, 1):
            # Pads axes 1, 2 (H, W in this layout too); the result [C, 2, 2, D] is the
            # gradient of _phase_taps(kernel, a, b).
            grad = _conv(_phase_inputs(x_t, a, b), dy_t[a, b])
            for p in (0, 1):
                for q in (0, 1):
                    taps[_PHASE_TAPS[a][p], _PHASE_TAPS[b][q]] = grad[:, p, q]
    return jnp.stack([jnp.stack([taps[i, j] for j in range(4)]) for i in range(4)])


def _subpixel_forward(x: jax.Array, kernel: jax.Array) -> jax.Array:
    if _few_outputs(kernel):
        return _combined_phases(x, kernel)
    return _subpixel_phases(x, kernel)


@jax.custom_vjp
def subpixel_conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Exactly PyTorch's ConvTranspose2d(kernel 4, stride 2, padding 1) on NHWC input.

    `kernel` is [4, 4, C_in, C_out]. Each of the four output phases is a plain 2x2
    convolution of the (one-sided padded) input with the taps that feed it, then the
    phases are interleaved (`interleave_phases`): only forward convolutions, where XLA:CPU
    computes lhs-dilated (transposed) ones slowly. For few output channels all four
    phases are one wider conv (`_combined_phases`).

    Backward: a transposed conv is the adjoint of the strided conv with the in/out-
    swapped kernel, so the input gradient is that strided conv of dy (one XLA conv, faster
    than the gradients of the four phases). The kernel gradient is `_phases_kernel_grad`,
    or for few output channels the strided conv's own kernel gradient with x as the
    cotangent (faster there; benchmarks/dcgan_layers.py times both).
    """
    return _subpixel_forward(x, kernel)


def _subpixel_backward(residuals, dy):
    x, kernel = residuals
    swapped = jnp.swapaxes(kernel, 2, 3)
    dx = _strided_conv(dy, swapped)
    if _few_outputs(kernel):
        d_kernel = jnp.swapaxes(_strided_conv_kernel_grad(dy, swapped, x), 2, 3)
    else:
        d_kernel = _phases_kernel_grad(x, dy)
    return dx.astype(x.dtype), d_kernel.astype(kernel.dtype)


subpixel_conv_transpose.defvjp(lambda x, k: (_subpixel_forward(x, k), (x, k)), _subpixel_backward)


@jax.custom_vjp
def strided_conv4x4(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Exactly Conv2d(kernel 4, stride 2, padding 1) on NHWC input, kernel [4, 4, C_in, C_out].

    Forward and kernel gradient are XLA's own strided convolution. The input gradient,
    a transposed convolution that XLA:CPU computes slowly, is the sub-pixel
    `subpixel_conv_transpose` of the output gradient with the in/out-swapped kernel.
    """
    return _strided_conv(x, kernel)


def _strided_conv_backward(residuals, dy):
    x, kernel = residuals
    # An odd input size's last row/column is read by the last output only: a zero row
    # after dy lets the transposed conv reach it; the crop drops the row beyond x.
    h_odd, w_odd = x.shape[1] % 2, x.shape[2] % 2
    dy_padded = jnp.pad(dy, ((0, 0), (0, h_odd), (0, w_odd), (0, 0)))
    dx = subpixel_conv_transpose(dy_padded, jnp.swapaxes(kernel, 2, 3))
    dx = dx[:, : x.shape[1], : x.shape[2]]
    return dx.astype(x.dtype), _strided_conv_kernel_grad(x, kernel, dy)


strided_conv4x4.defvjp(lambda x, k: (_strided_conv(x, k), (x, k)), _strided_conv_backward)


class _Conv4x4(nn.Module):
    """A 4x4-kernel layer computed by `op` (kernel [4, 4, C_in, features])."""

    features: int
    use_bias: bool = False
    kernel_init: nn.initializers.Initializer = nn.initializers.normal(0.02)
    op = staticmethod(strided_conv4x4)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features))
        y = self.op(x, kernel.astype(x.dtype))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
        return y


class UpConv(_Conv4x4):
    """2x upsampling layer with a 4x4 transposed-conv kernel (DCGAN's ConvTranspose)."""

    op = staticmethod(subpixel_conv_transpose)


class DownConv(_Conv4x4):
    """2x downsampling 4x4 conv, stride 2, padding 1 (DCGAN's discriminator conv)."""

    op = staticmethod(strided_conv4x4)


# ------------------------------------------------- PGGAN layers (Karras et al. 2018)


def equalized_scale(fan_in: int, gain: float = 2.0) -> float:
    """He's constant sqrt(gain / fan_in), applied to N(0, 1) weights at run time."""
    return (gain / fan_in) ** 0.5


def pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Normalises each pixel's feature vector to unit root-mean-square (the last axis)."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def minibatch_stddev(x: jax.Array, group_size: int = 4, num_features: int = 1) -> jax.Array:
    """Appends `num_features` channels holding the feature standard deviation within groups.

    Groups are `group_size` consecutive examples (so a group stays on one device of a data
    mesh); the std over a group, averaged over pixels and channels (per feature slice), is
    broadcast to every pixel of every member.
    """
    n, h, w, c = x.shape
    g = min(group_size, n)
    if n % g or c % num_features:
        raise ValueError(
            f"minibatch_stddev: batch {n} must be a multiple of group size {g} and channels "
            f"{c} of num_features {num_features}."
        )
    y = x.reshape(n // g, g, h, w, num_features, c // num_features).astype(jnp.float32)
    y = jnp.sqrt(jnp.var(y, axis=1) + 1e-8)  # [M, H, W, F, C/F]
    y = jnp.mean(y, axis=(1, 2, 4))  # [M, F]
    y = jnp.broadcast_to(y[:, None, None, None, :], (n // g, g, h, w, num_features))
    return jnp.concatenate([x, y.reshape(n, h, w, num_features).astype(x.dtype)], axis=-1)


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
    """Nearest-neighbour upsampling of NHWC images by an integer factor."""
    if factor == 1:
        return x
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, factor, w, factor, c))
    return x.reshape(n, h * factor, w * factor, c)


def downsample_average(x: jax.Array, factor: int = 2) -> jax.Array:
    """Box-filter downsampling (mean over factor x factor blocks) of NHWC images."""
    if factor == 1:
        return x
    n, h, w, c = x.shape
    return x.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


# Rows (a, tap): which of the 3 taps of a conv on the 2x nearest-upsampled map land on
# input offsets (-1, 0) for output phase 0, and (0, +1) for phase 1.
_UPSAMPLE_TAPS = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], np.float32)


def upsample_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Exactly conv3x3(SAME)(upsample_nearest(x, 2)), as four 2x2 convs at the input size.

    Each output phase sees only 2x2 distinct input pixels, so summing the 3x3 taps that
    read the same pixel gives 16/36 of the FLOPs, and only forward convolutions.
    """
    taps = jnp.asarray(_UPSAMPLE_TAPS, kernel.dtype)
    phases = []
    for a in (0, 1):
        for b in (0, 1):
            k = jnp.einsum("iy,jx,yxco->ijco", taps[a], taps[b], kernel)
            phases.append(_conv(_phase_inputs(x, a, b), k))
    return interleave_phases(phases)


def upsample_conv3x3_as_one(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Exactly conv3x3(SAME)(upsample_nearest(x, 2)), as `upsample_conv3x3` but one 2x2
    conv of x padded by one pixel, the four phases' kernels its output channels (phase
    (a, b) is output pixel (i + a, j + b) of block 2a + b): 16/36 of the FLOPs, and the
    kernel gradient's transposes of an input a quarter of the upsampled one
    (benchmarks/diffusion_throughput.py)."""
    n, h, w, _ = x.shape
    features = kernel.shape[-1]
    taps = jnp.asarray(_UPSAMPLE_TAPS, kernel.dtype)
    phase_kernels = [
        jnp.einsum("iy,jx,yxco->ijco", taps[a], taps[b], kernel) for a in (0, 1) for b in (0, 1)
    ]
    merged = jnp.concatenate(phase_kernels, axis=-1)  # [2, 2, C_in, 4 * C_out]
    y = conv(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), merged, 1, "VALID")
    y = y.reshape(n, h + 1, w + 1, 4, features)
    return interleave_phases(
        [y[:, a : a + h, b : b + w, 2 * a + b] for a in (0, 1) for b in (0, 1)]
    )


class EqualizedDense(nn.Module):
    """Dense layer with N(0, 1) weights scaled by sqrt(gain / fan_in) at run time."""

    features: int
    gain: float = 2.0
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.normal(1.0), (x.shape[-1], self.features))
        y = x @ (kernel * equalized_scale(x.shape[-1], self.gain)).astype(x.dtype)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
        return y


class EqualizedConv(nn.Module):
    """k x k SAME convolution with equalised learning rate; `upsample` first doubles the
    input by nearest-neighbour (computed fused, see `upsample_conv3x3`)."""

    features: int
    kernel_size: int = 3
    gain: float = 2.0
    upsample: bool = False
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        shape = (k, k, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.normal(1.0), shape)
        kernel = (kernel * equalized_scale(k * k * x.shape[-1], self.gain)).astype(x.dtype)
        if self.upsample:
            if k != 3:
                raise ValueError(f"EqualizedConv(upsample=True) needs kernel_size 3, got {k}.")
            y = upsample_conv3x3(x, kernel)
        elif k == 1:  # toRGB / fromRGB: a matmul over channels
            y = x @ kernel[0, 0]
        else:
            y = _conv(x, kernel, padding="SAME")
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(y.dtype)
        return y


# ------------------------------------------------------------- classifier layers


def max_pool(
    x: jax.Array, window: int, stride: int, padding: tuple[int, int] = (0, 0)
) -> jax.Array:
    """Max pooling of NHWC maps as an elementwise max of strided slices.

    Equals nn.max_pool(x, (window, window), (stride, stride), ((lo, hi), (lo, hi))) in
    value and in gradient (overlapping windows: ties go to the window's first maximum, as
    select-and-scatter gives them; non-overlapping: where a window's maximum is unique);
    its gradient is elementwise selects and pads, where XLA:CPU's select-and-scatter
    (reduce_window's gradient) is slow (benchmarks/max_pool_step.py).
    """
    if window == stride and padding == (0, 0):  # non-overlapping: one reshape
        _, h, w, _ = x.shape
        out_h, out_w = h // stride, w // stride
        x = x[:, : out_h * stride, : out_w * stride]
        return x.reshape(x.shape[0], out_h, stride, out_w, stride, x.shape[-1]).max(axis=(2, 4))
    return _overlapping_max_pool(x, window, stride, padding)


def _pool_taps(x, window, stride, padding):
    """x padded with -inf, and the window**2 strided slices (one per tap, row-major)."""
    lo, hi = padding
    if lo or hi:
        x = jnp.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)), constant_values=-jnp.inf)
    _, h, w, _ = x.shape
    out_h, out_w = (h - window) // stride + 1, (w - window) // stride + 1
    taps = [
        x[:, i : i + stride * (out_h - 1) + 1 : stride, j : j + stride * (out_w - 1) + 1 : stride]
        for i in range(window)
        for j in range(window)
    ]
    return x.shape, taps


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _overlapping_max_pool(x, window, stride, padding):
    return functools.reduce(jnp.maximum, _pool_taps(x, window, stride, padding)[1])


def _overlapping_max_pool_forward(x, window, stride, padding):
    taps = _pool_taps(x, window, stride, padding)[1]
    best, first = taps[0], jnp.zeros(taps[0].shape, jnp.int8)
    for t, tap in enumerate(taps[1:], 1):  # the first maximum's tap, as select-and-scatter
        first = jnp.where(tap > best, jnp.int8(t), first)
        best = jnp.maximum(best, tap)
    return best, (x, first)


def _overlapping_max_pool_backward(window, stride, padding, residuals, dy):
    x, first = residuals
    dy = materialize(dy)  # read once per tap
    padded_shape, _ = _pool_taps(x, window, stride, padding)
    out_h, out_w = dy.shape[1:3]
    zero = jnp.zeros((), dy.dtype)
    dx = None
    for i in range(window):
        for j in range(window):
            part = jnp.where(first == i * window + j, dy, zero)
            pads = [
                (offset, size - offset - stride * (out - 1) - 1, stride - 1)
                for offset, size, out in ((i, padded_shape[1], out_h), (j, padded_shape[2], out_w))
            ]
            part = jax.lax.pad(part, zero, [(0, 0, 0), *pads, (0, 0, 0)])
            dx = part if dx is None else dx + part
    lo = padding[0]
    return (dx[:, lo : lo + x.shape[1], lo : lo + x.shape[2]].astype(x.dtype),)


_overlapping_max_pool.defvjp(_overlapping_max_pool_forward, _overlapping_max_pool_backward)


def materialize(x: jax.Array) -> jax.Array:
    """x, computed once into its own buffer before its consumers read it.

    XLA:CPU copies cheap elementwise producers into every consumer's fusion; where a
    consumer reads in another order (a transpose) or many times (a pool's taps) and the
    producer is a long sum (DenseNet's concatenation adjoint), that recomputation costs
    more than the consumer itself. Fusion does not cross a conditional, and this one's
    predicate is true for every float (XLA cannot fold it), so it returns x exactly.
    jax.lax.optimization_barrier does not do this on XLA:CPU (it is removed before fusion).
    """
    first = x.reshape(-1)[0]
    always = jnp.isfinite(first) | jnp.isnan(first) | jnp.isinf(first)
    return jax.lax.cond(always, lambda v: v, jnp.zeros_like, x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _concat_channels(x: jax.Array, y: jax.Array, split: int) -> jax.Array:
    return jnp.concatenate([x, y], axis=-1)


def _concat_channels_backward(split, _, g):
    g = materialize(g)  # summed once, not again inside each consumer of its two parts
    return g[..., :split], g[..., split:]


_concat_channels.defvjp(
    lambda x, y, split: (_concat_channels(x, y, split), None), _concat_channels_backward
)


def concat_channels(x: jax.Array, y: jax.Array) -> jax.Array:
    """jnp.concatenate([x, y], axis=-1), its cotangent computed into one buffer.

    In DenseNet the cotangent of a block's running concatenation is a sum over every
    later layer; left to XLA:CPU, that sum is re-fused into each of its consumers.
    """
    return _concat_channels(x, y, x.shape[-1])


# ------------------------------------------------------------------- BatchNorm


def _column_sums(a: jax.Array) -> jax.Array:
    """Sums of [..., C] over every axis but the last, as a dot with a ones vector.

    XLA:CPU runs such a dot several times faster than the equivalent reduce (which it
    rewrites into a slow reduce-window); on GPU/TPU both are fast.
    """
    a = a.reshape(-1, a.shape[-1]).astype(jnp.promote_types(a.dtype, jnp.float32))
    return jnp.ones((a.shape[0],), a.dtype) @ a


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float):
    """Training-mode BatchNorm over every axis but the last: (y, batch mean, batch var).

    The same numbers as flax's nn.BatchNorm (E[x^2] - E[x]^2 variance clipped at 0,
    y = (x - mean) * scale * rsqrt(var + eps) + bias), with every reduction of the
    forward and backward pass computed by `_column_sums`.
    """
    return _batch_norm_forward(x, scale, bias, epsilon)[0]


def _batch_norm_forward(x, scale, bias, epsilon):
    rows = x.size // x.shape[-1]
    mean = _column_sums(x) / rows
    var = jnp.maximum(0.0, _column_sums(x * x) / rows - mean * mean)
    inv = jax.lax.rsqrt(var + epsilon)
    y = (x - mean) * (inv * scale) + bias
    return (y, mean, var), (x, mean, inv, scale)


def _batch_norm_backward(epsilon, residuals, cotangents):
    x, mean, inv, scale = residuals
    dy, d_mean, d_var = cotangents
    rows = x.size // x.shape[-1]
    x_hat = (x - mean) * inv
    d_bias = _column_sums(dy)
    d_scale = _column_sums(dy * x_hat)
    # d/dx of the normalised output, with the batch statistics' own dependence on x;
    # then the direct use of the returned mean and variance (running averages).
    dx = (inv * scale) * (dy - (d_bias + x_hat * d_scale) / rows)
    dx = dx + d_mean / rows + d_var * (2.0 / rows) * (x - mean)
    return dx.astype(x.dtype), d_scale, d_bias


batch_norm_train.defvjp(_batch_norm_forward, _batch_norm_backward)


class BatchNorm(nn.Module):
    """Drop-in for nn.BatchNorm over the last axis (same parameter and statistic names,
    same numbers to float rounding), with reductions that are fast on XLA:CPU.

    `momentum` weighs the running average as in flax: 0.9 == PyTorch's momentum 0.1.
    `dtype` is the output's dtype (None: x's promoted with float32, as flax infers it);
    statistics, parameters and the normalisation's arithmetic stay float32, as in flax.
    """

    use_running_average: bool = False
    momentum: float = 0.99
    epsilon: float = 1e-5
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        dtype = self.dtype or jnp.promote_types(x.dtype, jnp.float32)
        if self.use_running_average:
            inv = jax.lax.rsqrt(ra_var.value + self.epsilon)
            return ((x - ra_mean.value) * (inv * scale) + bias).astype(dtype)
        y, mean, var = batch_norm_train(x, scale, bias, self.epsilon)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y.astype(dtype)


# ------------------------------------------------------------------- GroupNorm


def _image_channel_sums(a: jax.Array) -> jax.Array:
    """Sums of [N, ..., C] over every axis but the first and last: [N, C], as a batched
    product with a ones row (XLA:CPU's reduce over H, W is several times slower)."""
    a = a.reshape(a.shape[0], -1, a.shape[-1]).astype(jnp.promote_types(a.dtype, jnp.float32))
    ones = jnp.ones((a.shape[0], 1, a.shape[1]), a.dtype)
    return jnp.matmul(ones, a)[:, 0]


def _group_means(a: jax.Array, groups: int, sums: jax.Array | None = None) -> jax.Array:
    """[N, ..., C] -> [N, C]: each channel holds its (image, group) mean.
    `sums`: a's `_image_channel_sums` when already known."""
    n, c = a.shape[0], a.shape[-1]
    sums = _image_channel_sums(a) if sums is None else sums
    means = sums.reshape(n, groups, c // groups).sum(-1) / (a.size // n // groups)
    return jnp.repeat(means, c // groups, axis=1)


def _per_channel(x: jax.Array, *coefficients: jax.Array) -> list[jax.Array]:
    """[N, C] coefficients computed into one buffer, each shaped to broadcast over x's maps.

    Left to XLA:CPU, the small arithmetic that makes them (the group statistics' repeat
    over channels, rsqrt) is fused into every pass over the maps and redone per element:
    the GroupNorm forward took twice as long (benchmarks/diffusion_throughput.py)."""
    stacked = materialize(jnp.stack(coefficients))
    shape = (x.shape[0], *[1] * (x.ndim - 2), x.shape[-1])
    return [c.reshape(shape) for c in stacked]


def _group_statistics(x, groups, epsilon):
    """Per image and channel, the mean and 1/std of its (image, group), [N, C] each.

    One pass over x: each pixel's sums of x and x^2 over its group's channels (a reduce
    over the minor axis, which XLA:CPU runs fast), then a product with ones over the
    pixels, rather than writing x^2 out for a product of its own."""
    n, c = x.shape[0], x.shape[-1]
    x = x.reshape(n, -1, groups, c // groups)
    pixel_sums = jnp.concatenate([x.sum(-1), (x * x).sum(-1)], axis=-1)  # [N, H*W, 2G]
    ones = jnp.ones((n, 1, pixel_sums.shape[1]), x.dtype)
    means = jnp.matmul(ones, pixel_sums)[:, 0] / (x.size // n // groups)
    mean, mean_square = means[:, :groups], means[:, groups:]
    inv = jax.lax.rsqrt(jnp.maximum(0.0, mean_square - mean * mean) + epsilon)
    return jnp.repeat(mean, c // groups, axis=1), jnp.repeat(inv, c // groups, axis=1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def group_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, groups: int, epsilon: float):
    """GroupNorm of [N, ..., C] over (image, group of C / groups channels), as flax's
    nn.GroupNorm (E[x^2] - E[x]^2 variance clipped at 0), every reduction over the pixels,
    forward and backward, a product with ones."""
    return _group_norm_forward(x, scale, bias, groups, epsilon)[0]


def _group_norm_forward(x, scale, bias, groups, epsilon):
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean, inv = _group_statistics(x, groups, epsilon)
    m, a = _per_channel(x, mean, inv * scale)
    return (x - m) * a + bias, (x, mean, inv, scale)


def _group_norm_backward(groups, epsilon, residuals, dy):
    x, mean, inv, scale = residuals
    m, i = _per_channel(x, mean, inv)
    # Two passes over the maps: per image and channel, the sums of dy and dy * x_hat give
    # the bias and scale gradients and, times the scale, the group means dx needs.
    dy_sums, dy_x_hat_sums = _image_channel_sums(dy), _image_channel_sums(dy * ((x - m) * i))
    g_mean = _group_means(dy, groups, dy_sums * scale)
    g_x_hat_mean = _group_means(dy, groups, dy_x_hat_sums * scale)
    # dx = inv * (dy * scale - g_mean - x_hat * g_x_hat_mean), per channel coefficients
    dy_c, x_c, c = _per_channel(x, inv * scale, inv * inv * g_x_hat_mean, inv * g_mean)
    dx = dy * dy_c - (x - m) * x_c - c
    return dx, dy_x_hat_sums.sum(0), dy_sums.sum(0)


group_norm.defvjp(_group_norm_forward, _group_norm_backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def group_norm_silu(x: jax.Array, scale: jax.Array, bias: jax.Array, groups: int, epsilon: float):
    """silu(group_norm(x)) in one pass over the normalised maps; the backward pass
    recomputes them and their sigmoid from x, which the GroupNorm backward keeps anyway,
    instead of reading a saved sigmoid (benchmarks/diffusion_throughput.py)."""
    return _group_norm_silu_forward(x, scale, bias, groups, epsilon)[0]


def _group_norm_silu_forward(x, scale, bias, groups, epsilon):
    z, residuals = _group_norm_forward(x, scale, bias, groups, epsilon)
    return jax.nn.silu(z), (residuals, bias)


def _group_norm_silu_backward(groups, epsilon, residuals, dy):
    (x, mean, inv, scale), bias = residuals
    # Written unlike the forward's (x - mean) * a + bias: XLA would otherwise merge the
    # two sigmoids into one buffer written in the forward and read back here.
    a, b = _per_channel(x, inv * scale, bias - mean * inv * scale)
    z = x * a + b
    sig = jax.nn.sigmoid(z)
    dz = materialize(dy * (sig * (1 + z * (1 - sig))))  # read by three passes below
    return _group_norm_backward(groups, epsilon, (x, mean, inv, scale), dz)


group_norm_silu.defvjp(_group_norm_silu_forward, _group_norm_silu_backward)


class GroupNorm(nn.Module):
    """nn.GroupNorm over the last axis (parameters `scale`, `bias`; the same numbers to
    float rounding), by `group_norm`, or with silu=True nn.silu of it by
    `group_norm_silu`; float32 arithmetic, output in x's dtype."""

    num_groups: int
    epsilon: float = 1e-6
    silu: bool = False  # silu(GroupNorm(x)) by `group_norm_silu`

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        if features % self.num_groups:
            raise ValueError(f"GroupNorm: {self.num_groups} groups do not divide {features}.")
        scale = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        norm = group_norm_silu if self.silu else group_norm
        return norm(x, scale, bias, self.num_groups, self.epsilon).astype(x.dtype)


# ------------------------------------------------------------------- attention


def attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """softmax(q k^T / sqrt(D)) v for each head: q, k, v [N, T, H, D] -> [N, T, H, D], as
    jax.nn.dot_product_attention (the same numbers to float rounding; logits and softmax
    in float32).

    The products run heads-major ([N, H, T, D]), and the softmax's division is applied to
    the [T, D] output instead of the [T, T] weights: XLA:CPU then makes fewer passes over
    the weights, the largest arrays of the block (benchmarks/diffusion_throughput.py).
    """
    q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
    q = q * jnp.asarray(1 / np.sqrt(q.shape[-1]), q.dtype)
    logits = jnp.einsum("nhqd,nhkd->nhqk", q, k).astype(jnp.float32)
    # Softmax is shift-invariant, so the shift needs no gradient.
    shift = jax.lax.stop_gradient(_softmax_shift(q, k, logits, v.dtype))
    weights = jnp.exp(logits - shift[..., None])
    out = jnp.einsum("nhqk,nhkd->nhqd", weights.astype(v.dtype), v).astype(jnp.float32)
    out = out / weights.sum(-1, keepdims=True)
    return out.astype(v.dtype).transpose(0, 2, 1, 3)


SHIFT_LIMIT = 60.0  # exp(60) * T * |v| stays far below float32's (and bfloat16's) max


def _softmax_shift(q, k, logits, dtype) -> jax.Array:
    """[N, H, T]: what each row of the logits is shifted by before exp.

    Its own diagonal logit q_i . k_i where no logit of the row can exceed that by more than
    SHIFT_LIMIT (Cauchy-Schwarz: q_i . (k_j - k_i) <= |q_i| (max_j |k_j| + |k_i|)), so the
    largest weight is between 1 and exp(SHIFT_LIMIT): no overflow, no row of zeros, and
    no pass over the [T, T] logits for their row maxima. Otherwise (and for attention
    between different sequences, or float16) the row maxima.
    """
    row_max = lambda logits: logits.max(-1)
    if q.shape[2] != k.shape[2] or jnp.finfo(dtype).maxexp < 128:
        return row_max(logits)
    q, k = jax.lax.stop_gradient((q.astype(jnp.float32), k.astype(jnp.float32)))
    k_norms = jnp.sqrt(jnp.sum(k * k, -1))
    bound = jnp.sqrt(jnp.sum(q * q, -1)) * (k_norms.max(-1, keepdims=True) + k_norms)
    diagonal = lambda _: jnp.sum(q * k, -1)
    return jax.lax.cond(jnp.all(bound <= SHIFT_LIMIT), diagonal, row_max, logits)


# ------------------------------------------------------- reductions as dots, conv


@jax.custom_vjp
def add_bias(y: jax.Array, bias: jax.Array) -> jax.Array:
    """y + bias over the last axis; the bias gradient is `_column_sums` (a dot with ones),
    where XLA:CPU's reduce over N, H, W (a reduce-window there) is several times slower."""
    return y + bias.astype(y.dtype)


def _add_bias_backward(bias, dy):
    return dy, _column_sums(dy).astype(bias.dtype)


add_bias.defvjp(lambda y, b: (y + b.astype(y.dtype), b), _add_bias_backward)


@jax.custom_vjp
def add_per_sample(y: jax.Array, e: jax.Array) -> jax.Array:
    """y [N, H, W, C] + e [N, C] over every pixel (a U-Net's noise embedding). The gradient
    of e is a batched dot with ones over the pixels of dy, computed once into its own buffer
    (materialize): XLA:CPU otherwise re-fuses the GroupNorm backward that produces dy into
    this reduce and again into the conv bias's (benchmarks/diffusion_throughput.py)."""
    return y + e[:, None, None, :].astype(y.dtype)


def _add_per_sample_backward(e_like, dy):
    dy = materialize(dy)
    n, h, w, c = dy.shape
    flat = dy.reshape(n, h * w, c).astype(jnp.promote_types(dy.dtype, jnp.float32))
    de = jnp.einsum("nsc,s->nc", flat, jnp.ones((h * w,), flat.dtype))
    return dy, de.astype(e_like.dtype)


# e is the residual for its dtype only.
add_per_sample.defvjp(lambda y, e: (add_per_sample(y, e), e), _add_per_sample_backward)


@jax.custom_vjp
def global_avg_pool(x: jax.Array) -> jax.Array:
    """jnp.mean(x, axis=(1, 2)) of NHWC maps in float32 ([N, C]), as a batched dot with a
    ones vector (XLA:CPU's reduce is slow); the gradient is a broadcast."""
    n, h, w, c = x.shape
    x = x.reshape(n, h * w, c).astype(jnp.promote_types(x.dtype, jnp.float32))
    return jnp.einsum("nsc,s->nc", x, jnp.full((h * w,), 1.0 / (h * w), x.dtype))


def _global_avg_pool_backward(x_like, dy):
    n, h, w, c = x_like.shape
    dx = jnp.broadcast_to((dy / (h * w))[:, None, None, :], x_like.shape)
    return (dx.astype(x_like.dtype),)


# x is the residual for its shape and dtype only (the backward pass keeps it anyway).
global_avg_pool.defvjp(lambda x: (global_avg_pool(x), x), _global_avg_pool_backward)


def _pointwise(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """[..., C_in] @ [C_in, C_out] as one 2-D matmul."""
    y = x.reshape(-1, x.shape[-1]) @ kernel
    return y.reshape(*x.shape[:-1], kernel.shape[-1])


def _conv_forward(x, kernel, stride, padding):
    if kernel.shape[:2] == (1, 1) and padding in ("SAME", "VALID"):
        return _pointwise(x[:, ::stride, ::stride], kernel[0, 0])
    return _conv(x, kernel, (stride, stride), padding)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: Any = "SAME") -> jax.Array:
    """lax.conv_general_dilated of NHWC maps with an HWIO kernel (square stride).

    1x1 convolutions run as 2-D matmuls, forward and backward, and every kernel gradient
    contracts over N*H*W with activations kept in their NHWC layout: XLA:CPU's own
    kernel gradient transposes both activations to [C, H, W, N]-like layouts, with the
    layers before fused into the transpose (classifier_throughput.py --profile). Larger
    stride-1 kernels take their kernel gradient from `_swapped_kernel_grad`.
    """
    return _conv_forward(x, kernel, stride, padding)


def _conv_backward(stride, padding, residuals, dy):
    x, kernel = residuals
    if kernel.shape[:2] == (1, 1) and padding in ("SAME", "VALID"):
        w = kernel[0, 0]
        x_s = x[:, ::stride, ::stride]
        d_kernel = (x_s.reshape(-1, x.shape[-1]).T @ dy.reshape(-1, dy.shape[-1]))[None, None]
        dx = _pointwise(dy, w.T)
        if stride > 1:  # zeros between and after the strided pixels (not a scatter)
            pads = [(0, size - (out - 1) * stride - 1, stride - 1)
                    for size, out in zip(x.shape[1:3], dx.shape[1:3])]  # fmt: skip
            dx = jax.lax.pad(dx, jnp.zeros((), dx.dtype), [(0, 0, 0), *pads, (0, 0, 0)])
        return dx.astype(x.dtype), d_kernel.astype(kernel.dtype)
    pads = _swapped_kernel_grad_pads(x, kernel, stride, padding)
    if pads is None:
        _, pullback = jax.vjp(lambda x, k: _conv(x, k, (stride, stride), padding), x, kernel)
        return pullback(dy)
    _, pullback = jax.vjp(lambda x: _conv(x, kernel, (stride, stride), padding), x)
    d_kernel = _swapped_kernel_grad(x, dy, kernel.shape[:2], pads)
    return pullback(dy)[0], d_kernel.astype(kernel.dtype)


def _swapped_kernel_grad_pads(x, kernel, stride, padding):
    """The (lo, hi) input padding per spatial axis where `_swapped_kernel_grad` applies, or
    None: stride 1, padding within the kernel, and fewer output than input channels (so
    the full transpose falls on the smaller map; ResNet's equal widths keep XLA's)."""
    kh, kw, c_in, c_out = kernel.shape
    if stride != 1 or c_out >= c_in:
        return None
    if padding == "SAME":
        pads = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in (kh, kw)]
    elif padding == "VALID":
        pads = [(0, 0), (0, 0)]
    else:
        pads = [tuple(pair) for pair in padding]
    if not all(0 <= p <= k - 1 for k, pair in zip((kh, kw), pads) for p in pair):
        return None
    return pads


def _swapped_kernel_grad(x, dy, kernel_hw, pads):
    """The kernel gradient of a stride-1 convolution, sum over n, h, w of
    x_padded[n, h + i, w + j, c] * dy[n, h, w, o], as XLA's convolution with the roles
    swapped: dy is the input with its output channels as the batch, x the kernel
    [H, W, N, C]. XLA:CPU's own kernel gradient moves the batch axis of x innermost, a
    full transpose that is slow on large maps; here that transpose falls on dy (fewer
    channels in DenseNet) and x only moves its batch axis past H, W (whole rows of C).
    The result's taps come out reversed (the window slides over dy, not x).
    """
    dy_t = jnp.transpose(materialize(dy), (3, 1, 2, 0))  # [C_out, H', W', N]
    x_t = jnp.transpose(x, (1, 2, 0, 3))  # [H, W, N, C_in]
    conv_pads = [(k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(kernel_hw, pads)]
    g = _conv(dy_t, x_t, padding=conv_pads)  # [C_out, kh, kw, C_in], taps reversed
    return jnp.transpose(g[:, ::-1, ::-1], (1, 2, 3, 0))


conv.defvjp(lambda x, k, s, p: (_conv_forward(x, k, s, p), (x, k)), _conv_backward)


class Conv(nn.Module):
    """nn.Conv for NHWC maps with square kernels (same parameter names, shapes and dtype
    behaviour), computed by `conv`, with the bias added by `add_bias`. `upsample`: the
    input is first doubled by nearest-neighbour upsampling (a 3x3 SAME convolution only;
    computed at the input's size, `upsample_conv3x3_as_one`)."""

    features: int
    kernel_size: int
    strides: int = 1
    padding: Any = "SAME"
    use_bias: bool = True
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    dtype: Any = None
    upsample: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
        bias = (
            self.param("bias", nn.initializers.zeros, (self.features,)) if self.use_bias else None
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        if self.upsample:
            if (k, self.strides, self.padding) != (3, 1, "SAME"):
                raise ValueError(
                    "Conv(upsample=True) is a 3x3, stride-1, SAME convolution; got "
                    f"kernel_size={k}, strides={self.strides}, padding={self.padding!r}."
                )
            y = upsample_conv3x3_as_one(x, kernel)
        else:
            y = conv(x, kernel, self.strides, self.padding)
        return add_bias(y, bias) if self.use_bias else y


class Dense(nn.Module):
    """nn.Dense over the last axis (same parameter names, shapes and dtype behaviour), its
    bias added by `add_bias`: the bias gradient over many rows (an attention layer's
    pixels) is a product with ones."""

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return add_bias(x @ kernel, bias)


@jax.custom_vjp
def avg_pool2(x: jax.Array) -> jax.Array:
    """nn.avg_pool(x, (2, 2), (2, 2)) of NHWC maps (an odd last row/column is dropped), as
    a sum of four strided slices; the gradient is a broadcast, where XLA:CPU computes the
    reduce-window and its gradient slowly."""
    x = x[:, : x.shape[1] // 2 * 2, : x.shape[2] // 2 * 2]
    total = x[:, 0::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 0::2] + x[:, 1::2, 1::2]
    return total * jnp.asarray(0.25, x.dtype)


def _avg_pool2_backward(x, dy):
    n, h, w, c = dy.shape
    dy = materialize(dy)  # each element is read four times
    dx = jnp.broadcast_to(
        (dy * jnp.asarray(0.25, dy.dtype))[:, :, None, :, None], (n, h, 2, w, 2, c)
    )
    dx = dx.reshape(n, 2 * h, 2 * w, c)
    pad = ((0, 0), (0, x.shape[1] - 2 * h), (0, x.shape[2] - 2 * w), (0, 0))
    return (jnp.pad(dx, pad).astype(x.dtype),)


# x is the residual for its shape and dtype only (the backward pass keeps it anyway).
avg_pool2.defvjp(lambda x: (avg_pool2(x), x), _avg_pool2_backward)
