"""A denoising diffusion model (EDM, Karras et al. 2022) on one class (or all classes,
with classifier-free guidance) of a dataset preset.

Run:
  python train_gan.py --config=configs/diffusion.py:synthetic_lesions --workdir=runs/diffusion
It trains the U-Net (models/unet.py) on the malignant lesions, prints a progress line
every `log_every` steps, writes TensorBoard scalars + metrics.jsonl, a sample grid from
fixed noise samples/step_XXXXXX.png every `sample_every` steps and Orbax checkpoints to
--workdir; re-running the command resumes. Then
  python -m medgan_jax.gan.sample --workdir=runs/diffusion --num=1000 --sample_steps=18
writes 1000 PNGs from the EMA weights with the Heun sampler (2 * steps - 1 network
evaluations per image) plus a manifest. A class-conditional model
(--config.gan.conditional=embedding --config.gan.classes='()') samples one class with
--class_name and --guidance (0: unconditional, 1: conditional, > 1: guided).

Presets: synthetic_lesions, synthetic_cxr, skin_cancer, covid_xray, chexpert,
nih_chestxray14, siim_isic, siim_isic_dicom, rsna_pneumonia, smoke.
"""

import ml_collections

from configs import dcgan
from configs.data import data_config


def diffusion_config() -> ml_collections.ConfigDict:
    """The U-Net, EDM's noise levels and loss, and the sampler."""
    return ml_collections.ConfigDict(
        dict(
            width=64,  # feature maps of the first level (diffusers' block_out_channels[0])
            channel_mult=(1, 2, 2, 2),  # per level (the resolution halves between levels)
            num_res_blocks=2,
            attention_resolutions=(16,),  # self-attention at these feature-map sizes
            head_dim=32,  # channels per attention head
            num_groups=32,  # GroupNorm groups (must divide every level's width)
            dropout=0.1,
            sigma_data=0.5,  # the data's standard deviation (images in [-1, 1])
            p_mean=-1.2,  # training noise levels: ln(sigma) ~ N(p_mean, p_std^2)
            p_std=1.2,
            xflip=True,  # horizontal flips of the training images
            label_dropout=0.1,  # conditional models: class id dropped (for guidance)
            warmup_steps=200,  # linear learning-rate ramp
            sample_steps=18,  # Heun sampler: 2 * sample_steps - 1 network evaluations
            guidance=1.0,  # D(none) + guidance * (D(class) - D(none)); 1 = conditional
            sigma_min=0.002,
            sigma_max=80.0,
            rho=7.0,
        )
    )


def get_config(preset: str = "synthetic_lesions") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = data_config(preset)
    config.gan = dcgan.gan_config()  # the training-core fields (classes, EMA, init, lr)
    config.gan.update(
        family="diffusion",
        classes=dcgan.MINORITY_CLASS.get(preset, ()),
        g_lr=2e-4,
        g_betas=(0.9, 0.999),
        ema_decay=0.999,
        augment="",
    )
    config.diffusion = diffusion_config()
    config.precision = "float32"  # bfloat16: mixed precision (GPUs and TPUs)
    config.batch_size = 64
    config.num_steps = 20000
    config.num_devices = 0  # 0 = all
    config.log_every = 100
    config.sample_every = 2000
    config.checkpoint_every = 2000
    config.keep_checkpoints = 3
    config.grid_size = 8
    if config.data.image_size >= 128:  # attention where the maps are 16x16 and 8x8
        config.diffusion.update(channel_mult=(1, 1, 2, 2, 4), attention_resolutions=(16, 8))
    if preset == "smoke":
        config.data.image_size = 16
        config.diffusion.update(
            width=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8,),
            head_dim=8, num_groups=4, dropout=0.0, warmup_steps=0, sample_steps=3,
        )  # fmt: skip
        config.batch_size = 8
        config.num_steps = 6
        config.log_every = 2
        config.sample_every = 3
        config.checkpoint_every = 3
        config.grid_size = 2
    return config
