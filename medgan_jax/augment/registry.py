"""Named augmentation pipelines, so a study switches them by name: `make_augment('classic')`.

A pipeline is a sequence of steps; each step applies its op to each image with its own
probability p (imgaug's Sometimes), and the op draws its own parameters per image. Defaults:

- 'classic' (the seeds' 'aug1'): flip (left-right with 0.5, imgaug's Fliplr(0.5); p=1),
  affine (rotate -20..20 degrees, scale 0.9..1.1, translate -10 %..10 %; p=0.5),
  crop_and_pad (each side cropped up to 5 % or padded up to 10 %; p=0.5), random_crop
  (p=0: off unless switched on).
- 'photometric': superpixels (p=0.1), blur, sharpen, emboss, dropout, add, multiply,
  contrast, colour (p=0.2 each): imgaug's README pipeline puts ~13 such ops under
  SomeOf((0, 5)), which fires each with p of about 0.2, and superpixels with half that.
- 'classic+photometric' (the seeds' best, 'aug3'): classic, then photometric.
- 'filtering': one of Gaussian blur (sigma 1), unsharp mask (sigma 1, amount 1) and a 3x3
  minimum filter per image, with p=0.75: a uniform draw from the CheXpert PGGAN study's
  enlarged set {original, its three filtered copies}.

`params` overrides defaults: `{'rotate': (-10, 10)}` sets the parameter of the one step that
has it, `{'affine': {'p': 0.8, 'scale': 1.0}}` a step's probability and parameters. Values
follow the ops' convention (a number is fixed, a pair a uniform range);
`default_params(name)` lists every key. The returned function runs compiled when called
eagerly (each op is jitted) and traces into one program inside an outer jit.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from medgan_jax.augment import classic, filtering, photometric

Augment = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Step:
    """One op of a pipeline, applied to each image with probability p."""

    name: str
    op: Callable[..., jax.Array]
    p: float


_CLASSIC = (
    Step("flip", classic.random_flip, 1.0),
    Step("affine", classic.affine, 0.5),
    Step("crop_and_pad", classic.crop_and_pad, 0.5),
    Step("random_crop", classic.random_crop, 0.0),
)
_PHOTOMETRIC = (
    Step("superpixels", photometric.superpixels, 0.1),
    Step("blur", filtering.random_gaussian_blur, 0.2),
    Step("sharpen", photometric.sharpen, 0.2),
    Step("emboss", photometric.emboss, 0.2),
    Step("dropout", photometric.dropout, 0.2),
    Step("add", photometric.add, 0.2),
    Step("multiply", photometric.multiply, 0.2),
    Step("contrast", photometric.contrast, 0.2),
    Step("colour", photometric.colour, 0.2),
)
AUGMENTATIONS: dict[str, tuple[Step, ...]] = {
    "none": (),
    "classic": _CLASSIC,
    "photometric": _PHOTOMETRIC,
    "classic+photometric": _CLASSIC + _PHOTOMETRIC,
    "filtering": (Step("filter", filtering.random_filter, 0.75),),
}


def _steps(name: str) -> tuple[Step, ...]:
    if name not in AUGMENTATIONS:
        raise ValueError(
            f"Unknown augmentation {name!r}; valid names are {', '.join(map(repr, AUGMENTATIONS))}."
        )
    return AUGMENTATIONS[name]


def default_params(name: str) -> dict[str, dict[str, Any]]:
    """Every step's probability 'p' and op parameters, with their defaults, by step name."""
    params = {}
    for step in _steps(name):
        signature = inspect.signature(step.op).parameters.values()
        op_params = {a.name: a.default for a in signature if a.name not in ("images", "key")}
        params[step.name] = {"p": step.p, **op_params}
    return params


def _resolve(name: str, params: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    settings = default_params(name)
    valid = sorted({k for s in settings.values() for k in s} | set(settings))
    for key, value in (params or {}).items():
        if key in settings:
            try:
                overrides = dict(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"Augmentation parameter {key!r} names a step of {name!r}; give it a dict "
                    f"of that step's parameters, e.g. {{{key!r}: {{'p': 0.5}}}}, got {value!r}."
                ) from None
            for k, v in overrides.items():
                if k not in settings[key]:
                    raise ValueError(
                        f"Unknown parameter {k!r} for step {key!r} of augmentation {name!r}; "
                        f"valid parameters are {', '.join(settings[key])}."
                    )
                settings[key][k] = v
            continue
        owners = [step for step, s in settings.items() if key in s]
        if not owners:
            raise ValueError(
                f"Unknown parameter {key!r} for augmentation {name!r}; "
                f"valid keys are {', '.join(valid)}."
            )
        if len(owners) > 1:
            raise ValueError(
                f"Parameter {key!r} of augmentation {name!r} is ambiguous: steps "
                f"{', '.join(owners)} all have it; set one as {{{owners[0]!r}: {{{key!r}: ...}}}}."
            )
        settings[owners[0]][key] = value
    for step, s in settings.items():
        if not (isinstance(s["p"], (int, float)) and 0.0 <= s["p"] <= 1.0):
            raise ValueError(f"Probability p of step {step!r} must be in [0, 1], got {s['p']!r}.")
    return settings


def _hashable(value: Any) -> Any:
    """Lists and arrays from a config as tuples: op parameters are static jit arguments."""
    return tuple(np.asarray(value).tolist()) if np.ndim(value) > 0 else value


@functools.partial(jax.jit, static_argnums=(1, 2))
def _keys_and_gates(key: jax.Array, num_steps: int, num_images: int):
    # A key and a gate per step, used or not, so switching a step off keeps the others' draws.
    gate_key, *op_keys = jax.random.split(key, num_steps + 1)
    return op_keys, jax.random.uniform(gate_key, (num_steps, num_images, 1, 1, 1))


def make_augment(name: str, params: Mapping[str, Any] | None = None) -> Augment:
    """The named pipeline as a jit-able `fn(images, key) -> images` with `params` applied."""
    settings = _resolve(name, params)
    defaults = default_params(name)
    steps = []
    for step in _steps(name):
        # Only parameters that differ from the op's defaults are passed, so a default step
        # reuses the compilation of a plain op(images, key) call (ops are jitted).
        kwargs = {k: _hashable(v) for k, v in settings[step.name].items() if k != "p"}
        kwargs = {k: v for k, v in kwargs.items() if v != defaults[step.name][k]}
        steps.append((settings[step.name]["p"], step.op, kwargs))

    def augment(images: jax.Array, key: jax.Array) -> jax.Array:
        classic._check_images(images, f"augmentation {name!r}")
        if not steps:
            return images
        keys, gates = _keys_and_gates(key, len(steps), images.shape[0])
        for (p, op, kwargs), op_key, gate in zip(steps, keys, gates):
            if p > 0:
                images = jnp.where(gate < p, op(images, op_key, **kwargs), images)
        return images

    return augment
