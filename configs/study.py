"""The augmentation study: data sizes x methods x seeds, with honest statistics.

Run (the README's main command; its wall time on a laptop CPU is in the README):
  python evaluate.py --config=configs/study.py:demo --workdir=runs/demo
For every size and seed it fixes the real training subset, trains each method's GAN on
that subset's minority class, samples it, trains the classifier per method and tests it
on the fixed full test set. It writes report.md (a summary of every method against the
better rebalancing control with its share of the real-data ceiling's gain; tables per
metric: mean ± std over seeds, method − base with two-level bootstrap CIs and Holm-adjusted
p-values, DeLong per seed; GAN quality; plain verdicts), results.json and
plot_<metric>.png. Re-running skips finished cells; adding a method or size runs only the
new cells.

Presets:
  demo                    the README's: embedded lesions at 32x32, 400 benign and 10/50/200
                          malignant training images (the rare class), base, the controls
                          oversample and weighted, classic, dcgan from scratch and
                          dcgan_transfer (pretrained on the cell's benign images), the
                          ceiling real_topup; added images balance the classes; 3 seeds; CPU.
  quick                   a 4-minute taste at 32x32 (1 seed).
  synthetic_lesions       the skin seed's table shape on the embedded lesions (GPU).
  synthetic_lesions_full  every method, minority learning curve to all, 5 seeds (GPU).
  synthetic_cxr_rare      the CheXpert seed's experiment on the embedded chest X-rays:
                          per-label AUC of Lung Lesion, Pleural Other and Fracture at 1, 10,
                          50 and 100% of the patients, conditional PGGAN with balance
                          top-up (GPU).
  skin_cancer, covid_xray, chexpert   the seeds' protocols on the real data (local copies).
  nih_chestxray14         per-label AUC of its rarest findings (Hernia, Pneumonia, Fibrosis)
                          at 10/25/50/100% of the patients, the official test list.
  siim_isic(_dicom), rsna_pneumonia   minority learning curves (50 .. all melanomas or
                          pneumonias beside every majority image) with the controls, the
                          ceiling, dcgan, dcgan_transfer, bagan and diffusion.
  smoke                   2 sizes x 2 methods x 2 seeds with tiny models (tests).
"""

import copy

import ml_collections

from configs import bagan as bagan_config
from configs import classifier as classifier_config
from configs import dcgan as dcgan_config
from configs import diffusion as diffusion_config
from configs import evaluate as evaluate_config
from configs import pggan as pggan_config

MINORITY = {
    "synthetic_lesions": "malignant",
    "synthetic_cxr": "Lung Lesion",
    "skin_cancer": "malignant",
    "covid_xray": "COVID19",
    "chexpert": "Lung Lesion",
    "nih_chestxray14": "Hernia",
    "siim_isic": "malignant",
    "siim_isic_dicom": "malignant",
    "rsna_pneumonia": "pneumonia",
    "smoke": "malignant",
}


def gan_eval_config() -> ml_collections.ConfigDict:
    """How GAN quality is measured (see configs/evaluate.py)."""
    cfg = evaluate_config.get_config("smoke")
    for field in ("job", "generated", "classifiers", "features", "bootstrap"):
        del cfg[field]
    cfg.enabled = True
    cfg.batch_size = 64
    cfg.kid_subsets = 100
    return cfg


DATA_PRESET = {  # study presets on another preset's data
    "demo": "synthetic_lesions",
    "quick": "synthetic_lesions",
    "synthetic_lesions_full": "synthetic_lesions",
    "synthetic_cxr_rare": "synthetic_cxr",
}
# A rare-class learning curve's arms: base, the rebalancing controls, classic augmentation,
# a DCGAN from scratch and transferred, and the real-data ceiling.
LEARNING_CURVE_METHODS = (
    "base",
    "oversample",
    "weighted",
    "classic",
    "dcgan",
    "dcgan_transfer",
    "real_topup",
)
PRESETS = (
    "demo",
    "quick",
    "synthetic_lesions",
    "synthetic_lesions_full",
    "synthetic_cxr_rare",
    "skin_cancer",
    "covid_xray",
    "chexpert",
    "nih_chestxray14",
    "siim_isic",
    "siim_isic_dicom",
    "rsna_pneumonia",
    "smoke",
)


