"""GPU check in one call: training, sampling and MS-SSIM throughput, XLA FLOPs, share of peak,
and the same networks in PyTorch on the same device.

  scripts/gpu_check.sh                        # on the GPU machine (under 8 minutes)
  python benchmarks/gpu_check.py [--only resnet50,dcgan] [--budget-s 420] [--out DIR]
  python benchmarks/gpu_check.py --quick      # CPU, tiny sizes, bfloat16 rows only: keeps
                                              # the script working (tests/benchmarks/)

Measures, each in float32 and bfloat16 (config.precision: bf16 compute, float32 parameters,
optimizer states, BatchNorm statistics and losses):
  resnet50, densenet121   classifier training step (classify.state/steps, Adam, 1 logit,
                          BCE) at 224x224x3, batch 128 (--quick: SimpleCNN at 32x32, batch 2)
  dcgan                   DCGAN-64 G+D step (configs/dcgan.py:synthetic_lesions, batch 64)
  pggan                   PGGAN-256 step, fully grown (configs/pggan.py:skin_cancer, batch 16)
  sample_dcgan, sample_pggan   EMA generator in inference mode (batch 256 / 64)
  ms_ssim                 metrics.ms_ssim on 64 pairs of 256x256x3 (float32 only)
For every row: images/s (pairs/s for MS-SSIM), XLA's FLOP count of one compiled step (cost
analysis of the lowered, unoptimised program; the compiled program's count beside it), the
TFLOP/s that implies and its fraction of a peak: bfloat16 rows of the bf16 dense peak
(--peak-bf16-tflops, 790: measured on an H200), float32 rows of the TF32 tensor-core peak
(--peak-tf32-tflops, 395: half the bf16 one, as in NVIDIA's specifications), because XLA's
default precision lets cuBLAS/cuDNN use TF32 for float32 (PyTorch is set to allow TF32 too).
Every row also has its fraction of the bf16 peak. PyTorch (eager, channels_last, cudnn
benchmark; autocast to bfloat16 for the bf16 rows) trains/samples the same networks (its
parameter counts are recorded beside ours) on the same batch sizes: torch images/s and the
ratio ours / torch. Compilation and warm-up are excluded from the rates.

Robust by design: every measurement runs in try/except (the error goes into the JSON and
the run continues), measurements are skipped when the time left (--budget-s) is below their
estimate, a watchdog writes what exists and exits shortly after the budget, and the JSON
(--out/gpu_check.json) is rewritten after every row. Imports nothing that needs TensorFlow
(random in-memory batches), so it runs on the GPU machine's stock jax/flax/optax/torch.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import os
import platform
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# JAX would otherwise take 75% of the GPU's memory at start-up, leaving PyTorch too little.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

PRECISIONS = ("float32", "bfloat16")
# Third-party modules the measured code imports beyond jax/flax/optax/orbax (pure Python
# except Pillow): a machine without them can carry them (scripts/gpu_check.sh puts
# shared/pydeps on PYTHONPATH, e.g. pip install --target shared/pydeps --python-version 3.12
# --only-binary=:all: ml-collections pillow pyyaml).
REQUIRED = ("jax", "flax", "optax", "orbax", "absl", "ml_collections", "yaml", "PIL")
GROUPS = ("resnet50", "densenet121", "dcgan", "pggan", "sample_dcgan", "sample_pggan", "ms_ssim")


def sizes(quick: bool) -> dict[str, Any]:
    """Problem sizes, timed steps and time estimates (seconds, compile included)."""
    if quick:
        return dict(
            classifiers={"resnet50": "simple_cnn"},  # ResNet-50 compiles for a minute on CPU
            image=32,
            clf_batch=2,
            dcgan=dict(preset="synthetic_lesions", batch=4, width=8, latent=16),
            pggan=dict(preset="smoke", batch=4),
            sample_batch=dict(dcgan=4, pggan=4),
            ms_ssim=dict(pairs=2, shape=(64, 64, 1)),
            steps=2,
            warmup=1,
            estimate=dict(classifier=4, gan=8, sample=3, ms_ssim=3),
            budget=200,  # about 150 s on a loaded 2-core machine, most of it compiling
        )
    return dict(
        classifiers={"resnet50": "resnet50", "densenet121": "densenet121"},
        image=224,
        clf_batch=128,
        dcgan=dict(preset="synthetic_lesions", batch=64, width=64, latent=100),
        pggan=dict(preset="skin_cancer", batch=16),
        sample_batch=dict(dcgan=256, pggan=64),
        ms_ssim=dict(pairs=64, shape=(256, 256, 3)),
        steps=20,
        warmup=3,
        estimate=dict(classifier=45, gan=40, sample=15, ms_ssim=10),
        budget=420,  # + the watchdog's grace (30 s) + start-up: under 8 minutes
    )


# ------------------------------------------------------------------------------ timing


class Budget:
    """Seconds left before the run's deadline; `per_row` caps one row's timed loop."""

    def __init__(self, seconds: float, per_row: float):
        self.start = time.perf_counter()
        self.deadline = self.start + seconds
        self.per_row = per_row

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def timed_loop(
    run: Callable[[], Any], sync: Callable[[Any], Any], steps: int, warmup: int, cap_s: float
) -> dict[str, float]:
    """Warm-up steps, then up to `steps` timed ones (fewer if they pass cap_s): s/step."""
    out = None
    for _ in range(warmup):
        out = run()
    sync(out)
    done, start = 0, time.perf_counter()
    while done < steps:
        out = run()
        done += 1
        if done % 5 == 0 and time.perf_counter() - start > cap_s:
            break
    sync(out)
    return {"seconds_per_step": (time.perf_counter() - start) / done, "timed_steps": done}


def xla_flops(jitted, *args) -> tuple[Any, dict[str, Any]]:
    """(compiled program, {flops, flops_compiled, compile_s}) of jitted(*args).

    `flops` is XLA's cost analysis of the lowered (unoptimised) program, backend-independent;
    `flops_compiled` that of the compiled one (on GPUs it may not see into library calls).
    cost_analysis() returned a list of dicts in older JAX and a dict in newer: both read."""
    start = time.perf_counter()
    lowered = jitted.lower(*args)
    compiled = lowered.compile()
    info: dict[str, Any] = {"compile_s": time.perf_counter() - start}
    for key, obj in (("flops", lowered), ("flops_compiled", compiled)):
        try:
            cost = obj.cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            info[key] = float(cost["flops"]) if cost and "flops" in cost else None
        except Exception as e:  # noqa: BLE001 - an API difference must not lose the row
            info[key] = None
            info[f"{key}_error"] = repr(e)[:300]
    if info.get("flops") is None:
        info["flops"] = info.get("flops_compiled")
    return compiled, info


# ------------------------------------------------------------------------- JAX sides


def jax_classifier(name: str, precision: str, image: int, batch: int):
    """(run, sync, info): this project's classifier train step (as classify.train wires it)."""
    import jax

    from configs.classifier import get_config
    from medgan_jax import parallel, training
    from medgan_jax.classify.state import build_model, create_state, make_optimizer
    from medgan_jax.classify.steps import make_train_step

    config = get_config("synthetic_lesions")
    config.model.name, config.model.options, config.precision = name, {}, precision
    mesh = parallel.make_mesh(1)
    model = build_model(config, 1)
    optimizer = functools.partial(make_optimizer, config.optimizer)
    replicated = parallel.replicated(mesh)
    state = create_state(model, optimizer(10_000), (image, image, 3), 0, True, replicated)
    step = make_train_step(model, optimizer, "binary")
    step = training.jit_step(step, mesh, 2)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (batch, image, image, 3)).astype(np.float32)
    labels = (np.arange(batch) % 2).astype(np.int32)
    arrays = parallel.host_to_global({"image": images, "label": labels}, mesh)
    weights = jax.device_put(np.ones(2, np.float32), replicated)
    total_steps = jax.device_put(np.int32(10_000), replicated)
    compiled, info = xla_flops(step, state, arrays, weights, total_steps)
    info["params"] = int(sum(p.size for p in jax.tree.leaves(state.params)))
    info["param_dtypes"] = sorted({str(p.dtype) for p in jax.tree.leaves(state.params)})
    holder = {"state": state}

    def run():
        holder["state"], metrics = compiled(holder["state"], arrays, weights, total_steps)
        return metrics["loss"]

    return run, jax.block_until_ready, info


