"""The tf.data pipeline: decoding, batches on 8 devices, exact resume, clear errors."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import tensorflow as tf

from configs.data import data_config
from medgan_jax import parallel
from medgan_jax.data import DataError, load_split, pipeline
from medgan_jax.data.records import Records
from tests.data.conftest import BENIGN_RGB, MALIGNANT_GRAY


def take(ds, n):
    return [b for _, b in zip(range(n), pipeline.host_batches(ds, None))]


def in_memory_records(n=50, size=8) -> Records:
    images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones(
        (1, size, size, 3), np.uint8
    )
    return Records(
        ids=np.asarray([str(i) for i in range(n)]),
        images=images,
        labels=(np.arange(n) % 2).astype(np.int32),
        class_names=("a", "b"),
        description="numbered images",
    )


def memory_cfg(size=8):
    cfg = data_config("smoke")
    cfg.image_size = size
    return cfg


def test_decode_formats_bit_depths_and_channels(folder_root, folder_config):
    records = load_split(folder_config, "train")
    for channels in (3, 1):
        folder_config.channels = channels
        ds = pipeline.build_dataset(records, folder_config, global_batch_size=7, train=False)
        (batch,) = take(ds, 1)
        assert batch["image"].shape == (7, 16, 16, channels) and batch["image"].dtype == np.float32
        by_id = dict(zip(records.ids[batch["index"]], batch["image"]))
        gray = MALIGNANT_GRAY / 255 * 2 - 1
        for name in ("train/malignant/m0.png", "train/malignant/m1.png"):  # 8- and 16-bit PNG
            np.testing.assert_allclose(by_id[name], gray, atol=1e-5)
        np.testing.assert_allclose(by_id["train/malignant/m2.jpg"], gray, atol=0.02)
        rgb = np.asarray(BENIGN_RGB) / 255 * 2 - 1
        expected = rgb if channels == 3 else (rgb @ [0.2989, 0.587, 0.114])[None]
        for name in ("train/benign/b0.png", "train/benign/b1.png"):  # RGB and RGBA
            np.testing.assert_allclose(by_id[name][4, 4], expected, atol=1e-2)
        assert batch["valid"].all()


def test_16bit_precision_is_kept(tmp_path):
    from PIL import Image

    ramp = (np.arange(64, dtype=np.uint16) * 7 + 30000).reshape(8, 8)  # steps of 7/65535
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    image = pipeline.decode(tf.io.read_file(str(tmp_path / "ramp.png"))).numpy()
    np.testing.assert_allclose(image[..., 0], ramp / 65535.0, atol=1e-7)


@pytest.mark.parametrize("method", ["auto", "bilinear", "bicubic"])
def test_resize_modes_keep_size_range_and_antialias(method):
    image = tf.random.uniform([30, 50, 3])
    for mode in pipeline.RESIZE_MODES:
        out = pipeline.resize(image, 16, mode, method).numpy()
        assert out.shape == (16, 16, 3) and 0.0 <= out.min() and out.max() <= 1.0
    # Antialiasing: a 1-pixel checkerboard averages to grey instead of aliasing.
    checker = tf.cast((tf.range(64)[:, None] + tf.range(64)[None]) % 2, tf.float32)[..., None]
    small = pipeline.resize(checker, 8, "stretch", method).numpy()
    np.testing.assert_allclose(small, 0.5, atol=0.01)
    with pytest.raises(DataError, match="resize_mode='squash'"):
        pipeline.resize(image, 16, "squash", method)


def test_resize_pad_letterboxes_and_auto_enlarges_smoothly():
    wide = tf.ones([10, 40, 1])
    padded = pipeline.resize(wide, 16, "pad", "auto").numpy()[..., 0]
    assert padded[8].min() == 1.0 and padded[0].max() == 0.0  # 4 rows of image, zero bands
    np.testing.assert_array_equal(padded.sum(axis=1) > 0, [False] * 6 + [True] * 4 + [False] * 6)
    ramp = tf.reshape(tf.linspace(0.0, 1.0, 4), [1, 4, 1]) * tf.ones([4, 1, 1])
    big = pipeline.resize(ramp, 16, "stretch", "auto").numpy()[0, :, 0]
    assert len(np.unique(np.round(big, 4))) > 8  # bilinear, not blocky nearest/area


def test_training_stream_is_a_fresh_permutation_per_epoch():
    records, cfg = in_memory_records(50), memory_cfg()
    ds = pipeline.build_dataset(records, cfg, global_batch_size=10, train=True)
    batches = take(ds, 10)  # two epochs
    first, second = (np.concatenate([b["index"] for b in batches[i : i + 5]]) for i in (0, 5))
    assert sorted(first) == list(range(50)) and sorted(second) == list(range(50))
    assert list(first) != list(second) and list(first) != list(range(50))
    # The image really is the row's image and the label its label.
    b = batches[0]
    np.testing.assert_allclose(b["image"][:, 0, 0, 0], b["index"] / 255 * 2 - 1, atol=1e-6)
    np.testing.assert_array_equal(b["label"], b["index"] % 2)


def test_resume_gives_the_same_batches_as_an_uninterrupted_run():
    records, cfg = in_memory_records(37), memory_cfg()
    full = take(pipeline.build_dataset(records, cfg, global_batch_size=8, train=True), 12)
    resumed = take(
        pipeline.build_dataset(records, cfg, global_batch_size=8, train=True, start_step=7), 5
    )
    for a, b in zip(full[7:], resumed):
        np.testing.assert_array_equal(a["index"], b["index"])
    cfg.seed = 1
    other = take(pipeline.build_dataset(records, cfg, global_batch_size=8, train=True), 1)
    assert list(other[0]["index"]) != list(full[0]["index"])


@pytest.mark.parametrize("processes,shuffle", [(1, True), (2, True), (2, False)])
def test_in_memory_training_stream_gathers_what_the_per_image_path_gives(
    monkeypatch, processes, shuffle
):
    """Small in-memory datasets are preprocessed once and gathered a batch at a time, in
    tf.data and in numpy (training_batches); the batches equal the per-image path's bit
    for bit (resize, channels, targets, resume, the second process's share)."""
    rng = np.random.default_rng(0)
    records = dataclasses.replace(
        in_memory_records(37, size=12),
        images=rng.integers(0, 256, (37, 12, 12, 1), dtype=np.uint8),
        soft_labels=rng.random((37, 2), dtype=np.float32),
        label_mask=rng.random((37, 2)) < 0.5,
        labels=(np.arange(37)[:, None] % np.array([2, 3]) == 0).astype(np.int32),
    )
    cfg = memory_cfg(size=8)  # a resize and gray -> RGB on every image
    cfg.shuffle = shuffle
    monkeypatch.setattr(pipeline.jax, "process_count", lambda: processes)
    monkeypatch.setattr(pipeline.jax, "process_index", lambda: processes - 1)
    monkeypatch.setattr(pipeline, "ROW_CHUNK", 5)  # 12 batches cross two chunks' ends

    def stream():
        ds = pipeline.build_dataset(records, cfg, global_batch_size=8, train=True, start_step=3)
        return take(ds, 12)

    in_tf_data = stream()
    numpy_stream = pipeline.training_batches(records, cfg, global_batch_size=8, start_step=3)
    in_numpy = [next(numpy_stream) for _ in range(12)]
    assert pipeline._preprocessed_once(records, cfg) is not None
    monkeypatch.setattr(pipeline, "RESIDENT_BYTES", 0)  # the per-image path
    assert pipeline._preprocessed_once(records, cfg) is None
    for a, b, c in zip(in_tf_data, in_numpy, stream(), strict=True):
        assert a.keys() == b.keys() == c.keys()
        assert c.keys() == {"image", "label", "label_mask", "soft_label", "index"}
        for key in c:
            for gathered in (a, b):
                assert gathered[key].dtype == c[key].dtype
                assert gathered[key].shape[0] == 8 // processes
                np.testing.assert_array_equal(gathered[key], c[key], err_msg=key)


def test_a_one_image_training_set_streams_that_image():
    records, cfg = in_memory_records(1), memory_cfg()
    batch = next(pipeline.training_batches(records, cfg, global_batch_size=4))
    (tf_batch,) = take(pipeline.build_dataset(records, cfg, global_batch_size=4, train=True), 1)
    np.testing.assert_array_equal(batch["index"], [0, 0, 0, 0])
    for key in tf_batch:
        np.testing.assert_array_equal(batch[key], tf_batch[key], err_msg=key)


def test_closing_a_long_running_training_stream_does_not_wait_for_autotuning():
    """tf.data's autotuning thread made deleting an iterator wait up to its (doubling)
    re-optimisation period; with it off, closing is immediate however long the run."""
    ds = pipeline.build_dataset(in_memory_records(), memory_cfg(), global_batch_size=4, train=True)
    assert ds.options().autotune.enabled is False
    batches = pipeline.host_batches(ds, None)
    started = time.perf_counter()
    while time.perf_counter() - started < 3:  # a slow consumer, as a training step is
        next(batches)
        time.sleep(0.01)
    started = time.perf_counter()
    batches.close()
    assert time.perf_counter() - started < 0.5


def test_processes_read_disjoint_slices_of_each_global_batch(monkeypatch):
    records, cfg = in_memory_records(40), memory_cfg()
    (whole,) = take(pipeline.build_dataset(records, cfg, global_batch_size=16, train=True), 1)
    parts = []
    for process in range(4):
        monkeypatch.setattr(pipeline.jax, "process_count", lambda: 4)
        monkeypatch.setattr(pipeline.jax, "process_index", lambda p=process: p)
        (part,) = take(pipeline.build_dataset(records, cfg, global_batch_size=16, train=True), 1)
        assert part["index"].shape == (4,)
        parts.append(part["index"])
    np.testing.assert_array_equal(np.concatenate(parts), whole["index"])


def test_eval_pass_pads_to_full_batches_and_marks_padding():
    records, cfg = in_memory_records(21), memory_cfg()
    batches = take(pipeline.build_dataset(records, cfg, global_batch_size=8, train=False), 99)
    assert len(batches) == 3 and all(b["image"].shape[0] == 8 for b in batches)
    valid = np.concatenate([b["valid"] for b in batches])
    index = np.concatenate([b["index"] for b in batches])
    assert valid.sum() == 21 and list(index[valid]) == list(range(21))


def test_global_batches_are_sharded_over_8_devices():
    records, cfg = in_memory_records(64), memory_cfg()
    mesh = parallel.make_mesh()
    batch = next(pipeline.global_batches(records, cfg, mesh, global_batch_size=16, train=True))
    image = batch["image"]
    assert image.shape == (16, 8, 8, 3) and image.dtype == np.float32
    assert -1.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert len(image.sharding.device_set) == 8
    assert image.sharding.spec == parallel.batch_sharding(mesh).spec
    assert [s.data.shape for s in image.addressable_shards] == [(2, 8, 8, 3)] * 8
    with pytest.raises(
        ValueError, match=r"config.batch_size=12 must be a positive multiple of .* \(8\)"
    ):
        next(pipeline.global_batches(records, cfg, mesh, global_batch_size=12, train=True))


@pytest.mark.parametrize("read_once", [True, False])
def test_truncated_image_error_names_the_file(folder_root, folder_config, monkeypatch, read_once):
    """A small dataset is read once when its training stream is built (the error comes
    before the first step); a large one streams (the error comes with its batch)."""
    bad = folder_root / "train" / "benign" / "b2_truncated.jpg"
    bad.write_bytes((folder_root / "train" / "benign" / "sub" / "b2.jpg").read_bytes()[:300])
    records = load_split(folder_config, "train")
    if not read_once:
        monkeypatch.setattr(pipeline, "RESIDENT_BYTES", 0)
    with pytest.raises(
        DataError, match=r"Unreadable, truncated or non-image file.*b2_truncated.jpg"
    ):
        ds = pipeline.build_dataset(records, folder_config, global_batch_size=8, train=True)
        assert not read_once
        take(ds, 1)


def test_small_file_dataset_is_read_once_into_the_same_batches(folder_config, monkeypatch):
    """A folder dataset (JPEG, PNG, gray, RGBA, 16-bit, mixed sizes) whose preprocessed
    images fit RESIDENT_BYTES is decoded once and gathered: the batches equal the streamed
    per-image path's bit for bit, with resume."""
    records = load_split(folder_config, "train")
    assert pipeline._preprocessed_once(records, folder_config) is not None

    def stream():
        ds = pipeline.build_dataset(
            records, folder_config, global_batch_size=4, train=True, start_step=2
        )
        return take(ds, 8)

    gathered = stream()
    monkeypatch.setattr(pipeline, "RESIDENT_BYTES", 0)
    for a, b in zip(gathered, stream(), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    monkeypatch.undo()
    monkeypatch.setattr(pipeline.jax, "process_count", lambda: 2)
    assert pipeline._preprocessed_once(records, folder_config) is None  # each reads its slice
    monkeypatch.undo()
    folder_config.skip_corrupt = True  # a file it skips must leave the stream, as always
    assert pipeline._preprocessed_once(records, folder_config) is None


def test_skip_corrupt_skips_and_counts(folder_root, folder_config, caplog):
    (folder_root / "train" / "benign" / "empty.png").write_bytes(b"")
    (folder_root / "train" / "malignant" / "html.jpg").write_bytes(
        b"<html>404 not found</html>" * 3
    )
    folder_config.skip_corrupt = True
    records = load_split(folder_config, "train")
    assert len(records) == 9
    counter = pipeline.SkipCounter()
    ds = pipeline.build_dataset(
        records, folder_config, global_batch_size=9, train=True, counter=counter
    )
    batches = list(zip(range(2), pipeline.host_batches(ds, records, counter)))
    indices = np.concatenate([b["index"] for _, b in batches])
    bad = {i for i, p in enumerate(records.ids) if p.endswith(("empty.png", "html.jpg"))}
    assert not bad & set(indices.tolist())
    assert int(counter.count.numpy()) >= 2
    assert counter.last_path.numpy().decode().endswith(("empty.png", "html.jpg"))
    # Eval keeps every position but marks the skipped files invalid.
    batches = take(
        pipeline.build_dataset(records, folder_config, global_batch_size=9, train=False), 9
    )
    valid = dict(zip(batches[0]["index"], batches[0]["valid"]))
    assert {i for i, v in valid.items() if not v} == bad


def test_decode_all_gives_every_image_in_order_or_counts_the_unreadable(folder_root, folder_config):
    records = load_split(folder_config, "train")
    images = pipeline.decode_all(records, folder_config, batch_size=4)  # a padded last batch
    (streamed,) = take(
        pipeline.build_dataset(records, folder_config, global_batch_size=64, train=False), 1
    )
    size, channels = folder_config.image_size, folder_config.channels
    assert images.shape == (len(records), size, size, channels) and images.dtype == np.float32
    np.testing.assert_array_equal(images, streamed["image"][: len(records)])
    (folder_root / "train" / "benign" / "empty.png").write_bytes(b"")
    folder_config.skip_corrupt = True  # marked invalid instead of failing in the pipeline
    with pytest.raises(DataError, match=r"1 image\(s\) of folder .* are unreadable"):
        pipeline.decode_all(load_split(folder_config, "train"), folder_config, batch_size=4)


def test_cache_matches_streaming(folder_config):
    records = load_split(folder_config, "train")
    cached = pipeline.cache_in_memory(records, folder_config)
    assert cached.images.dtype == np.float16 and cached.paths is None
    streamed, from_cache = (
        take(pipeline.build_dataset(r, folder_config, global_batch_size=7, train=False), 1)[0]
        for r in (records, cached)
    )
    np.testing.assert_allclose(streamed["image"], from_cache["image"], atol=2e-3)


def test_undecodable_image_error_names_the_file(folder_root, folder_config):
    garbage = b"\xff\xd8\xff" + bytes(range(256)) * 2 + b"\xff\xd9"  # right markers, no image
    (folder_root / "train" / "malignant" / "garbled.jpg").write_bytes(garbage)
    records = load_split(folder_config, "train")
    ds = pipeline.build_dataset(records, folder_config, global_batch_size=8, train=False)
    with pytest.raises(DataError, match=r"Decoding an image of folder .* failed.*garbled.jpg"):
        list(pipeline.host_batches(ds, records))


@pytest.mark.parametrize("kind, channels", [("cxr", 1), ("cxr", 3), ("lesions", 1), ("lesions", 3)])
def test_in_memory_sources_convert_channels(kind, channels):
    cfg = data_config("smoke")
    cfg.synthetic.update(kind=kind, num_train=24, num_val=4, num_test=4)
    cfg.channels = channels
    records = load_split(cfg, "train")
    (batch,) = take(pipeline.build_dataset(records, cfg, global_batch_size=8, train=True), 1)
    assert batch["image"].shape == (8, 32, 32, channels)
    if kind == "cxr" and channels == 3:  # gray repeated into RGB
        np.testing.assert_array_equal(batch["image"][..., 0], batch["image"][..., 2])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("mode", pipeline.RESIZE_MODES)
def test_decode_all_scales_images_already_at_the_configured_shape_as_tf_data_does(
    monkeypatch, channels, mode
):
    """Every uint8 value, scaled without tf.data, equals the per-image pipeline's float32
    bit for bit; other shapes, channel counts or resize methods still take tf.data."""
    values = np.arange(256, dtype=np.uint8)
    images = np.stack([np.roll(values, 7 * i).reshape(16, 16) for i in range(3 * channels)])
    images = images.reshape(3, channels, 16, 16).transpose(0, 2, 3, 1)
    records = dataclasses.replace(
        in_memory_records(3, size=16), images=np.ascontiguousarray(images)
    )
    cfg = memory_cfg(size=16)
    cfg.channels, cfg.resize_mode = channels, mode
    assert pipeline._preprocessing_is_scaling(records, cfg)
    scaled = pipeline.decode_all(records, cfg)
    monkeypatch.setattr(pipeline, "_preprocessing_is_scaling", lambda *_: False)
    through_tf_data = pipeline.decode_all(records, cfg)
    assert scaled.dtype == through_tf_data.dtype == np.float32
    np.testing.assert_array_equal(scaled, through_tf_data)
    for other in ({"image_size": 8}, {"channels": 4 - channels}, {"resize_method": "bicubic"}):
        changed = memory_cfg(size=16)
        changed.channels, changed.resize_mode = channels, mode
        changed.update(other)
        assert not pipeline._preprocessing_is_scaling(records, changed), other
