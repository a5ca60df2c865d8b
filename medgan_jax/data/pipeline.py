"""tf.data input pipeline: records -> decode -> resize -> [-1, 1] -> batches -> device mesh.

Training streams an endless, seeded order of the records: global sample position
g maps to row `index_shuffle(g mod N, seed=[seed, g div N])`, i.e. a fresh
permutation per epoch computed without materialising it. Only file paths are held
in memory, so memory stays flat as the dataset grows, and a run resumed at step s
sees exactly the batches an uninterrupted run would have seen (`start_step`). A small
training set (RESIDENT_BYTES) is preprocessed once and its batches gathered in numpy
(`training_batches`): the same batches.
Each process reads only its own slice of every global batch (multi-host).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from medgan_jax import app, parallel
from medgan_jax.data import dicom, sources
from medgan_jax.data.records import DataError, Records

AUTOTUNE = tf.data.AUTOTUNE
RESIZE_MODES = ("stretch", "crop", "pad")
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# Our tf.data functions have no Python control flow on tensors; skipping autograph's
# source conversion saves start-up time per pipeline (benchmarks/pipeline_throughput.py).
_graph = tf.autograph.experimental.do_not_convert


# ----------------------------------------------------------------- image functions


def _has_pair(tail: tf.Tensor, first: int, second: int) -> tf.Tensor:
    """Whether the byte pair (first, second) occurs in `tail` (uint8 vector)."""
    return tf.reduce_any(tf.logical_and(tf.equal(tail[:-1], first), tf.equal(tail[1:], second)))


def is_complete_image(contents: tf.Tensor) -> tf.Tensor:
    """Cheap in-graph integrity check: known magic number and an end marker.

    Catches truncated downloads, empty files and non-image files before decoding.
    JPEG must contain its EOI marker (FF D9) near the end, PNG its IEND chunk.
    """
    head = tf.strings.substr(contents, 0, 8)
    tail = tf.io.decode_raw(tf.strings.substr(contents, -32, 32), tf.uint8)
    length = tf.strings.length(contents)
    is_jpeg = tf.equal(tf.strings.substr(head, 0, 3), _JPEG_MAGIC)
    is_png = tf.equal(head, _PNG_MAGIC)
    is_other = tf.logical_or(
        tf.equal(tf.strings.substr(head, 0, 2), b"BM"),
        tf.equal(tf.strings.substr(head, 0, 4), b"GIF8"),
    )

    def tail_ok():
        jpeg_end = _has_pair(tail, 0xFF, 0xD9)
        png_end = tf.logical_and(
            _has_pair(tail, ord("I"), ord("E")), _has_pair(tail, ord("N"), ord("D"))
        )
        return tf.logical_or(
            tf.logical_or(tf.logical_and(is_jpeg, jpeg_end), tf.logical_and(is_png, png_end)),
            is_other,
        )

    return tf.cond(length >= 32, tail_ok, lambda: tf.constant(False))


def decode(contents: tf.Tensor, min_side: int = 0) -> tf.Tensor:
    """JPEG/PNG/BMP/GIF bytes (8- or 16-bit, 1-4 channels) -> float32 [H, W, C] in [0, 1].

    With `min_side`, a JPEG is decoded at the smallest DCT scale 1/1, 1/2, 1/4 or 1/8
    that keeps both sides >= min_side: libjpeg then skips most of the inverse DCT, and
    the scaled decode is itself a proper low-pass, so quality is kept (full-size CheXpert
    images decode much faster for a 256 target; benchmarks/pipeline_throughput.py).
    """

    def generic():
        image = tf.io.decode_image(contents, channels=0, dtype=tf.uint16, expand_animations=False)
        return tf.cast(image, tf.float32) / 65535.0

    if not min_side:
        return generic()

    def jpeg():
        shape = tf.image.extract_jpeg_shape(contents)
        shortest = tf.minimum(shape[0], shape[1])
        scale = tf.reduce_sum(tf.cast(shortest // [2, 4, 8] >= min_side, tf.int32))
        branches = [lambda r=r: tf.io.decode_jpeg(contents, ratio=r) for r in (1, 2, 4, 8)]
        return tf.cast(tf.switch_case(scale, branches), tf.float32) / 255.0

    is_jpeg = tf.equal(tf.strings.substr(contents, 0, 3), _JPEG_MAGIC)
    return tf.cond(is_jpeg, jpeg, generic)


def to_float01(image: tf.Tensor) -> tf.Tensor:
    """In-memory uint8/uint16/float image -> float32 in [0, 1]."""
    if image.dtype == tf.uint8:
        return tf.cast(image, tf.float32) / 255.0
    if image.dtype == tf.uint16:
        return tf.cast(image, tf.float32) / 65535.0
    return tf.cast(image, tf.float32)


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels -> `channels` (1 or 3).

    Alpha is dropped; RGB -> gray uses ITU-R BT.601 luma, gray -> RGB repeats.
    """
    if channels not in (1, 3):
        raise DataError(f"config.data.channels={channels}; expected 1 or 3.")

    def colour():
        rgb = image[..., :3]
        return tf.image.rgb_to_grayscale(rgb) if channels == 1 else rgb

    def gray():
        return image[..., :1] if channels == 1 else tf.tile(image[..., :1], [1, 1, 3])

    known = image.shape[-1]  # in-memory arrays have a static channel count, files do not
    if known is not None:
        return colour() if known >= 3 else gray()
    return tf.cond(tf.shape(image)[-1] >= 3, colour, gray)


