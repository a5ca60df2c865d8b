"""The diffusion family: EDM (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models") around the U-Net of models/unet.py.

- `Denoiser`: D(x; sigma) = c_skip x + c_out F(c_in x, ln(sigma) / 4), the paper's
  preconditioning with sigma_data (0.5 for images in [-1, 1]).
- Training: noise levels log-normal (P_mean, P_std), loss weight
  (sigma^2 + sigma_data^2) / (sigma sigma_data)^2, optional x-flips, label dropout for
  classifier-free guidance, an EMA of the weights for sampling.
- Sampling: the deterministic Heun sampler (Algorithm 1, S_churn = 0) over the paper's
  rho-spaced noise levels, the whole loop one `lax.scan` inside one compiled program;
  guidance D = D(x; none) + w (D(x; y) - D(x; none)) (w = 0: unconditional, 1: conditional).
  The sampler's input is the unit noise image, so a GAN-style latent of
  image_size^2 * channels values per image makes sampling deterministic per image and
  independent of the batch size, and the family shares the GANs' sampling code.

The state is a `GANState` whose discriminator fields are empty, so checkpoints, resume,
transfer (`gan.init.from_run`) and the training loop are the GANs' own.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from medgan_jax import training
from medgan_jax.augment import ada
from medgan_jax.gan import phases
from medgan_jax.gan.state import GANState
from medgan_jax.gan.steps import update_ema
from medgan_jax.models.unet import UNet


class Denoiser(nn.Module):
    """(noisy images [N, R, R, C], sigma [N], class ids [N]) -> denoised images."""

    unet: UNet
    sigma_data: float = 0.5

    def __call__(self, x: jax.Array, sigma: jax.Array, labels: jax.Array, train: bool = False):
        s = sigma.astype(jnp.float32)[:, None, None, None]
        c_skip, c_out, c_in = preconditioning(s, self.sigma_data)
        out = self.unet(c_in * x, jnp.log(sigma) / 4, labels, train)
        return c_skip * x + c_out * out


def preconditioning(sigma: jax.Array, sigma_data: float) -> tuple[jax.Array, ...]:
    """EDM's (c_skip, c_out, c_in): the network's input and target both have unit variance
    for data of standard deviation sigma_data at every noise level."""
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / jnp.sqrt(total), 1 / jnp.sqrt(total)


def build(config: ml_collections.ConfigDict, num_classes: int) -> tuple[Denoiser, None]:
    """The family table's `build`: (denoiser, no discriminator)."""
    d = config.diffusion
    unet = UNet(
        channels=config.data.channels,
        width=d.width,
        channel_mult=tuple(d.channel_mult),
        num_res_blocks=d.num_res_blocks,
        attention_resolutions=tuple(d.attention_resolutions),
        head_dim=d.head_dim,
        num_groups=d.num_groups,
        dropout=d.dropout,
        num_classes=num_classes,
        dtype=training.compute_dtype(config),
    )
    return Denoiser(unet, sigma_data=d.sigma_data), None


def latent_dim(config: ml_collections.ConfigDict) -> int:
    """Values per image of the sampler's input noise."""
    return config.data.image_size**2 * config.data.channels


# ---------------------------------------------------------------------------- training


def noise_levels(key: jax.Array, n: int, p_mean: float, p_std: float) -> jax.Array:
    """Training noise levels: ln(sigma) ~ N(p_mean, p_std^2)."""
    return jnp.exp(p_mean + p_std * jax.random.normal(key, (n,)))


def add_noise(images: jax.Array, sigma: jax.Array, key: jax.Array) -> jax.Array:
    """The forward process: x = y + sigma n, n ~ N(0, I), per image."""
    return images + sigma[:, None, None, None] * jax.random.normal(key, images.shape)


def loss_weight(sigma: jax.Array, sigma_data: float) -> jax.Array:
    """EDM's lambda(sigma) = 1 / c_out(sigma)^2: unit weight on the network's own target."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def weighted_loss(denoised, images, sigma, sigma_data: float) -> jax.Array:
    """The batch mean of lambda(sigma) ||D(y + n; sigma) - y||^2 / pixels."""
    per_image = jnp.mean((denoised - images) ** 2, axis=(1, 2, 3))
    return jnp.mean(loss_weight(sigma, sigma_data) * per_image)


def optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam with config.gan's generator settings, the rate ramped up linearly over
    config.diffusion.warmup_steps."""
    g, warmup = config.gan, config.diffusion.warmup_steps
    rate = optax.linear_schedule(0.0, g.g_lr, warmup) if warmup > 0 else g.g_lr
    return optax.adam(rate, b1=g.g_betas[0], b2=g.g_betas[1], eps=g.adam_eps)