def gan_config(family: str, precision: str, sz: dict[str, Any]):
    """The benchmark's GAN config: no augmentation, unconditional, the sizes in `sz`."""
    if family == "dcgan":
        from configs.dcgan import get_config

        config = get_config(sz["dcgan"]["preset"])
        d = sz["dcgan"]
        config.gan.update(g_width=d["width"], d_width=d["width"], latent_dim=d["latent"])
        config.batch_size = d["batch"]
    else:
        from configs.pggan import get_config

        config = get_config(sz["pggan"]["preset"])
        config.batch_size = sz["pggan"]["batch"]
    config.gan.update(augment="", conditional="")
    config.precision = precision
    return config


def gan_models_and_state(config):
    """(generator, discriminator, mesh, fresh replicated GANState), without TensorFlow."""
    from medgan_jax import parallel
    from medgan_jax.gan import families
    from medgan_jax.gan.state import create_state

    mesh = parallel.make_mesh(1)
    generator, discriminator = families.build_models(config, 1)
    res = config.data.image_size
    state = create_state(
        generator,
        discriminator,
        config.gan,
        (res, res, config.data.channels),
        config.seed,
        parallel.replicated(mesh),
        per_module=families.family_of(config).per_module_optimizers,
    )
    return generator, discriminator, mesh, state


