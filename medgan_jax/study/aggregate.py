"""The study's numbers: mean ± std over seeds per (method, size), the difference from
`base` with DeLong's test per seed, GAN quality per GAN run, tables and plots."""

from __future__ import annotations

import copy
import functools
import json
import os

import ml_collections
import numpy as np

from medgan_jax import parallel
from medgan_jax.evaluation.classifier_stats import delong, load_predictions
from medgan_jax.evaluation.features import build_feature_network
from medgan_jax.evaluation.gan_quality import evaluate_generated
from medgan_jax.study import grid


def cell_metric(result: dict, metric: str) -> float | None:
    """A metric of one classifier run: a headline name ('accuracy', 'roc_auc', ...) or
    'auc:<class or label>' for one class's / label's AUC."""
    if not grid.has_result(result):
        return None
    if metric.startswith("auc:"):
        name = metric[4:]
        per = result["test"].get("per_label") or result["test"].get("per_class") or {}
        if not per:
            raise ValueError(
                f"config.metrics names '{metric}': per-class AUCs exist for multiclass and "
                "multi-label tasks; a binary task has one AUC, 'roc_auc'."
            )
        if name not in per:
            raise ValueError(f"config.metrics names '{metric}'; the classes are {list(per)}.")
        return per[name]["roc_auc"]
    return result["test_summary"].get(metric)


def summarise(config: ml_collections.ConfigDict, root: str, cells: dict) -> dict:
    """Per metric, method and size: mean/std over seeds, and the delta from base."""
    table: dict = {}
    for metric in config.metrics:
        table[metric] = {}
        for name in config.methods:
            table[metric][name] = {}
            for size in config.sizes:
                values, deltas = [], []
                for seed in config.seeds:
                    value = cell_metric(cells[grid.cell_key(size, seed, name)], metric)
                    base = cell_metric(cells.get(grid.cell_key(size, seed, "base"), {}), metric)
                    if value is not None:
                        values.append(value)
                        if base is not None:
                            deltas.append(value - base)
                table[metric][name][str(size)] = {
                    **_stats(values),
                    "delta_vs_base": _paired(deltas) if name != "base" else None,
                }
    return table


def delong_tests(config: ml_collections.ConfigDict, root: str, cells: dict) -> dict:
    """DeLong's test of each method's AUC against base, per size and seed."""
    tests: dict = {}
    for name in config.methods:
        if name == "base":
            continue
        tests[name] = {}
        for size in config.sizes:
            per_seed = []
            for seed in config.seeds:
                pair = (cells.get(grid.cell_key(size, seed, m), {}) for m in (name, "base"))
                if not all(grid.has_result(result) for result in pair):
                    continue
                cell = grid.cell_root(root, size, seed)
                base = load_predictions(grid.method_workdir(cell, "base"))
                other = load_predictions(grid.method_workdir(cell, name))
                per_seed.append(delong(base, other))
            tests[name][str(size)] = per_seed
    return tests


def gan_quality(config: ml_collections.ConfigDict, root: str, reference_classifier: str) -> dict:
    """IS/FID/KID/MS-SSIM/memorisation of every trained GAN, with the all-data classifier
    as the feature network (each GAN's quality.json is computed once, then read)."""
    quality: dict = {}
    for gan in grid.gans_of(config.methods):
        quality[gan] = {}
        for size in config.sizes:
            rows = [measure_gan(config, root, reference_classifier, gan, size, seed)
                    for seed in config.seeds]  # fmt: skip
            quality[gan][str(size)] = _quality_stats([row for row in rows if row is not None])
            grid_of = _first_sample_grid(root, gan, size, config.seeds)
            if grid_of:
                quality[gan][str(size)]["samples"] = grid_of
    return quality


def group_gan_quality(config, root: str, reference_classifier: str, size, seed: int) -> None:
    """quality.json of the (size, seed) group's GANs: a study worker measures them when the
    group is done, beside the groups still training, so that `gan_quality` only reads."""
    for gan in grid.gans_of(config.methods):
        measure_gan(config, root, reference_classifier, gan, size, seed)


