"""Classifier training throughput: this project's jit step vs a PyTorch eager reference.

  python benchmarks/classifier_throughput.py [--models resnet50,densenet121,...] [--steps N]
                    [--batch N] [--rounds 3] [--torch-format channels_last] [--reuse-memory]
                    [--profile]

For each row both sides train the identical network on the same random batch in this one
process: ResNet-50 and DenseNet-121 (keras.applications' layouts, 224x224x3, batch 32),
SimpleCNN (the chest X-ray seed's, 128x128x1, batch 64) and simple_cnn_demo (the demo
study's SimpleCNN: widths 16/32/64, hidden 64, BatchNorm; 64x64x3, batch 32). Our side is
the real training code (build_classifier, make_optimizer/create_state, make_train_step
jitted with the state donated, batch sharded over a 1-device mesh); PyTorch's is the same
network written out below (parameter counts are checked equal), in channels_last memory
format (ResNet-50: 1.7 s vs 2.8 s/step contiguous at batch 16; SimpleCNN: equal;
--torch-format auto re-measures). Both: fp32, Adam (lr 1e-3, betas 0.9/0.999; our lr
follows the config's warm-up schedule, which costs nothing), one logit with sigmoid BCE,
no augmentation, train mode (BN batch statistics, dropout). Compile and warm-up are
excluded; timed rounds alternate so machine noise hits both alike. Prints the median (and
best) images/s of each, process CPU time per step (less sensitive to other jobs on a
shared machine), the ratio, and each side's FLOP rate (XLA's cost analysis of our compiled
step, the same arithmetic for both, over the step time) against this machine's best f32
matmul rate measured at the start (dcgan_layers.best_matmul_gflops); writes
benchmarks/results/classifier_throughput.json (other rows' entries kept).

--profile then traces a few of our steps (jax.profiler) and prints the non-convolution
ops' time by kind (dcgan_layers.non_conv_op_ms; XLA:CPU runs convolutions asynchronously,
so the trace times only their launch). What it blamed, and the exact rewrites that
followed (medgan_jax/models/layers.py, each tested equal in value and gradient):
flax's BatchNorm reductions and the conv-bias / global-pool gradients (reduce and
reduce-window fusions: BatchNorm, add_bias and global_avg_pool use dots with ones); the
transposes of XLA's own conv kernel gradients, with the layers before fused into them
(1x1 convolutions, most of ResNet-50's and DenseNet-121's, are `conv`'s 2-D matmuls, the
kernel gradient a matmul over N*H*W in NHWC); the 3x3/2 stem max-pool's gradient
(max_pool's custom VJP: the first maximum's tap, then pads) and DenseNet's 2x2 average
pools (avg_pool2). On a quiet machine PyTorch's DenseNet-121 step ran about 2.6x faster
than ours (2026-12-02); under load from other jobs PyTorch's eager step slowed far more
than ours did.

DenseNet-121 at batch 32 (2026-12-03): the profile blamed the 3x3 kernel gradients'
transposes (transpose_copy_fusion, 2.6 s of the traced 9.3 s: XLA moves the batch axis of
the activations innermost, several times slower than the arithmetic on 56x56 maps), and
XLA:CPU re-fusing DenseNet's concatenation adjoint (the sum of every later layer's
BatchNorm gradient) into each consumer: per tap of the stem max-pool's gradient
(slice_select_fusion, 0.9 s), in transposed order, four times in each transition pool's
gradient. jax.lax.optimization_barrier is removed before fusion on XLA:CPU. Rewritten
(exact, tested): stride-1 kernel gradients with fewer output than input channels as XLA's
convolution with dy and x swapped (layers._swapped_kernel_grad: the full transpose falls
on the 32-channel dy); layers.materialize (a conditional XLA cannot fold; fusion does not
cross it) on the output gradient of that kernel gradient, max_pool and avg_pool2, and on
the dense blocks' concatenation cotangent (layers.concat_channels). XLA's count of the
step fell from 599 to 543 GFLOP (less recomputation); the traced transposes from 2.6 s to
0.7 s and the max-pool gradient from 0.9 s to 0.1 s. The machine was shared throughout
(load 3-6 on 2 cores; the 4096^2 matmul at a third of its quiet rate), so step times
varied 2x between rounds: three alternating rounds gave ours 12.6/26.0/25.1 s per step
and PyTorch's 20.5/39.7/17.3 s (median ratio 0.82x, best-round ratio 1.38x; process CPU
time ours 24.0 s, PyTorch's 29.7 s per step), where before, in the same conditions, the
best-round ratio was 0.37x. A later, quieter run (load falling below 1; matmul at 151
GFLOP/s): ours 4.0 images/s (8.1 s/step), PyTorch's 4.6 (7.0 s/step), 0.86x median of
three rounds (best 0.80x), against 1.47 vs 3.84 images/s (0.38x) on 2026-12-02.
ResNet-50 the same afternoon: 0.94x with these changes, 0.93x with the code before them
(neither near the earlier 1.86x: PyTorch ran faster that day). Left (traced, ms at
batch 32 under that load): the 1x1 convolutions' matmuls (dot, 3.4 s), BatchNorm's
elementwise passes (multiply_ and maximum_bitcast_fusion, 2.4 s), the forward
concatenations (1.0 s; PyTorch copies the same) and the remaining transposes (0.7 s).

--reuse-memory re-runs the script with glibc told to keep freed memory (one arena, no
mmap, no trim; both sides): on this VM every fresh page costs a 1-2 us fault, and both
frameworks otherwise fault in their whole working set every step.
PyTorch (CPU build) is a benchmark-only dependency: pip install torch==2.13.0.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.dcgan_layers import best_matmul_gflops, compiled_gflop, non_conv_op_ms  # noqa: E402

# row -> (classifier name, its options, image shape HWC, default batch, timed steps per round)
MODELS = {
    "resnet50": ("resnet50", {}, (224, 224, 3), 32, 1),
    "densenet121": ("densenet121", {}, (224, 224, 3), 32, 1),
    "simple_cnn": ("simple_cnn", {}, (128, 128, 1), 64, 5),
    # The demo study's classifier (configs/study.py).
    "simple_cnn_demo": (
        "simple_cnn",
        {"widths": (16, 32, 64), "hidden": 64, "batch_norm": True},
        (64, 64, 3),
        32,
        10,
    ),
}
# glibc malloc: all threads in the main heap, never mmap, never give memory back.
REUSE_MEMORY_ENV = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(2**36),
}


def platform_cpu() -> str:
    """The CPU's model name (lscpu's 'Model name')."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def jax_version() -> str:
    import jax

    return jax.__version__