def jax_gan(config):
    """(run, sync, info): the family's training step (PGGAN: the final stage, alpha 1)."""
    import jax

    from medgan_jax import parallel, training
    from medgan_jax.gan import progressive
    from medgan_jax.gan.steps import make_train_step

    generator, discriminator, mesh, state = gan_models_and_state(config)
    res, batch = config.data.image_size, config.batch_size
    if config.gan.family == "pggan":
        fn = progressive.make_stage_step(generator, discriminator, config.gan, res, False)
        step, extra = training.jit_step(fn, mesh, num_extra_args=1), (np.float32(1.0),)
    else:
        step, extra = (
            training.jit_step(make_train_step(generator, discriminator, config.gan), mesh),
            (),
        )
    real = np.random.default_rng(0).uniform(-1, 1, (batch, res, res, config.data.channels))
    arrays = parallel.host_to_global(
        {"image": real.astype(np.float32), "label": np.zeros(batch, np.int32)}, mesh
    )
    compiled, info = xla_flops(step, state, arrays, *extra)
    leaves = jax.tree.leaves((state.g_params, state.d_params))
    info["params"] = [
        int(sum(p.size for p in jax.tree.leaves(t))) for t in (state.g_params, state.d_params)
    ]
    info["param_dtypes"] = sorted({str(p.dtype) for p in leaves})
    holder = {"state": state}

    def run():
        holder["state"], metrics = compiled(holder["state"], arrays, *extra)
        return metrics["g_loss"]

    return run, jax.block_until_ready, info


def jax_sampler(config, batch: int):
    """(run, sync, info): EMA-generator images in inference mode for fresh latents."""
    import jax
    import jax.numpy as jnp

    from medgan_jax.gan.steps import make_generate

    generator, _, _, state = gan_models_and_state(config)
    _, generate = make_generate(generator)
    latent = config.gan.latent_dim

    @jax.jit
    def sample(params, stats, i):
        z = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(0), i), (batch, latent))
        return generate(params, stats, z, jnp.zeros((batch,), jnp.int32))

    compiled, info = xla_flops(sample, state.ema_params, state.g_stats, np.int32(0))
    counter = iter(range(1, 2**31))

    def run():
        return compiled(state.ema_params, state.g_stats, np.int32(next(counter)))

    return run, jax.block_until_ready, info


