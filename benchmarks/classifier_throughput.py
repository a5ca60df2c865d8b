"""Classifier training throughput: this project's jit step vs a PyTorch eager reference.

  python benchmarks/classifier_throughput.py [--models resnet50,simple_cnn] [--steps N]
                    [--batch N] [--rounds 3] [--torch-format channels_last] [--reuse-memory]

For each model both sides train the identical network on the same random batch in this
one process: ResNet-50 (keras.applications' v1 layout, 224x224x3, batch 32) and SimpleCNN
(the chest X-ray seed's, 128x128x1, batch 64). Our side is the real training code
(build_classifier, make_optimizer/create_state, make_train_step jitted with the state
donated, batch sharded over a 1-device mesh); PyTorch's is the same network written out
below (parameter counts are checked equal), in channels_last memory format (ResNet-50:
1.7 s vs 2.8 s/step contiguous at batch 16; SimpleCNN: equal; --torch-format auto
re-measures). Both: fp32, Adam (lr 1e-3, betas 0.9/0.999; our lr follows the config's
warm-up schedule, which costs nothing), one logit with sigmoid BCE, no augmentation, train
mode (BN batch statistics, dropout). Compile and warm-up are excluded; timed rounds
alternate so machine noise hits both alike. Prints the median (and best) images/s of
each, process CPU time per step (less sensitive to other jobs on a shared machine) and the
ratio; writes benchmarks/results/classifier_throughput.json (other models' entries kept).

--reuse-memory re-runs the script with glibc told to keep freed memory (one arena, no
mmap, no trim; both sides): on this VM every fresh page costs a 1-2 us fault, and both
frameworks otherwise fault in their whole working set every step.
PyTorch (CPU build) is a benchmark-only dependency: pip install torch==2.13.0.
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

# name -> (image shape HWC, default batch, default timed steps per round)
MODELS = {
    "resnet50": ((224, 224, 3), 32, 1),
    "simple_cnn": ((128, 128, 1), 64, 5),
}
# glibc malloc: all threads in the main heap, never mmap, never give memory back.
REUSE_MEMORY_ENV = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(2**36),
}


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


def torch_simple_cnn(channels: int, widths=(32, 64, 128), hidden: int = 128, dropout=0.5):
    """medgan_jax's SimpleCNN defaults: [conv3x3+bias, ReLU, maxpool 2] per width, global
    average pool, dense hidden + ReLU, dropout, one-logit head."""
    import torch.nn as tnn

    layers, c_in = [], channels
    for width in widths:
        layers += [tnn.Conv2d(c_in, width, 3, 1, 1), tnn.ReLU(True), tnn.MaxPool2d(2)]
        c_in = width
    layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(c_in, hidden), tnn.ReLU(True)]
    return tnn.Sequential(*layers, tnn.Dropout(dropout), tnn.Linear(hidden, 1))


def torch_side(name: str, images: np.ndarray, labels: np.ndarray, channels_last: bool):
    """(step, parameter count) of the PyTorch eager reference."""
    import torch

    net = {"resnet50": torch_resnet50, "simple_cnn": torch_simple_cnn}[name](images.shape[-1])
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
    """(step, parameter count) of this project's training step, wired as classify.train."""
    import jax

    from configs.classifier import get_config
    from medgan_jax import parallel
    from medgan_jax.classify.state import create_state, make_optimizer
    from medgan_jax.classify.steps import make_train_step
    from medgan_jax.models.classifiers import build_classifier

    mesh = parallel.make_mesh(1)
    replicated, batch_sharding = parallel.replicated(mesh), parallel.batch_sharding(mesh)
    model = build_classifier(name, 1, **options)
    tx = make_optimizer(get_config("synthetic_lesions").optimizer, total_steps=10_000)
    state = create_state(model, tx, images.shape[1:], 0, True, replicated)
    params = sum(p.size for p in jax.tree.leaves(state.params))
    train_step = make_train_step(model, tx, "binary", jax.numpy.ones(2), lambda x, k: x)
    step_fn = jax.jit(
        train_step,
        in_shardings=(replicated, batch_sharding),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )
    batch = parallel.host_to_global({"image": images, "label": labels}, mesh)
    holder = {"state": state}

    def step():
        holder["state"], metrics = step_fn(holder["state"], batch)
        return float(jax.block_until_ready(metrics["loss"]))

    return step, params