def random_batch(shape: tuple[int, int, int], batch: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (batch, *shape)).astype(np.float32)
    return images, (np.arange(batch) % 2).astype(np.int32)


def torch_resnet50(channels: int):
    """keras.applications.ResNet50 (v1: stride on each stage's first 1x1 conv, conv biases,
    BN eps 1.001e-5 / momentum 0.99) + a one-logit head, as medgan_jax's ResNet50."""
    import torch.nn as tnn

    def bn(c):
        return tnn.BatchNorm2d(c, eps=1.001e-5, momentum=0.01)

    class Bottleneck(tnn.Module):
        def __init__(self, c_in, width, stride, project):
            super().__init__()
            self.shortcut = (
                tnn.Sequential(tnn.Conv2d(c_in, 4 * width, 1, stride), bn(4 * width))
                if project
                else tnn.Identity()
            )
            self.body = tnn.Sequential(
                tnn.Conv2d(c_in, width, 1, stride), bn(width), tnn.ReLU(True),
                tnn.Conv2d(width, width, 3, 1, 1), bn(width), tnn.ReLU(True),
                tnn.Conv2d(width, 4 * width, 1), bn(4 * width),
            )  # fmt: skip

        def forward(self, x):
            return (self.shortcut(x) + self.body(x)).relu_()

    layers = [tnn.Conv2d(channels, 64, 7, 2, 3), bn(64), tnn.ReLU(True), tnn.MaxPool2d(3, 2, 1)]
    c_in = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for block in range(blocks):
            layers.append(Bottleneck(c_in, width, stride if block == 0 else 1, block == 0))
            c_in = 4 * width
    layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(c_in, 1)]
    return tnn.Sequential(*layers)