def jax_ms_ssim(pairs: int, shape: tuple[int, int, int]):
    import jax

    from medgan_jax.metrics.ms_ssim import ms_ssim

    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (pairs, *shape)).astype(np.float32)
    b = np.clip(a + 0.5 * rng.normal(size=a.shape), -1, 1).astype(np.float32)
    a, b = jax.device_put(a), jax.device_put(b)
    compiled, info = xla_flops(jax.jit(lambda x, y: ms_ssim(x, y)), a, b)
    return (lambda: compiled(a, b)), jax.block_until_ready, info


# ----------------------------------------------------------------------- PyTorch sides


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_amp(precision: str):
    import torch

    return torch.bfloat16 if precision == "bfloat16" else None


def torch_sync(device: str) -> Callable[[Any], None]:
    from benchmarks import torch_nets

    return lambda _: torch_nets.sync(device)


def torch_classifier(name: str, precision: str, image: int, batch: int):
    import torch

    from benchmarks import torch_nets
    from benchmarks.classifier_throughput import torch_simple_cnn

    build = {
        "resnet50": torch_nets.resnet50,
        "densenet121": torch_nets.densenet121,
        "simple_cnn": torch_simple_cnn,
    }[name]
    device = torch_device()
    torch.manual_seed(0)
    net = build(3).to(device)
    images = torch.rand(batch, 3, image, image, device=device) * 2 - 1
    labels = (torch.arange(batch, device=device) % 2).float()
    step = torch_nets.classifier_step(net, images, labels, torch_amp(precision))
    return step, torch_sync(device), {"params": torch_nets.num_params(net)}


def torch_gan(config):
    from benchmarks import torch_nets

    device, amp = torch_device(), torch_amp(config.precision)
    if config.gan.family == "pggan":
        step, nets = torch_nets.pggan_step(config, config.batch_size, device, amp)
    else:
        g = config.gan
        step, nets = torch_nets.dcgan_step(
            config.batch_size, g.latent_dim, config.data.channels, g.g_width, g.d_width,
            device, amp, sigmoid=False, channels_last=device == "cuda",
        )  # fmt: skip
    return step, torch_sync(device), {"params": [torch_nets.num_params(n) for n in nets[:2]]}


def torch_sampler(config, batch: int):
    from benchmarks import torch_nets

    device, amp = torch_device(), torch_amp(config.precision)
    if config.gan.family == "pggan":
        generator = torch_nets.pggan_networks(config)[0].to(device)
    else:
        g = config.gan
        generator = torch_nets.dcgan_networks(g.latent_dim, g.g_width, g.d_width)[0].to(device)
    run = torch_nets.sampler(generator, batch, config.gan.latent_dim, device, amp)
    return run, torch_sync(device), {"params": torch_nets.num_params(generator)}


# ----------------------------------------------------------------------------- the check