def _resize_to(image: tf.Tensor, height, width, method: str) -> tf.Tensor:
    """`method` 'auto' is area averaging when shrinking (a box filter, as fast as plain
    bilinear but alias-free) and bilinear when enlarging; others are tf.image methods."""
    if method != "auto":
        return tf.image.resize(image, [height, width], method=method, antialias=True)
    shrinking = tf.shape(image)[0] * tf.shape(image)[1] >= height * width
    return tf.cond(
        shrinking,
        lambda: tf.image.resize(image, [height, width], method="area"),
        lambda: tf.image.resize(image, [height, width], method="bilinear"),
    )


def resize(image: tf.Tensor, size: int, mode: str, method: str) -> tf.Tensor:
    """Square `size` image, antialiased; `mode` says what happens to the aspect ratio:
    'stretch' resizes as is, 'crop' takes the centre square first, 'pad' letterboxes."""
    if mode not in RESIZE_MODES:
        raise DataError(f"config.data.resize_mode='{mode}'; expected one of {RESIZE_MODES}.")
    shape = tf.shape(image)
    if mode == "crop":
        side = tf.minimum(shape[0], shape[1])
        image = tf.image.resize_with_crop_or_pad(image, side, side)
    if mode == "pad":
        longest = tf.cast(tf.maximum(shape[0], shape[1]), tf.float32)
        height = tf.cast(tf.round(tf.cast(shape[0], tf.float32) * size / longest), tf.int32)
        width = tf.cast(tf.round(tf.cast(shape[1], tf.float32) * size / longest), tf.int32)
        image = _resize_to(image, tf.maximum(height, 1), tf.maximum(width, 1), method)
        image = tf.image.resize_with_crop_or_pad(image, size, size)
    else:
        image = _resize_to(image, size, size, method)
    return tf.clip_by_value(image, 0.0, 1.0)  # bicubic/lanczos overshoot


def preprocess(image: tf.Tensor, cfg: ml_collections.ConfigDict) -> tf.Tensor:
    """[0, 1] image of any size/channels -> float32 [size, size, channels] in [-1, 1]."""
    image = to_channels(image, cfg.channels)
    image = resize(image, cfg.image_size, cfg.resize_mode, cfg.resize_method)
    image.set_shape([cfg.image_size, cfg.image_size, cfg.channels])
    return image * 2.0 - 1.0


# ------------------------------------------------------------------ record loading


class SkipCounter:
    """Counts (and remembers the last of) the unreadable files skipped in-graph."""

    def __init__(self):
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.last_path = tf.Variable("", dtype=tf.string, trainable=False)

    def record(self, ok: tf.Tensor, path: tf.Tensor) -> list[tf.Operation]:
        bad = tf.logical_not(ok)
        # Only a skipped file writes the path: parallel map calls would otherwise race,
        # a readable file writing back the value it read before a skipped one's write.
        remember = tf.cond(
            bad,
            lambda: self.last_path.assign(path).op,
            lambda: tf.no_op(),
        )
        return [self.count.assign_add(tf.cast(bad, tf.int64)), remember]


_SKIP_HINT = "(config.data.skip_corrupt=True skips and counts such files)"
_IMAGE_PROBLEM = (
    "Unreadable, truncated or non-image file (expected a complete JPEG, PNG, BMP or GIF):"
)