def get_config(preset: str = "demo") -> ml_collections.ConfigDict:
    if preset not in PRESETS:
        raise ValueError(f"Unknown study preset '{preset}'; expected one of {list(PRESETS)}.")
    data_preset = DATA_PRESET.get(preset, preset)
    config = ml_collections.ConfigDict()
    config.job = "study"  # evaluate.py runs the study
    config.classifier = classifier_config.get_config(data_preset)
    # A cell is the study's unit of resumption (a killed one reruns): its classifier keeps
    # its best weights in memory and saves them once, at the end.
    config.classifier.checkpoints = "at_end"
    config.data = config.classifier.data
    config.minority_class = MINORITY[data_preset]
    config.sizes = ("10", "100", "200", "500", "all")  # see size_unit
    # 'per_class': 'N' images of every class, 'P%' of each class, 'all'.
    # 'minority': 'N' minority images, the other classes as data.subset leaves them.
    config.size_unit = "per_class"
    config.seeds = (0, 1, 2)
    # Processes that run the cells side by side; 0 = one per CPU core (at
    # most 4) on a CPU backend, 1 on accelerators and in multi-host runs.
    config.workers = 1
    config.methods = (
        "base",
        "classic",
        "photometric",
        "classic+photometric",
        "dcgan",
        "pggan",
        "pggan+filtering",
        "dcgan+classic",
        "diffusion",
        "diffusion+classic",
    )
    config.metrics = ("accuracy", "f1", "roc_auc", "sensitivity")
    config.synthetic_amount = "50%"  # count, % of the real training set, or 'balance'
    # The study's tests: two-level bootstrap over seeds and test cases (see README).
    config.bootstrap = ml_collections.ConfigDict(dict(n_resamples=2000, seed=0))
    config.gans = ml_collections.ConfigDict()
    config.gans.dcgan = dcgan_config.get_config(data_preset)
    config.gans.pggan = pggan_config.get_config(data_preset)
    config.gans["pggan+filtering"] = pggan_config.get_config(data_preset)
    config.gans["pggan+filtering"].gan.filter_copies.update(
        gaussian_blur=True, unsharp_mask=True, minimum_filter=True
    )
    if data_preset in bagan_config.MINORITY or data_preset == "smoke":
        config.gans.bagan = bagan_config.get_config(data_preset)
    config.gans.diffusion = diffusion_config.get_config(data_preset)
    config.gan_eval = gan_eval_config()
    if preset == "demo":
        demo_config(config)
    elif preset == "quick":
        config.data.image_size = config.data.synthetic.size = 32
        config.sizes = ("25", "all")
        config.seeds = (0,)
        config.methods = ("base", "classic", "dcgan")
        config.classifier.update(num_epochs=8)
        config.classifier.model.options = dict(widths=(16, 32, 64), hidden=64)
        config.gans.dcgan.update(num_steps=400, batch_size=32, sample_every=400)
        config.gans.dcgan.gan.update(g_width=32, d_width=32)
        config.gan_eval.kid_subsets = 20
    elif preset == "synthetic_lesions_full":
        config.size_unit = "minority"
        config.data.subset.class_counts = "benign=1000"
        config.sizes = ("10", "50", "100", "200", "500", "all")
        config.seeds = (0, 1, 2, 3, 4)
        config.methods = (*config.methods, "bagan")
        config.synthetic_amount = "balance"
    elif preset == "synthetic_cxr_rare":
        rare_label_config(config)
    elif preset == "chexpert":
        config.sizes = ("10%", "25%", "50%", "all")
        config.metrics = ("auc:Lung Lesion", "auc:Pleural Other", "auc:Fracture", "roc_auc")
        config.synthetic_amount = "balance"
    elif preset == "nih_chestxray14":  # the rarest findings, as the CheXpert seed's
        config.sizes = ("10%", "25%", "50%", "all")
        config.metrics = ("auc:Hernia", "auc:Pneumonia", "auc:Fibrosis", "roc_auc")
        config.synthetic_amount = "balance"
    elif preset in ("siim_isic", "siim_isic_dicom", "rsna_pneumonia"):
        # A rare-class learning curve: every majority image, 50 .. all minority ones.
        config.size_unit = "minority"
        config.sizes = ("50", "100", "200", "all")
        config.metrics = ("roc_auc", "average_precision", "sensitivity", "balanced_accuracy")
        config.methods = (*LEARNING_CURVE_METHODS, "bagan", "diffusion")
        config.synthetic_amount = "balance"
    elif preset == "smoke":
        config.sizes = ("8", "all")
        config.seeds = (0, 1)
        config.methods = ("base", "dcgan")
        config.classifier.update(num_epochs=1, steps_per_epoch=2)
        config.gans.dcgan.update(num_steps=2, log_every=2, sample_every=2, checkpoint_every=2)
        config.gan_eval.update(batch_size=16, kid_subsets=5)
        # Tiny cells: allow every GAN metric on their few images (real presets keep 50).
        config.gan_eval.min_samples.update(is_per_split=1, fid=2, kid=2, prdc=4)
    config.gans.dcgan_transfer = transfer_config(config.gans.dcgan)
    return config  # each GAN trains on config.data, pinned to its cell's subset