class Check:
    """Runs rows one at a time, records each (or its error), rewrites the JSON."""

    def __init__(self, args, sz: dict[str, Any]):
        self.args, self.sz = args, sz
        self.budget = Budget(args.budget_s or sz["budget"], per_row=5.0 if args.quick else 10.0)
        self.rows: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.path = os.path.join(args.out, "gpu_check.json")

    def peak(self, precision: str) -> tuple[str, float]:
        if precision == "bfloat16":
            return "bf16", self.args.peak_bf16_tflops
        return "tf32", self.args.peak_tf32_tflops

    def side(self, row: dict, prefix: str, make: Callable, items: int) -> None:
        """Builds (run, sync, info) with `make`, times it, stores prefix_* fields in row."""
        try:
            run, sync, info = make()
            timing = timed_loop(run, sync, self.sz["steps"], self.sz["warmup"], self.budget.per_row)
        except Exception as e:  # noqa: BLE001 - record and continue
            row[f"{prefix}_error"] = f"{type(e).__name__}: {e}"[:2000]
            row[f"{prefix}_traceback"] = traceback.format_exc()[-4000:]
            print(f"  {prefix} failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
            return
        seconds = timing["seconds_per_step"]
        row[f"{prefix}_items_per_s"] = items / seconds
        row[f"{prefix}_ms_per_step"] = 1e3 * seconds
        row[f"{prefix}_timed_steps"] = timing["timed_steps"]
        for key, value in info.items():
            row[f"{prefix}_{key}"] = value
        if prefix == "jax" and info.get("flops"):
            tflops = info["flops"] / seconds / 1e12
            name, peak = self.peak(row["precision"])
            row.update(
                jax_tflops=tflops,
                peak=f"{name} {peak:g} TFLOP/s",
                peak_fraction=tflops / peak,
                bf16_peak_fraction=tflops / self.args.peak_bf16_tflops,
            )

    def row(
        self, group: str, precision: str, kind: str, unit: str, items: int, jax_make, torch_make
    ):
        """One measurement: ours and (unless None or --no-torch) PyTorch's."""
        name = f"{group} {precision}"
        row: dict[str, Any] = dict(
            name=name, group=group, precision=precision, unit=unit, batch=items
        )
        estimate = self.sz["estimate"][kind]
        if self.budget.left() < estimate:
            row["skipped"] = (
                f"time guard: {self.budget.left():.0f} s left, this row needs about {estimate} s"
            )
            print(
                f"[{self.budget.elapsed():5.0f} s] {name}: skipped ({row['skipped']})", flush=True
            )
        else:
            print(f"[{self.budget.elapsed():5.0f} s] {name} ...", flush=True)
            started = time.perf_counter()
            self.side(row, "jax", jax_make, items)
            if torch_make is not None and not self.args.no_torch:
                self.side(row, "torch", torch_make, items)
            if row.get("jax_items_per_s") and row.get("torch_items_per_s"):
                row["ratio"] = row["jax_items_per_s"] / row["torch_items_per_s"]
            row["wall_s"] = time.perf_counter() - started
            print(f"          {summary(row)}", flush=True)
        with self.lock:
            self.rows.append(row)
            self.write()
        free_memory()

    def write(self, **extra: Any) -> None:
        os.makedirs(self.args.out, exist_ok=True)
        result = {**self.meta, "elapsed_s": self.budget.elapsed(), **extra, "rows": self.rows}
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1, default=str)
        os.replace(tmp, self.path)


def free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - torch may be absent
        pass


