"""Pieces both chest X-ray views share: patient coordinates, the exposure window, and the
overlay the findings draw on."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from medgan_jax.data.synthetic.cxr_findings import _L
from medgan_jax.data.synthetic.raster import _blur3, _col, _coords

_View = TypeVar("_View")


def _window(q: dict[str, np.ndarray], b: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Exposure window, gamma, scatter haze, quantum noise and blur -> [B, H, W] in [0, 1]."""
    b = np.clip((b - _col(q["lo"])) / _col(q["hi"] - q["lo"]), 0.0, 1.0)
    b = b ** _col(q["gamma"])
    b = _col(q["haze"]) + (1 - _col(q["haze"])) * b
    b = b + _col(q["noise"]) * noise * (0.5 + b)
    return _blur3(b, _col(q["blur"]))


def _view_coords(q: dict[str, np.ndarray], size: int) -> tuple[np.ndarray, ...]:
    """Patient coordinates X, Y [B, H, W] after each image's rotation, shift and zoom,
    and the size of one pixel in them."""
    x, y = _coords(size)
    c, s = _col(np.cos(q["rot"])), _col(np.sin(q["rot"]))
    xs, ys = x - _col(q["tx"]), y - _col(q["ty"])
    X = (xs * c + ys * s) / _col(q["scale"])
    Y = (ys * c - xs * s) / _col(q["scale"])
    return X, Y, 2.0 / size / _col(q["scale"])


@dataclasses.dataclass(frozen=True)
class _Overlay:
    """What the findings change on a chunk of views, arrays [B, H, W] updated in place."""

    vessels: np.ndarray  # lung markings (edema engorges them)
    opac: np.ndarray  # share of aerated lung replaced by fluid or tissue
    extra: np.ndarray  # brightness added on top (nodule, callus, pleural line)
    clear: np.ndarray  # 0 where a pneumothorax removed lung markings
    air_extra: np.ndarray  # air where a pneumothorax collapsed the lung

    @classmethod
    def start(cls, like: np.ndarray, vessels: np.ndarray) -> _Overlay:
        """No finding drawn yet."""
        zeros = lambda: np.zeros_like(like)
        return cls(vessels, zeros(), zeros(), np.ones_like(like), zeros())

    def add_opacity(self, idx: np.ndarray, op: np.ndarray) -> None:
        """Images `idx` get opacity `op` on top of what is there."""
        self.opac[idx] = 1.0 - (1.0 - self.opac[idx]) * (1.0 - op)


def _draw_findings(
    view: _View,
    overlay: _Overlay,
    findings: Sequence[tuple[str, Callable[[_View, _Overlay, np.ndarray], None]]],
) -> None:
    """Draws each finding, in the given order, on the images of the chunk that have it."""
    for name, draw in findings:
        idx = np.nonzero(view.q[f"f{_L[name]}"] > 0)[0]
        if len(idx):
            draw(view, overlay, idx)