def transfer_config(gan: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The same GAN and total steps, transferred: the first half pretrains on the cell's
    majority-class images, the second fine-tunes on its minority images (method
    'dcgan_transfer'); freeze_d_layers > 0 fine-tunes with D's lower layers fixed."""
    transferred = copy.deepcopy(gan)
    transferred.pretrain = ml_collections.ConfigDict(
        dict(num_steps=max(1, gan.num_steps // 2), freeze_d_layers=0)
    )
    return transferred


def demo_config(config: ml_collections.ConfigDict) -> None:
    """The README's main command: a rare-class learning curve that fits a laptop CPU.

    400 benign lesions and 10, 50 or 200 malignant ones at 32x32; every GAN trains on its
    cell's malignant images only and tops the malignant class up to 400 ('balance'), as do
    the controls (oversample: the cell's malignant images repeated; weighted: a
    class-weighted loss instead) and the ceiling (real_topup: unused real malignant images).
    32x32 because at 64x64 the steps alone of its 63 classifiers and 27 GAN runs exceed the
    quickstart's 10 minutes on a 2-core CPU (compare benchmarks/study_overhead.py's compute
    column at --image-size 64 and 32).
    """
    config.size_unit = "minority"
    config.workers = 0  # XLA:CPU runs these small networks on about one core each
    config.data.image_size = config.data.synthetic.size = 32
    config.data.subset.class_counts = "benign=400"
    config.sizes = ("10", "50", "200")
    config.seeds = (0, 1, 2)
    config.methods = LEARNING_CURVE_METHODS
    config.metrics = ("roc_auc", "average_precision", "sensitivity", "balanced_accuracy")
    config.synthetic_amount = "balance"
    # BatchNorm makes the small CNN learn within this budget.
    config.classifier.update(num_epochs=5, min_train_steps=80, batch_size=32)
    config.classifier.model.options = dict(widths=(16, 32, 64), hidden=64, batch_norm=True)
    config.classifier.early_stopping.patience = 5
    dcgan = config.gans.dcgan
    dcgan.update(num_steps=600, batch_size=32, sample_every=600, checkpoint_every=600)
    dcgan.update(log_every=100)
    # DiffAugment's colour and cutout ops hide the lesions' colours from D at this budget:
    # with them the samples collapse to one dark blob on one skin tone; translation alone
    # keeps the skin tones, vignettes and blue-grey veils (docs/images/demo_gan_budget.jpg).
    dcgan.gan.update(g_width=16, d_width=16, diffaugment_policy="translation")
    config.gan_eval.kid_subsets = 20


def rare_label_config(config: ml_collections.ConfigDict) -> None:
    """The CheXpert seed's experiment on the embedded chest X-rays (sized for a GPU)."""
    config.sizes = ("1%", "10%", "50%", "all")
    config.metrics = ("auc:Lung Lesion", "auc:Pleural Other", "auc:Fracture", "roc_auc")
    config.methods = ("base", "classic", "pggan", "pggan+filtering")
    config.synthetic_amount = "balance"
    for name in ("pggan", "pggan+filtering"):
        config.gans[name].gan.conditional = "acgan"  # on the multi-hot label vector