def summary(row: dict[str, Any]) -> str:
    parts = []
    if "jax_items_per_s" in row:
        parts.append(f"ours {row['jax_items_per_s']:.1f} {row['unit']}/s")
    if "peak_fraction" in row:
        parts.append(
            f"{row['jax_tflops']:.2f} TFLOP/s = {100 * row['peak_fraction']:.1f}% of {row['peak']}"
        )
    if "torch_items_per_s" in row:
        parts.append(f"torch {row['torch_items_per_s']:.1f}/s")
    if "ratio" in row:
        parts.append(f"ratio {row['ratio']:.2f}x")
    for side in ("jax", "torch"):
        if f"{side}_error" in row:
            parts.append(f"{side} error: {row[f'{side}_error'][:120]}")
    return "; ".join(parts) or row.get("skipped", "")


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a fixed-width text table."""
    head = (
        "row",
        "batch",
        "ours/s",
        "ms/step",
        "GFLOP/step",
        "TFLOP/s",
        "%peak",
        "torch/s",
        "ratio",
        "compile s",
    )
    lines = [head]
    fmt = lambda v, f: "-" if v is None else format(v, f)
    for r in rows:
        flops = r.get("jax_flops")
        note = "skipped" if "skipped" in r else ("error" if "jax_error" in r else "")
        lines.append((
            r["name"] + (f" [{note}]" if note else ""),
            str(r["batch"]) + (" pairs" if r["unit"] == "pairs" else ""),
            fmt(r.get("jax_items_per_s"), ".1f"),
            fmt(r.get("jax_ms_per_step"), ".1f"),
            fmt(flops / 1e9 if flops else None, ".2f"),
            fmt(r.get("jax_tflops"), ".3f"),
            fmt(100 * r["peak_fraction"] if "peak_fraction" in r else None, ".2f")
            + (f" ({r['peak'].split()[0]})" if "peak" in r else ""),
            fmt(r.get("torch_items_per_s"), ".1f") if "torch_error" not in r else "error",
            fmt(r.get("ratio"), ".2f"),
            fmt(r.get("jax_compile_s"), ".1f"),
        ))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for k, line in enumerate(lines):
        out.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))
            )
        )
        if k == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def environment(args) -> dict[str, Any]:
    import flax
    import jax
    import optax

    device = jax.devices()[0]
    meta: dict[str, Any] = dict(
        quick=args.quick,
        python=platform.python_version(),
        jax=jax.__version__,
        flax=flax.__version__,
        optax=optax.__version__,
        jax_backend=jax.default_backend(),
        jax_device=getattr(device, "device_kind", str(device)),
        jax_device_count=jax.device_count(),
        jax_default_matmul_precision=str(
            getattr(jax.config, "jax_default_matmul_precision", "unknown")
        ),
        peaks_tflops={"bf16": args.peak_bf16_tflops, "tf32": args.peak_tf32_tflops},
        peak_note=(
            "bfloat16 rows: fraction of the bf16 dense peak; float32 rows: of the TF32 "
            "tensor-core peak (XLA's default precision uses TF32 for float32 on GPUs); "
            "bf16_peak_fraction: every row against the bf16 peak. FLOPs: XLA cost analysis."
        ),
    )
    try:
        import torch

        meta["torch"] = torch.__version__
        meta["torch_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        meta["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            # Match XLA's default (TF32 for float32 convs and matmuls); pick fast kernels.
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
            meta["torch_tf32"] = True
    except Exception as e:  # noqa: BLE001 - torch is optional
        meta["torch_error"] = repr(e)
        args.no_torch = True
    return meta


def plan(check: Check) -> list[Callable[[], None]]:
    """The rows, in priority order (a time guard skips from the end)."""
    sz, only = check.sz, check.args.only
    wanted = lambda group: not only or group in only
    rows: list[Callable[[], None]] = []
    image, batch = sz["image"], sz["clf_batch"]
    for group, net in sz["classifiers"].items():
        for precision in check.args.precisions:
            if wanted(group):
                rows.append(lambda g=group, n=net, p=precision: check.row(
                    g if n == g else f"{g}({n})", p, "classifier", "img", batch,
                    lambda: jax_classifier(n, p, image, batch),
                    lambda: torch_classifier(n, p, image, batch),
                ))  # fmt: skip
    for family in ("dcgan", "pggan"):
        for precision in check.args.precisions:
            if wanted(family):
                rows.append(lambda f=family, p=precision: check.row(
                    f, p, "gan", "img", gan_config(f, p, sz).batch_size,
                    lambda: jax_gan(gan_config(f, p, sz)),
                    lambda: torch_gan(gan_config(f, p, sz)),
                ))  # fmt: skip
    for family in ("dcgan", "pggan"):
        n = sz["sample_batch"][family]
        for precision in check.args.precisions:
            if wanted(f"sample_{family}"):
                rows.append(lambda f=family, p=precision, n=n: check.row(
                    f"sample_{f}", p, "sample", "img", n,
                    lambda: jax_sampler(gan_config(f, p, sz), n),
                    lambda: torch_sampler(gan_config(f, p, sz), n),
                ))  # fmt: skip
    if wanted("ms_ssim"):
        m = sz["ms_ssim"]
        rows.append(lambda: check.row(
            "ms_ssim", "float32", "ms_ssim", "pairs", m["pairs"],
            lambda: jax_ms_ssim(m["pairs"], m["shape"]), None,
        ))  # fmt: skip
    return rows


def watchdog(check: Check, grace_s: float) -> None:
    """After the budget plus grace_s, writes the JSON and table of what exists and exits:
    a compile or kernel stuck past the deadline must not cost the whole run."""

    def fire():
        with check.lock:
            check.write(stopped_by_watchdog=True)
            print(f"\nwatchdog: stopped after {check.budget.elapsed():.0f} s", flush=True)
            print(table(check.rows), flush=True)
        os._exit(3)

    timer = threading.Timer(max(check.budget.left(), 0) + grace_s, fire)
    timer.daemon = True
    timer.start()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a CPU smoke run")
    parser.add_argument("--only", default="", help=f"comma-separated groups of {GROUPS}")
    parser.add_argument("--budget-s", type=float, default=0, help="0: 420 (GPU), 200 (quick)")
    parser.add_argument("--grace-s", type=float, default=30, help="watchdog after the budget")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per row (0: default)")
    parser.add_argument(
        "--precisions", default="", help="some of float32,bfloat16 ('': both; quick: bfloat16)"
    )
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--peak-bf16-tflops", type=float, default=790.0)
    parser.add_argument("--peak-tf32-tflops", type=float, default=395.0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--cache-dir", default="", help="XLA compilation cache ('' = none)")
    args = parser.parse_args(argv)
    args.only = {g.strip() for g in args.only.split(",") if g.strip()}
    if args.only - set(GROUPS):
        parser.error(f"--only: unknown {sorted(args.only - set(GROUPS))}; expected {GROUPS}")
    # Quick runs only the mixed-precision path (the float32 one is every test's default).
    default = "bfloat16" if args.quick else ",".join(PRECISIONS)
    args.precisions = [p.strip() for p in (args.precisions or default).split(",") if p.strip()]
    if not args.precisions or set(args.precisions) - set(PRECISIONS):
        parser.error(f"--precisions: {args.precisions}; expected some of {PRECISIONS}")
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:  # say so at once, in the JSON too, instead of one ImportError per row
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
            json.dump({"missing_modules": missing, "rows": []}, f, indent=1)
        sys.exit(f"gpu_check: missing Python modules {missing}; see REQUIRED in {__file__}.")
    sz = sizes(args.quick)
    if args.steps:
        sz["steps"] = args.steps
    import jax

    if args.quick:
        from medgan_jax import app  # XLA:CPU flags, before the backend starts

        app.set_xla_cpu_flags()
    # As app.configure sets it for every job (the partitionable threefry compiles slowly).
    jax.config.update("jax_threefry_partitionable", False)
    if args.cache_dir:  # the tests' cache: reruns load the programs (compile_s then shrinks)
        jax.config.update("jax_compilation_cache_dir", args.cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    check = Check(args, sz)
    check.meta = environment(args)
    print(
        f"gpu_check: JAX {check.meta['jax']} on {check.meta['jax_device']} "
        f"({check.meta['jax_backend']}), torch {check.meta.get('torch', 'absent')} on "
        f"{check.meta.get('torch_device', '-')}; budget {check.budget.left():.0f} s",
        flush=True,
    )
    watchdog(check, args.grace_s)
    for run_row in plan(check):
        run_row()
    tf = sys.modules.get("tensorflow") is not None
    with check.lock:
        check.write(tensorflow_imported=tf, finished=True)
    print()
    print(table(check.rows))
    errors = sum(1 for r in check.rows if "jax_error" in r or "torch_error" in r)
    skipped = sum(1 for r in check.rows if "skipped" in r)
    print(
        f"\n{len(check.rows)} rows, {errors} with errors, {skipped} skipped, "
        f"{check.budget.elapsed():.0f} s; TensorFlow imported: {tf}; JSON: {check.path}"
    )
    with open(check.path) as f:
        return json.load(f)


if __name__ == "__main__":
    main()