def _read_image(contents: tf.Tensor, size: int):
    """(image, ok, problem) of an image file's bytes; a file failing the cheap integrity
    check is not decoded."""
    ok = is_complete_image(contents)
    image = tf.cond(ok, lambda: decode(contents, size), lambda: tf.zeros([8, 8, 1]))
    return image, ok, tf.constant(_IMAGE_PROBLEM)


def _looks_like_dicom(path: tf.Tensor, contents: tf.Tensor) -> tf.Tensor:
    """A .dcm/.dicom name, or the DICM magic after the 128-byte preamble."""
    named = tf.strings.regex_full_match(tf.strings.lower(path), r".*\.(dcm|dicom)")
    magic = tf.cond(
        tf.strings.length(contents) >= 132,
        lambda: tf.equal(tf.strings.substr(contents, 128, 4), b"DICM"),
        lambda: tf.constant(False),
    )
    return tf.logical_or(named, magic)


def _dicom_reader(records: Records, cfg: ml_collections.ConfigDict):
    """(contents, path) -> (image, ok, problem) for DICOM files, decoded by pydicom inside
    tf.data's parallel map; None when no record is a DICOM file."""
    if not any(dicom.is_dicom_path(str(path)) for path in records.paths):
        return None
    settings = dicom.settings_from_config(cfg.get("dicom", {}))

    def read(contents: bytes, path: bytes):
        try:
            return dicom.read(contents, settings, path.decode()), True, b""
        except dicom.DicomError as error:
            return (
                np.zeros([8, 8, 1], np.float32),
                False,
                f"Unreadable DICOM file: {error}".encode(),
            )

    def read_in_graph(contents, path):
        image, ok, problem = tf.numpy_function(
            read, [contents, path], [tf.float32, tf.bool, tf.string], stateful=False
        )
        image.set_shape([None, None, None])
        ok.set_shape([])
        problem.set_shape([])
        return image, ok, problem

    return read_in_graph


def _example_loader(
    records: Records,
    cfg: ml_collections.ConfigDict,
    counter: SkipCounter,
    preprocessed: np.ndarray | None = None,
):
    """A tf function: row index -> example dict (image, targets, index, ok); with
    `preprocessed` (every row's image as `preprocess` returns it) rows may be a vector."""
    labels = tf.constant(records.labels)
    mask = None if records.label_mask is None else tf.constant(records.label_mask)
    soft = None if records.soft_labels is None else tf.constant(records.soft_labels)
    if preprocessed is not None:
        ready = tf.constant(preprocessed)

        def load_image(index):
            return tf.gather(ready, index), tf.ones_like(index, tf.bool)

    elif records.images is not None:
        images = tf.constant(records.images)

        def load_image(index):
            return to_float01(tf.gather(images, index)), tf.constant(True)

    else:
        paths = tf.constant(records.paths)
        size = cfg.image_size  # decode JPEGs no larger than needed
        read_dicom = _dicom_reader(records, cfg)

        def load_image(index):
            path = tf.gather(paths, index)
            contents = tf.io.read_file(path)
            if read_dicom is None:
                image, ok, problem = _read_image(contents, size)
            else:
                image, ok, problem = tf.cond(
                    _looks_like_dicom(path, contents),
                    lambda: read_dicom(contents, path),
                    lambda: _read_image(contents, size),
                )
            if cfg.skip_corrupt:
                with tf.control_dependencies(counter.record(ok, path)):
                    return tf.identity(image), tf.identity(ok)
            check = tf.debugging.Assert(ok, [problem, path, _SKIP_HINT])
            with tf.control_dependencies([check]):
                return tf.identity(image), ok

    @_graph
    def load(index):
        image, ok = load_image(index)
        example = {
            "image": image if preprocessed is not None else preprocess(image, cfg),
            "label": tf.gather(labels, index),
            "index": index,
            "ok": ok,
        }
        if mask is not None:
            example["label_mask"] = tf.gather(mask, index)
        if soft is not None:
            example["soft_label"] = tf.gather(soft, index)
        return example

    return load


def _shuffled_row(position: tf.Tensor, n: int, seed: int) -> tf.Tensor:
    """Rows of the `position`-th samples of the endless stream: one permutation per epoch."""
    epoch, offset = position // n, position % n
    if n == 1:
        return offset
    seeds = tf.stack([tf.fill(tf.shape(epoch), tf.constant(seed, tf.int64)), epoch, 0 * epoch], -1)
    last = tf.fill(tf.shape(offset), tf.constant(n - 1, tf.int64))
    return tf.raw_ops.RandomIndexShuffle(index=offset, seed=seeds, max_index=last, rounds=4)