def torch_densenet121(channels: int, growth: int = 32, blocks=(6, 12, 24, 16)):
    """keras.applications.DenseNet121 (torchvision's DenseNet-121 with BN eps 1.001e-5 /
    momentum 0.99) + a one-logit head, as medgan_jax's DenseNet121."""
    import torch
    import torch.nn as tnn

    def bn(c):
        return tnn.BatchNorm2d(c, eps=1.001e-5, momentum=0.01)

    class DenseLayer(tnn.Module):
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
    c_in = 64
    for stage, n in enumerate(blocks):
        for _ in range(n):
            layers.append(DenseLayer(c_in))
            c_in += growth
        if stage < len(blocks) - 1:  # transition
            layers += [bn(c_in), tnn.ReLU(True), tnn.Conv2d(c_in, c_in // 2, 1, bias=False)]
            layers.append(tnn.AvgPool2d(2))
            c_in //= 2
    layers += [bn(c_in), tnn.ReLU(True), tnn.AdaptiveAvgPool2d(1), tnn.Flatten()]
    return tnn.Sequential(*layers, tnn.Linear(c_in, 1))


def torch_simple_cnn(
    channels: int, widths=(32, 64, 128), hidden: int = 128, dropout=0.5, batch_norm=False
):
    """medgan_jax's SimpleCNN: [conv3x3+bias, ReLU, (BN,) maxpool 2] per width, global
    average pool, dense hidden + ReLU, dropout, one-logit head."""
    import torch.nn as tnn

    layers, c_in = [], channels
    for width in widths:
        layers += [tnn.Conv2d(c_in, width, 3, 1, 1), tnn.ReLU(True)]
        if batch_norm:  # flax momentum 0.9, eps 1e-5: PyTorch's defaults
            layers.append(tnn.BatchNorm2d(width))
        layers.append(tnn.MaxPool2d(2))
        c_in = width
    layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(c_in, hidden), tnn.ReLU(True)]
    return tnn.Sequential(*layers, tnn.Dropout(dropout), tnn.Linear(hidden, 1))


TORCH_MODELS = {
    "resnet50": torch_resnet50,
    "densenet121": torch_densenet121,
    "simple_cnn": torch_simple_cnn,
}


def torch_side(name: str, images: np.ndarray, labels: np.ndarray, channels_last: bool, **options):
    """(step, parameter count) of the PyTorch eager reference."""
    import torch

    net = TORCH_MODELS[name](images.shape[-1], **options)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(labels).float()
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999))
    criterion = torch.nn.BCEWithLogitsLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = criterion(net(x)[:, 0], y)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step, sum(p.numel() for p in net.parameters())


