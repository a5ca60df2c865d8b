"""The feature networks whose logits give IS and whose features give FID, KID and the
feature-space memorisation audit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import ml_collections
import numpy as np

from medgan_jax import parallel, runs
from medgan_jax.classify import predict
from medgan_jax.classify.state import scores_of
from medgan_jax.models import inception

FeatureFn = Callable[[jax.Array], dict[str, jax.Array]]


@dataclass
class FeatureNetwork:
    """A jit-compiled images -> {'features', 'logits'} function and what it is."""

    name: str
    fn: FeatureFn
    batch_size: int
    mesh: jax.sharding.Mesh
    # A classifier of this project: its task and classes, so its logits say which class
    # an image looks like (empty for Inception's ImageNet classes).
    task: str = ""
    class_names: tuple[str, ...] = ()

    def class_probability(self, logits: np.ndarray, class_name: str) -> np.ndarray | None:
        """P(class_name) [N] of each image by this classifier, or None if it has no such
        class (Inception, or a class it was not trained on)."""
        if class_name not in self.class_names:
            return None
        k = self.class_names.index(class_name)
        scores = np.asarray(scores_of(self.task, logits))
        if self.task == "binary":
            return scores if k == 1 else 1.0 - scores
        return scores[:, k]

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        n = len(images)
        padded = np.zeros((self.batch_size, *images.shape[1:]), np.float32)
        padded[:n] = images
        batch = jax.device_put(padded, parallel.batch_sharding(self.mesh))
        return {k: np.asarray(v, np.float64)[:n] for k, v in self.fn(batch).items()}


def build_feature_network(
    cfg: ml_collections.ConfigDict, batch_size: int, mesh: jax.sharding.Mesh
) -> FeatureNetwork:
    """The network whose logits give IS and whose features give FID/KID."""
    parallel.check_batch_size(batch_size, mesh)
    if cfg.network == "inception":
        variables = inception.load_keras_h5(cfg.inception_weights)
        fn = inception.make_inception_fn(variables)
    elif cfg.network == "classifier":
        run = runs.load(cfg.classifier_workdir, kind="classifier")
        fn = predict.make_feature_fn(cfg.classifier_workdir)
        return FeatureNetwork(cfg.network, fn, batch_size, mesh, run.task, run.class_names)
    else:
        raise ValueError(
            f"config.features.network='{cfg.network}'; expected 'inception' (Keras ImageNet "
            "weights in config.features.inception_weights) or 'classifier' (a run of "
            "train_classifier.py in config.features.classifier_workdir)."
        )
    return FeatureNetwork(cfg.network, fn, batch_size, mesh)  # fn is jit-compiled
