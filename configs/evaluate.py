"""Evaluation of generated images (IS, FID, KID, precision/recall/density/coverage, MS-SSIM
diversity, memorisation) and of classifiers (metrics with bootstrap CIs, DeLong's test),
written to --workdir.

Run (after the runs the README's "Evaluating" section lists: the DCGAN in
runs/dcgan_readme, SimpleCNN on all data in runs/clf_all and on 100 images per class in
runs/clf_100):
  python evaluate.py --config=configs/evaluate.py:synthetic_lesions --workdir=runs/eval
or, after the README's BAGAN-GP and class-conditional DCGAN runs (5% malignant),
  python evaluate.py --config=configs/evaluate.py:balancing --workdir=runs/eval_balancing
or, for the README's diffusion model against a DCGAN on the same images at 32x32
(scripts/readme_diffusion.sh trains both and the feature classifier, then runs)
  python evaluate.py --config=configs/evaluate.py:diffusion_vs_dcgan --workdir=runs/eval_diffusion
It writes metrics.json, report.md (also printed), roc.png and, per generated set,
NAME/sample_grid.png (generated above, real below) and NAME/closest_pairs.png (each
generated image above its nearest training image).

Feature network for IS/FID/KID: `classifier` (a train_classifier.py run; the domain
"classifier score", works offline) or `inception` (Inception-v3 with ImageNet weights
from a local Keras file, e.g. inception_v3_weights_tf_dim_ordering_tf_kernels.h5;
nothing is downloaded). Presets name their sets and runs; point them elsewhere with
  --config.generated.dcgan.gan_workdir=runs/other --config.classifiers.all_data=runs/clf2
An entry left empty ('' workdir) is skipped; add entries by editing a preset.
"""

import ml_collections


def generated_set(gan_workdir: str, class_name: str = "", num: int = 1000, folder: str = ""):
    """One set of generated images: sampled from a GAN run, or read from `folder`."""
    return ml_collections.ConfigDict(
        dict(
            gan_workdir=gan_workdir, class_name=class_name, num=num, seed=0, step=-1, folder=folder
        )
    )


def get_config(preset: str = "synthetic_lesions") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.job = "evaluate"  # evaluate.py evaluates (configs/study.py sets "study")
    config.seed = 0
    config.num_devices = 0  # 0 = all
    config.batch_size = 64  # images per feature-network call (a multiple of the devices)
    config.features = ml_collections.ConfigDict(
        dict(network="classifier", classifier_workdir="runs/clf_all", inception_weights="")
    )
    # name -> generated_set(...); real images come from the GAN run's own data.
    config.generated = ml_collections.ConfigDict()
    config.reference_split = "train"  # real images for FID/KID/IS: 'train' (the GAN's) or 'test'
    config.max_real = 10000
    config.is_splits = 10
    config.kid_subsets = 100
    config.kid_subset_size = 1000
    # Precision/recall (Kynkäänniemi et al. 2019), density/coverage (Naeem et al. 2020):
    # the k of each point's k-nearest-neighbour ball, in the FID/KID feature space.
    config.prdc_k = 3
    # Fewest images per set (generated and real) a metric is reported from; below, the
    # result is None with '<key>_na_reason' ("N = 10 < 50: ...") and the report says n/a.
    # IS needs is_splits x is_per_split (10 x 5 = 50); FID/KID/PRDC 50 (PRDC at least k + 1).
    config.min_samples = ml_collections.ConfigDict(dict(is_per_split=5, fid=50, kid=50, prdc=50))
    config.memorization = ml_collections.ConfigDict(
        dict(quantile=0.5, copy_tolerance=1e-3, reference_sample=2000, num_pairs=16)
    )
    # name -> train_classifier.py workdir (or its test_predictions.npz); the first is the
    # baseline every other run is tested against with DeLong's test.
    config.classifiers = ml_collections.ConfigDict()
    config.bootstrap = ml_collections.ConfigDict(dict(n_resamples=1000, confidence=0.95, seed=0))
    if preset == "synthetic_lesions":
        config.generated.dcgan = generated_set("runs/dcgan_readme", "malignant")
        config.classifiers.all_data = "runs/clf_all"
        config.classifiers.per_class_100 = "runs/clf_100"
    elif preset == "diffusion_vs_dcgan":  # the same 922 malignant training images, 32x32
        config.generated.dcgan = generated_set("runs/dcgan32_readme", "malignant")
        config.generated.diffusion = generated_set("runs/diffusion32_readme", "malignant")
        config.features.classifier_workdir = "runs/clf_all32"
        config.classifiers.all_data = "runs/clf_all32"
    elif preset == "balancing":  # BAGAN-GP vs a class-conditional DCGAN, 5% malignant
        for name, workdir in (("bagan", "runs/bagan_readme"), ("cdcgan", "runs/cdcgan_readme")):
            for class_name in ("malignant", "benign"):
                config.generated[f"{name}_{class_name}"] = generated_set(workdir, class_name)
        config.reference_split = "test"  # the GANs saw only ~55 malignant training images
    elif preset == "smoke":  # tests fill in the paths
        config.generated.dcgan = generated_set("", "malignant", num=64)
        config.classifiers.baseline = ""
        config.classifiers.other = ""
        config.batch_size = 16
        config.kid_subsets = 10
        config.bootstrap.n_resamples = 100
    else:
        raise ValueError(
            f"Unknown preset '{preset}'; expected synthetic_lesions, balancing or smoke."
        )
    return config
