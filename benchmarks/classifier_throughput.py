"""Classifier training throughput: this project's jit step vs a PyTorch eager reference.

  python benchmarks/classifier_throughput.py [--models resnet50,densenet121,...] [--steps N]
                    [--batch N] [--rounds 3] [--torch-format channels_last] [--profile]

For each row both sides train the identical network on the same random batch, each in a
process of its own (see below): ResNet-50 and DenseNet-121 (keras.applications' layouts,
224x224x3, batch 32), SimpleCNN (the chest X-ray seed's, 128x128x1, batch 64) and
simple_cnn_demo (the demo study's SimpleCNN: widths 16/32/64, hidden 64, BatchNorm;
64x64x3, batch 32). Our side is
the real training code (build_classifier, make_optimizer/create_state, make_train_step
jitted with the state donated, batch sharded over a 1-device mesh); PyTorch's is the same
network written out below (parameter counts are checked equal), in channels_last memory
format (ResNet-50: 1.7 s vs 2.8 s/step contiguous at batch 16; SimpleCNN: equal;
--torch-format auto re-measures). Both: fp32, Adam (lr 1e-3, betas 0.9/0.999; our lr
follows the config's warm-up schedule, which costs nothing), one logit with sigmoid BCE,
no augmentation, train mode (BN batch statistics, dropout). Compile and warm-up are
excluded; timed rounds alternate so machine noise hits both alike. Prints the median (and
best) images/s of each, process CPU time per step (less sensitive to other jobs on a
shared machine), the ratio, each side's FLOP rate (XLA's cost analysis of our compiled
step, the same arithmetic for both, over the step time) against this machine's best f32
matmul rate measured at the start (dcgan_layers.best_matmul_gflops) and minor page
faults per step; writes
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

Each side in a process of its own (since 2026-12-05; side_by_side.Worker): in one
process each framework slowed the other's next steps (our DenseNet-121 step 5.2-5.9 s
alone, 7.7-9.3 s right after a PyTorch step and 6.3-6.9 s after that; PyTorch's 3.9-4.8 s
alone against 4.9-5.7 s beside ours), so the earlier rows' ratios, measured in one
process, are biased: by how much and which way differed by network. The sides take turns
round by round, each round after `--warm-steps` untimed steps (1), and the rates are the
median step over all rounds. Our side runs with the malloc tunables the entry points set
(medgan_jax/launch.py), PyTorch's with glibc's defaults (its steps ran 5-10% slower on
huge pages, one-off, alone; side_by_side.stock_malloc_environment).

What the huge-page tunable fixed, and what it leaves (2-core AMD EPYC, 2026-12-05).
XLA:CPU takes a step's buffers afresh every execution and frees them at its end. With
glibc's defaults (MEDGAN_JAX_HUGE_PAGES=0, GLIBC_TUNABLES unset), `--models densenet121
--rounds 3` at 01:38 gave our step 7.3 s and 1,008,913 page faults; with
glibc.malloc.hugetlb=1 4.8 s and 3,716 at 01:41. The step still maps and unmaps large
buffers, and this VM hands freed memory back to the host, which backs it again on first
touch: after PyTorch's process had run three ResNet-50 steps, our next five steps took
12.1, 8.2, 6.9, 7.5 and 8.2 s against 5.2-5.4 s in steady state, with 3.5-12 CPU-seconds
of system time each against 0.6-0.8 (one-off, ours alone, /proc/stat per step). So this
benchmark's alternating rounds measured our ResNet-50 step at 6.3-7.2 s where it trains
at 5.2 s alone, PyTorch's at 5.2-6.0 s (its own alone: 5.3-5.7 s). Keeping the memory in
the process instead (glibc.malloc.arena_max=1, mmap_max=0, trim_threshold=2^40 on top of
hugetlb=1) removed that: 0 faults per step, 5.15-5.35 s after PyTorch's process (the same
one-off), and at 03:37 `--models resnet50,densenet121 --rounds 5` (commit 2aea044, where
the entry points set them and PyTorch's side did not get them) gave ResNet-50 5469
against 5215 ms (0.95x) and DenseNet-121 4379 against 4907 ms (1.12x). It is not the
entry points' setting: one arena slowed the diffusion sampler by a fifth (18 Heun steps
27.6-29.4 against 22.4-23.6 s) and compilation (73 against 59 s; one-off, ours alone),
and without arena_max=1 the penalty stayed.

Why only one arena (2026-12-05, same machine, one-off scripts, ours in a process of its
own): glibc's per-thread arenas grow in heaps of at most 64 MiB and map any larger
request directly whatever mmap_max says (sysmalloc's fallback), and XLA's worker
threads allocate the step's largest buffers (strace: 0.1-2.5 GB maps advised
MADV_HUGEPAGE, unmapped every step). With mmap_max=0, trim_threshold=2^40 and
top_pad=128 MiB (no arena_max) ResNet-50's steps still took about 1,800 faults each,
and after three PyTorch steps in another process 14.7 s (15.7 s of system time), then
6.3-6.9 s (against 5.2-5.4 before); with hugetlb=1 alone 11.9, then 6.8 s. A numpy
process allocating and freeing 3 GB for 15 s did not cause it (5.3-5.5 s after).
Also tried that morning: each reducing 1x1 convolution's kernel gradient as
(dy^T x)^T, its small result transposed behind layers.materialize (XLA folds a bare
transpose back into the dot): bit-identical, and alone 22.7 against 31.6 ms at
25088x512 -> 128 and 26.9 against 38.9 at 100352x256 -> 64 (slower where C_in < C_out),
but ResNet-50's step took 6.04 against 6.08 s and DenseNet-121's 6.08 against 5.99 s
(five alternating rounds in one process): not kept.

jemalloc (2026-12-05, late morning, same machine): it keeps freed pages for reuse from
any thread, where glibc's secondary arenas cannot, so the entry points preload it where
it is installed (medgan_jax/launch.py: dirty_decay_ms:-1, muzzy_decay_ms:-1,
oversize_threshold:0). `--models resnet50 --rounds 3` with it: ours 5195 ms per step and
110 faults, but PyTorch's step 7143 ms against its usual 5.2-5.6 s: the memory our idle
worker kept slowed PyTorch's fresh pages in turn. So since then our side hands back the
memory jemalloc keeps after each round (side_by_side.release_idle_memory), as glibc does
at each free. With that (and, that morning only, glibc's malloc_trim on PyTorch's side)
the same command gave 5425 against 5558 ms (1.02x), and with glibc's malloc for ours
(MEDGAN_JAX_JEMALLOC=0) 6613 against 5432 ms (0.82x; 8,955 faults per step). With
jemalloc's thp:always ResNet-50's train step traced and lowered in 1.77-1.86 s against
1.62-1.65 s without it and 1.73-1.80 s with glibc (three processes each; one-off): not
set. Elsewhere no cost: the Quickstart took 251 s with jemalloc and 253 s without
(README), and our diffusion step and 18-step sampler (benchmarks/diffusion_throughput.py's
network, ours alone) 2050-2301 ms and 23.1-25.8 s against 2278-2337 ms and 22.6-24.6 s
(two processes each). At 11:35 (PyTorch's side
trimmed too) `--models resnet50,densenet121,simple_cnn --rounds 5`: ResNet-50 6.1 against
6.3 images/s (5234 against 5073 ms, 0.97x), DenseNet-121 7.6 against 6.6 (1.14x; PyTorch
4838 ms and a million faults per step), SimpleCNN 128.1 against 95.6 (1.34x); at 12:08,
as now: ResNet-50 6.0 against 5.8 (5376 against 5498 ms, 1.02x), DenseNet-121 7.3 against
7.6 (4362 against 4227 ms, 0.97x; PyTorch's faults per step 468,671), SimpleCNN 111.9
against 90.6 (1.23x). ResNet-50 is now about even with PyTorch rather than behind, as is
DenseNet-121. Before jemalloc, the same machine, ours on glibc's huge-page malloc and
nothing handed back between rounds (00:37-06:43, 3-5 rounds): ResNet-50 0.72-0.85x (0.96x
and 0.84x with --warm-steps 2), DenseNet-121 0.92-1.22x, SimpleCNN 128x128x1 1.18x.

2026-12-05 evening, an AMD EPYC host about twice as fast (XLA's matmul 430-440 GFLOP/s;
this script's runs there: ResNet-50 1.17x, 0.62x and 1.16x, DenseNet-121
1.39x and 1.30x, SimpleCNN 1.53x and 1.54x; the 0.62x run's timed steps took 611,794 page
faults each on our side, the others about 5,000). Tried, not set: XLA's
--xla_cpu_prefer_vector_width=512 (ours alone, one-off, two alternating processes each,
5 steps): ResNet-50 2530 / 2479 against 2580 / 2503 ms, DenseNet-121 2212 / 2227 against
2303 / 2306 ms (1.5% and 3.7%), the diffusion step 1097 / 1013 against 1038 / 1011 ms:
within this machine's noise for a flag that changes every program's float paths.

Where the occasional million page faults per step on our side come from (2026-12-06,
same host type). `--models resnet50,densenet121,simple_cnn --rounds 3` at 01:29 gave
ResNet-50 12.8 against 10.3 images/s (1.25x), SimpleCNN 215.0 against 143.6 (1.50x) and
DenseNet-121 5.6 against 13.5 (0.41x, best round 0.97x) with 1,009,009 faults per step
on our side. Our DenseNet-121 step alone (one-off, 6-12 steps per process, jemalloc): in
10 of 16 processes one step, once, took 8.3-8.5 s instead of 2.2-2.4 s with 1.008
million faults (or an untimed warm-up step did), and resident memory grew from 7 to 11 GB; the
other steps, before and after, take no faults. XLA:CPU takes a step's temporary buffer
(about 4 GB here) as the step starts and frees it as it ends, and now and then the next
step starts before the previous one's buffer is freed, so the allocator maps a second
region once; training then reuses both. jemalloc with one arena (narenas:1) or with
large allocations in their own arena (no oversize_threshold:0) did the same, once per
process. This benchmark hands jemalloc's free memory back after every round
(side_by_side.release_idle_memory), so in a process that has needed the second region
the next round's timed step can fault it in again: the 0.41x and the earlier 0.62x
measure that, not training's steady state (a training run pays the 6 s once). Since
then (2026-12-06) a side that hands memory back takes untimed steps after its warm-up
step until it holds again what it held before the hand-back (within 256 MB, at most four;
side_by_side.timed; the JSON's settle_steps_per_round and step_page_faults; a glibc side,
PyTorch's, faults at every training step and is timed as it is), and the large networks
time two steps per round, the rate the median over all rounds' steps. A first rule,
untimed steps while the last one faulted more than 100,000 pages in, was not enough:
`--models densenet121 --rounds 4` gave 1.14x, 1.28x and 1.27x in three runs at
02:30-02:37 (ours 2269-2326 ms per step, 97-1,142 faults), but ResNet-50's steps use
their regions in no fixed order, and a timed step after a quiet untimed one still
faulted 611,682-620,047 pages in (4.1-5.6 s against 2.5 s; 02:51, 0.90x). With the
resident-memory rule, `--models resnet50,densenet121 --rounds 3` at 02:56: every timed
step under 1,000 faults, ResNet-50 12.8 against 10.2 images/s (2500 against 3130 ms,
1.25x; four untimed steps in each later round: some freed memory is never reused, so
the process never quite holds it all again), DenseNet-121 13.8 against 10.9 (2318
against 2944 ms, 1.27x). At 03:00 (all three rows) ResNet-50 1.24x, DenseNet-121 1.27x,
SimpleCNN 1.56x; two of our six ResNet-50 steps still faulted 611,682 and 613,436 pages in
(4.2 and 3.9 s, the first round's with no hand-back before it: the process mapping one
more region, as a training run does in its first steps), which the median leaves out.

Since 2026-12-06 morning jemalloc runs without oversize_threshold:0 (its one arena for
large buffers; launch.JEMALLOC_CONF; the diffusion step's process had grown every step,
diffusion_throughput.py's docstring). `--models resnet50,densenet121,simple_cnn --rounds 3`
then (about 05:38, matmul 425 GFLOP/s): ResNet-50 12.3 against 11.0 images/s (2595
against 2908 ms, 1.12x), DenseNet-121 13.2 against 10.0 (2424 against 3198 ms, 1.32x),
SimpleCNN 216.5 against 132.9 (1.63x); one ResNet-50 step (617,437 faults, 4.7 s) and
two DenseNet-121 steps (1.008 and 1.009 million, 6.0 and 7.0 s) mapped the second region
in again, as before, and the median leaves them out.

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

from benchmarks import side_by_side  # noqa: E402
from benchmarks.dcgan_layers import best_matmul_gflops, compiled_gflop, non_conv_op_ms  # noqa: E402
from medgan_jax import launch  # noqa: E402

# row -> (classifier name, its options, image shape HWC, default batch, timed steps per round)
MODELS = {
    "resnet50": ("resnet50", {}, (224, 224, 3), 32, 2),
    "densenet121": ("densenet121", {}, (224, 224, 3), 32, 2),
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


def pick_torch_format(name, images, labels, requested: str, **options) -> bool:
    """True for channels_last: as requested, or the faster of two warmed-up steps each."""
    if requested != "auto":
        return requested == "channels_last"
    seconds = {}
    for channels_last in (False, True):
        step, _ = torch_side(name, images, labels, channels_last, **options)
        step()
        seconds[channels_last] = min(side_by_side.timed(step)(1)["wall"] for _ in range(2))
    print(
        f"  torch contiguous {seconds[False] * 1e3:.0f} ms/step, "
        f"channels_last {seconds[True] * 1e3:.0f} ms/step"
    )
    return seconds[True] < seconds[False]


def print_profile(kinds: dict[str, float]) -> None:
    """Prints our step's traced non-convolution ops, ms per step by kind."""
    top = ", ".join(f"{kind} {ms:.0f}" for kind, ms in list(kinds.items())[:8])
    print(f"  profile: non-convolution ops {sum(kinds.values()):.0f} ms/step; largest: {top}")


