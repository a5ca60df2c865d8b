"""config.precision='bfloat16': bf16 compute, float32 parameters, statistics, optimizer
states and losses, for the classifier and every GAN family."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jex_core

from configs import bagan as bagan_config
from configs import classifier as classifier_config
from configs import dcgan as dcgan_config
from configs import pggan as pggan_config
from medgan_jax import parallel, training
from medgan_jax.classify.state import build_model, create_state, make_optimizer
from medgan_jax.classify.steps import make_train_step as classifier_step
from medgan_jax.gan import families, progressive
from medgan_jax.gan.state import create_state as gan_state
from medgan_jax.gan.steps import make_train_step as gan_step

# bfloat16 keeps 8 significant bits: each rounding is off by up to 2^-9 = 0.2% relative.
# Through these 3-5 layer smoke networks (sums of up to a few hundred terms whose errors
# partly cancel) the losses agree to about 1%: measured (2026-12-02) 0.05-0.1% for the
# classifier's BCE (0.697 vs 0.697), 0.01-0.07% for DCGAN's, 0.9% for PGGAN's G loss
# (0.664 vs 0.658). 3% relative (+0.01 absolute, for losses near 0) leaves 3x room and
# still fails for the errors that matter: bf16 parameters, statistics or losses.
RTOL, ATOL = 0.03, 0.01


def _conv_and_dot_dtypes(closed_jaxpr) -> set[tuple[str, str]]:
    """{(primitive, dtype of its lhs)} of every conv and dot, nested jaxprs included."""
    found = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in ("conv_general_dilated", "dot_general"):
                found.add((eqn.primitive.name, str(eqn.invars[0].aval.dtype)))
            for param in eqn.params.values():
                for sub in param if isinstance(param, (list, tuple)) else [param]:
                    if isinstance(sub, jex_core.ClosedJaxpr):
                        walk(sub.jaxpr)
                    elif isinstance(sub, jex_core.Jaxpr):
                        walk(sub)

    walk(closed_jaxpr.jaxpr)
    return found


def _dtypes(tree) -> set[str]:
    return {str(leaf.dtype) for leaf in jax.tree.leaves(tree) if hasattr(leaf, "dtype")}


def test_unknown_precision_names_the_field():
    config = classifier_config.get_config("smoke")
    config.precision = "float16"
    with pytest.raises(ValueError, match=r"config.precision='float16'.*bfloat16"):
        training.compute_dtype(config)
    del config.precision  # runs written before the field compute in float32
    assert training.compute_dtype(config) == jnp.float32


def _classifier_run(precision: str, steps: int = 3):
    config = classifier_config.get_config("smoke")
    config.model.options = dict(widths=(8, 16), hidden=16, batch_norm=True, dropout_rate=0.0)
    config.precision = precision
    model = build_model(config, 1)
    optimizer = functools.partial(make_optimizer, config.optimizer)
    tx = optimizer(10)
    mesh = parallel.make_mesh(1)
    state = create_state(model, tx, (16, 16, 1), 0, True, parallel.replicated(mesh))
    step = training.jit_step(classifier_step(model, optimizer, "binary"), mesh, 2)
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.uniform(-1, 1, (8, 16, 16, 1)).astype(np.float32),
        "label": (np.arange(8) % 2).astype(np.int32),
    }
    losses = []
    for _ in range(steps):
        batch_ = parallel.host_to_global(batch, mesh)
        state, metrics = step(state, batch_, np.ones(2, np.float32), 10)
        losses.append(float(metrics["loss"]))
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits = model.apply(variables, batch["image"])
    jaxpr = jax.make_jaxpr(lambda v: model.apply(v, batch["image"]))(variables)
    return state, losses, logits, jaxpr


def test_classifier_bfloat16_keeps_float32_state_and_matches_float32_loss():
    state32, losses32, _, jaxpr32 = _classifier_run("float32")
    state16, losses16, logits16, jaxpr16 = _classifier_run("bfloat16")
    for tree in (state16.params, state16.batch_stats, state16.opt_state):
        assert _dtypes(tree) <= {"float32", "int32"}
    assert logits16.dtype == jnp.float32  # what the loss sees
    ops = _conv_and_dot_dtypes(jaxpr16)
    assert {d for op, d in ops if op == "conv_general_dilated"} == {"bfloat16"}
    # Dense layers in bf16; float32 dots may remain: reductions written as dots (BatchNorm's
    # and pooling's sums in layers.py) run in float32 by design.
    assert ("dot_general", "bfloat16") in ops
    assert {d for _, d in _conv_and_dot_dtypes(jaxpr32)} == {"float32"}
    np.testing.assert_allclose(losses16, losses32, rtol=RTOL, atol=ATOL)
    # Steps after updates still agree (the learning rate warms up from 0 at step 0).
    assert losses32[2] != losses32[0]


def _gan_config(family: str, precision: str):
    module = {"dcgan": dcgan_config, "pggan": pggan_config, "bagan": bagan_config}[family]
    config = module.get_config("smoke")
    config.gan.update(augment="")
    config.precision = precision
    return config


def _gan_step(config):
    generator, discriminator = families.build_models(config, 2)
    res = config.data.image_size
    mesh = parallel.make_mesh(1)
    state = gan_state(
        generator,
        discriminator,
        config.gan,
        (res, res, config.data.channels),
        0,
        parallel.replicated(mesh),
        per_module=families.family_of(config).per_module_optimizers,
    )
    if config.gan.family == "pggan":
        fn = progressive.make_stage_step(generator, discriminator, config.gan, res, False)
        step, extra = training.jit_step(fn, mesh, num_extra_args=1), (np.float32(1.0),)
    else:
        step, extra = training.jit_step(gan_step(generator, discriminator, config.gan), mesh), ()
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.uniform(-1, 1, (8, res, res, config.data.channels)).astype(np.float32),
        "label": np.zeros(8, np.int32),
    }
    state, metrics = step(state, parallel.host_to_global(batch, mesh), *extra)
    return state, {k: float(metrics[k]) for k in ("d_loss", "g_loss")}


@pytest.mark.parametrize("family", ["dcgan", "pggan"])
def test_gan_bfloat16_step_keeps_float32_state_and_matches_float32_losses(family):
    state16, losses16 = _gan_step(_gan_config(family, "bfloat16"))
    _, losses32 = _gan_step(_gan_config(family, "float32"))
    for tree in (state16.g_params, state16.d_params, state16.g_stats, state16.d_stats):
        assert _dtypes(tree) <= {"float32"}
    assert _dtypes((state16.g_opt, state16.d_opt, state16.ema_params)) <= {"float32", "int32"}
    for key in losses32:
        np.testing.assert_allclose(losses16[key], losses32[key], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("family", ["dcgan", "pggan", "bagan"])
def test_gan_models_compute_in_bfloat16_and_return_float32(family):
    config = _gan_config(family, "bfloat16")
    generator, discriminator = families.build_models(config, 2)
    z = jnp.zeros((4, config.gan.latent_dim))
    labels = jnp.zeros((4,), jnp.int32)
    # Shapes only (no computation): the checks are on dtypes and the traced program.
    g_vars = jax.eval_shape(lambda: generator.init(jax.random.PRNGKey(0), z, labels, train=False))
    images = jax.eval_shape(lambda v: generator.apply(v, z, labels, train=False), g_vars)
    d_vars = jax.eval_shape(
        lambda: discriminator.init(jax.random.PRNGKey(1), jnp.zeros(images.shape), labels)
    )
    assert images.dtype == jnp.float32
    assert _dtypes((g_vars, d_vars)) == {"float32"}

    def loss(g_params, d_params, g_vars, d_vars):
        fake, _ = generator.apply(
            {**g_vars, "params": g_params}, z, labels, train=True, mutable=["batch_stats"]
        )
        (logits, _), _ = discriminator.apply(
            {**d_vars, "params": d_params}, fake, labels, train=True, mutable=["batch_stats"]
        )
        assert logits.dtype == jnp.float32
        return logits.sum()

    grads = jax.grad(loss, (0, 1))
    ops = _conv_and_dot_dtypes(
        jax.make_jaxpr(grads)(g_vars["params"], d_vars["params"], g_vars, d_vars)
    )
    assert {d for op, d in ops if op == "conv_general_dilated"} == {"bfloat16"}
    # DCGAN's float32 dots are BatchNorm's column sums (layers._column_sums).
    assert ("dot_general", "bfloat16") in ops
