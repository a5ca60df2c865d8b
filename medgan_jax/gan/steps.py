"""The jit-compiled GAN training step, shared by every GAN family.

One step = `n_critic` discriminator updates (each on its own slice of the real batch
and fresh latents) and one generator update, then the EMA and ADA updates. The
generator's forward pass of the last critic update is reused for the generator update
through `jax.vjp` (as PyTorch's DCGAN reuses `fake`), so G runs forward once per step.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from medgan_jax import training
from medgan_jax.augment import ada, diffaugment
from medgan_jax.gan import losses, transfer
from medgan_jax.gan.state import GANState, optimizers


def discriminator_augment(cfg: ml_collections.ConfigDict) -> Callable:
    """(images, key, p) -> augmented images, for D's inputs (real and fake alike)."""
    if cfg.augment == "diffaugment":
        return lambda x, key, p: diffaugment.diff_augment(x, key, cfg.diffaugment_policy)
    if cfg.augment == "ada":
        return lambda x, key, p: ada.augment(x, key, p)
    if cfg.augment in ("", "none"):
        return lambda x, key, p: x
    raise ValueError(f"config.gan.augment='{cfg.augment}'; expected '', 'diffaugment' or 'ada'.")


def make_train_step(
    generator: nn.Module,
    discriminator: nn.Module,
    cfg: ml_collections.ConfigDict,
    per_module: bool = False,
):
    """Returns train_step(state, batch) -> (state, metrics); jit it with shardings.
    `per_module` as in `state.optimizers`."""
    g_tx, d_tx = optimizers(cfg, per_module)
    augment = discriminator_augment(cfg)
    _, freeze_d_layers = transfer.init_config(cfg)
    acgan = getattr(discriminator, "conditioning", "") == "acgan"
    num_classes = getattr(generator, "num_classes", 0)
    if cfg.wrong_label_weight and num_classes < 2:
        raise ValueError(
            "config.gan.wrong_label_weight needs a class-conditional GAN with 2+ classes."
        )
    if cfg.fake_labels not in ("data", "uniform"):
        raise ValueError(f"config.gan.fake_labels='{cfg.fake_labels}'; expected data or uniform.")

    def fake_labels_for(key, labels):
        """The fakes' class ids: the real batch's, or (BAGAN) uniform over the classes."""
        if cfg.fake_labels == "uniform" and num_classes > 1 and labels.ndim == 1:
            return jax.random.randint(key, labels.shape, 0, num_classes, labels.dtype)
        return labels

    def wrong_labels(key, labels):
        """Another class for every image (uniform over the other classes)."""
        shift = jax.random.randint(key, labels.shape, 1, max(num_classes, 2), labels.dtype)
        return (labels + shift) % max(num_classes, 2)

    def run_d(params, stats, images, labels, kw):
        (logits, class_logits), new = discriminator.apply(
            {"params": params, "batch_stats": stats},
            images,
            labels,
            train=True,
            mutable=["batch_stats"],
            **kw,
        )
        return logits, class_logits, new.get("batch_stats", stats)

    def run_g(params, stats, z, labels, kw):
        fake, new = generator.apply(
            {"params": params, "batch_stats": stats},
            z,
            labels,
            train=True,
            mutable=["batch_stats"],
            **kw,
        )
        return fake, new.get("batch_stats", stats)

    def class_loss(class_logits, labels):
        if labels.ndim == 2:  # multi-hot label vectors: one sigmoid per label
            return optax.sigmoid_binary_cross_entropy(class_logits, labels).mean()
        return optax.softmax_cross_entropy_with_integer_labels(class_logits, labels).mean()

    def d_loss_fn(params, stats, real, fake, labels, fake_labels, key, p, kw):
        k_real, k_fake, k_gp = jax.random.split(key, 3)
        real, fake = augment(real, k_real, p), augment(fake, k_fake, p)
        real_logits, real_cls, stats = run_d(params, stats, real, labels, kw)
        fake_logits, fake_cls, stats = run_d(params, stats, fake, fake_labels, kw)
        loss = losses.discriminator_loss(cfg.loss, real_logits, fake_logits)
        critic = lambda x: run_d(params, stats, x, labels, kw)[0]
        if cfg.gp_weight:
            loss += cfg.gp_weight * losses.gradient_penalty(critic, real, fake, k_gp)
        if cfg.drift:
            loss += cfg.drift * losses.drift_penalty(real_logits)
        if cfg.r1_gamma:
            loss += 0.5 * cfg.r1_gamma * losses.r1_penalty(critic, real)
        if cfg.wrong_label_weight:  # BAGAN-GP: real images with a wrong label count as fake
            wrong = wrong_labels(jax.random.fold_in(key, 1), labels)
            wrong_logits, _, stats = run_d(params, stats, real, wrong, kw)
            loss += cfg.wrong_label_weight * losses.fake_term(cfg.loss, wrong_logits)
        if acgan:
            loss += cfg.acgan_weight * (
                class_loss(real_cls, labels) + class_loss(fake_cls, fake_labels)
            )
        return loss, (stats, real_logits, fake_logits)

    def g_loss_fn(fake, d_params, d_stats, labels, key, p, kw):
        logits, cls, d_stats = run_d(d_params, d_stats, augment(fake, key, p), labels, kw)
        loss = losses.generator_loss(cfg.loss, logits)
        if acgan:
            loss += cfg.acgan_weight * class_loss(cls, labels)
        return loss, d_stats

    def train_step(state: GANState, batch: dict, **model_kwargs) -> tuple[GANState, dict]:
        """One step; `model_kwargs` (e.g. PGGAN's fade-in alpha) go to both networks."""
        key = jax.random.fold_in(state.key, state.step)
        n, kw = cfg.n_critic, model_kwargs
        # [n * B] -> [B, n]: row groups stay on their device, so slicing needs no transfer.
        reals = batch["image"].reshape(-1, n, *batch["image"].shape[1:])
        labels = batch["label"].reshape(-1, n, *batch["label"].shape[1:])
        g_params, g_stats, d_params, d_stats = (
            state.g_params,
            state.g_stats,
            state.d_params,
            state.d_stats,
        )
        d_opt, ada_state = state.d_opt, state.ada
        frozen_d = []
        if freeze_d_layers:  # D's lower layers, found by tracing its forward pass once
            variables = {"params": state.d_params, "batch_stats": state.d_stats}
            example = (reals[:1, 0], labels[:1, 0])
            order = transfer.call_order(discriminator, variables, *example, train=False, **kw)
            frozen_d = transfer.frozen_modules(order, freeze_d_layers)
        for i in range(n):
            # k_z and k_d as in earlier releases, so their runs reproduce exactly.
            k_z, k_d = jax.random.split(jax.random.fold_in(key, i))
            real, y = reals[:, i], labels[:, i]
            y_fake = fake_labels_for(jax.random.fold_in(k_z, 1), y)
            z = jax.random.normal(k_z, (real.shape[0], cfg.latent_dim), real.dtype)
            if i == n - 1:  # keep G's pullback for the generator update
                fake, g_pullback, g_stats = jax.vjp(
                    lambda p, stats=g_stats, z=z, y=y_fake: run_g(p, stats, z, y, kw),
                    g_params,
                    has_aux=True,
                )
            else:
                fake, g_stats = run_g(g_params, g_stats, z, y_fake, kw)
            (d_loss, (d_stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(
                d_loss_fn, has_aux=True
            )(
                d_params,
                d_stats,
                real,
                jax.lax.stop_gradient(fake),
                y,
                y_fake,
                k_d,
                ada_state.p,
                kw,
            )
            updates, d_opt = d_tx.update(d_grads, d_opt, d_params)
            d_params = optax.apply_updates(d_params, updates)
            if frozen_d:  # FreezeD: the lower layers keep their exact arrays
                d_params = transfer.keep_frozen(d_params, state.d_params, frozen_d)
            ada_state = ada.accumulate(ada_state, real_logits)
        (g_loss, d_stats), d_fake = jax.value_and_grad(g_loss_fn, has_aux=True)(
            fake, d_params, d_stats, y_fake, jax.random.fold_in(key, n), ada_state.p, kw
        )
        (g_grads,) = g_pullback(d_fake)
        updates, g_opt = g_tx.update(g_grads, state.g_opt, g_params)
        g_params = optax.apply_updates(g_params, updates)
        ema = update_ema(state.ema_params, g_params, state.step, cfg.ema_decay)
        if cfg.augment == "ada":
            ada_state = ada.maybe_update(
                ada_state,
                state.step + 1,
                real.shape[0] * n,
                cfg.ada_target,
                cfg.ada_adjust_kimg,
                cfg.ada_interval,
            )
        watched = (d_loss, g_loss, optax.global_norm(g_params), optax.global_norm(d_params))
        # Steps are counted from 1 in logs and checkpoints: step s leaves state.step == s.
        first_bad = training.first_bad_step(state.first_bad_step, state.step, jnp.stack(watched))
        new_state = state.replace(
            step=state.step + 1,
            g_params=g_params,
            g_stats=g_stats,
            d_params=d_params,
            d_stats=d_stats,
            g_opt=g_opt,
            d_opt=d_opt,
            ema_params=ema,
            ada=ada_state,
            first_bad_step=first_bad,
        )
        metrics = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "d_real": jnp.mean(real_logits),
            "d_fake": jnp.mean(fake_logits),
            "d_grad_norm": optax.global_norm(d_grads),
            "g_grad_norm": optax.global_norm(g_grads),
            "ada_p": ada_state.p,
        }
        return new_state, metrics

    return train_step


def update_ema(ema_params, params, step: jax.Array, ema_decay: float):
    """The EMA of the weights after `step` (0-based) updates. Warm-up (as
    tf.train.ExponentialMovingAverage's num_updates): early on the EMA would otherwise be
    mostly the random initialisation (0.999^500 = 61%)."""
    step = step.astype(jnp.float32)
    decay = jnp.minimum(ema_decay, (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def make_generate(generator: nn.Module, bn_momentum: float = 0.9):
    """(calibrate, generate): BatchNorm statistics for given weights, and inference.

    The EMA weights never ran forward during training, so the live generator's BatchNorm
    running statistics do not fit them. Like "precise BN", `calibrate(params, stats_like,
    z, labels)` recomputes them from one large batch of fixed calibration latents, so
    images stay deterministic and independent of how many are generated per call;
    `generate(params, stats, z, labels, **model_kwargs)` then runs the generator in
    inference mode. A generator without BatchNorm needs no calibration.
    """

    def calibrate(params, stats_like, z, labels):
        if not jax.tree.leaves(stats_like):
            return stats_like
        zeros = jax.tree.map(jnp.zeros_like, stats_like)
        _, new = generator.apply(
            {"params": params, "batch_stats": zeros}, z, labels, train=True, mutable=["batch_stats"]
        )
        # Starting from zeros, one update leaves (1 - momentum) * batch statistic.
        return jax.tree.map(lambda s: s / (1.0 - bn_momentum), new.get("batch_stats", {}))

    def generate(params, stats, z, labels, **model_kwargs):
        variables = {"params": params, "batch_stats": stats}
        return generator.apply(variables, z, labels, train=False, **model_kwargs)

    return calibrate, generate


def calibration_latents(seed: int, latent_dim: int, num_classes: int, num: int = 512):
    """Fixed latents (and cycling class ids) for BatchNorm calibration of a generator."""
    z = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(seed), 7919), (num, latent_dim))
    return z, jnp.arange(num, dtype=jnp.int32) % max(num_classes, 1)
