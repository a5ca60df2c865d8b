"""DICOM files -> float32 [H, W, C] images in [0, 1], as the input pipeline expects.

The pixel values of a DICOM file mean something only after its own transforms, in the
standard's order (PS3.3 C.11): stored values -> Modality LUT (RescaleSlope/Intercept or a
Modality LUT Sequence: Hounsfield units, optical density, ...) -> VOI LUT (a window or a
VOI LUT Sequence: which values to show) -> presentation (MONOCHROME1 is inverted so that
bright means dense, as in MONOCHROME2). `config.data.dicom.window` chooses the VOI step:

  'auto'                      the file's first VOI LUT or window (WindowCenter/Width with
                              its VOILUTFunction); a file without one: the image's min-max
  'none'                      no window: the full range the header allows after the
                              Modality LUT (BitsStored, PixelRepresentation, rescale)
  'center,width'              this window (LINEAR), for every file
  'percentile,p_low,p_high'   the image's own percentiles, clipped

Colour files (RGB, YBR_* as RGB, PALETTE COLOR through its palette) are scaled by their
bit depth. Files of several frames need `config.data.dicom.frame` (-1: refuse, naming
the file and its frame count). Decoding uses pydicom and, for compressed transfer
syntaxes (JPEG, JPEG-LS, JPEG 2000, RLE), the pylibjpeg plugins.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np

DICOM_EXTENSIONS = (".dcm", ".dicom")
WINDOW_RULES = ("auto", "none", "center,width", "percentile,p_low,p_high")


@dataclasses.dataclass(frozen=True)
class DicomSettings:
    """`config.data.dicom`, parsed once: the window rule and the frame to take."""

    window: str = "auto"  # auto | none | fixed | percentile
    center: float = 0.0
    width: float = 1.0
    p_low: float = 0.0
    p_high: float = 100.0
    frame: int = -1


def settings_from_config(dicom_cfg) -> DicomSettings:
    """Parses `config.data.dicom` (window, frame) with errors that name the field."""
    window = str(dicom_cfg.get("window", "auto")).strip().lower()
    frame = int(dicom_cfg.get("frame", -1))
    parts = [p.strip() for p in window.split(",")]
    if window in ("auto", "none"):
        return DicomSettings(window=window, frame=frame)
    try:
        if parts[0] == "percentile" and len(parts) == 3:
            low, high = float(parts[1]), float(parts[2])
            if 0 <= low < high <= 100:
                return DicomSettings(window="percentile", p_low=low, p_high=high, frame=frame)
        elif len(parts) == 2:
            center, width = float(parts[0]), float(parts[1])
            if width > 0:
                return DicomSettings(window="fixed", center=center, width=width, frame=frame)
    except ValueError:
        pass
    raise ValueError(
        f"config.data.dicom.window={dicom_cfg.get('window')!r}; expected one of {WINDOW_RULES} "
        "(a width > 0; percentiles 0 <= p_low < p_high <= 100)."
    )


def is_dicom_path(path: str) -> bool:
    return path.lower().endswith(DICOM_EXTENSIONS)


def read(data: bytes, settings: DicomSettings, name: str = "<bytes>") -> np.ndarray:
    """A DICOM file's bytes -> float32 [H, W, 1 or 3] in [0, 1]; errors name the file."""
    import pydicom  # imported on first use: only DICOM datasets need it

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        pixels = _frame(ds, settings.frame, name)
    except DicomError:
        raise
    except Exception as error:  # truncated, not DICOM, no decoder for its syntax, ...
        raise DicomError(f"{name}: not a readable DICOM image ({error}).") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if int(ds.get("SamplesPerPixel", 1)) == 1 and photometric != "PALETTE COLOR":
        image = _grayscale(pixels, ds, settings, name)
        if photometric == "MONOCHROME1":
            image = 1.0 - image
        return image[..., None].astype(np.float32)
    return _colour(pixels, ds, photometric, name)


class DicomError(ValueError):
    """An unreadable or unsupported DICOM file (the message names it)."""


