"""BAGAN-GP (Huang & Jafari 2021): a balancing GAN for the minority class of an imbalanced set.

Run:
  python train_gan.py --config=configs/bagan.py:synthetic_lesions --workdir=runs/bagan
It trains on every class: first the supervised autoencoder (`bagan.autoencoder_steps`,
mean absolute error; progress lines, runs/bagan/autoencoder/metrics.jsonl and a
reconstruction grid samples/autoencoder.png), then G from its decoder and D from its
encoder, fine-tuned adversarially with the published loss: BCE on real, fake and real
images with a wrong label, gradient penalty 10, 5 D updates per G update, Adam 2e-4
(0.5, 0.9), fake labels drawn uniformly over the classes (the balancing). Both stages
checkpoint and resume. Then, per class,
  python -m medgan_jax.gan.sample --workdir=runs/bagan --num=1000 --class_name=malignant \
      --out=runs/bagan/generated

Presets: synthetic_lesions (64x64, malignant reduced to 5% of the benign count, as in the
published imbalanced runs), skin_cancer, covid_xray, synthetic_cxr is not supported
(multi-label: use the conditional PGGAN), smoke (seconds). `bagan.latent_sampling`:
'embedding' (BAGAN-GP) or 'class_gaussian' (BAGAN: per-class Gaussians fitted to the
encoded training images).
"""

import ml_collections

from configs.data import data_config
from configs.dcgan import gan_config

MINORITY = {
    "synthetic_lesions": "malignant",
    "skin_cancer": "malignant",
    "covid_xray": "COVID19",
    "siim_isic": "malignant",
    "siim_isic_dicom": "malignant",
    "rsna_pneumonia": "pneumonia",
}


def bagan_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            width=64,  # encoder feature maps width * (1, 2, 2, 4, ...): 64-128-128-256 at 64x64
            latent_sampling="embedding",  # embedding (BAGAN-GP) | class_gaussian (BAGAN)
            autoencoder_steps=3000,
            autoencoder_batch_size=128,
            autoencoder_lr=2e-4,
            autoencoder_betas=(0.5, 0.9),
            init_discriminator=True,  # D's trunk from the encoder (the published method)
        )
    )


def get_config(preset: str = "synthetic_lesions") -> ml_collections.ConfigDict:
    if preset not in (*MINORITY, "smoke"):
        raise ValueError(
            f"Unknown BAGAN preset '{preset}'; expected one of {[*MINORITY, 'smoke']}."
        )
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = data_config("synthetic_lesions" if preset == "smoke" else preset)
    config.data.subset.update(
        imbalance_ratio=20.0, minority_class=MINORITY.get(preset, "malignant")
    )
    # float32 | bfloat16 (mixed precision: bfloat16 compute, float32 parameters, optimizer
    # states, BatchNorm statistics and losses; for GPUs and TPUs, slower on CPUs).
    config.precision = "float32"
    config.gan = gan_config()
    config.gan.update(
        family="bagan",
        classes=(),  # every class: the majority teaches the minority
        latent_dim=128,
        loss="nonsaturating",
        gp_weight=10.0,
        n_critic=5,
        g_lr=2e-4,
        d_lr=2e-4,
        g_betas=(0.5, 0.9),
        d_betas=(0.5, 0.9),
        fake_labels="uniform",
        wrong_label_weight=1.0,
        augment="",
    )
    config.bagan = bagan_config()
    config.batch_size = 64  # per D update; one step uses n_critic batches
    config.num_steps = 4000
    config.num_devices = 0
    config.log_every = 100
    config.sample_every = 500
    config.checkpoint_every = 500
    config.keep_checkpoints = 3
    config.grid_size = 8
    if preset in ("skin_cancer", "covid_xray", "siim_isic", "siim_isic_dicom", "rsna_pneumonia"):
        config.data.image_size = 128
        config.bagan.autoencoder_steps = 6000
        config.num_steps = 20_000
    elif preset == "smoke":
        config.data.image_size = 32
        config.data.subset.imbalance_ratio = 4.0
        config.gan.latent_dim = 16
        config.bagan.update(width=8, autoencoder_steps=4, autoencoder_batch_size=16)
        config.batch_size = 8
        config.num_steps = 4
        config.log_every = 2
        config.sample_every = 2
        config.checkpoint_every = 2
        config.grid_size = 4
    return config
