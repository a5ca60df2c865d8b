#!/usr/bin/env bash
# The README's diffusion section: on the embedded lesions' 922 malignant training images at
# 32x32, a SimpleCNN on all data (the feature network), a DCGAN and the EDM diffusion model
# (each for the budget below), then evaluate.py's GAN-quality table for both
# (configs/evaluate.py:diffusion_vs_dcgan) and the README's images in docs/images.
# Usage: scripts/readme_diffusion.sh (finished runs are reused; re-running resumes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup_env.sh requirements.txt
size=(--config.data.image_size=32 --config.data.synthetic.size=32)
[ -f runs/clf_all32/metrics.json ] || python train_classifier.py \
  --config=configs/classifier.py:synthetic_lesions --workdir=runs/clf_all32 "${size[@]}"
time python train_gan.py --config=configs/dcgan.py:synthetic_lesions \
  --workdir=runs/dcgan32_readme "${size[@]}" --config.num_steps=3000 \
  --config.gan.g_width=32 --config.gan.d_width=32 --config.sample_every=1000
time python train_gan.py --config=configs/diffusion.py:synthetic_lesions \
  --workdir=runs/diffusion32_readme "${size[@]}" --config.num_steps="${DIFFUSION_STEPS:-1000}" \
  --config.batch_size=32 --config.diffusion.width=32 --config.diffusion.num_res_blocks=1 \
  '--config.diffusion.channel_mult=(1,2,2)' \
  --config.sample_every=1000 --config.checkpoint_every=1000
time python evaluate.py --config=configs/evaluate.py:diffusion_vs_dcgan --workdir=runs/eval_diffusion
steps="${DIFFUSION_STEPS:-1000}"
cp "runs/diffusion32_readme/samples/step_$(printf %06d "$steps").png" docs/images/diffusion32_lesions.png
for name in dcgan diffusion; do
  python - "runs/eval_diffusion/$name/sample_grid.png" "docs/images/eval_diffusion_${name}.jpg" <<'PY'
import sys
from PIL import Image
Image.open(sys.argv[1]).convert("RGB").save(sys.argv[2], quality=90)
PY
done
cp runs/eval_diffusion/diffusion/closest_pairs.png docs/images/eval_diffusion_closest_pairs.png
