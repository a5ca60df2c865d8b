#!/usr/bin/env bash
# The demo's DCGAN set-up, compared: the same width-16 DCGAN on 50 malignant lesions at
# 32x32 (batch 32) with DiffAugment's default policy for 400 steps, translation only for
# 400 and 600 steps, and no augmentation for 800 steps; writes their final sample grids
# side by side to docs/images/demo_gan_budget.jpg. Usage: scripts/demo_gan_budget.sh [dir]
# (runs whose grid exists in dir are reused).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh requirements.txt
out="${1:-runs/demo_gan_budget}"
train() {  # name steps extra-flags...
  local name=$1 steps=$2; shift 2
  [ -f "$out/$name/samples/step_$(printf %06d "$steps").png" ] && return
  python train_gan.py --config=configs/dcgan.py:synthetic_lesions --workdir="$out/$name" \
    --config.data.image_size=32 --config.data.synthetic.size=32 \
    --config.data.subset.class_counts=benign=400,malignant=50 \
    --config.num_steps="$steps" --config.batch_size=32 --config.sample_every="$steps" \
    --config.checkpoint_every="$steps" --config.log_every=100 \
    --config.gan.g_width=16 --config.gan.d_width=16 "$@"
}
train base400 400
train trans400 400 --config.gan.diffaugment_policy=translation
train trans600 600 --config.gan.diffaugment_policy=translation
train noaug800 800 --config.gan.augment=''
python - "$out" <<'PY'
import sys
from PIL import Image, ImageDraw
out = sys.argv[1]
runs = [("base400", 400, "color,translation,cutout: 400 steps"),
        ("trans400", 400, "translation: 400 steps"),
        ("trans600", 600, "translation: 600 steps (the demo)"),
        ("noaug800", 800, "no augmentation: 800 steps")]
grids = [Image.open(f"{out}/{name}/samples/step_{steps:06d}.png").convert("RGB")
         for name, steps, _ in runs]
w, h = grids[0].size
sheet = Image.new("RGB", (4 * w + 30, h + 16), "white")
draw = ImageDraw.Draw(sheet)
for i, (grid, (_, _, label)) in enumerate(zip(grids, runs)):
    sheet.paste(grid, (i * (w + 10), 16))
    draw.text((i * (w + 10) + 2, 2), label, fill="black")
sheet.save("docs/images/demo_gan_budget.jpg", quality=90)
print("wrote docs/images/demo_gan_budget.jpg")
PY