def time_round(step, n: int) -> tuple[float, float]:
    """(wall, process CPU) seconds per step over n steps."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n


def pick_torch_format(name, images, labels, requested: str) -> bool:
    """True for channels_last: as requested, or the faster of two warmed-up steps each."""
    if requested != "auto":
        return requested == "channels_last"
    seconds = {}
    for channels_last in (False, True):
        step, _ = torch_side(name, images, labels, channels_last)
        step()
        seconds[channels_last] = min(time_round(step, 1)[0] for _ in range(2))
    print(
        f"  torch contiguous {seconds[False] * 1e3:.0f} ms/step, "
        f"channels_last {seconds[True] * 1e3:.0f} ms/step"
    )
    return seconds[True] < seconds[False]


def run_model(name: str, args) -> dict:
    import torch

    shape, default_batch, default_steps = MODELS[name]
    batch, steps = args.batch or default_batch, args.steps or default_steps
    images, labels = random_batch(shape, batch)
    print(f"{name}: batch {batch}, {'x'.join(map(str, shape))}, {steps} steps x {args.rounds}")
    channels_last = pick_torch_format(name, images, labels, args.torch_format)
    sides = {
        "medgan_jax": jax_side(name, images, labels),
        "pytorch": torch_side(name, images, labels, channels_last),
    }
    counts = {side: count for side, (_, count) in sides.items()}
    if counts["medgan_jax"] != counts["pytorch"]:
        raise RuntimeError(f"{name}: parameter counts differ: {counts}")
    start = time.perf_counter()
    sides["medgan_jax"][0]()  # compile (and first step)
    compile_s = time.perf_counter() - start
    for step, _ in sides.values():  # warm up: two steps each in all
        step()
    sides["pytorch"][0]()
    wall, cpu = {side: [] for side in sides}, {side: [] for side in sides}
    for _ in range(args.rounds):
        for side, (step, _) in sides.items():
            w, c = time_round(step, steps)
            wall[side].append(w)
            cpu[side].append(c)
    rates = {side: batch / statistics.median(s) for side, s in wall.items()}
    best = {side: batch / min(s) for side, s in wall.items()}
    cpu_ms = {side: 1000 * statistics.median(s) for side, s in cpu.items()}
    print(f"  {'':10s} {'images/s':>9s} {'(best)':>8s} {'ms/step':>8s} {'CPU ms/step':>12s}")
    for side in sides:
        ms = 1000 * batch / rates[side]
        print(f"  {side:10s} {rates[side]:9.1f} {best[side]:8.1f} {ms:8.0f} {cpu_ms[side]:12.0f}")
    ratio = rates["medgan_jax"] / rates["pytorch"]
    best_ratio = best["medgan_jax"] / best["pytorch"]
    fmt = "channels_last" if channels_last else "contiguous"
    print(
        f"  ratio medgan_jax / pytorch: {ratio:.2f}x (best {best_ratio:.2f}x)"
        f"  {counts['pytorch']:,} parameters both; torch {torch.__version__} {fmt}, "
        f"{torch.get_num_threads()} thr.; jax compile {compile_s:.0f} s"
    )
    return {
        "images_per_s": rates,
        "best_images_per_s": best,
        "cpu_ms_per_step": cpu_ms,
        "ratio": ratio,
        "best_ratio": best_ratio,
        "batch": batch,
        "image_shape": list(shape),
        "parameters": counts["pytorch"],
        "torch_memory_format": fmt,
        "reuse_memory": os.environ.get("MALLOC_ARENA_MAX") == "1",
        "ms_per_step_rounds": {side: [1000 * t for t in s] for side, s in wall.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per round (0: 1 / 5)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=0, help="0: 32 for resnet50, 64 else")
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
    results.update({name: run_model(name, args) for name in names})
    os.makedirs(args.out, exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
