"""MS-SSIM throughput: this project's jit-compiled ms_ssim vs tf.image.ssim_multiscale.

  python benchmarks/ms_ssim_throughput.py [--pairs 64] [--shapes 192x192x1,256x256x3]
                                          [--rounds 10] [--alternatives]

Both sides score the same batch of random pairs (float32 in [-1, 1]) in this one process:
TF inside a tf.function on images + 1 (the non-negative range it documents, which is
what ms_ssim computes on), ms_ssim jit-compiled, both warmed up first, timed in
alternating rounds so machine noise hits both alike. Prints the median pairs/s of each,
the ratio and the largest difference between their values. --alternatives also times
other ways of doing the Gaussian filtering on XLA:CPU (why ms_ssim.py sums shifted
slices in chunks). Writes benchmarks/results/ms_ssim_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_pairs(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, shape).astype(np.float32)
    b = np.clip(a + 0.5 * rng.normal(size=shape), -1, 1).astype(np.float32)
    return a, b


def tf_side(a: np.ndarray, b: np.ndarray):
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    fn = tf.function(lambda x, y: tf.image.ssim_multiscale(x + 1.0, y + 1.0, 2.0))
    x, y = tf.constant(a), tf.constant(b)
    return lambda: fn(x, y).numpy()


def jax_side(a: np.ndarray, b: np.ndarray, moments=None, **kwargs):
    """ms_ssim on device arrays; `moments` swaps in another filtering of the 4 moment maps."""
    import jax

    from medgan_jax.metrics import ms_ssim as lib

    x, y = jax.device_put(a), jax.device_put(b)
    if moments is None:
        return lambda: np.asarray(lib.ms_ssim(x, y, **kwargs))

    # A new function object (JAX caches traces per function), traced with the swap in place.
    original = lib._ms_ssim.__wrapped__

    def fresh(*args, **kw):
        return original(*args, **kw)

    statics = ("power_factors", "filter_size", "filter_sigma", "k1", "k2", "chunk_pixels")
    jitted = jax.jit(fresh, static_argnames=statics)

    def run():
        saved = lib._ms_ssim, lib._filtered_moments
        lib._ms_ssim, lib._filtered_moments = jitted, moments
        try:
            return np.asarray(lib.ms_ssim(x, y, **kwargs))
        finally:
            lib._ms_ssim, lib._filtered_moments = saved

    return run


def alternatives() -> dict:
    """Other filterings of a, b, a*b, a^2+b^2 with a (size,) Gaussian: (4, M, H', W')."""
    import jax
    import jax.numpy as jnp

    from medgan_jax.metrics.ms_ssim import _valid_filter

    def maps(a, b, axis):
        return jnp.stack([a, b, a * b, a * a + b * b], axis)

    def depthwise(x, kernel):  # x (M, H, W, 4), kernel (kh, kw)
        k = np.tile(kernel[:, :, None, None], (1, 1, 1, 4)).astype(np.float32)
        dn = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(
            x, k, (1, 1), "VALID", dimension_numbers=dn, feature_group_count=4
        )

    def conv2d(a, b, taps):  # TF's way: one 11x11 depthwise convolution
        return jnp.moveaxis(depthwise(maps(a, b, -1), np.outer(taps, taps)), -1, 0)

    def separable_conv(a, b, taps):
        x = depthwise(depthwise(maps(a, b, -1), taps[:, None]), taps[None, :])
        return jnp.moveaxis(x, -1, 0)

    def band(n, taps):
        m = np.zeros((n, n - len(taps) + 1), np.float32)
        for j in range(m.shape[1]):
            m[j : j + len(taps), j] = taps
        return m

    def banded_matmul(a, b, taps):
        m = maps(a, b, 0)
        rows, cols = band(m.shape[2], taps), band(m.shape[3], taps)
        return jnp.einsum("kmow,wp->kmop", jnp.einsum("kmhw,ho->kmow", m, rows), cols)

    def stacked_slices(a, b, taps):  # products materialised before filtering
        return _valid_filter(_valid_filter(maps(a, b, 0), taps, 2), taps, 3)

    return {
        "slices, no chunks": (None, {"chunk_pixels": 0}),
        "stacked slices": (stacked_slices, {}),
        "banded matmul": (banded_matmul, {}),
        "depthwise conv 11x11": (conv2d, {"chunk_pixels": 0}),
        "separable conv": (separable_conv, {"chunk_pixels": 0}),
    }


def time_rounds(sides: dict, rounds: int) -> dict[str, float]:
    """Median seconds per call of each side, in alternating rounds."""
    seconds = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=64, help="pairs per call (the batch)")
    parser.add_argument("--shapes", default="192x192x1,256x256x3", help="HxWxC, comma-separated")
    parser.add_argument("--rounds", type=int, default=10, help="timed calls per side")
    parser.add_argument("--alternatives", action="store_true", help="also time other filters")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    from medgan_jax import app  # noqa: I001  (sets XLA flags before JAX starts)

    app.configure(compilation_cache="", distributed=False)
    import jax
    import tensorflow as tf

    results = []
    for spec in args.shapes.split(","):
        h, w, c = (int(v) for v in spec.lower().split("x"))
        a, b = make_pairs((args.pairs, h, w, c))
        sides = {"medgan_jax": jax_side(a, b), "tensorflow": tf_side(a, b)}
        if args.alternatives:
            for name, (moments, kwargs) in alternatives().items():
                sides[f"  {name}"] = jax_side(a, b, moments, **kwargs)
        values = {name: run() for name, run in sides.items()}  # compile / warm up
        for run in sides.values():
            run()
        seconds = time_rounds(sides, args.rounds)
        print(f"\n{args.pairs} pairs of {h}x{w}x{c}, median of {args.rounds} rounds")
        for name, s in seconds.items():
            diff = np.abs(values[name] - values["tensorflow"]).max()
            rate = args.pairs / s
            print(f"{name:24s} {rate:8.1f} pairs/s  ({1000 * s:7.1f} ms)  max |diff| {diff:.1e}")
        ratio = seconds["tensorflow"] / seconds["medgan_jax"]
        print(f"ratio medgan_jax / tensorflow: {ratio:.2f}x")
        results.append(
            {
                "shape": [h, w, c],
                "pairs": args.pairs,
                "pairs_per_s": {name.strip(): args.pairs / s for name, s in seconds.items()},
                "ratio": ratio,
                "max_abs_diff": float(np.abs(values["medgan_jax"] - values["tensorflow"]).max()),
            }
        )
    print(f"(jax {jax.__version__}, tensorflow {tf.__version__}, {os.cpu_count()} CPUs)")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ms_ssim_throughput.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
