"""Input-pipeline benchmark: decoded images/s and peak memory, 2,000 vs 20,000 JPEG files.

  python benchmarks/pipeline_throughput.py [--sizes 2000,20000] [--out benchmarks/results]

Writes 224x224 RGB JPEGs (synthetic lesions) in the Kaggle folder layout, then, in a
fresh process per (loader, size), reads one full epoch decoded, resized to 64x64 and
scaled to [-1, 1] with:
  medgan_jax  - this project's tf.data pipeline (streams file paths; shuffled order)
  keras       - keras.utils.image_dataset_from_directory (tf.data, the Keras standard)
  notebook    - PIL open/convert/resize in a Python loop into one numpy array, the
                hand-written notebook loader
  dicom, png16 - this project's pipeline on the same images as 16-bit grayscale, written
                once as uncompressed DICOM (MONOCHROME2, 16 bits stored, a window in the
                header; pydicom decodes it inside tf.data) and once as 16-bit PNG
and prints images/s (listing + one epoch, after imports), peak resident memory and
the ratios. Flat memory from 2,000 to
20,000 files is the point of streaming.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FILE_SIZE, OUT_SIZE, BATCH = 224, 64, 64
LOADERS = ("medgan_jax", "keras", "notebook", "dicom", "png16")
GRAY16 = {"dicom": ".dcm", "png16": ".png"}  # loader -> file type of the 16-bit copies


def write_files(folder: Path, num: int, unique: int = 2000) -> None:
    """`num` JPEGs under folder/train/{benign,malignant}; copies of `unique` rendered ones."""
    from PIL import Image

    from medgan_jax.data.synthetic import LESION_CLASSES, lesion_images

    if (folder / "done").exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    images, labels = lesion_images(min(num, unique), size=FILE_SIZE, seed=0)
    sources = []
    for i, (image, label) in enumerate(zip(images, labels)):
        path = folder / "train" / LESION_CLASSES[label] / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, quality=95)
        sources.append(path)
    for i in range(len(sources), num):
        src = sources[i % len(sources)]
        shutil.copyfile(src, src.parent / f"{i:06d}.jpg")
    (folder / "done").write_text(str(num))


def write_gray16_files(folder: Path) -> None:
    """16-bit grayscale copies of folder's JPEGs, as DICOM (gray16/dicom) and PNG (png16)."""
    from PIL import Image
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    done = folder / "gray16" / "done"
    if done.exists():
        return
    written: dict[Path, tuple[Path, Path]] = {}
    for jpeg in sorted((folder / "train").glob("*/*.jpg")):
        rel = jpeg.relative_to(folder / "train")
        dcm = folder / "gray16" / "dicom" / "train" / rel.with_suffix(".dcm")
        png = folder / "gray16" / "png16" / "train" / rel.with_suffix(".png")
        dcm.parent.mkdir(parents=True, exist_ok=True)
        png.parent.mkdir(parents=True, exist_ok=True)
        key = jpeg.read_bytes()[-256:]  # copies of one rendered image share their bytes
        if key in written:
            shutil.copyfile(written[key][0], dcm)
            shutil.copyfile(written[key][1], png)
            continue
        gray = np.asarray(Image.open(jpeg).convert("L"), np.uint16) * 257
        Image.fromarray(gray).save(png)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(dcm), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Rows, ds.Columns = gray.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.WindowCenter, ds.WindowWidth = 32768, 65536
        ds.PixelData = gray.tobytes()
        ds.save_as(str(dcm), enforce_file_format=True)
        written[key] = (dcm, png)
    done.write_text("ok")


def run_medgan_jax(folder: Path, started: list[float], channels: int = 3, suffix: str = "") -> int:
    """One epoch of this project's pipeline over folder/train (every file ends in `suffix`)."""
    from configs.data import data_config
    from medgan_jax.data import load_split, pipeline

    started.append(time.perf_counter())
    cfg = data_config("skin_cancer")
    cfg.update(image_size=OUT_SIZE, cache=False, channels=channels)
    cfg.folder.update(root=str(folder), val_fraction=0.0)
    records = load_split(cfg, "train")
    assert all(p.endswith(suffix) for p in records.paths)
    steps = len(records) // BATCH
    pipeline.RESIDENT_BYTES = 0  # the streaming path (what datasets larger than that take)
    ds = pipeline.build_dataset(records, cfg, global_batch_size=BATCH, train=True)
    seen = 0
    for _, batch in zip(range(steps), pipeline.host_batches(ds, records)):
        seen += len(batch["image"])
    return seen


