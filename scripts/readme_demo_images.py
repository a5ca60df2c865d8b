"""The README's demo pictures from a finished `runs/demo` (the Quickstart's study).

  python scripts/readme_demo_images.py [--run runs/demo] [--size 50] [--seed 0]
                                      [--name study_demo_samples_50.jpg] [--no-plot]

Writes docs/images/study_demo_samples_<size>.jpg (the from-scratch DCGAN's samples, the
transferred DCGAN's, then real minority images: the top and bottom halves of each GAN's
quality/<gan>/sample_grid.png) and copies plot_roc_auc.png to
docs/images/study_demo_roc_auc.png.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def halves(grid_path: Path) -> tuple[Image.Image, Image.Image]:
    """A sample grid's generated rows (top half) and real rows (bottom half)."""
    grid = Image.open(grid_path).convert("RGB")
    middle = grid.height // 2
    return grid.crop((0, 0, grid.width, middle)), grid.crop((0, middle, grid.width, grid.height))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=str(ROOT / "runs/demo"))
    parser.add_argument("--size", default="50")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--name", default="", help="default: study_demo_samples_<size>.jpg")
    parser.add_argument("--no-plot", action="store_true", help="leave the ROC AUC plot")
    args = parser.parse_args()
    cell = Path(args.run) / f"size={args.size}" / f"seed={args.seed}"
    scratch, real = halves(cell / "gan=dcgan/quality/dcgan/sample_grid.png")
    transfer, _ = halves(cell / "gan=dcgan_transfer/quality/dcgan_transfer/sample_grid.png")
    stacked = Image.new("RGB", (scratch.width, 3 * scratch.height), "white")
    for row, part in enumerate((scratch, transfer, real)):
        stacked.paste(part, (0, row * scratch.height))
    if stacked.width < 800:  # 32x32 tiles are hard to see at their own size
        stacked = stacked.resize((int(stacked.width * 1.5), int(stacked.height * 1.5)))
    images = ROOT / "docs/images"
    name = args.name or f"study_demo_samples_{args.size}.jpg"
    stacked.save(images / name, quality=90)
    print(f"wrote {images / name}")
    if not args.no_plot:
        shutil.copy(Path(args.run) / "plot_roc_auc.png", images / "study_demo_roc_auc.png")
        print(f"wrote {images / 'study_demo_roc_auc.png'}")


if __name__ == "__main__":
    main()
