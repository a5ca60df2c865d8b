"""evaluate.py's job (configs/evaluate.py): GAN image quality, diversity and memorisation,
and classifier metrics with uncertainty, written to metrics.json, report.md and plots."""

from __future__ import annotations

import json
import os

import jax
import ml_collections
from absl import logging

from medgan_jax import parallel, training
from medgan_jax.evaluation import report
from medgan_jax.evaluation.classifier_stats import evaluate_classifiers
from medgan_jax.evaluation.features import build_feature_network
from medgan_jax.evaluation.gan_quality import evaluate_generated


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs every evaluation the config names; returns what it wrote to metrics.json."""
    # The images are in every process; each computes the metrics on its own devices.
    mesh = training.mesh_of(config) if jax.process_count() == 1 else parallel.local_mesh()
    os.makedirs(workdir, exist_ok=True)
    results: dict = {"generated": {}, "classification": {}}
    generated = {k: v for k, v in config.generated.items() if v.gan_workdir}
    if generated:
        network = build_feature_network(config.features, config.batch_size, mesh)
        for name, spec in generated.items():
            logging.info("Evaluating generated set '%s'.", name)
            results["generated"][name] = evaluate_generated(
                name, spec, network, config, workdir, mesh
            )
    classifiers = {k: v for k, v in config.classifiers.items() if v}
    if classifiers:
        results["classification"] = evaluate_classifiers(classifiers, config.bootstrap, workdir)
    results["feature_network"] = config.features.network if generated else None
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "metrics.json"), "w") as f:
            json.dump(results, f, indent=1)
        text = report.markdown(results)
        with open(os.path.join(workdir, "report.md"), "w") as f:
            f.write(text)
        print(text, flush=True)
    return results