def row_settings(row: str, args) -> tuple[str, dict, tuple[int, int, int], int]:
    """(classifier name, options, image shape, batch) of a row."""
    name, options, shape, default_batch, _ = MODELS[row]
    return name, options, shape, args.batch or default_batch


def serve_side(args) -> None:
    """A worker process: one side of one row, warmed up, timing steps on request."""
    name, options, shape, batch = row_settings(args.model, args)
    images, labels = random_batch(shape, batch)
    if args.worker == "jax":
        from medgan_jax import app  # its XLA flags must precede jax's backend start-up

        app.configure(compilation_cache="", distributed=False)
        step, params, gflop, compile_s = jax_side(name, images, labels, **options)
        info = {"parameters": params, "gflop": gflop, "compile_s": compile_s}
        handlers = {"profile": lambda: non_conv_op_ms(step, 2)}
    else:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        channels_last = pick_torch_format(name, images, labels, args.torch_format, **options)
        step, params = torch_side(name, images, labels, channels_last, **options)
        info = {
            "parameters": params,
            "format": "channels_last" if channels_last else "contiguous",
            **side_by_side.torch_build(),
        }
        handlers = {}
    step(), step()  # warm up
    side_by_side.serve(lambda: (info, {"time": side_by_side.timed(step), **handlers}))


