"""CheXpert-scale start-up: time and peak memory from a 224,316-row train.csv to the first
batch on the device, against pandas reading the same CSV.

  python benchmarks/chexpert_startup.py [--rows 224316] [--files /tmp/chexpert_startup]

Writes the CheXpert-v1.0-small layout once: train.csv with the real header, patients with
1-9 studies of 1-2 views (frontal and lateral), the 14 labels drawn from {1.0, 0.0, -1.0,
blank}, and every image path a symbolic link to one small JPEG (the paths exist, as the
loader checks). Then, in a fresh process after imports, this project's CheXpert source
lists the CSV, maps uncertain and blank labels, splits by patient (train/val/test, frontal
views), checks that every path exists, and the input pipeline starts and delivers the
first global batch; the reference, in its own fresh process, is pandas.read_csv of the
same file (what any loader pays just to parse it). Prints each stage's seconds, peak
resident memory (VmHWM) and the ratio of our listing to pandas' parse.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_layout(folder: Path, rows: int) -> Path:
    """train.csv of `rows` rows and a symlinked image per path; reused when present."""
    from PIL import Image

    from medgan_jax.data.chexpert_schema import CHEXPERT_CSV_HEADER, CHEXPERT_DIR

    data = folder / CHEXPERT_DIR
    if (folder / f"done_{rows}").exists():
        return data
    data.mkdir(parents=True, exist_ok=True)
    image = folder / "one.jpg"
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(image)
    rng = np.random.default_rng(0)
    values = np.array(["1.0", "0.0", "-1.0", ""])
    label_draws = rng.choice(values, size=(rows, 14), p=[0.15, 0.25, 0.05, 0.55])
    lines, patient, study, view = [",".join(CHEXPERT_CSV_HEADER)], 1, 1, 1
    made: set[Path] = set()
    for i in range(rows):
        side = "frontal" if view == 1 else "lateral"
        rel = f"{CHEXPERT_DIR}/train/patient{patient:05d}/study{study}/view{view}_{side}.jpg"
        path = folder / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        if not path.is_symlink():
            path.symlink_to(image)
        ap = "AP" if side == "frontal" else ""
        lines.append(
            f"{rel},Female,{40 + patient % 50},{side.title()},{ap}," + ",".join(label_draws[i])
        )
        if view == 1 and rng.random() < 0.3:
            view = 2
        elif rng.random() < 0.35:
            study, view = study + 1, 1
        else:
            patient, study, view = patient + 1, 1, 1
    (data / "train.csv").write_text("\n".join(lines) + "\n")
    (folder / f"done_{rows}").write_text(str(patient))
    return data


def peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def run_ours(folder: Path) -> dict:
    from configs.data import data_config
    from medgan_jax import parallel
    from medgan_jax.data import load_split, pipeline

    import_rss = peak_rss_mib()
    started = time.perf_counter()
    cfg = data_config("chexpert")
    cfg.chexpert.root = str(folder)
    cfg.image_size = 64
    records = load_split(cfg, "train")
    listed = time.perf_counter()
    mesh = parallel.make_mesh(1)
    batches = pipeline.global_batches(records, cfg, mesh, global_batch_size=64, train=True)
    batch = next(batches)
    batch["image"].block_until_ready()
    first = time.perf_counter()
    return {
        "side": "medgan_jax",
        "train_images": len(records),
        "patients": len(set(records.patient_ids.tolist())),
        "list_split_check_s": listed - started,
        "first_batch_s": first - listed,
        "total_s": first - started,
        "peak_rss_mib": peak_rss_mib(),
        "rss_after_imports_mib": import_rss,
    }


def run_pandas(folder: Path) -> dict:
    import pandas as pd

    from medgan_jax.data.chexpert_schema import CHEXPERT_DIR

    import_rss = peak_rss_mib()
    started = time.perf_counter()
    table = pd.read_csv(folder / CHEXPERT_DIR / "train.csv")
    return {
        "side": "pandas.read_csv",
        "rows": len(table),
        "total_s": time.perf_counter() - started,
        "peak_rss_mib": peak_rss_mib(),
        "rss_after_imports_mib": import_rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=224_316)
    parser.add_argument("--files", default="/tmp/chexpert_startup")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/chexpert_startup.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.files)
    if args.worker:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if args.worker == "ours":
            from medgan_jax import app

            app.configure(compilation_cache="", distributed=False)
        run = run_ours if args.worker == "ours" else run_pandas
        print(json.dumps(run(folder)))
        return
    started = time.perf_counter()
    write_layout(folder, args.rows)
    print(f"layout: {args.rows} rows in {folder} ({time.perf_counter() - started:.0f} s)")
    results = {}
    for side in ("ours", "pandas"):
        out = (
            subprocess.run(
                [sys.executable, __file__, "--worker", side, "--files", str(folder)],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        results[side] = json.loads(out)
    ours, ref = results["ours"], results["pandas"]
    print(
        f"medgan_jax: {ours['train_images']} training images of {ours['patients']} patients; "
        f"list + labels + patient split + path check {ours['list_split_check_s']:.1f} s, "
        f"first batch {ours['first_batch_s']:.1f} s, total {ours['total_s']:.1f} s; "
        f"peak RSS {ours['peak_rss_mib']:.0f} MiB ({ours['rss_after_imports_mib']:.0f} after "
        "imports)"
    )
    print(
        f"pandas.read_csv: {ref['rows']} rows in {ref['total_s']:.1f} s; peak RSS "
        f"{ref['peak_rss_mib']:.0f} MiB ({ref['rss_after_imports_mib']:.0f} after imports)"
    )
    print(f"listing / pandas parse: {ours['list_split_check_s'] / ref['total_s']:.2f}x")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"rows": args.rows, **results}, f, indent=1)


if __name__ == "__main__":
    main()