def _frame(ds, frame: int, name: str) -> np.ndarray:
    """The stored values of the one frame to use (every frame is decoded: pydicom's API)."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1 and frame < 0:
        raise DicomError(
            f"{name}: a multi-frame DICOM file ({frames} frames); set "
            "config.data.dicom.frame to the frame to use (0-based)."
        )
    if frame >= frames:
        raise DicomError(
            f"{name}: config.data.dicom.frame={frame}, but the file has {frames} frame(s)."
        )
    pixels = ds.pixel_array
    return pixels[frame] if frames > 1 else pixels


def _grayscale(pixels: np.ndarray, ds, settings: DicomSettings, name: str) -> np.ndarray:
    """Stored values -> Modality LUT -> the chosen VOI step, scaled to [0, 1]."""
    from pydicom.pixels import apply_modality_lut, apply_voi

    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    if settings.window == "none":
        low, high = modality_range(ds)
        return _scaled(values, low, high)
    if settings.window == "fixed":
        return linear_window(values, settings.center, settings.width, "LINEAR")
    if settings.window == "percentile":
        low, high = np.percentile(values, [settings.p_low, settings.p_high])
        return _scaled(values, low, high)
    if ds.get("VOILUTSequence"):  # auto: the file's first VOI LUT
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        return _scaled(np.asarray(apply_voi(values, ds, index=0), np.float64), 0, 2**bits - 1)
    if "WindowCenter" in ds and "WindowWidth" in ds:  # auto: the file's first window
        center, width = (_first(ds[key].value) for key in ("WindowCenter", "WindowWidth"))
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        try:
            return linear_window(values, center, width, function)
        except ValueError as error:
            raise DicomError(f"{name}: {error}") from None
    return _scaled(values, values.min(), values.max())  # auto without a window: min-max


def linear_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """The DICOM VOI functions (PS3.3 C.11.2.1.2-3) with output range [0, 1]."""
    if function == "SIGMOID":
        if width <= 0:
            raise ValueError(f"WindowWidth {width} must be > 0 for SIGMOID.")
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR":
        if width < 1:
            raise ValueError(f"WindowWidth {width} must be >= 1 for LINEAR.")
        center, width = center - 0.5, width - 1.0
    elif function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError(f"WindowWidth {width} must be > 0 for LINEAR_EXACT.")
    else:
        raise ValueError(f"VOILUTFunction {function!r} is not LINEAR, LINEAR_EXACT or SIGMOID.")
    if width == 0:  # LINEAR with width 1: a threshold at the center
        return (values > center).astype(np.float64)
    return np.clip((values - center) / width + 0.5, 0.0, 1.0)


def modality_range(ds) -> tuple[float, float]:
    """The values the header allows after the Modality LUT (the 'none' window's range)."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = float(ds.get("RescaleSlope", 1.0)), float(ds.get("RescaleIntercept", 0.0))
    ends = sorted((low * slope + intercept, high * slope + intercept))
    return ends[0], ends[1]


def _colour(pixels: np.ndarray, ds, photometric: str, name: str) -> np.ndarray:
    """RGB or YBR_* (pydicom >= 3 returns those as RGB) or PALETTE COLOR -> RGB in [0, 1]."""
    from pydicom.pixels import apply_color_lut

    if photometric == "PALETTE COLOR":
        rgb = np.asarray(apply_color_lut(pixels, ds), np.float64)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        return (rgb / (2**bits - 1)).astype(np.float32)
    if photometric != "RGB" and not photometric.startswith("YBR"):
        raise DicomError(f"{name}: unsupported PhotometricInterpretation {photometric!r}.")
    return (pixels.astype(np.float64) / (2 ** int(ds.BitsStored) - 1)).astype(np.float32)


def _first(value) -> float:
    """WindowCenter/Width may hold several windows; the first is the default."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _scaled(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros_like(values)
    return np.clip((values - low) / (high - low), 0.0, 1.0)