def _process_share(
    records: Records, global_batch_size: int, every_process_reads_all: bool = False
) -> tuple[int, int]:
    """(this process's index, its images per batch) of a stream over `records`."""
    app.hide_accelerators_from_tf()
    if len(records) == 0:
        raise DataError(f"No images to read from {records.description}.")
    processes, process = jax.process_count(), jax.process_index()
    if every_process_reads_all:
        processes, process = 1, 0
    if global_batch_size % processes:
        raise DataError(
            f"Batch size {global_batch_size} must be divisible by the {processes} processes."
        )
    return process, global_batch_size // processes


def build_dataset(
    records: Records,
    cfg: ml_collections.ConfigDict,
    *,
    global_batch_size: int,
    train: bool,
    start_step: int = 0,
    counter: SkipCounter | None = None,
    every_process_reads_all: bool = False,
) -> tf.data.Dataset:
    """This process's batches: endless and shuffled for training, one padded pass for eval.

    Eval batches carry `valid` (False for padding and skipped files) so every device
    gets full batches and every process the same number of them.
    `every_process_reads_all`: whole batches in every process (host-side computations
    that each process makes on all the images).
    """
    process, local = _process_share(records, global_batch_size, every_process_reads_all)
    n = len(records)
    ready = _preprocessed_once(records, cfg) if train else None
    load = _example_loader(records, cfg, counter or SkipCounter(), ready)

    def positions(step):
        return step * global_batch_size + process * local + tf.range(local, dtype=tf.int64)

    # Row indices are computed a whole batch at a time (one cheap op per step), so the
    # only per-image stage is the parallel `load` (none for small datasets).
    if train:
        last_step = np.iinfo(np.int64).max // global_batch_size
        steps = tf.data.Dataset.range(start_step, last_step)
        if cfg.shuffle:
            rows = steps.map(_graph(lambda s: _shuffled_row(positions(s), n, cfg.seed)))
        else:
            rows = steps.map(_graph(lambda s: positions(s) % n))
        if ready is not None:  # one gather per batch instead of a map call per image
            ds = rows.map(load)
        else:
            ds = rows.unbatch().map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
            if cfg.skip_corrupt:
                ds = ds.filter(_graph(lambda ex: ex["ok"])).ignore_errors(log_warning=True)
            ds = ds.batch(local, drop_remainder=True)
        ds = ds.map(_graph(lambda batch: {k: v for k, v in batch.items() if k != "ok"}))
    else:
        num_steps = -(-n // global_batch_size)
        positions_ds = tf.data.Dataset.range(num_steps).map(_graph(positions)).unbatch()
        ds = positions_ds.map(
            _graph(lambda g: _padded_example(load(tf.minimum(g, n - 1)), g < n)),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        ).batch(local)
    ds = ds.prefetch(cfg.prefetch if cfg.prefetch >= 0 else AUTOTUNE)
    return ds.with_options(_OPTIONS)


# A training stream whose preprocessed images fit in this many bytes reads and preprocesses
# each image once and gathers its batches: the per-image map (and, for files, decoding)
# otherwise runs again every epoch, host CPU taken from the steps (for the demo's small
# networks about as much as a step; benchmarks/study_overhead.py).
RESIDENT_BYTES = 512 << 20


def _preprocessed_once(records: Records, cfg: ml_collections.ConfigDict) -> np.ndarray | None:
    """Every row's image exactly as the per-image path preprocesses it (float32 in [-1, 1]),
    where that copy fits RESIDENT_BYTES; else None. Files stream where `skip_corrupt` may
    drop one (a skipped file leaves the stream as it always did) and in a several-process
    run (each process opens only its slice of every batch); otherwise an unreadable file
    fails here, naming it, before the first step."""
    if records.images is None and (cfg.skip_corrupt or jax.process_count() > 1):
        return None
    if len(records) * cfg.image_size**2 * cfg.channels * 4 > RESIDENT_BYTES:
        return None
    return decode_all(records, cfg)


def training_batches(
    records: Records,
    cfg: ml_collections.ConfigDict,
    *,
    global_batch_size: int,
    start_step: int = 0,
    counter: SkipCounter | None = None,
) -> Iterator[dict]:
    """This process's numpy batches of the endless training stream (build_dataset's, bit
    for bit). A resident training set's batches are gathered here without tf.data, whose
    pipeline took 0.1-0.2 s to build per run, a large part of a study's sub-second runs
    (benchmarks/study_overhead.py)."""
    ready = _preprocessed_once(records, cfg)
    if ready is None:
        ds = build_dataset(
            records, cfg, global_batch_size=global_batch_size, train=True,
            start_step=start_step, counter=counter,
        )  # fmt: skip
        return host_batches(ds, records, counter)
    return _gathered_batches(records, cfg, ready, global_batch_size, start_step)


def _gathered_batches(
    records: Records, cfg: ml_collections.ConfigDict, ready, global_batch_size, start_step
) -> Iterator[dict]:
    """build_dataset's training batches of a resident set: the same rows (its `_shuffled_row`
    op, once per ROW_CHUNK steps), gathered from the preprocessed images in numpy."""
    process, local = _process_share(records, global_batch_size)
    n = len(records)
    targets = {"label": records.labels, "label_mask": records.label_mask}
    targets["soft_label"] = records.soft_labels
    targets = {key: np.asarray(value) for key, value in targets.items() if value is not None}
    offsets = process * local + np.arange(local, dtype=np.int64)
    for first in range(start_step, np.iinfo(np.int64).max // global_batch_size, ROW_CHUNK):
        steps = np.arange(first, first + ROW_CHUNK, dtype=np.int64)
        positions = steps[:, None] * global_batch_size + offsets
        if cfg.shuffle:  # the op takes a vector
            rows = _shuffled_row(tf.constant(positions.ravel()), n, cfg.seed).numpy()
            rows = rows.reshape(positions.shape)
        else:
            rows = positions % n
        for index in rows:
            batch = {"image": ready[index], "index": index}
            yield batch | {key: value[index] for key, value in targets.items()}


ROW_CHUNK = 256  # training steps whose rows one `_shuffled_row` call computes


# tf.data's autotuning model re-optimises on a period that doubles as the pipeline runs,
# and deleting the iterator waits for that period to end: seconds at the end of a run.
# Without it, AUTOTUNE parallelism is one call per core and AUTOTUNE prefetch grows its
# buffer while the consumer waits (benchmarks/pipeline_throughput.py: no slower).
_OPTIONS = tf.data.Options()
_OPTIONS.autotune.enabled = False


def _padded_example(example: dict, in_range: tf.Tensor) -> dict:
    example = dict(example)
    example["valid"] = tf.logical_and(in_range, example.pop("ok"))
    return example


def host_batches(
    ds: tf.data.Dataset, records: Records | None = None, counter: SkipCounter | None = None
) -> Iterator[dict]:
    """numpy batches of `ds`, turning decode failures into errors that name the file."""
    iterator = ds.as_numpy_iterator()
    reported = 0
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.InvalidArgumentError as error:
            raise _explain_decode_error(error, records) from None
        if counter is not None and int(counter.count.numpy()) > reported:
            reported = int(counter.count.numpy())
            logging.warning(
                "Skipped %d unreadable image(s) so far (latest: %s).",
                reported,
                counter.last_path.numpy().decode(),
            )
        yield batch


def _explain_decode_error(
    error: tf.errors.InvalidArgumentError, records: Records | None
) -> DataError:
    message = error.message
    if "Unreadable" in message:
        detail = message[message.index("Unreadable") :].split("\n")[0]
        return DataError(detail)
    bad = find_undecodable(records.paths) if records and records.paths is not None else []
    named = f" Undecodable file(s): {bad[:5]}." if bad else ""
    where = records.description if records else "the dataset"
    return DataError(
        f"Decoding an image of {where} failed: {message.splitlines()[0]}.{named} "
        "Set config.data.skip_corrupt=True to skip and count unreadable files."
    )


def find_undecodable(paths: np.ndarray) -> list[str]:
    """The paths that fail to decode (a full scan; used on the error path only)."""
    paths = np.array([p for p in paths if not dicom.is_dicom_path(str(p))])  # checked in-graph
    logging.info("Scanning %d files for undecodable images...", len(paths))

    def try_decode(path):
        return path, tf.size(decode(tf.io.read_file(path)))

    ds = tf.data.Dataset.from_tensor_slices(paths).map(try_decode, num_parallel_calls=AUTOTUNE)
    decoded = {p.decode() for p, _ in ds.ignore_errors().as_numpy_iterator()}
    return [str(p) for p in paths if str(p) not in decoded]


def global_batches(
    records: Records,
    cfg: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
    *,
    global_batch_size: int,
    train: bool,
    start_step: int = 0,
) -> Iterator[dict[str, jax.Array]]:
    """Global jax.Arrays sharded over the mesh's `data` axis, ready for a jit step.

    A training loop closes the (endless) iterator after its last step, so that the
    pipeline's threads stop before what follows (evaluation, sampling, the next run)
    rather than whenever the generator is collected.
    """
    parallel.check_batch_size(global_batch_size, mesh)
    counter = SkipCounter()
    if train:
        host = training_batches(
            records, cfg, global_batch_size=global_batch_size, start_step=start_step,
            counter=counter,
        )  # fmt: skip
    else:
        ds = build_dataset(
            records, cfg, global_batch_size=global_batch_size, train=False, counter=counter
        )
        host = host_batches(ds, records, counter)
    return parallel.device_batches(host, mesh, prefetch=cfg.prefetch_to_device)


def decode_all(
    records: Records, cfg: ml_collections.ConfigDict, batch_size: int = 256
) -> np.ndarray:
    """Every image of `records` (in every process: GAN quality, soft labels and resident
    splits use them all), preprocessed by the input pipeline, in [-1, 1]."""
    if _preprocessing_is_scaling(records, cfg):
        return _scaled(records.images)
    ds = build_dataset(
        records, cfg, global_batch_size=batch_size, train=False, every_process_reads_all=True
    )
    images = np.empty((len(records), cfg.image_size, cfg.image_size, cfg.channels), np.float32)
    filled = 0  # batches go straight into `images`: no list of them and no concatenated copy
    for batch in host_batches(ds, records):
        valid = batch["image"][batch["valid"]]  # False on padding and bad files
        images[filled : filled + len(valid)] = valid
        filled += len(valid)
    if filled != len(records):
        raise DataError(
            f"{len(records) - filled} image(s) of {records.description} are unreadable."
        )
    return images


def _preprocessing_is_scaling(records: Records, cfg: ml_collections.ConfigDict) -> bool:
    """Whether `preprocess` only rescales these images: in-memory uint8 at the configured
    size and channel count, so no channel conversion and (with 'auto' resizing, area
    averaging onto the same grid) no resampling."""
    images, size = records.images, cfg.image_size
    return (
        images is not None
        and images.dtype == np.uint8
        and images.shape[1:] == (size, size, cfg.channels)
        and cfg.channels in (1, 3)
        and cfg.resize_mode in RESIZE_MODES
        and cfg.resize_method == "auto"
    )


def _scaled(images: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [-1, 1] by preprocess's own float32 ops (equal bit for bit,
    tested): decode_all without a tf.data pass for every run's training set."""
    scaled = images.astype(np.float32)  # then in place: one float copy of the images
    scaled /= np.float32(255.0)
    scaled *= np.float32(2.0)
    scaled -= np.float32(1.0)
    return scaled


def cache_in_memory(records: Records, cfg: ml_collections.ConfigDict) -> Records:
    """Decodes and resizes every image once; later epochs gather from a float16 copy.

    Only for datasets that fit in RAM (N x size^2 x channels x 2 bytes).
    """
    if records.images is not None:
        return records
    app.hide_accelerators_from_tf()
    counter = SkipCounter()
    load = _example_loader(records, cfg, counter)
    ds = tf.data.Dataset.range(len(records)).map(load, num_parallel_calls=AUTOTUNE).batch(256)
    images, ok = [], []
    for batch in host_batches(ds, records, counter):
        images.append(((batch["image"] + 1.0) / 2.0).astype(np.float16))
        ok.append(batch["ok"])
    keep = np.flatnonzero(np.concatenate(ok))
    if len(keep) < len(records):
        logging.warning("Cache: skipped %d unreadable image(s).", len(records) - len(keep))
    return dataclasses.replace(records.take(keep), paths=None, images=np.concatenate(images)[keep])


# ------------------------------------------------------------------ TFDS streaming


def tfds_batches(
    cfg: ml_collections.ConfigDict, split: str, *, global_batch_size: int, train: bool
) -> tf.data.Dataset:
    """A TFDS split, preprocessed like the record sources, batched per process."""
    app.hide_accelerators_from_tf()
    ds, _ = sources.tfds_dataset(cfg, split)
    local = global_batch_size // jax.process_count()
    ds = ds.map(
        lambda ex: {**ex, "image": preprocess(to_float01(ex["image"]), cfg)},
        num_parallel_calls=AUTOTUNE,
    )
    if train:
        ds = ds.shuffle(cfg.shuffle_buffer, seed=cfg.seed).repeat() if cfg.shuffle else ds.repeat()
    return ds.batch(local, drop_remainder=train).prefetch(AUTOTUNE)
