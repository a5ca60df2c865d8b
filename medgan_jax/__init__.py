"""medgan_jax: GAN data augmentation for medical image classification, in JAX/Flax.

Importing the package changes no process-wide setting; entry points call
`medgan_jax.app.configure()` first.
"""