def measure_gan(config, root: str, reference_classifier: str, gan: str, size, seed: int):
    """One GAN's quality (its quality.json, computed on first use), or None where the GAN
    wrote no samples."""
    workdir = grid.gan_workdir(grid.cell_root(root, size, seed), gan)
    out = os.path.join(workdir, "quality")
    done = os.path.join(out, "quality.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    if not os.path.exists(os.path.join(workdir, "generated", "manifest.json")):
        return None
    spec = ml_collections.ConfigDict(
        dict(
            gan_workdir=workdir,
            class_name=config.minority_class,
            num=0,
            seed=seed,
            step=-1,
            folder=os.path.join(workdir, "generated"),
        )
    )
    eval_config = copy.deepcopy(config.gan_eval)
    network = _feature_network(reference_classifier, eval_config.batch_size)
    result = evaluate_generated(gan, spec, network, eval_config, out, parallel.local_mesh())
    os.makedirs(out, exist_ok=True)
    with open(done, "w") as f:
        json.dump(result, f, indent=1)
    return result


@functools.cache
def _feature_network(reference_classifier: str, batch_size: int):
    """The reference classifier's feature network, built once per process."""
    features = ml_collections.ConfigDict(
        dict(network="classifier", classifier_workdir=reference_classifier, inception_weights="")
    )
    return build_feature_network(features, batch_size, parallel.local_mesh())


def _first_sample_grid(root: str, gan: str, size, seeds) -> dict | None:
    """The first seed's grid of samples above real images, relative to the study root."""
    for seed in seeds:
        quality = os.path.join(grid.gan_workdir(grid.cell_root(root, size, seed), gan), "quality")
        path = os.path.join(quality, gan, "sample_grid.png")
        if os.path.exists(path):
            return {"seed": seed, "path": os.path.relpath(path, root)}
    return None


def _quality_stats(rows: list[dict]) -> dict:
    """Mean/std over seeds of each GAN-quality number. Values that are None (below the
    minimum sample size, or absent from an older quality.json) are left out; when no seed
    has one, the stats keep the first seed's reason as 'na_reason' ("N = 8 < 50: ...")."""
    if not rows:
        return {}
    pick = {
        "inception_score": lambda r: (r["inception_score"]["generated"] or {}).get("mean"),
        "inception_score_real": lambda r: (r["inception_score"]["real"] or {}).get("mean"),
        "fid": lambda r: r.get("fid"),
        "kid": lambda r: (r.get("kid") or {}).get("mean"),
        "precision": lambda r: r.get("precision"),
        "recall": lambda r: r.get("recall"),
        "density": lambda r: r.get("density"),
        "coverage": lambda r: r.get("coverage"),
        "ms_ssim": lambda r: r["ms_ssim_diversity"]["generated"]["mean"],
        "ms_ssim_real": lambda r: r["ms_ssim_diversity"]["real"]["mean"],
        "memorised": lambda r: r["memorization"]["pixel"]["fraction_closer_than_threshold"],
        "copies": lambda r: r["memorization"]["pixel"]["num_copies"],
        "recognised": lambda r: (r.get("recognised_as_class") or {}).get("generated"),
        "recognised_real": lambda r: (r.get("recognised_as_class") or {}).get("real"),
    }

    def reason(r: dict, key: str) -> str | None:
        if key.startswith("inception_score"):  # inside r["inception_score"], per set
            which = "real" if key.endswith("_real") else "generated"
            return r["inception_score"].get(f"{which}_na_reason")
        return r.get(f"{key}_na_reason")

    out = {}
    for key, value_of in pick.items():
        out[key] = _stats([v for v in map(value_of, rows) if v is not None])
        reasons = [x for x in (reason(r, key) for r in rows) if x]
        if out[key]["n"] == 0 and reasons:
            out[key]["na_reason"] = reasons[0]
    return out


def _paired(deltas: list[float]) -> dict:
    """Stats of per-seed differences from base, with a paired t-test across seeds."""
    out = _stats(deltas)
    out["paired_t_p"] = None
    if len(deltas) >= 2 and np.std(deltas) > 0:
        from scipy.stats import ttest_1samp

        out["paired_t_p"] = float(ttest_1samp(deltas, 0.0).pvalue)
    return out


def _stats(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "std": None, "n": 0, "values": []}
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "n": len(v), "values": v.tolist()}
