"""The study's grid: its methods, its sizes as data subsets, and where each cell lives.

root/size=S/seed=K/manifest_train.csv     the real subset of the cell
root/size=S/seed=K/gan=NAME/              a GAN run (+ generated/ samples)
root/size=S/seed=K/method=NAME/           a classifier run (metrics.json, predictions)
root/reference_classifier/                all-data classifier for IS/FID
"""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class Method:
    """A way to train the classifier: an augmentation, a GAN's images, real images added
    (repeated or unused ones) or a class-weighted loss, and its role in the comparisons."""

    augment: str = "none"
    gan: str = ""  # a key of config.gans ('' = no GAN images)
    added: str = ""  # config.synthetic.source of real images added: oversample | real_topup
    class_weighting: str = ""  # config.class_weighting
    role: str = "method"  # base | control | ceiling | method (see ROLES)


# base: the reference of every comparison. control: simple rebalancing, which every
# generator must beat to be worth training. ceiling: the same number of unused real images.
ROLES = ("base", "control", "ceiling", "method")

METHODS = {
    "base": Method(role="base"),
    "oversample": Method(added="oversample", role="control"),
    "weighted": Method(class_weighting="balanced", role="control"),
    "real_topup": Method(added="real_topup", role="ceiling"),
    "classic": Method(augment="classic"),
    "photometric": Method(augment="photometric"),
    "classic+photometric": Method(augment="classic+photometric"),
    "dcgan": Method(gan="dcgan"),
    # Pretrained on the cell's majority class, fine-tuned on its minority (same total steps).
    "dcgan_transfer": Method(gan="dcgan_transfer"),
    "pggan": Method(gan="pggan"),
    "pggan+filtering": Method(gan="pggan+filtering"),
    "dcgan+classic": Method(augment="classic", gan="dcgan"),
    "bagan": Method(gan="bagan"),
    "diffusion": Method(gan="diffusion"),  # a denoising diffusion model (configs/diffusion.py)
    "diffusion+classic": Method(augment="classic", gan="diffusion"),
}


SIZE_UNITS = ("per_class", "minority")


def method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"config.methods names '{name}'; known methods: {list(METHODS)}.")
    return METHODS[name]


def with_role(methods, role: str) -> list[str]:
    """The methods of a role, in the config's order."""
    return [m for m in methods if method(m).role == role]


def gans_of(methods) -> list[str]:
    """The GANs the methods need, sorted."""
    return sorted({method(m).gan for m in methods} - {""})


def size_subset(
    size: str, seed: int, unit: str = "per_class", minority: str = "", base_counts: str = ""
) -> dict:
    """A data.subset update for a size of the grid.

    unit 'per_class': 'N' images of every class, 'P%' of each class, or 'all'.
    unit 'minority': 'N' images of the minority class, the other classes as
    `base_counts` (data.subset.class_counts, e.g. 'benign=400') leaves them; 'all' keeps
    every minority image. This is the rare-disease learning curve.
    """
    size = str(size).strip()
    if unit not in SIZE_UNITS:
        raise ValueError(f"config.size_unit='{unit}'; expected one of {SIZE_UNITS}.")
    if size == "all":
        return dict(per_class=0, fraction=1.0, seed=seed)
    if unit == "minority":
        if not (size.isdigit() and int(size) > 0):
            raise ValueError(
                f"config.sizes item '{size}'; with size_unit='minority' expected 'all' or a "
                "count of minority images ('50')."
            )
        counts = ",".join(filter(None, (base_counts, f"{minority}={int(size)}")))
        return dict(per_class=0, fraction=1.0, seed=seed, class_counts=counts)
    if size.endswith("%"):
        return dict(per_class=0, fraction=float(size[:-1]) / 100, seed=seed)
    if size.isdigit() and int(size) > 0:
        return dict(per_class=int(size), fraction=1.0, seed=seed)
    raise ValueError(
        f"config.sizes item '{size}'; expected 'all', a per-class count ('100') or a "
        "percentage ('25%')."
    )


def has_result(result: dict) -> bool:
    """Whether a cell's result holds metrics (not an error, nor 'no ceiling available')."""
    return bool(result) and "error" not in result and "no_ceiling" not in result


def cell_key(size, seed, name: str) -> str:
    """A classifier cell's id in results: 'size=S/seed=K/method=NAME'."""
    return f"size={size}/seed={seed}/method={name}"


def cell_root(root: str, size, seed) -> str:
    """The folder of one (size, seed): its subset manifest, GANs and classifiers."""
    return os.path.join(root, f"size={size}", f"seed={seed}")


def gan_workdir(cell: str, gan: str) -> str:
    return os.path.join(cell, f"gan={gan}")


def pretrain_workdir(root: str, gan: str, key: str) -> str:
    """A transferred GAN's pretraining run, shared by the cells whose images give `key`."""
    return os.path.join(root, "pretrain", f"gan={gan}.pretrain-{key}")


def method_workdir(cell: str, name: str) -> str:
    return os.path.join(cell, f"method={name}")


def reference_workdir(root: str) -> str:
    return os.path.join(root, "reference_classifier")