def jax_side(name: str, images: np.ndarray, labels: np.ndarray, **options):
    """(step, parameter count, step GFLOP by XLA's cost analysis, compile seconds) of this
    project's training step, wired as classify.train."""
    import jax

    from configs.classifier import get_config
    from medgan_jax import parallel
    from medgan_jax.classify.state import create_state, make_optimizer
    from medgan_jax.classify.steps import make_train_step
    from medgan_jax.models.classifiers import build_classifier

    mesh = parallel.make_mesh(1)
    replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    model = build_classifier(name, 1, **options)
    optimizer = functools.partial(make_optimizer, get_config("synthetic_lesions").optimizer)
    state = create_state(model, optimizer(10_000), images.shape[1:], 0, True, replicated)
    params = sum(p.size for p in jax.tree.leaves(state.params))
    train_step = make_train_step(model, optimizer, "binary")
    step_fn = jax.jit(
        train_step,
        in_shardings=(replicated, batch_sharding, replicated, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    batch = parallel.host_to_global({"image": images, "label": labels}, mesh)
    weights = jax.device_put(np.ones(2, np.float32), replicated)
    total_steps = jax.device_put(np.int32(10_000), replicated)
    start = time.perf_counter()
    compiled = step_fn.lower(state, batch, weights, total_steps).compile()
    compile_s = time.perf_counter() - start
    holder = {"state": state}

    def step():
        holder["state"], metrics = compiled(holder["state"], batch, weights, total_steps)
        return float(jax.block_until_ready(metrics["loss"]))

    return step, params, compiled_gflop(compiled), compile_s


def time_round(step, n: int) -> tuple[float, float]:
    """(wall, process CPU) seconds per step over n steps."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n


def pick_torch_format(name, images, labels, requested: str, **options) -> bool:
    """True for channels_last: as requested, or the faster of two warmed-up steps each."""
    if requested != "auto":
        return requested == "channels_last"
    seconds = {}
    for channels_last in (False, True):
        step, _ = torch_side(name, images, labels, channels_last, **options)
        step()
        seconds[channels_last] = min(time_round(step, 1)[0] for _ in range(2))
    print(
        f"  torch contiguous {seconds[False] * 1e3:.0f} ms/step, "
        f"channels_last {seconds[True] * 1e3:.0f} ms/step"
    )
    return seconds[True] < seconds[False]


def print_profile(step, steps: int = 2) -> dict[str, float]:
    """Prints (and returns) our step's traced non-convolution ops, ms per step by kind."""
    kinds = non_conv_op_ms(step, steps)
    top = ", ".join(f"{kind} {ms:.0f}" for kind, ms in list(kinds.items())[:8])
    print(f"  profile: non-convolution ops {sum(kinds.values()):.0f} ms/step; largest: {top}")
    return kinds


def run_model(row: str, args, peak_gflops: float) -> dict:
    import torch

    name, options, shape, default_batch, default_steps = MODELS[row]
    batch, steps = args.batch or default_batch, args.steps or default_steps
    images, labels = random_batch(shape, batch)
    print(f"{row}: batch {batch}, {'x'.join(map(str, shape))}, {steps} steps x {args.rounds}")
    channels_last = pick_torch_format(name, images, labels, args.torch_format, **options)
    jax_step, jax_count, step_gflop, compile_s = jax_side(name, images, labels, **options)
    torch_step, torch_count = torch_side(name, images, labels, channels_last, **options)
    sides = {"medgan_jax": jax_step, "pytorch": torch_step}
    counts = {"medgan_jax": jax_count, "pytorch": torch_count}
    if counts["medgan_jax"] != counts["pytorch"]:
        raise RuntimeError(f"{row}: parameter counts differ: {counts}")
    for step in sides.values():  # warm up: two steps each
        step(), step()
    wall, cpu = {side: [] for side in sides}, {side: [] for side in sides}
    for _ in range(args.rounds):
        for side, step in sides.items():
            w, c = time_round(step, steps)
            wall[side].append(w)
            cpu[side].append(c)
    rates = {side: batch / statistics.median(s) for side, s in wall.items()}
    best = {side: batch / min(s) for side, s in wall.items()}
    cpu_ms = {side: 1000 * statistics.median(s) for side, s in cpu.items()}
    # Both sides do the same arithmetic; XLA's count (fused elementwise work included).
    gflops = {side: step_gflop * rate / batch for side, rate in rates.items()}
    print(
        f"  {'':10s} {'images/s':>9s} {'(best)':>8s} {'ms/step':>8s} {'CPU ms/step':>12s} "
        f"{'GFLOP/s':>8s} {'% matmul':>9s}"
    )
    for side in sides:
        ms = 1000 * batch / rates[side]
        print(
            f"  {side:10s} {rates[side]:9.1f} {best[side]:8.1f} {ms:8.0f} {cpu_ms[side]:12.0f} "
            f"{gflops[side]:8.1f} {100 * gflops[side] / peak_gflops:8.0f}%"
        )
    ratio = rates["medgan_jax"] / rates["pytorch"]
    best_ratio = best["medgan_jax"] / best["pytorch"]
    fmt = "channels_last" if channels_last else "contiguous"
    print(
        f"  ratio medgan_jax / pytorch: {ratio:.2f}x (best {best_ratio:.2f}x)"
        f"  {counts['pytorch']:,} parameters both; {step_gflop:.1f} GFLOP/step (XLA); "
        f"torch {torch.__version__} {fmt}, {torch.get_num_threads()} thr.; "
        f"jax compile {compile_s:.0f} s"
    )
    result = {
        "images_per_s": rates,
        "best_images_per_s": best,
        "cpu_ms_per_step": cpu_ms,
        "ratio": ratio,
        "best_ratio": best_ratio,
        "gflop_per_step": step_gflop,
        "gflops": gflops,
        "best_matmul_gflops": peak_gflops,
        "batch": batch,
        "image_shape": list(shape),
        "options": options,
        "parameters": counts["pytorch"],
        "torch_memory_format": fmt,
        "reuse_memory": os.environ.get("MALLOC_ARENA_MAX") == "1",
        "ms_per_step_rounds": {side: [1000 * t for t in s] for side, s in wall.items()},
    }
    if args.profile:  # last: a trace leaves the runtime slower for the rest of the process
        result["profile_non_conv_ms"] = print_profile(jax_step)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per round (0: 1 / 5)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=0, help="0: each row's (see MODELS)")
    parser.add_argument("--profile", action="store_true", help="trace our step; see above")
    parser.add_argument(
        "--torch-format", choices=("auto", "contiguous", "channels_last"), default="channels_last"
    )
    parser.add_argument("--reuse-memory", action="store_true", help="see above")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    if args.reuse_memory and os.environ.get("MALLOC_ARENA_MAX") != "1":
        # glibc reads these once, at start-up
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **REUSE_MEMORY_ENV})
    import torch

    from medgan_jax import app  # its XLA flags must precede jax's backend start-up

    app.configure(compilation_cache="", distributed=False)

    torch.set_num_threads(os.cpu_count() or 1)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; expected some of {list(MODELS)}")
    path = os.path.join(args.out, "classifier_throughput.json")
    results = {}
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    peak = best_matmul_gflops()
    print(
        f"best f32 matmul (XLA, 4096x4096): {peak:.0f} GFLOP/s; "
        f"{platform_cpu()}, jax {jax_version()}, {os.cpu_count()} CPUs"
    )
    results.update({name: run_model(name, args, peak) for name in names})
    os.makedirs(args.out, exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