def create_state(config, denoiser: Denoiser, sharding=None) -> GANState:
    """The initial state from config.seed (one compiled program per process per shapes)."""
    shape = (config.data.image_size, config.data.image_size, config.data.channels)
    key = ("diffusion-init", denoiser, shape, training.config_key(config.gan, config.diffusion))
    state = training.built_once(key, lambda: jax.jit(_make_init(config, denoiser, shape)))(
        config.seed
    )
    return state if sharding is None else jax.device_put(state, sharding)


def _make_init(config, denoiser: Denoiser, shape):
    tx = optimizer(config)

    def init(seed) -> GANState:
        key = jax.random.PRNGKey(seed)
        params = denoiser.init(
            jax.random.fold_in(key, 2**31 - 1),
            jnp.zeros((2, *shape)),
            jnp.ones((2,)),
            jnp.zeros((2,), jnp.int32),
        )["params"]
        return GANState(
            step=jnp.zeros((), jnp.int32),
            key=key,
            g_params=params,
            g_stats={},
            d_params={},
            d_stats={},
            g_opt=tx.init(params),
            d_opt=(),
            ema_params=jax.tree.map(jnp.copy, params),
            ada=ada.AdaState.create(0.0),
            first_bad_step=jnp.full((), -1, jnp.int32),
        )

    return init


def make_train_step(denoiser: Denoiser, config: ml_collections.ConfigDict):
    """train_step(state, batch) -> (state, metrics): one denoising-loss update + EMA."""
    d, tx = config.diffusion, optimizer(config)
    num_classes = denoiser.unet.num_classes

    def loss_fn(params, images, labels, key):
        k_sigma, k_noise, k_drop, k_dropout = jax.random.split(key, 4)
        n = images.shape[0]
        sigma = noise_levels(k_sigma, n, d.p_mean, d.p_std)
        noisy = add_noise(images, sigma, k_noise)
        if num_classes:  # classifier-free guidance learns D(x; no class) from dropped labels
            dropped = jax.random.uniform(k_drop, (n,)) < d.label_dropout
            labels = jnp.where(dropped, num_classes, labels)
        denoised = denoiser.apply(
            {"params": params}, noisy, sigma, labels, train=True, rngs={"dropout": k_dropout}
        )
        return weighted_loss(denoised, images, sigma, d.sigma_data)

    def train_step(state: GANState, batch: dict) -> tuple[GANState, dict]:
        key = jax.random.fold_in(state.key, state.step)
        k_flip, k_loss = jax.random.split(key)
        images, labels = batch["image"], batch["label"]
        if d.xflip:
            flip = jax.random.bernoulli(k_flip, 0.5, (images.shape[0], 1, 1, 1))
            images = jnp.where(flip, images[:, :, ::-1], images)
        loss, grads = jax.value_and_grad(loss_fn)(state.g_params, images, labels, k_loss)
        updates, opt = tx.update(grads, state.g_opt, state.g_params)
        params = optax.apply_updates(state.g_params, updates)
        ema = update_ema(state.ema_params, params, state.step, config.gan.ema_decay)
        # As in the GAN step, the updated weights are watched too, so a bad update is
        # named at its own step.
        watched = jnp.stack([loss, optax.global_norm(params)])
        first_bad = training.first_bad_step(state.first_bad_step, state.step, watched)
        new_state = state.replace(
            step=state.step + 1,
            g_params=params,
            g_opt=opt,
            ema_params=ema,
            first_bad_step=first_bad,
        )
        return new_state, {"loss": loss, "grad_norm": optax.global_norm(grads)}

    return train_step


# ---------------------------------------------------------------------------- sampling


