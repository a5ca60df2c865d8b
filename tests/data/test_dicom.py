"""DICOM input: pixels equal pydicom's own Modality/VOI LUT functions on pydicom's bundled
test files (real DICOM written by others), plus files written here for the cases those
lack; the pipeline decodes them in tf.data with clear errors for bad files."""

from __future__ import annotations

import ml_collections
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from configs.data import base_data_config
from medgan_jax.data import dicom, pipeline
from medgan_jax.data.records import DataError, Records

# (file, transfer syntax it exercises)
BUNDLED = [
    ("CT_small.dcm", "explicit little endian, signed 16-bit, rescale intercept -1024"),
    ("MR_small.dcm", "explicit little endian, signed 16-bit, window 600/1600"),
    ("MR_small_bigendian.dcm", "explicit big endian"),
    ("MR_small_RLE.dcm", "RLE lossless"),
    ("MR_small_jp2klossless.dcm", "JPEG 2000 lossless"),
    ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS lossless"),
    ("JPGExtended.dcm", "JPEG extended, 12-bit"),
    ("JPEG2000.dcm", "JPEG 2000"),
]
NONE = dicom.DicomSettings(window="none")
AUTO = dicom.DicomSettings(window="auto")


def _read(name: str, settings=AUTO) -> np.ndarray:
    path = get_testdata_file(name)
    with open(path, "rb") as f:
        return dicom.read(f.read(), settings, path)


def _header_range(ds) -> tuple[float, float]:
    """pydicom's windowing output range for `ds` (as apply_windowing computes it)."""
    bits = int(ds.BitsStored)
    low, high = (
        (0, 2**bits - 1)
        if ds.PixelRepresentation == 0
        else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    )
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    return low * slope + intercept, high * slope + intercept


@pytest.mark.parametrize("name,what", BUNDLED)
def test_modality_lut_equals_pydicoms(name, what):
    ds = pydicom.dcmread(get_testdata_file(name))
    expected = np.asarray(apply_modality_lut(ds.pixel_array, ds), np.float64)
    low, high = dicom.modality_range(ds)
    ours = _read(name, NONE)[..., 0].astype(np.float64) * (high - low) + low
    np.testing.assert_allclose(ours, expected, rtol=0, atol=(high - low) * 1e-6)


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm"])
def test_the_files_window_equals_pydicoms_apply_voi_lut(name):
    ds = pydicom.dcmread(get_testdata_file(name))
    expected = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    low, high = _header_range(ds)
    unit = _read(name, AUTO)[..., 0].astype(np.float64)
    np.testing.assert_allclose(
        unit * (high - low) + low, expected, rtol=0, atol=(high - low) * 1e-6
    )
    assert 0.0 < unit.mean() < 1.0 and ((unit == 0) | (unit == 1)).any()  # the window clips


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_every_voi_function_equals_pydicoms(function):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 40, 400, function  # soft tissue
    with_window = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    values = apply_modality_lut(ds.pixel_array, ds)
    expected = apply_voi_lut(values, ds)
    low, high = _header_range(ds)
    ours = dicom.linear_window(values.astype(np.float64), 40.0, 400.0, function)
    np.testing.assert_allclose(ours * (high - low) + low, expected, atol=(high - low) * 1e-6)
    assert "WindowCenter" not in with_window  # the bundled file has none: auto falls back


def test_lossless_syntaxes_decode_to_the_same_pixels():
    reference = _read("MR_small.dcm", NONE)
    for name in ("MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_jp2klossless.dcm"):
        np.testing.assert_array_equal(_read(name, NONE), reference)


def test_fixed_and_percentile_windows():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    fixed = _read("CT_small.dcm", dicom.settings_from_config({"window": "40,400"}))[..., 0]
    np.testing.assert_allclose(fixed, np.clip((hu - 39.5) / 399 + 0.5, 0, 1), atol=1e-6)
    pct = _read("CT_small.dcm", dicom.settings_from_config({"window": "percentile,1,99"}))
    low, high = np.percentile(hu, [1, 99])
    np.testing.assert_allclose(pct[..., 0], np.clip((hu - low) / (high - low), 0, 1), atol=1e-6)


def test_a_colour_jpeg_in_ybr_comes_out_rgb():
    image = _read("SC_rgb_jpeg_dcmtk.dcm")
    assert image.shape == (100, 100, 3)
    np.testing.assert_allclose(image[0, 0], [254 / 255, 0, 0], atol=1e-6)  # red, as RGB


