"""The evaluate job: feature networks, GAN image quality, classifier statistics, its report."""
