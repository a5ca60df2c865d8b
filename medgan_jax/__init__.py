"""medgan_jax: GAN data augmentation for medical image classification, in JAX/Flax."""

import jax

# The default partitionable threefry takes ~10x longer to compile on XLA:CPU (2 s for a
# single jax.random.normal); our random draws (latents, augmentation parameters) are
# small, so generating them unpartitioned costs nothing at run time.
jax.config.update("jax_threefry_partitionable", False)