def test_palette_colour_goes_through_its_palette():
    ds = pydicom.dcmread(get_testdata_file("examples_palette.dcm"))
    from pydicom.pixels import apply_color_lut

    expected = apply_color_lut(ds.pixel_array, ds) / (
        2 ** ds.RedPaletteColorLookupTableDescriptor[2] - 1
    )
    np.testing.assert_allclose(_read("examples_palette.dcm"), expected, atol=1e-6)


# ------------------------------------------------------------------ files written here


def write_dicom(path, pixels, photometric="MONOCHROME2", signed=False, bits=None, **extra):
    """A minimal uncompressed Secondary Capture file holding `pixels` ([F,] H, W[, 3])."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    colour = photometric == "RGB"
    frames = pixels.shape[0] if pixels.ndim == (4 if colour else 3) else 1
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    bits = bits or pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = pixels.dtype.itemsize * 8, bits, bits - 1
    ds.PixelRepresentation = int(signed)
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def _read_path(path, settings=AUTO) -> np.ndarray:
    return dicom.read(path.read_bytes(), settings, str(path))


def test_monochrome1_is_inverted_relative_to_monochrome2(tmp_path):
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    one = _read_path(write_dicom(tmp_path / "m1.dcm", pixels, "MONOCHROME1"), NONE)
    two = _read_path(write_dicom(tmp_path / "m2.dcm", pixels, "MONOCHROME2"), NONE)
    np.testing.assert_allclose(one, 1.0 - two, atol=1e-7)
    assert two[0, 0, 0] == 0 and one[0, 0, 0] == 1  # black stays the lowest value in M2


@pytest.mark.parametrize("signed", [False, True])
def test_16_bit_stored_values_keep_their_range(tmp_path, signed):
    dtype = np.int16 if signed else np.uint16
    info = np.iinfo(dtype)
    pixels = np.array([[info.min, 0], [1, info.max]], dtype)
    image = _read_path(write_dicom(tmp_path / "x.dcm", pixels, signed=signed), NONE)[..., 0]
    expected = (pixels.astype(np.float64) - info.min) / (info.max - info.min)
    np.testing.assert_allclose(image, expected, atol=1e-7)


def test_12_bit_stored_in_16_scales_by_bits_stored(tmp_path):
    pixels = np.array([[0, 2048], [4095, 1]], np.uint16)
    image = _read_path(write_dicom(tmp_path / "x.dcm", pixels, bits=12), NONE)[..., 0]
    np.testing.assert_allclose(image, pixels / 4095.0, atol=1e-7)


def test_an_rgb_file(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    image = _read_path(write_dicom(tmp_path / "rgb.dcm", pixels, "RGB"))
    np.testing.assert_allclose(image, pixels / 255.0, atol=1e-7)


def test_a_multi_frame_file_is_refused_by_name_unless_a_frame_is_chosen(tmp_path):
    frames = np.stack([np.full((4, 4), v, np.uint8) for v in (0, 100, 255)])
    path = write_dicom(tmp_path / "cine.dcm", frames)
    with pytest.raises(dicom.DicomError, match=r"cine.dcm: a multi-frame DICOM file \(3 frames\)"):
        _read_path(path)
    second = _read_path(path, dicom.DicomSettings(window="none", frame=1))
    np.testing.assert_allclose(second, 100 / 255, atol=1e-7)
    with pytest.raises(dicom.DicomError, match=r"frame=3, but the file has 3 frame"):
        _read_path(path, dicom.DicomSettings(frame=3))


def test_bad_window_settings_name_the_field():
    for window in ("40", "percentile,99,1", "center,-1", "soft"):
        with pytest.raises(ValueError, match="config.data.dicom.window"):
            dicom.settings_from_config({"window": window})


# ------------------------------------------------------------------ in the input pipeline


def _config(tmp_path, size=16, channels=1, **extra) -> ml_collections.ConfigDict:
    cfg = base_data_config()
    cfg.update(image_size=size, channels=channels, **extra)
    return cfg


def _records(paths) -> Records:
    paths = np.array([str(p) for p in paths])
    return Records(
        ids=paths,
        labels=np.zeros(len(paths), np.int32),
        class_names=("a",),
        paths=paths,
        description="dicom test files",
    )


def _pipeline_images(records, cfg, batch=4):
    ds = pipeline.build_dataset(records, cfg, global_batch_size=batch, train=False)
    batches = list(pipeline.host_batches(ds, records))
    valid = np.concatenate([b["valid"] for b in batches])
    return np.concatenate([b["image"] for b in batches]), valid


def test_the_pipeline_decodes_dicom_beside_png_as_dicom_read_then_preprocess(tmp_path):
    import tensorflow as tf

    names = ["MR_small.dcm", "CT_small.dcm", "MR_small_RLE.dcm"]
    png = tmp_path / "plain.png"
    png.write_bytes(tf.io.encode_png(np.full((16, 16, 1), 128, np.uint8)).numpy())
    records = _records([get_testdata_file(n) for n in names] + [png])
    cfg = _config(tmp_path)
    images, valid = _pipeline_images(records, cfg)
    assert valid.all()
    for i, name in enumerate(names):
        expected = pipeline.preprocess(tf.constant(_read(name)), cfg).numpy()
        np.testing.assert_allclose(images[i], expected, atol=1e-6)
    np.testing.assert_allclose(images[3], 128 / 255 * 2 - 1, atol=1e-6)


def test_a_truncated_dicom_stops_the_run_naming_it_or_is_counted(tmp_path):
    good = write_dicom(tmp_path / "good.dcm", np.full((8, 8), 7, np.uint8))
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(good.read_bytes()[:200])
    records = _records([good, bad])
    with pytest.raises(DataError, match=r"Unreadable DICOM file: .*cut.dcm"):
        _pipeline_images(records, _config(tmp_path), batch=2)
    cfg = _config(tmp_path, skip_corrupt=True)
    # Readable files decoded in parallel beside the skipped one must not erase its name.
    records = _records([good] * 3 + [bad] + [good] * 4)
    counter = pipeline.SkipCounter()
    ds = pipeline.build_dataset(records, cfg, global_batch_size=8, train=False, counter=counter)
    batch = next(pipeline.host_batches(ds, records, counter))
    assert batch["valid"].tolist() == [True] * 3 + [False] + [True] * 4
    assert int(counter.count.numpy()) == 1 and counter.last_path.numpy().decode() == str(bad)


def test_a_multi_frame_file_stops_the_pipeline_with_its_name_and_count(tmp_path):
    path = write_dicom(tmp_path / "cine.dcm", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"cine.dcm: a multi-frame DICOM file \(2 frames\)"):
        _pipeline_images(_records([path]), _config(tmp_path), batch=1)
    cfg = _config(tmp_path)
    cfg.dicom.frame = 0
    images, valid = _pipeline_images(_records([path]), cfg, batch=1)
    assert valid.all() and np.allclose(images, -1.0)


def test_the_in_memory_cache_holds_dicom_images(tmp_path):
    records = _records([get_testdata_file("MR_small.dcm")])
    cfg = _config(tmp_path)
    cached = pipeline.cache_in_memory(records, cfg)
    images, _ = _pipeline_images(records, cfg, batch=1)
    np.testing.assert_allclose(cached.images[0].astype(np.float32) * 2 - 1, images[0], atol=2e-3)


def test_a_folder_dataset_of_dicom_files_streams_through_global_batches(tmp_path):
    from medgan_jax import parallel
    from medgan_jax.data import load_split

    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 2)):
        for label, name in enumerate(("healthy", "disease")):
            folder = tmp_path / "root" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 4096, (20, 24), dtype=np.uint16) // (1 + label)
                write_dicom(folder / f"{i}.dcm", pixels, bits=12)
    cfg = _config(tmp_path, source="folder")
    cfg.folder.update(root=str(tmp_path / "root"), val_fraction=0.25)
    records = load_split(cfg, "train")
    assert len(records) + len(load_split(cfg, "val")) == 12
    assert all(p.endswith(".dcm") for p in records.paths)
    mesh = parallel.make_mesh()
    batch = next(pipeline.global_batches(records, cfg, mesh, global_batch_size=8, train=True))
    assert batch["image"].shape == (8, 16, 16, 1)
    assert -1.0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1.0


def test_a_file_no_installed_decoder_reads_is_named():
    # pydicom's JPEG-lossy.dcm: a 12-bit extended JPEG whose scan libjpeg and Pillow reject
    with pytest.raises(dicom.DicomError, match=r"JPEG-lossy.dcm: not a readable DICOM image"):
        _read("JPEG-lossy.dcm")