def run_model(row: str, args, peak_gflops: float) -> dict:
    _, options, shape, batch = row_settings(row, args)
    steps = args.steps or MODELS[row][4]
    print(f"{row}: batch {batch}, {'x'.join(map(str, shape))}, {steps} steps x {args.rounds}")
    common = ["--model", row, "--batch", str(args.batch), "--torch-format", args.torch_format]
    workers = side_by_side.start_workers(__file__, common)
    ours, torch_info = workers["medgan_jax"].info, workers["pytorch"].info
    counts = {side: worker.info["parameters"] for side, worker in workers.items()}
    if counts["medgan_jax"] != counts["pytorch"]:
        raise RuntimeError(f"{row}: parameter counts differ: {counts}")
    replies = side_by_side.alternate(workers, "time", steps, args.rounds, warm=args.warm_steps)
    kinds = workers["medgan_jax"].request("profile") if args.profile else None
    for worker in workers.values():
        worker.close()
    wall = {side: side_by_side.step_walls(rs) for side, rs in replies.items()}
    cpu = {side: [r["cpu"] for r in rs] for side, rs in replies.items()}
    rates = {side: batch / statistics.median(s) for side, s in wall.items()}
    best = {side: batch / min(s) for side, s in wall.items()}
    cpu_ms = {side: 1000 * statistics.median(s) for side, s in cpu.items()}
    faults = {side: statistics.median(r["page_faults"] for r in rs) for side, rs in replies.items()}
    settle_steps = {side: [r["settle_steps"] for r in rs] for side, rs in replies.items()}
    step_faults = {
        side: [f for r in rs for f in r["step_page_faults"]] for side, rs in replies.items()
    }
    # Both sides do the same arithmetic; XLA's count (fused elementwise work included).
    gflops = {side: ours["gflop"] * rate / batch for side, rate in rates.items()}
    print(
        f"  {'':10s} {'images/s':>9s} {'(best)':>8s} {'ms/step':>8s} {'CPU ms/step':>12s} "
        f"{'GFLOP/s':>8s} {'% matmul':>9s} {'faults/step':>12s}"
    )
    for side in workers:
        ms = 1000 * batch / rates[side]
        print(
            f"  {side:10s} {rates[side]:9.1f} {best[side]:8.1f} {ms:8.0f} {cpu_ms[side]:12.0f} "
            f"{gflops[side]:8.1f} {100 * gflops[side] / peak_gflops:8.0f}% {faults[side]:12,.0f}"
        )
    ratio = rates["medgan_jax"] / rates["pytorch"]
    best_ratio = best["medgan_jax"] / best["pytorch"]
    print(
        f"  ratio medgan_jax / pytorch: {ratio:.2f}x (best {best_ratio:.2f}x)"
        f"  {counts['pytorch']:,} parameters both; {ours['gflop']:.1f} GFLOP/step (XLA); "
        f"torch {torch_info['version']} {torch_info['format']}, {torch_info['threads']} thr.; "
        f"jax compile {ours['compile_s']:.0f} s"
    )
    if any(settle_steps["medgan_jax"]):
        print(
            f"  untimed steps re-filling handed-back memory, per round: "
            f"{settle_steps['medgan_jax']} (side_by_side.timed)"
        )
    if kinds is not None:
        print_profile(kinds)
    return {
        "images_per_s": rates,
        "best_images_per_s": best,
        "cpu_ms_per_step": cpu_ms,
        "page_faults_per_step": faults,
        "settle_steps_per_round": settle_steps,
        "step_page_faults": step_faults,
        "step_walls": wall,
        "ratio": ratio,
        "best_ratio": best_ratio,
        "gflop_per_step": ours["gflop"],
        "gflops": gflops,
        "best_matmul_gflops": peak_gflops,
        "batch": batch,
        "image_shape": list(shape),
        "options": options,
        "parameters": counts["pytorch"],
        "torch_memory_format": torch_info["format"],
        "our_allocator": launch.allocator(os.environ),
        "ms_per_step_rounds": {side: [1000 * t for t in s] for side, s in wall.items()},
        **({"profile_non_conv_ms": kinds} if kinds is not None else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per round (0: 2 / 5)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=0, help="0: each row's (see MODELS)")
    parser.add_argument("--warm-steps", type=int, default=1, help="untimed steps per round")
    parser.add_argument("--profile", action="store_true", help="trace our step; see above")
    parser.add_argument(
        "--torch-format", choices=("auto", "contiguous", "channels_last"), default="channels_last"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return serve_side(args)
    launch.reexec_with_malloc_tunables()  # our side runs as the entry points do
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; expected some of {list(MODELS)}")
    from medgan_jax import app

    app.configure(compilation_cache="", distributed=False)
    path = os.path.join(args.out, "classifier_throughput.json")
    results = {}
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    peak = best_matmul_gflops()
    print(
        f"best f32 matmul (XLA, 4096x4096): {peak:.0f} GFLOP/s; "
        f"{platform_cpu()}, jax {jax_version()}, {os.cpu_count()} CPUs; "
        f"each side in its own process, ours with {launch.allocator(os.environ)}"
    )
    results.update({name: run_model(name, args, peak) for name in names})
    os.makedirs(args.out, exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
