"""medgan_jax: GAN data augmentation for medical image classification, in JAX/Flax."""

import os

# XLA:CPU routes convolutions to YNNPACK fusions by default; for our conv nets that path
# ran the DCGAN-64 training step 2.3x slower (1841 vs 810 ms/step, 2-core x86, jax 0.10.2)
# than XLA's own kernels. Opt out unless the user set the flag; it must precede backend
# start-up, and other backends ignore CPU flags.
if "xla_cpu_experimental_ynn_fusion_type" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_cpu_experimental_ynn_fusion_type="
    ).strip()

import jax  # noqa: E402

# The default partitionable threefry takes ~10x longer to compile on XLA:CPU (2 s for a
# single jax.random.normal); our random draws (latents, augmentation parameters) are
# small, so generating them unpartitioned costs nothing at run time.
jax.config.update("jax_threefry_partitionable", False)