@dataclasses.dataclass(frozen=True)
class Sampler:
    """The Heun sampler's settings (config.diffusion's sample_* fields and guidance)."""

    num_steps: int = 18
    guidance: float = 1.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> Sampler:
        d = config.diffusion
        if d.sample_steps < 1:
            raise ValueError(f"config.diffusion.sample_steps={d.sample_steps}; expected >= 1.")
        return cls(d.sample_steps, float(d.guidance), d.sigma_min, d.sigma_max, d.rho)

    def sigmas(self) -> np.ndarray:
        """The noise levels t_0 = sigma_max > ... > t_{N-1} = sigma_min, then t_N = 0."""
        n = self.num_steps
        ramp = np.arange(n) / max(n - 1, 1)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        levels = (hi + ramp * (lo - hi)) ** self.rho
        return np.append(levels, 0.0).astype(np.float32)


def heun_sample(denoise, noise: jax.Array, sigmas) -> jax.Array:
    """EDM's deterministic sampler: from x = sigmas[0] * noise, Heun steps between the
    levels and one Euler step to sigma 0 (which lands on D(x; sigmas[-2])).
    `denoise(x, sigma)` with sigma a scalar; 2 * len(sigmas) - 3 evaluations."""
    sigmas = jnp.asarray(sigmas, jnp.float32)

    def heun_step(x, levels):
        t, t_next = levels
        slope = (x - denoise(x, t)) / t
        x_euler = x + (t_next - t) * slope
        slope_next = (x_euler - denoise(x_euler, t_next)) / t_next
        return x + (t_next - t) * 0.5 * (slope + slope_next), None

    x, _ = jax.lax.scan(heun_step, noise * sigmas[0], (sigmas[:-2], sigmas[1:-1]))
    return denoise(x, sigmas[-2])


def guided_denoiser(denoiser: Denoiser, params, labels: jax.Array, guidance: float):
    """(x, sigma) -> D(x; none) + w (D(x; labels) - D(x; none)); one network call per
    level (both halves in one batch when 0 < w != 1)."""
    num_classes = denoiser.unet.num_classes
    apply = lambda x, s, y: denoiser.apply({"params": params}, x, s, y)

    def denoise(x, sigma):
        s = jnp.full((x.shape[0],), sigma, jnp.float32)
        if not num_classes or guidance == 1:
            return apply(x, s, labels)
        none = jnp.full_like(labels, num_classes)
        if guidance == 0:
            return apply(x, s, none)
        both = apply(
            jnp.concatenate([x, x]), jnp.concatenate([s, s]), jnp.concatenate([labels, none])
        )
        cond, uncond = jnp.split(both, 2)
        return uncond + guidance * (cond - uncond)

    return denoise


def make_generate(denoiser: Denoiser, sampler: Sampler):
    """(calibrate, generate) as steps.make_generate: no statistics to calibrate; generate
    maps latents [N, R*R*C] (unit noise) and class ids to images in [-1, 1]."""
    sigmas = sampler.sigmas()
    channels = denoiser.unet.channels

    def calibrate(params, stats_like, z, labels):
        return stats_like

    def generate(params, stats, z, labels):
        size = math.isqrt(z.shape[1] // channels)
        noise = z.reshape(z.shape[0], size, size, channels)
        denoise = guided_denoiser(denoiser, params, labels, sampler.guidance)
        return jnp.clip(heun_sample(denoise, noise, sigmas), -1.0, 1.0)

    return calibrate, generate


def generate_programs(denoiser: Denoiser, sampler: Sampler) -> tuple:
    """(calibrate, generate) jitted once per process per denoiser and sampler."""
    return training.built_once(
        ("diffusion-generate", denoiser, sampler),
        lambda: tuple(map(jax.jit, make_generate(denoiser, sampler))),
    )


def training_phases(config, denoiser, discriminator, mesh, num_classes) -> list[phases.TrainPhase]:
    """The family table's `phases`: all of config.num_steps with one compiled step."""
    del discriminator
    key = phases.step_key("diffusion", denoiser, None, config.gan, mesh, config.diffusion)
    step_fn = training.built_once(
        key, lambda: training.jit_step(make_train_step(denoiser, config), mesh)
    )
    programs = generate_programs(denoiser, Sampler.from_config(config))
    grid = phases.SampleGrid(config, denoiser, num_classes, programs, latent_dim(config))
    return [
        phases.TrainPhase(
            first=0,
            last=config.num_steps,
            images_per_step=config.batch_size,
            data=config.data,
            run=lambda state, batch, step: step_fn(state, batch),
            save_grid=lambda state, path, step: grid.save(state, path),
        )
    ]
