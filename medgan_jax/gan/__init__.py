"""GAN training core shared by every family (DCGAN, PGGAN, BAGAN)."""
