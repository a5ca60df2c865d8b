"""The command line `python -m medgan_jax.data.synthetic` (usage in __main__.py)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from absl import app, flags

from medgan_jax.data.synthetic.cxr_findings import CXR_IMAGES_PER_PATIENT
from medgan_jax.data.synthetic.layouts import _write_chexpert_layout, _write_folder_layout
from medgan_jax.data.synthetic.lesions import DEFAULT_LESION_OVERLAP
from medgan_jax.data.synthetic.raster import _SIZE_RANGE

PROG = "python -m medgan_jax.data.synthetic"
_LAYOUTS = {"lesions": ("folder",), "cxr": ("chexpert",)}


def _define_flags(fv: flags.FlagValues, module_name: str | None = None) -> None:
    """Defines the program's flags on `fv` (listed by --help under `module_name`)."""
    kw = dict(flag_values=fv, module_name=module_name)
    flags.DEFINE_enum(
        "kind", None, sorted(_LAYOUTS), "Which synthetic dataset.", required=True, **kw
    )
    flags.DEFINE_string(
        "layout", None, "On-disk layout: folder (lesions) or chexpert (cxr).", required=True, **kw
    )
    flags.DEFINE_integer(
        "num",
        None,
        "lesions: number of images. cxr: approximate number of train images; patients = "
        f"round(num / {CXR_IMAGES_PER_PATIENT:.2f}) since a patient has 1-4 studies of 1-2 views.",
        lower_bound=1,
        required=True,
        **kw,
    )
    flags.DEFINE_integer(
        "size",
        64,
        "Image side in pixels.",
        lower_bound=_SIZE_RANGE[0],
        upper_bound=_SIZE_RANGE[1],
        **kw,
    )
    flags.DEFINE_integer("seed", 0, "The same seed writes the same images.", lower_bound=0, **kw)
    flags.DEFINE_string("out", None, "Output folder.", required=True, **kw)
    flags.DEFINE_float("test-fraction", 0.2, "lesions: stratified test share, in [0, 1).", **kw)
    flags.register_validator(
        "test-fraction", lambda x: 0.0 <= x < 1.0, "expected a share in [0, 1)", flag_values=fv
    )
    unit = dict(lower_bound=0.0, upper_bound=1.0, **kw)
    flags.DEFINE_float("overlap", DEFAULT_LESION_OVERLAP, "lesions: class overlap.", **unit)
    flags.DEFINE_float("malignant-fraction", 0.45, "lesions: P(malignant).", **unit)
    flags.DEFINE_float("hair-probability", 0.3, "lesions: P(hair artefacts).", **unit)
    flags.DEFINE_integer(
        "valid-patients",
        None,
        "cxr: patients in valid.csv (default: a tenth of the train patients, at least 1).",
        lower_bound=0,
        **kw,
    )


def _fail(error: object) -> NoReturn:
    """Prints the error after the program name and exits with status 2, a usage error."""
    sys.stderr.write(f"{PROG}: error: {error}\n")
    raise SystemExit(2)


def _parse(fv: flags.FlagValues, argv: Sequence[str]) -> list[str]:
    """Parses argv (program name first) into `fv`; every value must belong to a flag."""
    try:
        rest = fv(list(argv))
    except flags.Error as err:
        _fail(err)
    if len(rest) > 1:
        _fail(f"unexpected argument(s) {rest[1:]}; every value goes with a --flag")
    return rest


def _write(fv: flags.FlagValues) -> int:
    """Writes the dataset the parsed flags describe and prints a summary; returns 0."""
    v = fv.flag_values_dict()
    kind, layout = v["kind"], v["layout"]
    if layout not in _LAYOUTS[kind]:
        _fail(
            f"--layout {layout!r} is not supported for --kind {kind!r}; expected one of "
            f"{', '.join(_LAYOUTS[kind])} (supported pairs: lesions/folder, cxr/chexpert)"
        )
    try:
        if kind == "lesions":
            summary = _write_folder_layout(
                v["out"],
                v["num"],
                v["size"],
                v["seed"],
                v["test-fraction"],
                overlap=v["overlap"],
                malignant_fraction=v["malignant-fraction"],
                hair_probability=v["hair-probability"],
            )
        else:
            patients = max(1, round(v["num"] / CXR_IMAGES_PER_PATIENT))
            summary = _write_chexpert_layout(
                v["out"], patients, v["size"], v["seed"], v["valid-patients"]
            )
    except ValueError as err:
        _fail(err)
    print(summary)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Writes the synthetic dataset the flags describe; returns the exit status, 0.

    Without `argv` this is the program: absl's app.run parses sys.argv (with --help,
    --helpfull, --flagfile) and exits. With `argv` (flags only, no program name) the flags
    live on a FlagValues of this call, so calls in one process are independent. Flags are
    defined only when called, so importing is free. A bad flag value prints an error that
    names the flag and what was expected, and exits with status 2.
    """
    if argv is None:
        _define_flags(flags.FLAGS, module_name=sys.argv[0])
        app.run(lambda _: _write(flags.FLAGS), flags_parser=lambda a: _parse(flags.FLAGS, a))
    fv = flags.FlagValues()
    _define_flags(fv)
    _parse(fv, [PROG, *argv])
    return _write(fv)
