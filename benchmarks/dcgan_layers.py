"""Where the DCGAN-64 step's time goes: each conv layer against PyTorch, and the FLOP floor.

  python benchmarks/dcgan_layers.py [--repeats 10]

For each 4x4 stride-2 layer of pytorch/examples' DCGAN at batch 64 (G's transposed convs,
D's strided convs), times this project's layer (`layers.UpConv` / `layers.DownConv`
ops) and PyTorch's ConvTranspose2d / Conv2d (eager, CPU build): the forward alone, and
forward + backward to both the input and the kernel. Sides alternate per layer; the
median of `--repeats` runs is printed, with the FLOP rate of the sums. Then the bound
on the speed-up: both whole training steps timed in alternating rounds, the step's
FLOPs (XLA's cost analysis), this machine's best f32 matmul rate, and the FLOP rate the
whole step would need to run 1.5x faster than PyTorch's. Last, from a jax.profiler
trace of a few steps, the time of the step's non-convolution ops by kind (XLA:CPU runs
convolutions asynchronously, so its trace times only their launch).
PyTorch is a benchmark-only dependency: pip install torch==2.13.0.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 64
# (name, kind, input size, input channels, output channels)
LAYERS = [
    ("G 512->256 @4", "up", 4, 512, 256),
    ("G 256->128 @8", "up", 8, 256, 128),
    ("G 128->64 @16", "up", 16, 128, 64),
    ("G 64->3 @32", "up", 32, 64, 3),
    ("D 3->64 @64", "down", 64, 3, 64),
    ("D 64->128 @32", "down", 32, 64, 128),
    ("D 128->256 @16", "down", 16, 128, 256),
    ("D 256->512 @8", "down", 8, 256, 512),
]


def run_times_ms(fn, repeats: int) -> np.ndarray:
    fn(), fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * np.array(times)


def median_ms(fn, repeats: int) -> float:
    return float(np.median(run_times_ms(fn, repeats)))


def jax_layer(kind: str, size: int, c_in: int, c_out: int):
    """(forward, forward + backward) callables of this project's layer op, and their
    GFLOP by XLA's cost analysis (as for the whole step below)."""
    import jax

    from medgan_jax.models import layers

    op = layers.subpixel_conv_transpose if kind == "up" else layers.strided_conv4x4
    rng = np.random.default_rng(0)
    x = jax.numpy.asarray(rng.normal(size=(BATCH, size, size, c_in)).astype(np.float32))
    kernel = jax.numpy.asarray(0.02 * rng.normal(size=(4, 4, c_in, c_out)).astype(np.float32))
    dy = jax.numpy.ones(jax.eval_shape(op, x, kernel).shape, x.dtype)

    def forward_backward(x, kernel, dy):
        y, pullback = jax.vjp(op, x, kernel)
        return y, pullback(dy)

    # Compiled once each: timed, and counted by XLA's cost analysis.
    forward = jax.jit(op).lower(x, kernel).compile()
    both = jax.jit(forward_backward).lower(x, kernel, dy).compile()
    return (
        lambda: jax.block_until_ready(forward(x, kernel)),
        lambda: jax.block_until_ready(both(x, kernel, dy)),
        compiled_gflop(forward),
        compiled_gflop(both),
    )


def compiled_gflop(compiled) -> float:
    """GFLOP of a compiled function by XLA's cost analysis. It counts only the taps that
    meet real input, not zero padding (12% fewer than 16 * C_in * C_out per output pixel
    for D 128->256 @16); both sides' FLOP rates use this one count."""
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis["flops"]) / 1e9


def torch_layer(kind: str, size: int, c_in: int, c_out: int):
    import torch

    cls = torch.nn.ConvTranspose2d if kind == "up" else torch.nn.Conv2d
    module = cls(c_in, c_out, 4, 2, 1, bias=False)
    x = torch.randn(BATCH, c_in, size, size, requires_grad=True)
    with torch.no_grad():
        dy = torch.ones_like(module(x))

    def forward():
        with torch.no_grad():
            module(x)

    def forward_backward():
        module(x).backward(dy)

    return forward, forward_backward


def compiled_step():
    """This project's DCGAN-64 step compiled once: (compiled, run) where run() does a step."""
    import jax

    from benchmarks.dcgan_throughput import jax_step_and_batch

    state, step, batch = jax_step_and_batch(BATCH)
    compiled = step.lower(state, batch).compile()
    holder = {"state": state}

    def run():  # the step donates its state: thread it through
        holder["state"], metrics = compiled(holder["state"], batch)
        jax.block_until_ready(metrics)

    return compiled, run


def best_matmul_gflops(n: int = 4096) -> float:
    """The FLOP rate of XLA's f32 [n, n] x [n, n] matmul, fastest of 10: this machine's
    practical peak."""
    import jax

    a = jax.numpy.asarray(np.random.default_rng(0).normal(size=(n, n)).astype(np.float32))
    dot = jax.jit(jax.numpy.dot)
    return 2 * n**3 / run_times_ms(lambda: jax.block_until_ready(dot(a, a)), 10).min() / 1e6


