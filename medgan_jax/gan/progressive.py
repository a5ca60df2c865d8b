"""Progressive growing (Karras et al. 2018): the schedule, real images per stage, the step.

The schedule is measured in images shown: `stable_images` at the initial resolution, then
for every doubling a fade-in of `fade_images` (alpha rising linearly from 0 to 1) and a
stable phase of `stable_images`; the last stable phase lasts `final_images` (or runs on
while `config.num_steps` asks for more). Every phase has the batch size of the resolution
it trains (during a fade-in, the new one, as in the official code) and a whole number of
steps, so the stage and alpha are pure functions of the step: a resumed run continues with
exactly the resolution, phase, alpha and images shown of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import ml_collections

from medgan_jax.gan.state import GANState
from medgan_jax.gan.steps import make_train_step
from medgan_jax.models.layers import downsample_average, upsample_nearest
from medgan_jax.models.pggan import resolutions, stage_modules


@dataclasses.dataclass(frozen=True)
class Phase:
    """Steps first_step+1 .. last_step, training `resolution` (fading in, or stable)."""

    index: int
    resolution: int
    fading: bool
    batch_size: int  # images per discriminator update
    images_per_step: int  # batch_size * n_critic
    first_step: int
    last_step: int  # a huge number for the open-ended final phase
    first_image: int  # images shown before the phase
    length: int  # images the phase is meant to show (the fade length during fade-in)


@dataclasses.dataclass(frozen=True)
class Stage:
    """What one step trains: resolution, whether it fades in, alpha, images shown before it."""

    phase: Phase
    alpha: float
    images_shown: int

    @property
    def resolution(self) -> int:
        return self.phase.resolution

    @property
    def fading(self) -> bool:
        return self.phase.fading


class Schedule:
    """Phases of progressive growing, and the stage of any step."""

    def __init__(
        self,
        final_resolution: int,
        initial_resolution: int,
        stable_images: int,
        fade_images: int,
        final_images: int,
        batch_sizes: tuple[int, ...],
        n_critic: int = 1,
    ):
        res = resolutions(final_resolution, initial_resolution)
        all_res = resolutions(final_resolution)  # batch_sizes[i] is for 4 * 2^i
        if len(batch_sizes) == 1:
            batch_sizes = tuple(batch_sizes) * len(all_res)
        if len(batch_sizes) < len(all_res):
            raise ValueError(
                f"config.pggan.batch_sizes has {len(batch_sizes)} entries; expected one per "
                f"resolution {all_res} (or a single one for all)."
            )
        for name, value in (
            ("stable_images", stable_images),
            ("fade_images", fade_images),
            ("final_images", final_images),
        ):
            if value < 1:
                raise ValueError(f"config.pggan.{name}={value}; expected a positive count.")
        plan = [(res[0], False, stable_images)]
        for r in res[1:]:
            plan += [(r, True, fade_images), (r, False, stable_images)]
        plan[-1] = (plan[-1][0], False, final_images)
        self.phases: list[Phase] = []
        step = image = 0
        for i, (r, fading, length) in enumerate(plan):
            batch = int(batch_sizes[all_res.index(r)])
            per_step = batch * n_critic
            steps = -(-length // per_step)
            last = step + steps if i < len(plan) - 1 else 2**62
            self.phases.append(Phase(i, r, fading, batch, per_step, step, last, image, length))
            step, image = step + steps, image + steps * per_step
        self.num_steps = step  # through final_images at the final resolution

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> Schedule:
        """The schedule of `config.pggan` (final resolution `config.data.image_size`)."""
        p = config.pggan
        return cls(
            config.data.image_size,
            p.initial_resolution,
            p.stable_images,
            p.fade_images,
            p.final_images,
            tuple(p.batch_sizes) or (config.batch_size,),
            config.gan.n_critic,
        )

    def phase_of(self, step: int) -> Phase:
        """The phase of step `step` (steps count from 1)."""
        if step < 1:
            raise ValueError(f"Steps count from 1, got {step}.")
        for phase in self.phases:
            if step <= phase.last_step:
                return phase
        raise AssertionError("the last phase is open-ended")

    def stage(self, step: int) -> Stage:
        """Resolution, phase, alpha and images shown before step `step` (from 1)."""
        phase = self.phase_of(step)
        shown_in_phase = (step - 1 - phase.first_step) * phase.images_per_step
        alpha = min(1.0, shown_in_phase / phase.length) if phase.fading else 1.0
        return Stage(phase, alpha, phase.first_image + shown_in_phase)

    def images_shown(self, step: int) -> int:
        """Images shown after `step` steps."""
        if step == 0:
            return 0
        stage = self.stage(step)
        return stage.images_shown + stage.phase.images_per_step


def real_images(images: jax.Array, resolution: int, fading: bool, alpha) -> jax.Array:
    """Full-size reals -> the stage's resolution (box filter); during a fade-in, lerped by
    alpha with their 2x-downscaled-then-upscaled version, as the official code does."""
    factor = images.shape[1] // resolution
    if factor * resolution != images.shape[1]:
        raise ValueError(
            f"Real images of {images.shape[1]}x{images.shape[2]} cannot be box-downscaled to "
            f"{resolution}x{resolution}."
        )
    x = downsample_average(images, factor)
    if fading:
        low = upsample_nearest(downsample_average(x, 2), 2)
        x = low + (x - low) * alpha
    return x


def stage_models(
    generator: nn.Module, discriminator: nn.Module, resolution: int, fading: bool
) -> tuple[nn.Module, nn.Module]:
    """The networks of one stage (same parameters, a fixed resolution and fade-in)."""
    return (
        generator.clone(stage_resolution=resolution, fading=fading),
        discriminator.clone(stage_resolution=resolution, fading=fading),
    )


def make_stage_step(
    generator: nn.Module,
    discriminator: nn.Module,
    cfg: ml_collections.ConfigDict,
    resolution: int,
    fading: bool,
) -> Callable[[GANState, dict, jax.Array], tuple[GANState, dict]]:
    """(state, batch of full-size reals, alpha) -> (state, metrics) for one stage; jit it."""
    g, d = stage_models(generator, discriminator, resolution, fading)
    step = make_train_step(g, d, cfg, per_module=True)
    g_names, d_names = stage_modules(resolution, fading)

    def stage_step(state: GANState, batch: dict, alpha: jax.Array):
        # The generic step sees only this stage's modules (parameters, Adam states, EMA):
        # the others pass through untouched, so neither the compiled program nor the
        # optimizer's work grows with the resolutions not trained yet.
        g_fields, d_fields = ("g_params", "g_opt", "ema_params"), ("d_params", "d_opt")
        part = {f: _pick(getattr(state, f), g_names) for f in g_fields}
        part.update({f: _pick(getattr(state, f), d_names) for f in d_fields})
        images = real_images(batch["image"], resolution, fading, alpha)
        new, metrics = step(state.replace(**part), {**batch, "image": images}, alpha=alpha)
        merged = {f: {**getattr(state, f), **getattr(new, f)} for f in g_fields + d_fields}
        return new.replace(**merged), metrics

    return stage_step


def _pick(tree: dict, names: list[str]) -> dict:
    return {name: tree[name] for name in names}
