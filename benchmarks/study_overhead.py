"""The study's cost per run against its arithmetic: wall time vs the time of its steps.

  python benchmarks/study_overhead.py [--sizes 50] [--seeds 0,1] [--methods base,dcgan,...]
                                      [--image-size 32] [--seeds-together 3] [--preset demo]
                                      [--stream-batches 300]

Runs one cell of the demo study (configs/study.py:demo; --preset smoke is the tests' tiny
one) per size and seed, in one process as the study does (the entry points' allocator,
medgan_jax/launch.py; fresh folders; the persistent compilation cache as the study finds
it), and records the wall time of every run: each classifier, each GAN training (the
transfer arm's pretraining and fine-tuning separately) and each sampling. Then, per run,
it times the same compiled programs alone on device-resident batches of the run's shapes:

  compute = train steps x (one train step) + eval images / eval batch x (one forward pass)
            (classifiers: validation every epoch, then validation and test once more)
  compute = steps x (one GAN step) + sampled images / batch x (one generator pass)

and prints wall, compute and their ratio per run (target: wall <= 1.5x compute), and the
totals; beside it the same ratio without compiling (tracing, lowering, compiling or
loading from the persistent cache: once per program per process) and "per run", without
that and without the process's set-up (what it builds once for all its runs: the
embedded splits' rendering, the evaluation splits held on device), which only the first
run of each kind in a process pays. Then two probes: the host time per batch of a
classifier's training stream on the cell's in-memory images, gathered from images
preprocessed once against the per-image tf.data map (--stream-batches), and the lever
of training a cell's seeds
together: one vmapped step over 3 seeds' parameters and batches against the 3 steps one
after another (--seeds-together). Results go
to benchmarks/results/study_overhead.json. The machine is shared and noisy: compare
ratios, not seconds, between machines.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medgan_jax import launch  # noqa: E402

RUNS: list[dict] = []  # one row per timed run, filled by the wrappers below
COMPILE_SECONDS = [0.0]  # JAX's tracing, lowering and compiling (or cache loading) so far
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


SETUP_SECONDS = [0.0]  # what a process builds once for all its runs, compiling excluded


def count_compile_time(event: str, seconds: float, **kwargs) -> None:
    if event in COMPILE_EVENTS:
        COMPILE_SECONDS[0] += seconds


def counted_as_setup(build, is_new: Callable[[], bool]):
    """`build` timed into SETUP_SECONDS (less the compiling inside it) where `is_new()`
    says the call built something rather than reused it; nested builds count once."""

    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        if counted_as_setup.depth:
            return build(*args, **kwargs)
        started, compiled = time.perf_counter(), COMPILE_SECONDS[0]
        counted_as_setup.depth += 1
        try:
            result = build(*args, **kwargs)
        finally:
            counted_as_setup.depth -= 1
        if is_new():
            elapsed = time.perf_counter() - started
            SETUP_SECONDS[0] += elapsed - (COMPILE_SECONDS[0] - compiled)
        return result

    return wrapper


counted_as_setup.depth = 0


def timed(kind: str, fn, describe):
    """fn wrapped to append {kind, wall, compile, details} to RUNS on every call."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started, compiled, built = time.perf_counter(), COMPILE_SECONDS[0], SETUP_SECONDS[0]
        result = fn(*args, **kwargs)
        RUNS.append(
            {
                "kind": kind,
                "wall": time.perf_counter() - started,
                "compile": COMPILE_SECONDS[0] - compiled,
                "setup": SETUP_SECONDS[0] - built,
                **describe(*args),
            }
        )
        return result

    return wrapper


def instrument() -> None:
    """Times every classifier run, GAN training and sampling the study starts."""
    import jax

    from medgan_jax.classify import train as classify_train
    from medgan_jax.gan import sample
    from medgan_jax.gan import train as gan_train
    from medgan_jax.study import runner

    jax.monitoring.register_event_duration_secs_listener(count_compile_time)
    count_process_setup()
    runner.classify_train.train_and_evaluate = timed(
        "classifier",
        classify_train.train_and_evaluate,
        lambda config, workdir: {"config": config, "workdir": workdir},
    )
    runner.gan_train.train = timed(
        "gan", gan_train.train, lambda config, workdir: {"config": config, "workdir": workdir}
    )
    runner.sample.generate_images = timed(
        "sampling",
        sample.generate_images,
        lambda workdir, num, *rest: {"workdir": workdir, "num": num},
    )


