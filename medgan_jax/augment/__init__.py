"""Pure-JAX, jit-able image augmentations on device batches (NHWC, [-1, 1])."""
