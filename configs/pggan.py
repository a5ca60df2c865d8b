"""Progressive GAN (Karras et al. 2018), grown from 4x4 to data.image_size, per dataset preset.

Run:
  python train_gan.py --config=configs/pggan.py:synthetic_cxr --workdir=runs/pggan
It grows the network 4 -> 8 -> ... -> data.image_size: at every resolution a fade-in of
`pggan.fade_images` images (alpha 0 -> 1) and a stable phase of `pggan.stable_images`,
then `pggan.final_images` at the final resolution; the step is compiled once per
resolution and phase. It prints a progress line every `log_every` steps (with resolution,
alpha and kimg), writes TensorBoard scalars + metrics.jsonl, a sample grid
samples/step_XXXXXX.png every `sample_every` steps (the current resolution, upscaled to the
final size) and Orbax checkpoints every `checkpoint_every` steps; re-running the command
resumes at exactly the same resolution, phase and alpha. Then
  python -m medgan_jax.gan.sample --workdir=runs/pggan --num=1000 --out=runs/pggan/generated
writes 1000 PNGs at the final resolution from the EMA generator.

Presets: synthetic_cxr (256x256, default), synthetic_lesions (64x64), skin_cancer (256x256,
the seed's batch sizes and ~200 epochs), covid_xray, chexpert (256x256, filtering-augmented,
conditional on the multi-hot label vector), smoke (4 -> 16 in seconds). Published defaults:
WGAN-GP (lambda 10, drift 0.001), Adam 1e-3 (0, 0.99, 1e-8), EMA 0.999, fmap_base 8192,
fmap_max 512, latent 512, minibatch-stddev group 4, 600k + 600k images per resolution.
The 256x256 presets are sized for a GPU. On a laptop CPU use synthetic_lesions: 200k
images (8,125 steps); the README's run stops at 7,000 (182k images). Throughput:
benchmarks/pggan_throughput.py.
"""

import ml_collections

from configs.data import data_config
from configs.dcgan import MINORITY_CLASS, gan_config


def pggan_config() -> ml_collections.ConfigDict:
    """Architecture and growth schedule knobs (the published values)."""
    return ml_collections.ConfigDict(
        dict(
            fmap_base=8192,  # feature maps at stage s: min(fmap_base / 2^s, fmap_max)
            fmap_max=512,
            normalize_latents=True,  # pixel norm on the latent (+ label) input
            pixelnorm=True,  # after every generator convolution
            mbstd_group_size=4,  # minibatch stddev group; <= 1 disables the layer
            mbstd_num_features=1,
            initial_resolution=4,
            stable_images=600_000,  # per resolution, at alpha 1
            fade_images=600_000,  # per new resolution, alpha rising linearly 0 -> 1
            final_images=600_000,  # stable images at the final resolution (if num_steps=0)
            batch_sizes=(),  # per resolution 4, 8, 16, ...; () = config.batch_size for all
            reset_optimizer=True,  # fresh Adam state at every phase change (official)
        )
    )


def get_config(preset: str = "synthetic_cxr") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = data_config(preset)
    # float32 | bfloat16 (mixed precision: bfloat16 compute, float32 parameters, optimizer
    # states, BatchNorm statistics and losses; for GPUs and TPUs, slower on CPUs).
    config.precision = "float32"
    config.gan = gan_config()
    config.gan.update(
        family="pggan",
        classes=MINORITY_CLASS.get(preset, ()),
        latent_dim=512,
        loss="wgan",
        gp_weight=10.0,
        drift=0.001,
        n_critic=1,
        g_lr=1e-3,
        d_lr=1e-3,
        g_betas=(0.0, 0.99),
        d_betas=(0.0, 0.99),
        adam_eps=1e-8,
        ema_decay=0.999,
        augment="",  # the paper used none; 'diffaugment' or 'ada' for small data
    )
    config.pggan = pggan_config()
    config.batch_size = 16  # when pggan.batch_sizes is ()
    config.num_steps = 0  # 0 = the whole schedule; N = stop after N steps
    config.num_devices = 0  # 0 = all
    config.log_every = 100
    config.sample_every = 2000
    config.checkpoint_every = 2000
    config.keep_checkpoints = 3
    config.grid_size = 8
    p = config.pggan
    if preset == "synthetic_lesions":  # 64x64 on the 922 malignant lesions, CPU-sized
        config.data.image_size = 64
        # No DiffAugment: with WGAN-GP it collapsed the colours here (8x8 trial: std of the
        # samples' mean colour 0.03 with it, 0.18 without, 0.20 for the real images).
        config.gan.update(latent_dim=128, augment="")
        # Feature maps 128, 128, 64, 32, 16 at 4..64 (about DCGAN-32's widths).
        p.update(fmap_base=512, fmap_max=128, batch_sizes=(32, 32, 32, 32, 16))
        p.update(stable_images=20_000, fade_images=20_000, final_images=40_000)
        config.sample_every = config.checkpoint_every = 500
    elif preset == "synthetic_cxr":  # 256x256 on the rare 'Lung Lesion' X-rays (GPU-sized)
        config.data.update(image_size=256)
        config.data.synthetic.size = 256
        config.gan.conditional = "acgan"  # on the multi-hot label vector
        config.gan.filter_copies.update(gaussian_blur=True, unsharp_mask=True, minimum_filter=True)
        p.update(fmap_base=4096, fmap_max=256, batch_sizes=(64, 64, 64, 32, 32, 16, 16))
        p.update(stable_images=40_000, fade_images=40_000, final_images=80_000)
    elif preset == "skin_cancer":  # the seed: lr 1e-3, these batch sizes, ~200 epochs
        config.data.image_size = 256
        config.gan.augment = "diffaugment"
        p.batch_sizes = (32, 32, 32, 16, 16, 16, 16)
        # 13 phases x 18.4k images = 239k = 200 epochs of the 1197 malignant training images.
        p.update(stable_images=18_400, fade_images=18_400, final_images=18_400)
    elif preset == "covid_xray":
        config.data.image_size = 256
        config.gan.augment = "diffaugment"
        p.batch_sizes = (32, 32, 32, 16, 16, 16, 16)
        p.update(stable_images=60_000, fade_images=60_000, final_images=120_000)
    elif preset == "chexpert":  # the seed: rare classes at 256x256, filtering-augmented
        config.data.image_size = 256
        config.gan.conditional = "acgan"  # on the multi-hot label vector
        config.gan.filter_copies.update(gaussian_blur=True, unsharp_mask=True, minimum_filter=True)
        p.batch_sizes = (64, 64, 64, 32, 32, 16, 16)
        p.update(stable_images=100_000, fade_images=100_000, final_images=200_000)
    elif preset == "smoke":  # 4 -> 8 -> 16, two steps per phase
        config.data.image_size = 16
        config.gan.latent_dim = 16
        p.update(fmap_base=64, fmap_max=16, stable_images=32, fade_images=32, final_images=32)
        config.log_every = 1
        config.sample_every = 5
        config.checkpoint_every = 5
        config.grid_size = 4
    return config