def count_process_setup() -> None:
    """Counts as set-up what a process builds once and every later run reuses: the embedded
    dataset's splits (rendered once per process) and what training.BuiltOnce caches keep
    (the evaluation splits held on device; programs, whose compiling counts as compile)."""
    from medgan_jax import training
    from medgan_jax.data import sources

    renders = sources._lesion_images
    misses = lambda: renders.cache_info().misses  # noqa: E731
    before = [misses()]

    def rendered() -> bool:
        new, before[0] = misses() > before[0], misses()
        return new

    sources._lesion_images = counted_as_setup(renders, rendered)
    call = training.BuiltOnce.__call__

    def built_once(self, key, build):
        fresh = key not in self._built
        return counted_as_setup(call, lambda: fresh)(self, key, build)

    training.BuiltOnce.__call__ = built_once


def seconds_per_call(fn, *args, repeats: int = 10) -> float:
    """Median seconds of fn(*args) (blocked on its outputs), after one warm-up call."""
    import jax
    import numpy as np

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def seconds_per_step(step, state, repeats: int = 10) -> float:
    """Median seconds of one `state = step(state)` (the steps donate their state)."""
    import jax
    import numpy as np

    state = jax.block_until_ready(step(state))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        state = jax.block_until_ready(step(state))
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return f"{names[0]} x {len(names)}" if names else platform.machine()


def classifier_compute(row: dict) -> dict:
    """The run's train steps and eval passes, timed alone with its own programs."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from medgan_jax import parallel, training
    from medgan_jax.classify import train as classify_train
    from medgan_jax.classify.state import create_state, make_optimizer, num_outputs
    from medgan_jax.classify.steps import make_predict, make_train_step
    from medgan_jax.models.classifiers import build_classifier

    config = row["config"]
    with open(os.path.join(row["workdir"], "metrics.json")) as f:
        metrics = json.load(f)
    steps_per_epoch = config.steps_per_epoch or max(
        -(-metrics["train_images"] // config.batch_size),
        -(-config.min_train_steps // config.num_epochs),
    )
    epochs = metrics.get("epochs", config.num_epochs)
    steps = metrics.get("steps", steps_per_epoch * epochs)
    mesh = training.mesh_of(config)
    task = metrics["task"]
    model = build_classifier(config.model.name, num_outputs(task, 2), **config.model.options)
    optimizer = functools.partial(make_optimizer, config.optimizer)
    size, channels = config.data.image_size, config.data.channels
    shape = (size, size, channels)
    state = create_state(model, optimizer(steps), shape, 0, True, parallel.replicated(mesh))
    augment = classify_train.augment_program(config, mesh)
    step_fn = training.jit_step(make_train_step(model, optimizer, task), mesh, 2)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (config.batch_size, size, size, channels)).astype(np.float32)
    batch = parallel.host_to_global(
        {"image": images, "label": (np.arange(config.batch_size) % 2).astype(np.int32)}, mesh
    )
    predict = jax.jit(make_predict(model, task))
    eval_images = np.zeros((config.eval_batch_size, size, size, channels), np.float32)
    eval_s = seconds_per_call(predict, state.params, state.batch_stats, eval_images)
    weights = jnp.ones(2)
    train_s = seconds_per_step(
        lambda s: step_fn(s, classify_train.augmented(augment, batch, s), weights, steps)[0], state
    )
    val, test = row["val_images"], row["test_images"]
    eval_batches = (epochs + 1) * -(-val // config.eval_batch_size)
    eval_batches += -(-test // config.eval_batch_size)
    return {"steps": steps, "compute": steps * train_s + eval_batches * eval_s}


def gan_compute(row: dict) -> dict:
    """The run's GAN steps, timed alone with its own compiled step."""
    import numpy as np

    from medgan_jax import parallel, training
    from medgan_jax.gan import families
    from medgan_jax.gan import train as gan_train

    config = row["config"]
    mesh = training.mesh_of(config)
    num_classes = 2 if families.is_conditional(config) else 1
    generator, discriminator = families.build_models(config, num_classes)
    state = gan_train.initial_state(config, generator, discriminator, mesh)
    (phase,) = families.family_of(config).phases(
        config, generator, discriminator, mesh, num_classes
    )
    size, channels = config.data.image_size, config.data.channels
    n = phase.images_per_step
    rng = np.random.default_rng(0)
    batch = parallel.host_to_global(
        {
            "image": rng.uniform(-1, 1, (n, size, size, channels)).astype(np.float32),
            "label": np.zeros((n,), np.int32),
        },
        mesh,
    )

    step_s = seconds_per_step(lambda state: phase.run(state, batch, 1)[0], state)
    steps = families.num_training_steps(config)
    return {"steps": steps, "compute": steps * step_s}