def non_conv_op_ms(run, steps: int = 5) -> dict[str, float]:
    """Milliseconds per step of the step's non-convolution XLA ops, by kind, traced."""
    import jax

    for _ in range(3):
        run()
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
        for _ in range(steps):
            run()
        jax.profiler.stop_trace()
        (path,) = glob.glob(f"{trace_dir}/**/*.trace.json.gz", recursive=True)
        with gzip.open(path) as f:
            events = json.load(f)["traceEvents"]
    kinds: dict[str, float] = collections.defaultdict(float)
    for event in events:
        name = event.get("name", "")
        if event.get("ph") != "X" or name.startswith("$") or "Thunk" in name:
            continue
        if "Pjit" in name or "conv" in name:  # host dispatch; conv launches
            continue
        kinds[re.sub(r"\.\d+$", "", name)] += event["dur"] / 1000 / steps
    return dict(sorted(kinds.items(), key=lambda item: -item[1]))


def layer_table(repeats: int) -> tuple[str, float]:
    """Prints each layer's times; returns our fastest forward layer and its GFLOP/s."""
    import torch

    print(f"batch {BATCH}; ms, median of {repeats}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'layer':16s} {'jax fwd':>8s} {'torch fwd':>9s} {'jax f+b':>8s} {'torch f+b':>9s}")
    totals, gflop, forward_rates = np.zeros(4), np.zeros(4), {}
    for name, kind, size, c_in, c_out in LAYERS:
        jax_fwd, jax_both, fwd_gflop, both_gflop = jax_layer(kind, size, c_in, c_out)
        torch_fwd, torch_both = torch_layer(kind, size, c_in, c_out)
        sides = (jax_fwd, torch_fwd, jax_both, torch_both)
        row = np.array([median_ms(f, repeats) for f in sides])
        totals += row
        gflop += [fwd_gflop, fwd_gflop, both_gflop, both_gflop]
        forward_rates[name] = fwd_gflop / (row[0] / 1000)
        print(f"{name:16s} {row[0]:8.1f} {row[1]:9.1f} {row[2]:8.1f} {row[3]:9.1f}")
    print(f"{'sum':16s} {totals[0]:8.1f} {totals[1]:9.1f} {totals[2]:8.1f} {totals[3]:9.1f}")
    rates = gflop / (totals / 1000)
    print(f"{'GFLOP/s':16s} {rates[0]:8.0f} {rates[1]:9.0f} {rates[2]:8.0f} {rates[3]:9.0f}")
    print(f"torch / jax: forward {totals[1] / totals[0]:.2f}x, "
          f"forward + backward {totals[3] / totals[2]:.2f}x")  # fmt: skip
    return max(forward_rates.items(), key=lambda item: item[1])


def fastest_step_ms(sides: dict, rounds: int = 6, steps: int = 3) -> dict[str, float]:
    """Each side's fastest round (ms per step) of alternating rounds: its speed when the
    shared host is quietest, which is what the target compares."""
    from benchmarks.side_by_side import time_steps

    best = {name: np.inf for name in sides}
    for step in sides.values():  # compile / warm up
        step(), step()
    for _ in range(rounds):
        for name, step in sides.items():
            best[name] = min(best[name], 1000 * time_steps(step, steps) / steps)
    return best


def print_target_bound(run, step_gflop: float, best_forward: tuple[str, float]) -> None:
    """Times both whole steps and prints the FLOP rate that 1.5x PyTorch would need."""
    from benchmarks.dcgan_throughput import torch_reference

    peak = best_matmul_gflops()
    print(f"best f32 matmul on this machine (XLA, 4096x4096): {peak:.0f} GFLOP/s")
    step_ms = fastest_step_ms({"medgan_jax": run, "pytorch": torch_reference(BATCH)})
    ours, theirs = step_ms["medgan_jax"], step_ms["pytorch"]
    print(f"whole training step, fastest of 6 alternating rounds: medgan_jax {ours:.0f} ms, "
          f"pytorch {theirs:.0f} ms ({theirs / ours:.2f}x)")  # fmt: skip
    target = theirs / 1.5
    needed = step_gflop / (target / 1000)
    layer, layer_rate = best_forward
    print(f"one step: {step_gflop:.1f} GFLOP (XLA cost analysis), "
          f"{step_gflop / ours * 1000:.0f} GFLOP/s at {ours:.0f} ms")  # fmt: skip
    print(f"1.5x PyTorch's {theirs:.0f} ms is {target:.0f} ms: {needed:.0f} GFLOP/s over the "
          f"whole step, backward and memory-bound work included; that is "
          f"{100 * needed / peak:.0f}% of the best matmul and "
          f"{100 * needed / layer_rate:.0f}% of our fastest convolution forward alone "
          f"({layer}, {layer_rate:.0f} GFLOP/s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    best_forward = layer_table(args.repeats)
    compiled, run = compiled_step()
    print_target_bound(run, compiled_gflop(compiled), best_forward)
    # Profiled last: a trace leaves the runtime slower for the rest of the process.
    kinds = non_conv_op_ms(run)
    top = ", ".join(f"{name} {ms:.1f}" for name, ms in list(kinds.items())[:6])
    print(f"non-convolution ops: {sum(kinds.values()):.0f} ms per step; largest: {top}")


if __name__ == "__main__":
    from medgan_jax import app  # XLA flags must precede jax's backend start-up

    app.configure(compilation_cache="", distributed=False)
    main()
