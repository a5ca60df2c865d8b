"""DCGAN on one class (or all classes, conditionally) of a dataset preset.

Run:
  python train_gan.py --config=configs/dcgan.py:synthetic_lesions --workdir=runs/dcgan
It trains on the malignant lesions only (as the seeds did), prints a progress line
every `log_every` steps, writes TensorBoard scalars + metrics.jsonl, a sample grid
samples/step_XXXXXX.png every `sample_every` steps and Orbax checkpoints every
`checkpoint_every` steps to --workdir; re-running the command resumes. Then
  python -m medgan_jax.gan.sample --workdir=runs/dcgan --num=1000 --out=runs/dcgan/generated
writes 1000 PNGs from the EMA generator plus a manifest.

Presets: synthetic_lesions, synthetic_cxr, skin_cancer, covid_xray, chexpert,
nih_chestxray14, siim_isic, siim_isic_dicom, rsna_pneumonia, smoke.
Resolution is data.image_size (32, 64, 128; 256 runs but DCGAN is known to fail
there — the seeds needed PGGAN for 256x256).
"""

import ml_collections

from configs.data import data_config

MINORITY_CLASS = {
    "synthetic_lesions": ("malignant",),
    "skin_cancer": ("malignant",),
    "covid_xray": ("COVID19",),
    "smoke": ("malignant",),
    "synthetic_cxr": ("Lung Lesion",),  # images positive for the rare label
    "chexpert": ("Lung Lesion",),
    "nih_chestxray14": ("Hernia",),  # the rarest finding
    "siim_isic": ("malignant",),
    "siim_isic_dicom": ("malignant",),
    "rsna_pneumonia": ("pneumonia",),
}


def gan_config() -> ml_collections.ConfigDict:
    """The training-core knobs shared by every GAN family (DCGAN defaults)."""
    return ml_collections.ConfigDict(
        dict(
            family="dcgan",
            classes=(),  # train on these classes only; () = all
            conditional="",  # '' | 'projection' | 'acgan' (one G for all classes)
            latent_dim=100,
            g_width=64,  # ngf
            d_width=64,  # ndf
            max_width_mult=8,
            loss="nonsaturating",  # nonsaturating | hinge | wgan
            n_critic=1,
            gp_weight=0.0,  # WGAN-GP lambda (10 in Gulrajani et al.)
            drift=0.0,  # PGGAN's epsilon_drift (0.001)
            r1_gamma=0.0,
            acgan_weight=1.0,
            fake_labels="data",  # class ids of fakes: the real batch's | uniform (balancing)
            wrong_label_weight=0.0,  # BAGAN-GP: D's loss on real images with wrong labels
            g_lr=2e-4,
            d_lr=2e-4,
            g_betas=(0.5, 0.999),
            d_betas=(0.5, 0.999),
            adam_eps=1e-8,
            ema_decay=0.999,
            augment="diffaugment",  # '' | diffaugment | ada
            diffaugment_policy="color,translation,cutout",
            ada_target=0.6,
            ada_interval=4,
            ada_adjust_kimg=500.0,
            ada_initial_p=0.0,
            # Transfer: start from another GAN run's networks (same family and shapes), with
            # D's first freeze_d_layers layers fixed (FreezeD); see medgan_jax/gan/transfer.py.
            init=dict(from_run="", freeze_d_layers=0),
            # Enlarge the GAN's training set with one filtered copy of every image per
            # switch that is on (the CheXpert PGGAN seed); see medgan_jax/gan/filtered.py.
            filter_copies=dict(
                gaussian_blur=False,
                blur_sigma=1.0,  # pixels at data.image_size
                unsharp_mask=False,
                unsharp_sigma=1.0,
                unsharp_amount=1.0,  # x + amount * (x - blur(x))
                minimum_filter=False,
                minimum_size=3,  # window side in pixels
            ),
        )
    )


def get_config(preset: str = "synthetic_lesions") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = data_config(preset)
    config.gan = gan_config()
    config.gan.classes = MINORITY_CLASS.get(preset, ())
    # float32 | bfloat16 (mixed precision: bfloat16 compute, float32 parameters, optimizer
    # states, BatchNorm statistics and losses; for GPUs and TPUs, slower on CPUs).
    config.precision = "float32"
    config.batch_size = 64
    config.num_steps = 3000
    config.num_devices = 0  # 0 = all
    config.log_every = 50
    config.sample_every = 500
    config.checkpoint_every = 500
    config.keep_checkpoints = 3
    config.grid_size = 8  # sample grid is grid_size x grid_size
    if preset == "smoke":
        config.data.image_size = 32
        config.gan.update(g_width=8, d_width=8, latent_dim=16)
        config.batch_size = 16
        config.num_steps = 6
        config.log_every = 2
        config.sample_every = 3
        config.checkpoint_every = 3
        config.grid_size = 4
    return config