def sampling_compute(row: dict) -> dict:
    """The generator passes of a sampling run (no checkpoint loading or PNG encoding)."""
    import jax
    import jax.numpy as jnp

    from medgan_jax.gan import sample
    from medgan_jax.gan.steps import make_generate

    g = sample.load_generator(row["workdir"])
    _, generate = map(jax.jit, make_generate(g.model))
    batch = 256
    z = jax.random.normal(jax.random.PRNGKey(0), (batch, g.run.config.gan.latent_dim))
    labels = jnp.zeros((batch,), jnp.int32)
    per_batch = seconds_per_call(generate, g.params, g.stats, z, labels)
    return {"compute": -(-row["num"] // batch) * per_batch}


def training_stream(clf_config, batches: int) -> dict:
    """Host milliseconds per batch of a classifier's training stream on the demo's
    in-memory images (pipeline.training_batches, numpy batches, no training): gathered from
    the images preprocessed once (what the pipeline does for small training sets) against
    the per-image tf.data path (data.pipeline.RESIDENT_BYTES = 0). The pipeline's threads
    share the machine's cores with the steps, so this is host time a run pays."""
    from medgan_jax.data import load_split, pipeline

    records = load_split(clf_config.data, "train")

    def ms_per_batch() -> float:
        stream = pipeline.training_batches(
            records, clf_config.data, global_batch_size=clf_config.batch_size
        )
        for _ in range(10):
            next(stream)
        started = time.perf_counter()
        for _ in range(batches):
            next(stream)
        stream.close()
        return (time.perf_counter() - started) / batches * 1000

    gathered = ms_per_batch()
    saved, pipeline.RESIDENT_BYTES = pipeline.RESIDENT_BYTES, 0
    try:
        per_image = ms_per_batch()
    finally:
        pipeline.RESIDENT_BYTES = saved
    return {"gathered_ms": gathered, "per_image_ms": per_image, "ratio": per_image / gathered}


def seeds_together(clf_config, gan_config, seeds: int = 3) -> dict:
    """The lever of training a cell's seeds as one vmapped program, measured: seconds of
    one step of each seed in turn vs one step of all of them vmapped (classifier, GAN)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from medgan_jax.classify.state import create_state, make_optimizer
    from medgan_jax.classify.steps import make_train_step
    from medgan_jax.gan import families
    from medgan_jax.gan import state as gan_state
    from medgan_jax.gan import steps as gan_steps
    from medgan_jax.models.classifiers import build_classifier

    size, channels = clf_config.data.image_size, clf_config.data.channels
    shape = (size, size, channels)
    rng = np.random.default_rng(0)
    stack = lambda *trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)

    def compare(step, states, batch_of):
        single = jax.jit(step, donate_argnums=0)
        together = jax.jit(jax.vmap(step), donate_argnums=0)
        batches = stack(*[batch_of() for _ in states])
        stacked = stack(*states)  # before the single steps donate states[0]
        batch = batch_of()
        one = seconds_per_step(lambda s: single(s, batch)[0], states[0])
        all_ = seconds_per_step(lambda s: together(s, batches)[0], stacked)
        return {"one_at_a_time": seeds * one, "vmapped": all_, "ratio": seeds * one / all_}

    def batch_of(n):
        return lambda: {
            "image": jnp.asarray(rng.uniform(-1, 1, (n, *shape)), jnp.float32),
            "label": jnp.asarray(np.arange(n) % 2, jnp.int32),
        }

    model = build_classifier(clf_config.model.name, 1, **clf_config.model.options)
    optimizer = functools.partial(make_optimizer, clf_config.optimizer)
    weighted_step = make_train_step(model, optimizer, "binary")
    step = lambda state, batch: weighted_step(state, batch, jnp.ones(2), 100)  # noqa: E731
    states = [create_state(model, optimizer(100), shape, seed, True) for seed in range(seeds)]
    result = {"classifier": compare(step, states, batch_of(clf_config.batch_size))}
    generator, discriminator = families.build_models(gan_config, 1)
    step = gan_steps.make_train_step(generator, discriminator, gan_config.gan)
    states = [
        gan_state.create_state(generator, discriminator, gan_config.gan, shape, seed)
        for seed in range(seeds)
    ]
    result["gan"] = compare(step, states, batch_of(gan_config.batch_size))
    return result


COMPUTE = {"classifier": classifier_compute, "gan": gan_compute, "sampling": sampling_compute}


def run_cell(size: str, seed: int, methods: list[str], root: str, args) -> list[dict]:
    """One cell of the study preset, every run timed; returns its rows."""
    from configs import study as study_config
    from medgan_jax.data import load_split
    from medgan_jax.study import grid, runner

    config = study_config.get_config(args.preset)
    image_size = args.image_size
    if image_size:
        config.data.image_size = config.data.synthetic.size = image_size
    say = runner.StudyLog()
    cell = grid.cell_root(root, size, seed)
    manifest = runner.write_subset_manifest(config, size, seed, cell, say)
    first = len(RUNS)
    for name in methods:
        runner.run_cell(config, name, seed, manifest, cell, say)
    val, test = (len(load_split(config.data, split)) for split in ("val", "test"))
    rows = RUNS[first:]
    for row in rows:
        row.update(size=size, val_images=val, test_images=test)
    return rows


def describe(row: dict, root: str) -> str:
    path = os.path.relpath(row["workdir"], root)
    return path.replace("size=", "").replace("seed=", "").replace("method=", "")


def with_sampling_in_its_gan(rows: list[dict]) -> list[dict]:
    """Each sampling run added to the GAN run it samples (the study's GAN cost is both)."""
    merged = []
    for row in rows:
        if row["kind"] == "sampling":
            gan = next(r for r in reversed(merged) if r["workdir"] == row["workdir"])
            for key in ("wall", "compile", "setup", "compute"):
                gan[key] += row[key]
            gan["sampled"] = row["num"]
        else:
            merged.append(dict(row))
    return merged


def print_table(rows: list[dict], root: str) -> list[dict]:
    """The per-run table (and totals); returns its rows for the JSON."""
    header = f"{'run':<44} {'wall s':>7} {'compile s':>9} {'set-up s':>8} {'compute s':>9}"
    print(f"\n{header} {'wall/compute':>12} {'without compile':>15} {'per run':>8}")
    table = []
    for row in rows + [total_row(rows)]:
        name = row.get("run") or describe(row, root)
        ratio, warm = row["wall"] / row["compute"], (row["wall"] - row["compile"]) / row["compute"]
        per_run = (row["wall"] - row["compile"] - row["setup"]) / row["compute"]
        if row["kind"] == "gan" and "sampled" in row:
            name += f" + {row['sampled']} sampled"
        print(
            f"{name:<44} {row['wall']:7.2f} {row['compile']:9.2f} {row['setup']:8.2f} "
            f"{row['compute']:9.2f} {ratio:12.2f} {warm:15.2f} {per_run:8.2f}"
        )
        keep = {k: v for k, v in row.items() if k not in ("config", "workdir")}
        ratios = {"ratio": ratio, "ratio_without_compile": warm, "ratio_per_run": per_run}
        table.append(keep | {"run": name, **ratios})
    return table


def total_row(rows: list[dict]) -> dict:
    total = {key: sum(r[key] for r in rows) for key in ("wall", "compile", "setup", "compute")}
    return total | {"kind": "total", "run": "total"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="50", help="comma-separated demo sizes")
    parser.add_argument(
        "--seeds", default="0,1", help="the cell's seeds (the first compiles the programs)"
    )
    parser.add_argument(
        "--methods",
        default="base,oversample,weighted,classic,dcgan,dcgan_transfer,real_topup",
    )
    parser.add_argument(
        "--image-size", type=int, default=0, help="override the demo's (0: keep it)"
    )
    parser.add_argument("--seeds-together", type=int, default=3, help="0: skip that probe")
    parser.add_argument(
        "--stream-batches", type=int, default=300, help="training-stream probe (0: skip)"
    )
    parser.add_argument("--preset", default="demo", help="configs/study.py preset")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/study_overhead.json"))
    args = parser.parse_args()
    launch.reexec_with_malloc_tunables()  # as the study's entry point (evaluate.py) runs
    from medgan_jax import app

    app.configure()
    instrument()
    root = tempfile.mkdtemp(prefix="study_overhead_")
    started = time.perf_counter()
    rows = []
    try:
        for size in args.sizes.split(","):
            for seed in map(int, args.seeds.split(",")):
                rows += run_cell(size, seed, args.methods.split(","), root, args)
        study_wall = time.perf_counter() - started
        for row in rows:
            row.update(COMPUTE[row["kind"]](row))
        clf = next(r for r in rows if r["kind"] == "classifier")["config"]  # reads the cell
        stream = training_stream(clf, args.stream_batches) if args.stream_batches else {}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = with_sampling_in_its_gan(rows)
    table = print_table(rows, root)
    print(f"cells' wall incl. set-up: {study_wall:.1f} s on {cpu_model()}")
    if stream:
        print(
            f"training stream, {clf.batch_size} images per batch: gathered "
            f"{stream['gathered_ms']:.3f} ms/batch, per image {stream['per_image_ms']:.3f} "
            f"ms/batch (gathered is {stream['ratio']:.1f}x as fast)"
        )
    together = {}
    if args.seeds_together:
        gan = next((r for r in rows if r["kind"] == "gan"), None)
        together = seeds_together(clf, gan["config"], args.seeds_together)
        for kind, t in together.items():
            print(
                f"{args.seeds_together} seeds' {kind} steps: one at a time "
                f"{t['one_at_a_time'] * 1000:.1f} ms, vmapped {t['vmapped'] * 1000:.1f} ms "
                f"(vmapped is {t['ratio']:.2f}x as fast)"
            )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_model(),
        "args": vars(args),
        "runs": [{k: v for k, v in r.items() if k != "workdir"} for r in table],
        "cells_wall": study_wall,
        "seeds_together": together,
        "training_stream": stream,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
