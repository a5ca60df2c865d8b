"""Classifier training on real (+ synthetic) images, with early stopping.

Run:
  python train_classifier.py --config=configs/classifier.py:synthetic_lesions --workdir=runs/clf
It trains SimpleCNN on the embedded lesions, prints progress and one line per epoch
(validation loss/accuracy/AUC/...), keeps Orbax checkpoints (latest in checkpoints/,
best-on-validation in best/; re-running resumes), stops early after `patience` epochs
without improvement, picks the decision threshold on the validation set with the best
checkpoint (config.threshold: Youden's J by default) and evaluates that checkpoint at that
threshold on the test set: metrics.json (accuracy, per-class and macro AUC, AUPRC,
sensitivity, specificity, F1, ..., and the threshold under "threshold"),
test_predictions.npz (for evaluate.py's CIs and DeLong tests; with the threshold) and
val_predictions.npz.

Add synthetic images (training set only):
  --config.synthetic.gan_workdir=runs/dcgan --config.synthetic.class_name=malignant
  --config.synthetic.amount=1000      # or '10%' of the real set, or 'balance'
Presets: synthetic_lesions, synthetic_cxr, skin_cancer, covid_xray, chexpert,
nih_chestxray14, siim_isic, siim_isic_dicom, rsna_pneumonia, smoke.
"""

import ml_collections

from configs.data import data_config

MODEL_PRESETS = {  # the seeds' networks per dataset
    "synthetic_lesions": "simple_cnn",
    "synthetic_cxr": "simple_cnn",
    "skin_cancer": "resnet50",
    "covid_xray": "resnet50",
    "chexpert": "densenet121",
    "nih_chestxray14": "densenet121",  # CheXNet's
    "siim_isic": "resnet50",
    "siim_isic_dicom": "resnet50",
    "rsna_pneumonia": "densenet121",
    "smoke": "simple_cnn",
}


def get_config(preset: str = "synthetic_lesions") -> ml_collections.ConfigDict:
    if preset not in MODEL_PRESETS:
        raise ValueError(f"Unknown preset '{preset}'; expected one of {list(MODEL_PRESETS)}.")
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = data_config(preset)
    # float32 | bfloat16 (mixed precision: bfloat16 compute, float32 parameters, optimizer
    # states, BatchNorm statistics and losses; for GPUs and TPUs, slower on CPUs).
    config.precision = "float32"
    config.task = "auto"  # auto | binary | multiclass | multilabel
    config.model = ml_collections.ConfigDict(dict(name=MODEL_PRESETS[preset], options={}))
    config.optimizer = ml_collections.ConfigDict(
        dict(
            name="adam",  # adam | sgd
            lr=1e-3,
            betas=(0.9, 0.999),
            momentum=0.9,
            nesterov=True,
            weight_decay=0.0,
            schedule="cosine",  # cosine | constant
            warmup_steps=100,  # at most a fifth of the training steps
            end_lr_factor=0.01,
        )
    )
    config.batch_size = 64
    config.eval_batch_size = 128
    config.num_epochs = 30
    config.steps_per_epoch = 0  # 0 = one pass over the (mixed) training set, but at least
    config.min_train_steps = 300  # ... this many steps in all (tiny subsets repeat images)
    config.class_weighting = ""  # '' | balanced
    config.sampling = ""  # '' | balanced (oversample every class to the largest)
    config.augment = "none"  # none | classic | photometric | classic+photometric | filtering
    config.augment_params = ml_collections.ConfigDict()  # e.g. {'rotate': {'degrees': 10}}
    config.early_stopping = ml_collections.ConfigDict(
        dict(metric="roc_auc", patience=5, min_delta=0.0)  # roc_auc | accuracy | ... | loss
    )
    # The cut-off of `score >= threshold` (binary; one per label for multi-label; multiclass
    # takes the argmax), chosen on validation after training and applied unchanged to test:
    # youden (max sensitivity + specificity - 1) | target_sensitivity (the largest threshold
    # with sensitivity >= target) | target_specificity (the smallest with specificity >=
    # target) | fixed (0.5).
    config.threshold = ml_collections.ConfigDict(dict(rule="youden", target=0.0))
    config.synthetic = ml_collections.ConfigDict(
        dict(
            # Where added images come from: synthetic (a GAN's, below) | oversample (the
            # class's own images repeated: a rebalancing control) | real_topup (unused real
            # images of the class from the training split: the ceiling).
            source="synthetic",
            amount="0",
            class_name="",  # the GAN's class: the synthetic images' hard label
            folder="",  # a folder written by medgan_jax.gan.sample, or
            gan_workdir="",  # a GAN run to sample from (into workdir/synthetic)
            seed=0,
            labels="hard",  # hard | soft (a prior classifier's probabilities)
            prior_classifier="",  # train_classifier.py workdir for labels='soft'
        )
    )
    # Starting weights: another classifier run, a Keras .h5, or (model 'gan_encoder', its
    # options.width = bagan.width) the trunk of a BAGAN run's discriminator, fine-tuned.
    config.init = ml_collections.ConfigDict(
        dict(checkpoint="", keras_weights="", gan_discriminator="")
    )
    config.freeze_trunk_epochs = 0
    config.num_devices = 0  # 0 = all
    config.log_every = 50
    config.keep_checkpoints = 2
    # every_epoch: latest and best-on-validation saved each epoch (resumes mid-run) |
    # at_end: the best weights kept in memory and saved once (the study's short runs
    # restart instead).
    config.checkpoints = "every_epoch"
    # Validation/test splits up to this size are read once and held on device, and
    # predicted in one compiled pass; larger ones stream through the input pipeline.
    config.eval_resident_mb = 512
    if preset in ("chexpert", "nih_chestxray14", "siim_isic", "siim_isic_dicom", "rsna_pneumonia"):
        config.early_stopping.metric = "roc_auc"
        config.class_weighting = "balanced"
    if preset == "smoke":
        config.model.options = dict(widths=(8, 16), hidden=16)
        config.batch_size = 16
        config.eval_batch_size = 16
        config.num_epochs = 2
        config.min_train_steps = 0
        config.log_every = 2
        config.optimizer.warmup_steps = 2
    return config