def run_gray16(folder: Path, started: list[float], kind: str) -> int:
    """This project's pipeline over the 16-bit DICOM or PNG copies (1 channel)."""
    return run_medgan_jax(folder / "gray16" / kind, started, channels=1, suffix=GRAY16[kind])


def run_keras(folder: Path, started: list[float]) -> int:
    import keras

    started.append(time.perf_counter())
    ds = keras.utils.image_dataset_from_directory(
        folder / "train", image_size=(OUT_SIZE, OUT_SIZE), batch_size=BATCH, seed=0, verbose=False
    )
    seen = 0
    for images, _ in ds.map(lambda x, y: (x / 127.5 - 1.0, y)):
        seen += int(images.shape[0])
    return seen


def run_notebook(folder: Path, started: list[float]) -> int:
    from PIL import Image

    started.append(time.perf_counter())
    paths = sorted((folder / "train").glob("*/*.jpg"))
    images = []
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB").resize((OUT_SIZE, OUT_SIZE), Image.BILINEAR)
            images.append(np.asarray(image, np.float32) / 127.5 - 1.0)
    return len(np.stack(images))


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it is not inherited)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def worker(loader: str, folder: Path) -> dict:
    """One epoch with one loader; the clock starts after its imports (TF alone takes ~4 s)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    run = {
        "medgan_jax": run_medgan_jax,
        "keras": run_keras,
        "notebook": run_notebook,
        "dicom": lambda folder, started: run_gray16(folder, started, "dicom"),
        "png16": lambda folder, started: run_gray16(folder, started, "png16"),
    }[loader]
    started: list[float] = []
    seen = run(folder, started)
    seconds = time.perf_counter() - started[0]
    return {
        "loader": loader,
        "images": seen,
        "seconds": seconds,
        "images_per_s": seen / seconds,
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="2000,20000")
    parser.add_argument("--loaders", default=",".join(LOADERS))
    parser.add_argument("--files", default="/tmp/medgan_jax_bench_files")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, Path(args.files))))
        return
    results = []
    for num in map(int, args.sizes.split(",")):
        folder = Path(args.files) / f"n{num}"
        write_files(folder, num)
        if set(GRAY16) & set(args.loaders.split(",")):
            write_gray16_files(folder)
        for loader in args.loaders.split(","):
            out = (
                subprocess.run(
                    [sys.executable, __file__, "--worker", loader, "--files", str(folder)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            results.append({"files": num, **json.loads(out)})
            r = results[-1]
            print(
                f"{num:>6} files  {loader:10s} {r['images_per_s']:7.0f} images/s  "
                f"peak RSS {r['peak_rss_mib']:7.0f} MiB  ({r['seconds']:.1f} s)",
                flush=True,
            )
    by = {(r["files"], r["loader"]): r for r in results}
    print("\nRatios (medgan_jax / reference):")
    for num in sorted({r["files"] for r in results}):
        ours = by.get((num, "medgan_jax"))
        for ref in ("keras", "notebook"):
            if ours and (num, ref) in by:
                speed = ours["images_per_s"] / by[num, ref]["images_per_s"]
                memory = ours["peak_rss_mib"] / by[num, ref]["peak_rss_mib"]
                print(
                    f"{num:>6} files  vs {ref:8s} speed {speed:5.2f}x   peak memory {memory:5.2f}x"
                )
        if (num, "dicom") in by and (num, "png16") in by:
            dicom, png = by[num, "dicom"], by[num, "png16"]
            print(
                f"{num:>6} files  dicom vs png16 speed "
                f"{dicom['images_per_s'] / png['images_per_s']:5.2f}x   peak memory "
                f"{dicom['peak_rss_mib'] / png['peak_rss_mib']:5.2f}x"
            )
    sizes = sorted({r["files"] for r in results})
    for loader in args.loaders.split(","):
        if len(sizes) >= 2 and (sizes[0], loader) in by and (sizes[-1], loader) in by:
            growth = by[sizes[-1], loader]["peak_rss_mib"] - by[sizes[0], loader]["peak_rss_mib"]
            print(f"{loader:10s} peak memory {sizes[0]} -> {sizes[-1]} files: {growth:+.0f} MiB")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "pipeline_throughput.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    from medgan_jax import app  # XLA flags must precede jax's backend start-up

    app.configure(compilation_cache="", distributed=False)
    main()
