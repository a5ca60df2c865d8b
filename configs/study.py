"""The augmentation study: data sizes x methods x seeds, with honest statistics.

Run (the README's main command; minutes on a laptop CPU):
  python evaluate.py --config=configs/study.py:quick --workdir=runs/study
For every size and seed it fixes the real training subset, trains each method's GAN on
that subset's minority class, samples it, trains the classifier per method and tests it
on the fixed full test set. It writes report.md (tables per metric: mean ± std over
seeds, method − base with DeLong p-values, GAN quality, plain verdicts), results.json
and plot_<metric>.png. Re-running skips finished cells; adding a method or size runs
only the new cells.

Presets: quick (embedded lesions, small budget), synthetic_lesions (the skin seed's
table shape on the embedded lesions), skin_cancer, covid_xray, chexpert (per-label AUC
of the rare labels at dataset fractions), smoke (tests).
"""

import ml_collections

from configs import classifier as classifier_config
from configs import dcgan as dcgan_config
from configs import evaluate as evaluate_config
from configs import pggan as pggan_config

MINORITY = {
    "synthetic_lesions": "malignant",
    "skin_cancer": "malignant",
    "covid_xray": "COVID19",
    "chexpert": "Lung Lesion",
    "smoke": "malignant",
}


def gan_eval_config() -> ml_collections.ConfigDict:
    """How GAN quality is measured (see configs/evaluate.py)."""
    cfg = evaluate_config.get_config("smoke")
    for field in ("generated", "classifiers", "features", "bootstrap"):
        del cfg[field]
    cfg.enabled = True
    cfg.batch_size = 64
    cfg.kid_subsets = 100
    return cfg


def get_config(preset: str = "quick") -> ml_collections.ConfigDict:
    data_preset = "synthetic_lesions" if preset == "quick" else preset
    if data_preset not in MINORITY:
        raise ValueError(f"Unknown preset '{preset}'; expected quick or one of {list(MINORITY)}.")
    config = ml_collections.ConfigDict()
    config.classifier = classifier_config.get_config(data_preset)
    config.data = config.classifier.data
    config.minority_class = MINORITY[data_preset]
    config.sizes = ("10", "100", "200", "500", "all")  # per class, 'P%', or 'all'
    config.seeds = (0, 1, 2)
    config.methods = (
        "base",
        "classic",
        "photometric",
        "classic+photometric",
        "dcgan",
        "pggan",
        "pggan+filtering",
        "dcgan+classic",
    )
    config.metrics = ("accuracy", "f1", "roc_auc", "sensitivity")
    config.synthetic_amount = "50%"  # count, % of the real training set, or 'balance'
    config.gans = ml_collections.ConfigDict()
    config.gans.dcgan = dcgan_config.get_config(data_preset)
    config.gans.pggan = pggan_config.get_config(data_preset)
    config.gans["pggan+filtering"] = pggan_config.get_config(data_preset)
    config.gans["pggan+filtering"].gan.filter_copies.update(
        gaussian_blur=True, unsharp_mask=True, minimum_filter=True
    )
    config.gan_eval = gan_eval_config()
    if preset == "quick":
        config.data.image_size = config.data.synthetic.size = 32
        config.sizes = ("25", "all")
        config.seeds = (0,)
        config.methods = ("base", "classic", "dcgan")
        config.classifier.update(num_epochs=8)
        config.classifier.model.options = dict(widths=(16, 32, 64), hidden=64)
        config.gans.dcgan.update(num_steps=400, batch_size=32, sample_every=400)
        config.gans.dcgan.gan.update(g_width=32, d_width=32)
        config.gan_eval.kid_subsets = 20
    elif preset == "chexpert":
        config.sizes = ("10%", "25%", "50%", "all")
        config.metrics = ("auc:Lung Lesion", "auc:Pleural Other", "auc:Fracture", "roc_auc")
        config.synthetic_amount = "balance"
    elif preset == "smoke":
        config.sizes = ("8", "all")
        config.seeds = (0,)
        config.methods = ("base", "classic", "dcgan")
        config.classifier.update(num_epochs=1, steps_per_epoch=2)
        config.gans.dcgan.update(num_steps=2, log_every=2, sample_every=2, checkpoint_every=2)
        config.gan_eval.update(batch_size=16, kid_subsets=5)
    return config  # each GAN trains on config.data, pinned to its cell's subset
